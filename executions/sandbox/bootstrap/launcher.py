"""The in-container launcher: runs /code/main.py as `python -u`, then reports how it ended.

It runs as the container's unprivileged user under docker-init. Startup happens before the job
arrives: it installs the run's own packages (wheels mounted at /wheels) into /deps and starts the
program's interpreter, which waits in sitecustomize (on the "go" pipe) before opening
/code/main.py. That is what lets a warm pool start containers ahead of time: the host writes
/code and /input, then sends one line, {"nonce": ...}, and the code starts at once.

The line comes on /chan/job and stdout and stderr go to /chan/out and /chan/err, FIFOs in the
run's host folder, where the host has them (runc); without /chan (gVisor opens no host FIFO),
on the container's stdin, stdout and stderr, through the engine's attach.

The nonce comes only through that line, so the program cannot learn it, and marks the launcher's
messages on stdout: STARTED (the host counts the code's timeout from here), then, after the program
and every process it left behind are gone, END on stderr and one JSON envelope on stdout with the
exit status, the exception that ended it, /output/result.json, the artifacts, the program's
display() records (written to an unnamed file it inherits) and resource usage.
Those lines and the envelope are defined in wire.py, which the host imports too.
Finally the launcher exits the way the program did, re-raising a fatal signal (exit code 128+N).
"""

import contextlib
import json
import os
import resource
import signal
import stat
import sys
import time

# -I leaves this file's folder off sys.path; wire.py sits beside it (appended: stdlib names win).
sys.path.append(os.path.dirname(os.path.abspath(__file__)))
import wire

CHANNEL_DIR = "/chan"
WHEELS_DIR = "/wheels"
DEPS_DIR = "/deps"
OUTPUT_DIR = "/output"
RESULT_FILE = "result.json"
MAX_ARTIFACTS = 100
MAX_ARTIFACT_BYTES = 10 * 1024 * 1024
MAX_REPORT_BYTES = 64 * 1024
DIED = "died"  # _wait_for_job: the program's interpreter ended before the job arrived
READY = []  # _wait_for_job: [True] once the interpreter said it is ready (its preload is done)
EXIT_INTERPRETER_DIED = 70


def _read_all(fd):
    chunks, size = [], 0
    while size < MAX_REPORT_BYTES:
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    os.close(fd)
    return b"".join(chunks)[:MAX_REPORT_BYTES]


def _read_regular_file(path, limit):
    """Read a regular file without following symlinks; None if it is anything else or too big."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > limit:
            return None
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.read(limit + 1)[:limit]
    finally:
        os.close(fd)


def _collect_output():
    result_json, artifacts, skipped = None, [], 0
    try:
        entries = sorted(os.scandir(OUTPUT_DIR), key=lambda e: e.name)
    except OSError:
        entries = []
    for entry in entries:
        data = _read_regular_file(entry.path, MAX_ARTIFACT_BYTES)
        if data is None:
            skipped += 1
            continue
        if entry.name == RESULT_FILE:
            result_json = data.decode("utf-8", errors="replace")
        elif len(artifacts) < MAX_ARTIFACTS:
            import base64  # only when there are artifacts

            artifacts.append({"name": entry.name, "data": base64.b64encode(data).decode()})
        else:
            skipped += 1
    return result_json, artifacts, skipped


def _write(data):
    while data:
        data = data[os.write(1, data) :]


def _wheel_destination(name):
    """Where a wheel member goes under /deps: libraries only (no scripts, headers or data)."""
    parts = name.split("/")
    if ".." in parts or name.startswith("/") or name.endswith("/"):
        return None
    if parts[0].endswith(".data"):
        if len(parts) < 3 or parts[1] not in ("purelib", "platlib"):
            return None
        parts = parts[2:]
    return os.path.join(DEPS_DIR, *parts)


def _install_wheels():
    """Unpack the run's wheels into /deps; returns an error message or None."""
    import zipfile

    names = sorted(n for n in os.listdir(WHEELS_DIR) if n.endswith(".whl"))
    # Wheels hold files bigger than the program's own file-size limit (shared libraries).
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))
    try:
        for name in names:
            with zipfile.ZipFile(os.path.join(WHEELS_DIR, name)) as wheel:
                for member in wheel.infolist():
                    destination = _wheel_destination(member.filename)
                    if destination is None:
                        continue
                    os.makedirs(os.path.dirname(destination), exist_ok=True)
                    with wheel.open(member) as source, open(destination, "wb") as target:
                        while chunk := source.read(1 << 20):
                            target.write(chunk)
    except (OSError, zipfile.BadZipFile) as exc:
        return f"Installing {name} failed: {exc}"
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    return None


