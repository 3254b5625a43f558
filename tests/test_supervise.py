"""Every long-running process of a host comes back by itself (takoweb/supervise.py): the
supervisor's own rules on small programs, then the real service under it, killed piece by piece."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from takoweb.supervise import Program, Supervisor
from tests.support import ROOT, ServiceProcess, alive, environ_has, free_port, pids_of, submit, wait_for

PY = sys.executable


def run_for(supervisor: Supervisor, seconds: float) -> None:
    timer = threading.Timer(seconds, supervisor.stop)
    timer.start()
    supervisor.run()
    timer.cancel()


def test_a_dying_process_is_restarted_with_growing_pauses(capsys: pytest.CaptureFixture[str]) -> None:
    supervisor = Supervisor([Program("flaky", [PY, "-c", "raise SystemExit(3)"])], first_pause=0.1)
    run_for(supervisor, 2.5)
    lines = [line for line in capsys.readouterr().err.splitlines() if "flaky exited with code 3" in line]
    pauses = [float(line.rsplit("restarting in ", 1)[1].split()[0]) for line in lines]
    assert len(pauses) >= 3
    assert pauses[:4] == [0.1, 0.2, 0.4, 0.8][: len(pauses[:4])]


def test_a_one_shot_is_done_when_it_succeeds_and_retried_a_few_times_when_it_fails(
    capsys: pytest.CaptureFixture[str],
) -> None:
    supervisor = Supervisor(
        [
            Program("ok", [PY, "-c", "pass"], one_shot=True),
            Program("bad", [PY, "-c", "raise SystemExit(1)"], one_shot=True),
        ],
        first_pause=0.01,
    )  # fmt: skip
    run_for(supervisor, 3)
    err = capsys.readouterr().err
    assert err.count("ok started") == 1 and "ok finished" in err
    assert err.count("bad started") == 5 and "bad failed 5 times (last exit 1); not trying again" in err


def test_stopping_ends_every_child_and_what_it_forked(tmp_path: Path) -> None:
    pid_file = tmp_path / "grandchild"
    program = (
        "import subprocess, time; p = subprocess.Popen(['sleep', '300']); "
        f"open({str(pid_file)!r}, 'w').write(str(p.pid)); time.sleep(300)"
    )
    supervisor = Supervisor([Program("parent", [PY, "-c", program])])
    thread = threading.Thread(target=supervisor.run)
    thread.start()
    wait_for(lambda: pid_file.exists() and pid_file.read_text(), timeout=10, what="the grandchild to start")
    grandchild = int(pid_file.read_text())
    supervisor.stop()
    thread.join(timeout=30)
    assert not thread.is_alive()
    wait_for(lambda: not alive(grandchild), timeout=5, what="the grandchild to be killed")


# -- the real service under its supervisor ------------------------------------------------------
def worker_pids(name: str) -> set[int]:
    return {pid for pid in pids_of("manage.py tako_worker") if environ_has(pid, f"TAKO_WORKER_NAME={name}")}


def run_async(url: str, code: str, timeout: float = 60) -> dict:
    job_id = submit(url, code)
    response = requests.get(f"{url}/jobs/{job_id}/result?wait=true&timeout={timeout:g}", timeout=timeout + 10)
    return response.json()


def health(url: str) -> int:
    try:
        return requests.get(f"{url}/health", timeout=2).status_code
    except requests.RequestException:
        return 0


@pytest.mark.docker
@pytest.mark.system
def test_the_service_comes_back_after_its_processes_are_killed(
    transactional_db: None, default_image: str, tmp_path: Path
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    worker_name = f"supervised-{port}"
    service = ServiceProcess(
        ["-m", "takoweb.supervise", "web", "worker"], tmp_path / "supervise.log",
        HOST="127.0.0.1", PORT=str(port), TAKO_WORKER_NAME=worker_name, TAKO_MAX_WORKERS="2",
        TAKO_QUEUE_POLL="0.05", TAKO_POOL_ENABLED="0",
    )  # fmt: skip
    try:
        wait_for(lambda: health(url) == 200, timeout=60, what="the supervised web server")
        assert run_async(url, "print(1)")["stdout"] == "1\n"

        web = {pid for pid in pids_of("takoweb.serve") if environ_has(pid, f"PORT={port}")}
        assert len(web) == 1
        os.kill(web.pop(), signal.SIGKILL)
        began = time.monotonic()
        wait_for(lambda: health(url) == 0, timeout=10, what="the web server to be gone")
        wait_for(lambda: health(url) == 200, timeout=30, what="the web server to come back")
        web_back = time.monotonic() - began

        workers = {
            pid for pid in pids_of("manage.py tako_worker") if environ_has(pid, f"TAKO_WORKER_NAME={worker_name}")
        }
        assert workers
        for pid in workers:  # the whole cluster at once, as a crash would
            os.kill(pid, signal.SIGKILL)
        # The supervisor starts a new cluster (another cluster on the test database may run the
        # job below first: the new one is waited for by its process, not by that job).
        wait_for(lambda: "worker exited with" in service.output(), timeout=30, what="the supervisor to see it")
        wait_for(
            lambda: (
                {pid for pid in pids_of("manage.py tako_worker") if environ_has(pid, f"TAKO_WORKER_NAME={worker_name}")}
                - workers
            ),
            timeout=60,
            what="a new worker cluster",
        )
        assert run_async(url, "print(2)", timeout=90)["stdout"] == "2\n"
        output = service.output()
        assert "web exited with signal SIGKILL" in output and "restarting in 1 s" in output
        print(f"web back after {web_back:.1f} s")
    finally:
        service.stop()
    assert not worker_pids(worker_name)


def test_make_runs_service_is_the_supervised_one() -> None:
    assert 'exec "$PY" -m takoweb.supervise' in (ROOT / "scripts" / "run.sh").read_text()


@pytest.mark.parametrize("unit", ["tako-web.service", "tako-worker.service"])
def test_each_systemd_unit_restarts_its_process_forever(unit: str) -> None:
    text = (ROOT / "deploy" / "systemd" / unit).read_text()
    assert "Restart=always" in text and "StartLimitIntervalSec=0" in text
    start = next(line for line in text.splitlines() if line.startswith("ExecStart="))
    assert start.endswith(("-m takoweb.serve", "manage.py tako_worker"))


def test_compose_restarts_every_long_running_service() -> None:
    import yaml

    services = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())["services"]
    assert {name for name, service in services.items() if service.get("restart") == "unless-stopped"} >= {
        "web", "worker", "postgres", "redis",
    }  # fmt: skip
