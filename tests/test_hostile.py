"""Hostile code the sandbox must survive. Each case runs for real on the engine and checks that
the attack is contained and classified, and that the service stays healthy: a normal job right
after still succeeds and no container is left behind."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from tests.support import job_containers

# Every attack runs in a container created for it and in a pooled one under Docker's runc, and
# under gVisor's runsc (what the `strict` job type uses; its pool path is tested in test_runtimes).
pytestmark = pytest.mark.parametrize(
    ("container_path", "runtime"), [("cold", "runc"), ("pool", "runc"), ("cold", "runsc")], indirect=True
)


@pytest.fixture
def runtime(request: pytest.FixtureRequest, settings) -> str:
    settings.TAKO_DEFAULT_RUNTIME = request.param
    return str(request.param)


@pytest.fixture
def api(api, container_path, runtime):
    return api


@pytest.fixture
def after_each_attack(api):
    """Yields the API; afterwards asserts the service still works and nothing leaked."""
    yield api
    body = api.post("/execute", {"code": "print('still fine')"}).json()
    assert body["success"] is True and body["stdout"] == "still fine\n"
    assert job_containers() == []
    assert api.get("/health").json()["circuit_breaker"]["state"] == "closed"


def attack(api, code: str, **fields) -> dict:
    began = time.monotonic()
    body = api.post("/execute", {"code": code, **fields}).json()
    body["_seconds"] = time.monotonic() - began
    return body


def test_fork_bomb(after_each_attack, runtime: str) -> None:
    code = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    body = attack(after_each_attack, code, timeout=5)
    # Under gVisor its own task limit ends the program at once (exit 2): contained all the same.
    contained = {"timeout", "oom", "killed"} | ({"runtime_error"} if runtime == "runsc" else set())
    assert body["success"] is False and body["error_type"] in contained
    assert body["_seconds"] < 30


def test_a_fork_bomb_does_not_stop_another_callers_job_from_starting_processes(after_each_attack) -> None:
    """Every container runs as the same uid, so a per-uid process limit (RLIMIT_NPROC) would be one
    pool for all of them: a fork bomb in one job made every other job fail to fork ("tini: fork
    failed"). Each container's process count is bounded by its own pids cgroup instead."""
    bomb = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    bombing = threading.Thread(target=attack, args=(after_each_attack, bomb), kwargs={"timeout": 8})
    bombing.start()
    try:
        time.sleep(2)  # the bomb has filled its container's pids by now
        body = attack(
            after_each_attack,
            "import subprocess, sys\n"
            "print(subprocess.run([sys.executable, '-c', 'print(6 * 7)'], capture_output=True, text=True).stdout)",
        )
        assert (body["success"], body["stdout"]) == (True, "42\n\n"), body
    finally:
        bombing.join(timeout=60)


def test_memory_bomb(after_each_attack) -> None:
    body = attack(after_each_attack, "chunks = []\nwhile True:\n    chunks.append(bytearray(50 * 1024 * 1024))\n")
    assert (body["error_type"], body["exit_code"]) == ("oom", 137)


def test_cpu_spin_past_the_timeout(after_each_attack) -> None:
    body = attack(after_each_attack, "while True:\n    pass\n", timeout=2)
    assert body["error_type"] == "timeout" and body["_seconds"] < 10


def test_a_detached_child_does_not_outlive_the_run(after_each_attack) -> None:
    code = (
        "import os, subprocess, sys\n"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'], start_new_session=True,\n"
        "                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
        "if os.fork() == 0:\n    os.setsid()\n    import time; time.sleep(600)\n"
        "print('parent done')\n"
    )
    body = attack(after_each_attack, code)
    assert body["success"] is True and body["_seconds"] < 10


@pytest.mark.parametrize("folder", ["/tmp", "/output"])
def test_filling_the_writable_folders_hits_their_quota(after_each_attack, folder: str, runtime: str) -> None:
    code = (
        "import errno\nwritten = 0\n"
        "try:\n"
        "    for n in range(1000):\n"
        f"        with open('{folder}/fill%d' % n, 'wb') as f:\n"
        "            f.write(b'x' * (4 * 1024 * 1024))\n"
        "        written += 4\n"
        "except OSError as exc:\n"
        "    print('stopped', errno.errorcode[exc.errno], written)\n"
    )
    body = attack(after_each_attack, code)
    # gVisor's tmpfs (2022) ignores the size cap: the memory limit or the timeout stops it there.
    stopped = {"oom"} | ({"timeout"} if runtime == "runsc" else set())
    assert body["success"] is True or body["error_type"] in stopped
    if body["success"]:
        reason, megabytes = body["stdout"].split()[1:]
        assert reason == "ENOSPC" and int(megabytes) <= 64


def test_100_mb_of_stdout_is_capped(after_each_attack) -> None:
    code = "import sys\nblock = 'y' * (1024 * 1024)\nfor _ in range(100):\n    sys.stdout.write(block)\n"
    body = attack(after_each_attack, code, timeout=60)
    assert body["success"] is True
    assert body["stdout"].endswith("[TRUNCATED: output exceeded 65536 bytes]")
    assert len(body["stdout"].encode()) < 70_000


def test_ten_thousand_files_and_a_sparse_file_in_output(after_each_attack) -> None:
    code = (
        "import os\n"
        "for n in range(10000):\n    open('/output/f%05d.txt' % n, 'w').write('x')\n"
        "try:\n    with open('/output/sparse.bin', 'wb') as f:\n        f.truncate(1024 ** 3)\n"
        "except OSError as exc:\n    print('sparse refused:', exc.strerror)\n"
    )
    body = attack(after_each_attack, code, timeout=60)
    record = after_each_attack.get(f"/executions/{body['execution_id']}?view=full").json()
    assert len(record["artifacts"]) <= 100  # a bounded number is kept
    assert all(a["size_bytes"] <= 10 * 1024 * 1024 for a in record["artifacts"])
    assert "sparse refused: File too large" in body["stdout"]


def test_a_symlink_to_host_paths_is_not_followed(after_each_attack) -> None:
    targets = ["/etc/shadow", "/proc/1/environ", "/var/run/docker.sock"]
    code = f"import os\nfor n, target in enumerate({targets!r}):\n    os.symlink(target, '/output/link%d' % n)\n"
    body = attack(after_each_attack, code)
    assert after_each_attack.get(f"/executions/{body['execution_id']}?view=full").json()["artifacts"] == []


def test_a_huge_result_json_is_refused(after_each_attack) -> None:
    code = (
        "import json\ntry:\n"
        "    with open('/output/result.json', 'w') as f:\n"
        "        f.write('[' + '1,' * (8 * 1024 * 1024) + '1]')\n"
        "except OSError as exc:\n    print('refused:', exc.strerror)\n"
    )
    body = attack(after_each_attack, code)
    assert "refused: File too large" in body["stdout"]
    assert body["output"] is None or body["error_type"] == "json_error"


def test_invalid_utf8_and_nul_bytes_in_output(after_each_attack) -> None:
    code = (
        "import sys\n"
        "sys.stdout.buffer.write(b'ok \\xff\\xfe \\x00 end\\n')\n"
        "sys.stderr.buffer.write(b'\\xc3\\x28\\x00\\n')\n"
    )
    body = attack(after_each_attack, code)
    assert body["success"] is True
    assert body["stdout"] == "ok \ufffd\ufffd \ufffd end\n" and "\x00" not in body["stderr"]


def test_no_network_egress(after_each_attack) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    accepted: list[socket.socket] = []
    threading.Thread(target=lambda: accepted.append(listener.accept()[0]), daemon=True).start()
    code = (
        "import json, os, socket\nresults = {'ifaces': sorted(os.listdir('/sys/class/net'))}\n"
        "targets = {'host_loopback': ('127.0.0.1', PORT), 'docker_socket': '/var/run/docker.sock'}\n"
        "for name, target in targets.items():\n"
        "    try:\n"
        "        if isinstance(target, str):\n"
        "            s = socket.socket(socket.AF_UNIX); s.settimeout(2); s.connect(target)\n"
        "        else:\n"
        "            socket.create_connection(target, timeout=2)\n"
        "        results[name] = 'connected'\n"
        "    except OSError as exc:\n        results[name] = type(exc).__name__\n"
        "try:\n    socket.getaddrinfo('pypi.org', 443); results['dns'] = 'resolved'\n"
        "except OSError as exc:\n    results['dns'] = type(exc).__name__\n"
        "json.dump(results, open('/output/result.json', 'w'))\n"
    ).replace("PORT", str(port))
    out = attack(after_each_attack, code)["output"]
    listener.close()
    assert out["ifaces"] == ["lo"]
    assert out["host_loopback"] != "connected" and out["docker_socket"] != "connected"
    assert out["dns"] == "gaierror"
    assert accepted == []


def test_the_services_secrets_are_not_visible(after_each_attack, settings) -> None:
    code = (
        "import json, os, glob\nfound = []\n"
        "for path in glob.glob('/proc/*/environ'):\n"
        "    try:\n        found.append(open(path, 'rb').read().decode(errors='replace'))\n"
        "    except OSError:\n        pass\n"
        "found.append(json.dumps(dict(os.environ)))\n"
        "for root, dirs, files in os.walk('/', onerror=lambda e: None):\n"
        "    dirs[:] = [d for d in dirs if os.path.join(root, d) not in ('/proc', '/sys', '/dev', '/usr', '/opt')]\n"
        "    found.extend(os.path.join(root, f) for f in files)\n"
        "print('\\n'.join(found))\n"
    )
    body = attack(after_each_attack, code, timeout=30)
    seen = body["stdout"]
    assert settings.SECRET_KEY not in seen
    assert "tako.sqlite3" not in seen and "secret_key" not in seen and "TAKO_SECRET" not in seen
    assert "DJANGO_SETTINGS_MODULE" not in seen


def test_becoming_root_fails(after_each_attack) -> None:
    code = (
        "import json, os, shutil, subprocess\nresults = {}\n"
        "try:\n    os.setuid(0); results['setuid'] = 'root'\n"
        "except OSError as exc:\n    results['setuid'] = type(exc).__name__\n"
        "for tool in ['su', 'sudo', 'mount']:\n"
        "    path = shutil.which(tool)\n"
        "    if path:\n"
        "        args = [path, '-c', 'id -u'] if tool == 'su' else [path, '--help']\n"
        "        done = subprocess.run(args, capture_output=True, text=True, stdin=subprocess.DEVNULL)\n"
        "        results[tool] = done.stdout.strip() if tool == 'su' else done.returncode\n"
        "results['uid'] = os.getuid(); results['euid'] = os.geteuid()\n"
        "json.dump(results, open('/output/result.json', 'w'))\n"
    )
    out = attack(after_each_attack, code)["output"]
    assert out["setuid"] == "PermissionError"
    assert (out["uid"], out["euid"]) == (10001, 10001)
    assert out.get("su") != "0"