def _parse_exception(raw):
    try:
        report = json.loads(raw.decode("utf-8", errors="replace").strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None
    return report if isinstance(report, dict) else None


def _report(nonce, envelope):
    os.write(2, wire.end_line(nonce))  # the program's stderr is complete
    _write(wire.envelope_lines(nonce, envelope))


def _open_channel():
    """The fd the job line arrives on; stdout and stderr (fds 1 and 2, which the program inherits)
    moved to the channel's FIFOs when there is one. Those two are opened read-write: that never
    blocks, and the host sees their end only once every process of the container has gone."""
    if not os.path.exists(CHANNEL_DIR + "/job"):
        return 0
    for name, fd in (("out", 1), ("err", 2)):
        opened = os.open(f"{CHANNEL_DIR}/{name}", os.O_RDWR)
        os.dup2(opened, fd)
        os.close(opened)
    return os.open(CHANNEL_DIR + "/job", os.O_RDONLY | os.O_NONBLOCK)  # (polled: read when there is a line)


def _wait_for_job(job_fd, ready_r):
    """The nonce of the host's one line (wire.job_line), watching the program's
    interpreter meanwhile: None if the line's stream closes first, DIED if the interpreter ends before the job
    arrives (a preloaded module crashed it): the container then ends rather than run a job in an
    interpreter that is gone, and the pool replaces it. `ready_r` reads b"r" once the interpreter
    is ready, then end of file when it ends (it holds the other end open for its whole life)."""
    import select

    poller = select.poll()
    poller.register(job_fd, select.POLLIN)
    if ready_r is not None:
        poller.register(ready_r, select.POLLIN)
    data = b""
    while not data.endswith(b"\n"):
        for fd, _event in poller.poll():
            if fd == job_fd:
                chunk = os.read(job_fd, 4096)
                if not chunk:
                    return None
                data += chunk
            elif os.read(ready_r, 1) == b"r":
                READY.append(True)
            else:
                return DIED
    return wire.nonce_of(data)


def _display_file():
    """An unnamed file in /tmp for the program's display() records (hook/tako.py): the program
    cannot remove it or leave it behind, and it is read only when the program has ended."""
    try:
        return os.open("/tmp", os.O_TMPFILE | os.O_RDWR, 0o600)
    except OSError:  # a filesystem without O_TMPFILE: a named file, unlinked at once
        path = f"/tmp/.tako-displays-{os.getpid()}"
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
        os.unlink(path)
        return fd


def _read_displays(fd):
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        chunks, size = [], 0
        while size < wire.MAX_DISPLAY_BYTES:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        return wire.display_entries(b"".join(chunks))
    except OSError:
        return []


def _spawn_program(search_path, display_fd):
    """Start the program's interpreter now; it waits for the go pipe before reading main.py."""
    report_r, report_w = os.pipe()
    go_r, go_w = os.pipe()
    ready_r, ready_w = os.pipe()
    for fd in (report_w, go_r, ready_w, display_fd):
        os.set_inheritable(fd, True)
    env = dict(os.environ, TAKO_REPORT_FD=str(report_w), TAKO_GO_FD=str(go_r), TAKO_READY_FD=str(ready_w))
    env[wire.DISPLAY_FD_ENV] = str(display_fd)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (*search_path, env.get("PYTHONPATH")) if p)
    # posix_spawn, not subprocess: importing subprocess costs more than the program's own start.
    pid = os.posix_spawn(
        sys.executable,
        [sys.executable, "-u", "/code/main.py"],
        env,
        file_actions=[(os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0)],
    )
    os.close(report_w)
    os.close(go_r)
    os.close(ready_w)
    os.set_inheritable(display_fd, False)
    return pid, report_r, go_w, ready_r


def main():
    os.chdir("/tmp")
    job_fd = _open_channel()
    search_path = ["/opt/tako/hook"]
    dep_install_ms = problem = None
    if os.path.isdir(WHEELS_DIR):
        began = time.monotonic()
        problem = _install_wheels()
        dep_install_ms = int((time.monotonic() - began) * 1000)
        search_path.append(DEPS_DIR)
    pid = report_r = go_w = ready_r = None
    display_fd = _display_file()
    if not problem:
        pid, report_r, go_w, ready_r = _spawn_program(search_path, display_fd)
    nonce = _wait_for_job(job_fd, ready_r)
    if nonce is None:  # the host went away (or the pool was drained) before sending a job
        sys.exit(0)
    if nonce == DIED:  # nobody is attached yet: the exit status is the only word
        os.waitpid(pid, 0)
        sys.exit(EXIT_INTERPRETER_DIED)
    if problem:
        _report(nonce, {"returncode": 1, "dependency_error": problem, "dep_install_ms": dep_install_ms})
        sys.exit(1)
    # A cold start's interpreter may still be importing the environment's preloaded modules: that
    # is start-up, so the code's clock (STARTED) begins once it is ready.
    if not READY and os.read(ready_r, 1) != b"r":
        returncode = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
        os.write(2, b"The Python interpreter ended before the program started\n")
        _report(nonce, {"returncode": returncode, "exception": _parse_exception(_read_all(report_r))})
        sys.exit(returncode if returncode >= 0 else 128 - returncode)
    _write(wire.started_line(nonce))
    started = time.monotonic()
    os.write(go_w, b"g")
    os.close(go_w)
    returncode = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    wall_ms = int((time.monotonic() - started) * 1000)
    # Processes the program left behind (daemons, detached children) end with it: signal every
    # process this user may signal, which spares docker-init (PID 1) and the launcher itself.
    with contextlib.suppress(OSError):
        os.kill(-1, signal.SIGKILL)
    exception = _parse_exception(_read_all(report_r))
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    result_json, artifacts, skipped = _collect_output()
    envelope = {
        "returncode": returncode,
        "exception": exception,
        "result_json": result_json,
        "artifacts": artifacts,
        "skipped_outputs": skipped,
        "displays": _read_displays(display_fd),
        "dep_install_ms": dep_install_ms,
        "resource_usage": {
            "max_rss_mb": round(usage.ru_maxrss / 1024, 1),
            "cpu_time_ms": int((usage.ru_utime + usage.ru_stime) * 1000),
            "wall_time_ms": wall_ms,
        },
    }
    _report(nonce, envelope)
    if returncode < 0:
        if -returncode not in (signal.SIGKILL, signal.SIGSTOP):  # those cannot be caught anyway
            signal.signal(-returncode, signal.SIG_DFL)
        os.kill(os.getpid(), -returncode)
        time.sleep(1)  # the signal is delivered before this returns
    sys.exit(returncode if returncode >= 0 else 128 - returncode)


if __name__ == "__main__":
    main()
