"""Versioned job types (Tako VM 0.3.0): each build records a version; `name@<tag>` and
`name@sha256:<digest>` select it, an unknown one is a 422 naming it (unit tier)."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from executions import services
from executions.models import Environment, EnvironmentVersion, Execution
from executions.services import runs
from executions.services.environments import environment_version_record
from tests.support import ApiClient

pytestmark = pytest.mark.django_db

A = "sha256:" + "a" * 64
B = "sha256:" + "b" * 64


@pytest.fixture
def default() -> Environment:
    return Environment.objects.get(name="default")


def test_each_new_image_is_a_new_version_and_a_rebuild_of_the_same_is_not(default: Environment) -> None:
    first = environment_version_record(default, digest=A, size_bytes=10)
    assert (first.tag, first.digest) == ("v1", A)
    assert environment_version_record(default, digest=A).pk == first.pk  # nothing changed
    second = environment_version_record(default, digest=B)
    assert second.tag == "v2"
    named = environment_version_record(default, digest=B, tag="1.0.0")
    assert (named.tag, named.digest) == ("1.0.0", B)
    assert environment_version_record(default, digest=A, tag="1.0.0").digest == B  # a tag never moves
    assert [v.tag for v in default.versions.all()] == ["1.0.0", "v2", "v1"]


def test_a_version_is_chosen_by_tag_or_digest_and_runs_on_its_image(api_nodocker: ApiClient, default) -> None:
    old = environment_version_record(default, digest=A)
    environment_version_record(default, digest=B)
    for job_type in ("default@v1", f"default@{A[:19]}", f"default@{A}"):
        response = api_nodocker.post("/execute/async", {"code": "print(1)", "job_type": job_type})
        assert response.status_code == 202, (job_type, response.content)
        execution = Execution.objects.get(pk=response.json()["job_id"])
        assert (execution.job_type, execution.job_version) == ("default", old)
        spec = runs._run_spec(execution, services_sandbox(), _Monitor(), default)
        assert (spec.shape.image, spec.shape.image_id) == ("tako-vm-default:latest", A)
        record = api_nodocker.get(f"/executions/{execution.pk}?view=full").json()
        assert record["job_version"] == "v1"


def services_sandbox() -> Any:
    from executions.sandbox import get_sandbox

    return get_sandbox()


class _Monitor:
    cancel = threading.Event()

    def on_output(self, stream: str, text: str) -> None:
        pass

    def on_truncated(self, stream: str) -> None:
        pass

    def on_container_start(self) -> None:
        pass


@pytest.mark.parametrize(
    ("job_type", "message"),
    [
        ("default@v9", "Unknown version 'v9' of job_type 'default'; versions: v1"),
        (f"default@sha256:{'c' * 12}", f"Unknown version 'sha256:{'c' * 12}' of job_type 'default'; versions: v1"),
        ("default@sha256:abc", "job_type must be a name of letters, digits, - and _ (optionally @<version tag>"),
        ("nope@v1", "Unknown job_type 'nope'"),
    ],
)
def test_an_unknown_version_is_a_422_naming_it(api_nodocker: ApiClient, default, job_type: str, message: str) -> None:
    environment_version_record(default, digest=A)
    for path in ("/execute/async", "/execute", "/execute/batch"):
        body: dict[str, Any] = {"code": "print(1)", "job_type": job_type}
        if path == "/execute/batch":
            body["inputs"] = [{}]
        response = api_nodocker.post(path, body)
        assert response.status_code == 422, (path, response.content)
        assert response.json()["errors"]["job_type"][0].startswith(message)
    assert Execution.objects.count() == 0


def test_the_job_type_lists_its_versions_newest_first(api_nodocker: ApiClient, default) -> None:
    environment_version_record(default, digest=A, size_bytes=5)
    environment_version_record(default, digest=B, tag="stable")
    body = api_nodocker.get("/job-types/default").json()
    assert [(v["tag"], v["digest"], v["image_ref"]) for v in body["versions"]] == [
        ("stable", B, f"tako-vm-default@{B}"),
        ("v1", A, f"tako-vm-default@{A}"),
    ]
    assert all("versions" not in item for item in api_nodocker.get("/job-types").json())


def test_a_build_may_name_its_version_once(api_nodocker: ApiClient, default, settings) -> None:
    environment_version_record(default, digest=A, tag="1.0")
    taken = api_nodocker.post("/job-types/default/build?version_tag=1.0")
    assert taken.status_code == 409 and "Version '1.0' of job type 'default' already exists" in taken.json()["detail"]
    bad = api_nodocker.post("/job-types/default/build?version_tag=sha256:x")
    assert bad.status_code == 422 and "version_tag" in bad.json()["errors"]


def test_a_rerun_keeps_the_version_unless_it_names_another_job_type(api_nodocker: ApiClient, default) -> None:
    version = environment_version_record(default, digest=A)
    environment_version_record(default, digest=B)
    job_id = api_nodocker.post("/execute/async", {"code": "print(1)", "job_type": "default@v1"}).json()["job_id"]
    rerun = api_nodocker.post(f"/jobs/{job_id}/rerun", {}).json()["job_id"]
    assert Execution.objects.get(pk=rerun).job_version == version
    plain = api_nodocker.post(f"/jobs/{job_id}/rerun", {"job_type": "default"}).json()["job_id"]
    assert Execution.objects.get(pk=plain).job_version is None
    assert EnvironmentVersion.objects.count() == 2
    assert services.execute_request_parse({"code": "1", "job_type": "default@v2"}).version.digest == B


# -- the dead letter queue ---------------------------------------------------------------------------
def _dead_lettered(api: ApiClient, job_type: str) -> tuple[Execution, Any]:
    job_id = api.post("/execute/async", {"code": "print(1)", "job_type": job_type}).json()["job_id"]
    Execution.objects.filter(pk=job_id).update(status="failed", error_type="internal_error", error_message="boom")
    execution = Execution.objects.get(pk=job_id)
    entry = services.dead_letter_add(execution)
    assert entry is not None
    return execution, entry


@pytest.mark.parametrize("spec", ["v1", A[:19]])
def test_a_requeued_dead_letter_runs_on_the_version_it_asked_for(api_nodocker: ApiClient, default, spec) -> None:
    old = environment_version_record(default, digest=A)
    environment_version_record(default, digest=B)  # the latest: not what the job asked for
    _, entry = _dead_lettered(api_nodocker, f"default@{spec}")
    listed = api_nodocker.get("/dlq").json()["items"][0]["job_data"]
    assert (listed["job_type"], listed["job_version"]) == ("default", {"tag": "v1", "digest": A})
    response = api_nodocker.post(f"/dlq/{entry.pk}/requeue")
    assert response.status_code == 202, response.content
    requeued = Execution.objects.get(pk=response.json()["job_id"])
    assert requeued.job_version == old
    spec_run = runs._run_spec(requeued, services_sandbox(), _Monitor(), default)
    assert spec_run.shape.image_id == A
    done = services.dlq_requeue_matching(ids=[_dead_lettered(api_nodocker, "default@v1")[1].pk], by="ops")
    assert [job.job_version for _, job in done.requeued] == [old]  # the bulk requeue too


def test_an_unversioned_dead_letter_runs_on_the_latest(api_nodocker: ApiClient, default) -> None:
    environment_version_record(default, digest=A)
    _, entry = _dead_lettered(api_nodocker, "default")
    assert "job_version" not in entry.job_data
    requeued = services.dlq_requeue(entry=entry, by="ops")
    assert requeued.job_version is None


def test_a_dead_letter_whose_version_is_gone_is_refused_not_run_on_another(api_nodocker: ApiClient, default) -> None:
    environment_version_record(default, digest=A)
    _, entry = _dead_lettered(api_nodocker, "default@v1")
    # The job type was made again under the same name: its v1 is another image.
    EnvironmentVersion.objects.filter(environment=default).update(digest=B)
    response = api_nodocker.post(f"/dlq/{entry.pk}/requeue")
    assert response.status_code == 422, response.content
    gone = f"Version 'v1' of job_type 'default' is no longer the build {A} the job asked for"
    assert response.json()["detail"] == gone
    EnvironmentVersion.objects.filter(environment=default).delete()
    response = api_nodocker.post(f"/dlq/{entry.pk}/requeue")
    assert response.status_code == 422
    assert response.json()["detail"].startswith("Unknown version 'v1' of job_type 'default'")
    done = services.dlq_requeue_matching(ids=[entry.pk], by="ops")  # skipped, and the bulk goes on
    assert done.requeued == [] and done.skipped[0][0] == entry.pk and "Unknown version 'v1'" in done.skipped[0][1]
    entry.refresh_from_db()
    assert entry.requeued_at is None
    assert Execution.objects.count() == 1  # only the dead job: nothing was queued


def test_an_entry_stored_before_versions_were_kept_takes_the_jobs_own(api_nodocker: ApiClient, default) -> None:
    old = environment_version_record(default, digest=A)
    environment_version_record(default, digest=B)
    _, entry = _dead_lettered(api_nodocker, "default@v1")
    entry.job_data.pop("job_version")
    entry.save(update_fields=["job_data"])
    assert services.dlq_requeue(entry=entry, by="ops").job_version == old
