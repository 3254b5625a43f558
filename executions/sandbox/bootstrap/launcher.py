"""The in-container launcher: runs /code/main.py as `python -u`, then reports how it ended.

It runs as the container's unprivileged user under docker-init. After the program (and every
process it left behind) is gone, it writes one line to stdout: a marker with the run's nonce, then
a JSON envelope with the exception that ended the program, /output/result.json, the artifacts and
resource usage. The host trusts none of it beyond the user's own result. Finally the launcher
exits the way the program did, re-raising a fatal signal so the container's exit code is 128+N.
"""

import contextlib
import json
import os
import resource
import signal
import stat
import sys
import time

OUTPUT_DIR = "/output"
RESULT_FILE = "result.json"
MAX_ARTIFACTS = 100
MAX_ARTIFACT_BYTES = 10 * 1024 * 1024
MAX_REPORT_BYTES = 64 * 1024


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


def _parse_exception(raw):
    try:
        report = json.loads(raw.decode("utf-8", errors="replace").strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None
    return report if isinstance(report, dict) else None


def main():
    nonce = os.environ.pop("TAKO_NONCE", "")
    report_r, report_w = os.pipe()
    os.set_inheritable(report_w, True)
    env = dict(os.environ, TAKO_REPORT_FD=str(report_w))
    env["PYTHONPATH"] = os.pathsep.join(p for p in ("/opt/tako/hook", env.get("PYTHONPATH")) if p)
    os.chdir("/tmp")
    started = time.monotonic()
    # posix_spawn, not subprocess: importing subprocess costs more than the program's own start.
    pid = os.posix_spawn(
        sys.executable,
        [sys.executable, "-u", "/code/main.py"],
        env,
        file_actions=[(os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0)],
    )
    os.close(report_w)
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
        "resource_usage": {
            "max_rss_mb": round(usage.ru_maxrss / 1024, 1),
            "cpu_time_ms": int((usage.ru_utime + usage.ru_stime) * 1000),
            "wall_time_ms": wall_ms,
        },
    }
    line = "\x1eTAKO-ENVELOPE " + nonce + "\n" + json.dumps(envelope) + "\n"
    data = line.encode()
    while data:
        data = data[os.write(1, data) :]
    if returncode < 0:
        if -returncode not in (signal.SIGKILL, signal.SIGSTOP):  # those cannot be caught anyway
            signal.signal(-returncode, signal.SIG_DFL)
        os.kill(os.getpid(), -returncode)
        time.sleep(1)  # the signal is delivered before this returns
    sys.exit(returncode if returncode >= 0 else 128 - returncode)


if __name__ == "__main__":
    main()
