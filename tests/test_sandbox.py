"""The sandbox's walls and plumbing, checked from inside real containers."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import docker
import pytest
import requests
from django.core.management import call_command

from executions import services
from executions.models import Environment, Execution
from executions.sandbox import ContainerShape, RunSpec, get_sandbox
from executions.sandbox.docker import DockerSandbox, managed_labels, runner
from executions.sandbox.docker.client import MANAGED_LABEL, WORKDIR_LABEL
from tests.support import CPU_WEIGHT, ROOT, containers_of, job_containers, wait_for


def run_code(api, code: str, **fields) -> dict:
    return api.post("/execute", {"code": code, **fields}).json()


@pytest.fixture
def api(api, container_path):
    """Every job of this module runs twice: in a container created for it, and in a pooled one."""
    return api


def test_it_runs_as_an_unprivileged_user_with_no_capabilities(api) -> None:
    code = (
        "import os, json\n"
        "status = dict(l.split(':\\t', 1) for l in open('/proc/self/status').read().splitlines() if ':\\t' in l)\n"
        "json.dump({'uid': os.getuid(), 'capeff': status['CapEff'].strip(), 'capbnd': status['CapBnd'].strip(),\n"
        "           'nnp': status['NoNewPrivs'].strip()}, open('/output/result.json', 'w'))\n"
    )
    out = run_code(api, code)["output"]
    assert out["uid"] == 10001
    assert int(out["capeff"], 16) == 0 and int(out["capbnd"], 16) == 0
    assert out["nnp"] == "1"


def test_the_root_filesystem_code_and_input_are_read_only(api) -> None:
    code = (
        "import json\nresults = {}\n"
        "for path in ['/etc/evil', '/code/main.py', '/code/new.py', '/input/data.json', '/usr/x']:\n"
        "    try:\n        open(path, 'w').write('x'); results[path] = 'written'\n"
        "    except OSError as exc:\n        results[path] = type(exc).__name__\n"
        "open('/tmp/ok', 'w').write('x')\n"
        "json.dump(results, open('/output/result.json', 'w'))\n"
    )
    body = run_code(api, code)
    assert body["success"] is True
    assert "written" not in body["output"].values()


def test_input_data_is_readable_at_input_data_json(api) -> None:
    code = "import json; print(json.load(open('/input/data.json'))['greeting'])"
    assert run_code(api, code, input_data={"greeting": "héllo"})["stdout"] == "héllo\n"


def test_there_is_no_network_but_loopback(api) -> None:
    code = (
        "import os, socket, json\n"
        "ifaces = sorted(os.listdir('/sys/class/net'))\n"
        "try:\n    socket.getaddrinfo('example.com', 80); dns = 'resolved'\n"
        "except OSError as exc:\n    dns = type(exc).__name__\n"
        "json.dump({'ifaces': ifaces, 'dns': dns}, open('/output/result.json', 'w'))\n"
    )
    out = run_code(api, code)["output"]
    assert out["ifaces"] == ["lo"]
    assert out["dns"] == "gaierror"


def test_pid_1_is_an_init_process(api) -> None:
    out = run_code(api, "print(open('/proc/1/cmdline').read().split('\\0')[0])")
    assert "init" in out["stdout"]


def test_memory_and_cpu_limits_are_the_environments(api) -> None:
    code = (
        "import os\n"
        "v1 = '/sys/fs/cgroup/memory/memory.limit_in_bytes'\n"
        "print(open(v1).read().strip() if os.path.exists(v1) else open('/sys/fs/cgroup/memory.max').read().strip())\n"
    )
    assert run_code(api, code)["stdout"] == f"{512 * 1024 * 1024}\n"


def test_a_long_jobs_container_weighs_a_quarter_of_a_quick_runs_on_the_cpu(api, settings) -> None:
    quick = int(run_code(api, CPU_WEIGHT)["stdout"])
    long = services.execution_create(
        code=CPU_WEIGHT,
        input_data={},
        environment=Environment.objects.get(name="default"),
        is_async=True,
        timeout=settings.TAKO_QUICK_TIMEOUT + 1,
    )
    assert long.quick is False
    ran = services.execution_run(execution_id=long.pk, role="web")
    assert ran.status == "succeeded", ran.stderr
    assert int(ran.stdout) * 3 < quick  # cgroup v1: 256 against 1024; v2: weight 10 against 39


def test_tmp_is_size_capped(api) -> None:
    code = "open('/tmp/big', 'wb').write(b'x' * (100 * 1024 * 1024))"
    body = run_code(api, code)
    assert body["success"] is False
    assert body["error_type"] in {"os_error", "oom"}  # ENOSPC (64 MB tmpfs) or the memory limit


def test_artifacts_are_collected_and_symlinks_are_not_followed(api) -> None:
    code = (
        "import os\n"
        "open('/output/report.csv', 'w').write('a,b\\n1,2\\n')\n"
        "os.symlink('/etc/passwd', '/output/passwd')\n"
        "os.mkdir('/output/sub')\n"
    )
    body = run_code(api, code)
    record = api.get(f"/executions/{body['execution_id']}?view=full").json()
    assert [a["name"] for a in record["artifacts"]] == ["report.csv"]
    assert record["artifacts"][0]["size_bytes"] == 8
    assert record["artifacts"][0]["content_type"] == "text/csv"


def test_resource_usage_is_recorded(api) -> None:
    body = run_code(api, "x = bytearray(50 * 1024 * 1024); print(len(x))")
    usage = api.get(f"/executions/{body['execution_id']}?view=full").json()["resource_usage"]
    assert usage["max_rss_mb"] >= 50
    assert usage["wall_time_ms"] >= 0 and usage["cpu_time_ms"] >= 0


def test_containers_are_always_removed(api) -> None:
    run_code(api, "print(1)")
    run_code(api, "import time; time.sleep(30)", timeout=1)
    run_code(api, "1/0")
    assert job_containers() == []


def test_processes_left_behind_end_with_the_program(api) -> None:
    code = "import subprocess; subprocess.Popen(['sleep', '60'], start_new_session=True); print('bye')"
    began = time.monotonic()
    body = run_code(api, code)
    assert body["success"] is True and body["stdout"] == "bye\n"
    assert time.monotonic() - began < 10


def test_output_streams_live_while_the_program_runs(default_image: str, settings) -> None:
    settings.TAKO_DEPLOYMENT_ID = "live-output-test"  # no execution record: the live reaper must not see it
    chunks: list[tuple[float, str, str]] = []
    code = "import sys, time\nprint('first')\nprint('warn', file=sys.stderr)\ntime.sleep(1.5)\nprint('second')\n"
    spec = RunSpec(
        execution_id="live-test",
        shape=ContainerShape(image=default_image, image_id=""),
        code=code,
        input_json="{}",
        timeout=10,
        on_output=lambda stream, text: chunks.append((time.monotonic(), stream, text)),
    )
    result = get_sandbox().run(spec)
    ended = time.monotonic()
    assert result.stdout == "first\nsecond\n" and result.stderr == "warn\n"
    first = next(t for t, stream, text in chunks if "first" in text)
    assert ended - first > 1.0  # "first" arrived long before the program ended
    assert "".join(text for _, stream, text in chunks if stream == "stdout") == "first\nsecond\n"


def test_past_the_cap_the_live_output_adds_up_to_the_stored_text(default_image: str, settings) -> None:
    settings.TAKO_DEPLOYMENT_ID = "live-output-test"  # no execution record: the live reaper must not see it
    calls: list[tuple[str, str | None]] = []
    spec = RunSpec(
        execution_id="live-cap-test",
        shape=ContainerShape(image=default_image, image_id=""),
        code="print('a' + 'é' * 40000)",  # 80,002 bytes: the cap (65,536) cuts an 'é' in half
        input_json="{}",
        timeout=10,
        on_output=lambda stream, text: calls.append((stream, text)),
        on_truncated=lambda stream: calls.append((stream, None)),
    )
    result = get_sandbox().run(spec)
    assert result.stdout_truncated and result.stdout == "a" + "é" * 32767 + "\n[TRUNCATED: output exceeded 65536 bytes]"
    assert "".join(text for stream, text in calls if stream == "stdout" and text) == result.stdout
    assert calls[-1] == ("stdout", None) and calls.count(("stdout", None)) == 1


def test_the_launchers_report_cannot_be_spoofed_by_the_program(api) -> None:
    code = "print('\\x1eTAKO-ENVELOPE 0000\\n' + '{\"returncode\": 0}')\nraise KeyError('real')"
    body = run_code(api, code)
    assert body["error_type"] == "key_error"
    assert "TAKO-ENVELOPE 0000" in body["stdout"]


@pytest.mark.django_db(transaction=True)
def test_an_unreachable_engine_ends_the_run_as_service_unavailable(default_image: str) -> None:
    unreachable = DockerSandbox(client=docker.DockerClient(base_url="unix:///nonexistent/docker.sock", version="1.41"))
    environment = Environment.objects.get(name="default")
    execution = services.execution_create(code="print(1)", input_data={}, environment=environment)
    execution = services.execution_run(execution_id=execution.pk, sandbox=unreachable)
    assert execution.status == Execution.Status.FAILED
    assert execution.error_type == "service_unavailable"
    assert "Docker" in execution.error_message


@pytest.mark.django_db(transaction=True)
def test_a_missing_image_is_an_internal_error_not_the_users(default_image: str) -> None:
    environment = Environment.objects.create(name="never-built")
    execution = services.execution_create(code="print(1)", input_data={}, environment=environment)
    execution = services.execution_run(execution_id=execution.pk)
    assert (execution.status, execution.error_type, execution.error_phase) == (
        "failed",
        "internal_error",
        "startup",
    )
    assert "The image of job type 'never-built' is not built" in execution.error_message
    assert "POST /job-types/never-built/build" in execution.error_message


@pytest.mark.django_db(transaction=True)
def test_a_job_runs_the_image_its_last_build_recorded_without_asking_the_engine(
    default_image: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from executions.sandbox import get_sandbox

    sandbox = get_sandbox()
    digest = sandbox.image_ref(default_image).partition("@")[2]
    # No build recorded (an image built before this database): the engine's image, then recorded.
    Environment.objects.filter(name="default").update(image_digest="")
    environment = Environment.objects.get(name="default")
    execution = services.execution_run(
        execution_id=services.execution_create(code="print(1)", input_data={}, environment=environment).pk
    )
    assert (execution.status, execution.job_ref) == ("succeeded", f"tako-vm-default@{digest}")
    environment.refresh_from_db()
    assert environment.image_digest == digest

    def no_engine_lookup(image: str) -> str | None:
        raise AssertionError(f"the engine was asked for {image}")

    monkeypatch.setattr(type(sandbox), "image_ref", lambda self, image: no_engine_lookup(image))
    execution = services.execution_create(code="print(1)", input_data={}, environment=environment)
    execution = services.execution_run(execution_id=execution.pk)
    assert (execution.status, execution.stdout) == ("succeeded", "1\n")
    assert execution.job_ref == f"tako-vm-default@{digest}"

    # The recorded image removed behind the service's back: the run says so, as the service's fault.
    Environment.objects.filter(name="default").update(image_digest="sha256:" + "0" * 64)
    environment.refresh_from_db()
    execution = services.execution_create(code="print(1)", input_data={}, environment=environment)
    execution = services.execution_run(execution_id=execution.pk)
    assert (execution.status, execution.error_type, execution.error_phase) == ("failed", "internal_error", "startup")
    assert "image not found" in execution.error_message


@pytest.mark.django_db(transaction=True)
def test_an_execution_is_run_only_once(default_image: str) -> None:
    environment = Environment.objects.get(name="default")
    execution = services.execution_create(code="print(1)", input_data={}, environment=environment)
    results: list[Execution] = []
    threads = [
        threading.Thread(target=lambda: results.append(services.execution_run(execution_id=execution.pk)))
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    execution.refresh_from_db()
    assert execution.status == "succeeded" and execution.stdout == "1\n"


def test_a_used_container_and_its_folder_are_removed_a_moment_after_its_run(api, monkeypatch) -> None:
    """(the engine's teardown would compete for the CPU with the job's record and answer)"""
    monkeypatch.setattr(runner, "ENGINE_WORK_DELAY_SECONDS", 1.5)
    body = run_code(api, "print(1)")
    [container] = containers_of(body["execution_id"])  # still there after the answer
    folder = Path(container["Labels"][WORKDIR_LABEL])
    assert (folder / "input" / "data.json").is_file()
    time.sleep(1.5)
    assert job_containers(settle=5) == []
    assert wait_for(lambda: not folder.exists(), timeout=5, what="its folder removed")


def test_a_process_that_ends_after_a_run_removes_its_container_first(db, default_image: str, tmp_path) -> None:
    """The removal waits a moment after the run (ENGINE_WORK_DELAY_SECONDS); a process that
    exits within that moment waits for it, rather than leave the container behind."""
    deployment = f"exit-test-{uuid.uuid4().hex[:8]}"
    script = (
        "import django; django.setup()\n"
        "from executions.sandbox import ContainerShape, RunSpec, get_sandbox\n"
        f"shape = ContainerShape(image={default_image!r}, image_id='')\n"
        "spec = RunSpec(execution_id='exiting', shape=shape, code='print(6 * 7)', input_json='{}', timeout=10)\n"
        "print(get_sandbox().run(spec).stdout, end='')\n"  # ... and the interpreter ends at once
    )
    environment = {
        **os.environ, "DJANGO_SETTINGS_MODULE": "takoweb.settings", "TAKO_DATA_DIR": str(tmp_path),
        "TAKO_DEPLOYMENT_ID": deployment, "TAKO_POOL_ENABLED": "0",
    }  # fmt: skip
    ran = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=60
    )
    assert (ran.returncode, ran.stdout) == (0, "42\n"), ran.stderr
    left = docker.from_env(version="auto").api.containers(all=True, filters={"label": f"{MANAGED_LABEL}={deployment}"})
    assert left == []


def test_a_retry_keeps_its_folder_while_the_failed_attempts_is_removed(db, default_image: str, monkeypatch) -> None:
    """Each attempt of a job has a folder of its own: the one before, removed a moment after it
    ended, is not the one the retry runs from."""
    monkeypatch.setattr(runner, "ENGINE_WORK_DELAY_SECONDS", 0.2)

    def attempt(code: str) -> Any:
        shape = ContainerShape(image=default_image, image_id="")
        spec = RunSpec(execution_id="retried-job", shape=shape, code=code, input_json='{"n": 1}', timeout=10)
        return get_sandbox().run(spec)

    assert attempt("print(1)").stdout == "1\n"  # (its clean-up comes 0.2 s later, during the retry)
    retry = attempt("import time; time.sleep(1); print(open('/input/data.json').read())")
    assert (retry.exit_code, retry.stdout) == (0, '{"n": 1}\n')


def test_cleanup_removes_stale_containers(db, default_image: str, capsys) -> None:
    assert job_containers() == []  # (earlier tests' runs: removed a moment after they end)
    client = docker.from_env(version="auto")
    client.containers.create(default_image, ["true"], labels=managed_labels())
    assert len(job_containers(settle=0)) == 1
    call_command("tako_cleanup")
    assert job_containers(settle=0) == []
    removed = re.search(r"Removed (\d+) stale container\(s\)", capsys.readouterr().out)
    assert removed and int(removed.group(1)) >= 1  # (and any pooled containers waiting for a job)


def test_the_stdout_splitter_separates_the_launchers_messages() -> None:
    from executions.sandbox.docker import CappedStream, StdoutSplitter

    started: list[bool] = []
    splitter = StdoutSplitter("abc", CappedStream(1000), lambda: started.append(True))
    assert splitter.feed(b"\x1eTAKO-STA") == b""  # the start of the STARTED marker: held
    assert started == []
    assert splitter.feed(b"RTED abc\n") == b""
    assert started == [True]
    assert splitter.feed(b"first\n") == b"first\n"
    assert splitter.feed(b"x\x1eTAKO-ENV") == b"x"  # could be the marker: held
    assert splitter.feed(b"ELOPE abc\n{}\n") == b""
    assert bytes(splitter.envelope or b"") == b"{}\n"
    assert splitter.user.kept == bytearray(b"first\nx")


def test_another_deployments_containers_on_the_same_engine_are_left_alone(db, default_image: str) -> None:
    from executions.services import containers_reap

    client = docker.from_env(version="auto")
    theirs = client.containers.create(
        default_image, ["true"], labels={"tako.deployment": "another-deployment", "tako.execution_id": "x"}
    )
    try:
        call_command("tako_cleanup")
        containers_reap()
        theirs.reload()  # still there (raises NotFound otherwise)
        assert theirs.labels["tako.deployment"] == "another-deployment"
    finally:
        theirs.remove(force=True)


def test_a_removal_that_raced_the_containers_exit_is_asked_again(db, default_image: str, monkeypatch) -> None:
    """The engine's forced removal can see a container running, then fail to kill it because it
    has exited meanwhile (a 500, the container left listed as "removing"). That race is rare on a
    real engine, so the first answer is injected (for a container that has exited); the second
    call, once the engine's wait says it has handled the exit, reaches the real engine."""

    engine = get_sandbox().engine
    container = docker.from_env(version="auto").containers.run(
        default_image, ["true"], labels=managed_labels(), detach=True
    )
    real_remove, real_wait = engine.api.remove_container, engine.api.wait
    calls: list[str] = []
    waited: list[str] = []

    def observed_wait(container_id: str, **options):
        waited.append(container_id)
        return real_wait(container_id, **options)

    monkeypatch.setattr(engine.api, "wait", observed_wait)

    def racing_remove(container_id: str, **options):
        calls.append(container_id)
        if len(calls) == 1:
            response = requests.Response()
            response.status_code = 500
            raise docker.errors.APIError(
                "500 Server Error",
                response=response,
                explanation=f"Could not kill running container {container_id}, cannot remove - "
                f"Container {container_id} is not running",
            )
        return real_remove(container_id, **options)

    monkeypatch.setattr(engine.api, "remove_container", racing_remove)
    runner.remove_now(engine, container.id, None)
    assert calls == [container.id, container.id]
    assert waited == [container.id]  # asked again once the engine had handled its exit
    assert job_containers(settle=0) == []
