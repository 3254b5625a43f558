"""Batches through the API on the unit tier: admitted as a whole through the one admission path
(quota and queue room count every job; refused, nothing is queued), followed, cancelled, and seen
only by whoever may see executions."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import User

from executions import services
from executions.models import ApiKey, Batch, Environment, Execution, InputFile, WebhookDelivery
from tests.support import ApiClient, multipart_body

pytestmark = pytest.mark.django_db


@pytest.fixture
def ana() -> tuple[User, str]:
    user = User.objects.create_user("ana-batch", password="pw-for-tests-only")
    return user, ApiKey.issue(name="ana", owner=user)[1]


def batch(api: ApiClient, key: str, **body: Any) -> Any:
    return api.post("/execute/batch", {"code": "print(1)", **body}, HTTP_X_API_KEY=key)


def test_a_batch_is_one_job_per_input_in_order(api_nodocker: ApiClient, ana: tuple[User, str]) -> None:
    user, key = ana
    response = batch(api_nodocker, key, inputs=[{"n": 0}, {"n": 1}, {"n": 2}], timeout=5)
    assert response.status_code == 202, response.content
    body = response.json()
    jobs = [Execution.objects.get(pk=job_id) for job_id in body["job_ids"]]
    assert [(j.input_data, j.batch_index, j.timeout, j.submitted_by) for j in jobs] == [
        ({"n": i}, i, 5, user) for i in range(3)
    ]
    assert {str(j.batch_id) for j in jobs} == {body["batch_id"]}
    progress = api_nodocker.get(f"/batches/{body['batch_id']}", HTTP_X_API_KEY=key).json()
    assert (progress["total"], progress["counts"], progress["done"]) == (3, {"queued": 3}, False)
    assert progress["items"] == [{"job_id": j, "status": "queued", "error_type": None} for j in body["job_ids"]]


@pytest.mark.parametrize(
    ("inputs", "field"),
    [([], "inputs"), ([{}] * 1001, "inputs"), ([{}, 3], "inputs"), ("x", "inputs"), (None, "inputs")],
)
def test_a_malformed_list_of_inputs_is_refused_whole(
    api_nodocker: ApiClient, ana: tuple[User, str], inputs: Any, field: str
) -> None:
    response = batch(api_nodocker, ana[1], inputs=inputs)
    assert response.status_code == 422
    assert field in response.json()["errors"]
    assert (Execution.objects.count(), Batch.objects.count()) == (0, 0)


def test_an_unknown_job_type_is_named(api_nodocker: ApiClient, ana: tuple[User, str]) -> None:
    response = batch(api_nodocker, ana[1], inputs=[{}], job_type="nope")
    assert response.status_code == 422 and "Unknown job_type 'nope'" in response.json()["detail"]


def test_the_quota_counts_every_job_of_the_batch(api_nodocker: ApiClient, ana: tuple[User, str], settings) -> None:
    settings.TAKO_MAX_JOBS_IN_PROGRESS = 5
    user, key = ana
    environment = Environment.objects.get(name="default")
    for _ in range(3):
        services.execution_create(code="print(1)", input_data={}, environment=environment, submitted_by=user)
    refused = batch(api_nodocker, key, inputs=[{}] * 3)
    assert refused.status_code == 429 and "nothing was queued" in refused.json()["detail"]
    assert (Execution.objects.count(), Batch.objects.count()) == (3, 0)
    assert batch(api_nodocker, key, inputs=[{}] * 2).status_code == 202  # exactly to the quota


def test_no_room_in_the_queue_for_all_is_503_and_nothing_queued(
    api_nodocker: ApiClient, ana: tuple[User, str], settings
) -> None:
    settings.TAKO_MAX_QUEUE_SIZE = 4
    refused = batch(api_nodocker, ana[1], inputs=[{}] * 5)
    assert refused.status_code == 503 and refused.json()["error_type"] == "service_unavailable"
    assert refused.has_header("Retry-After")
    assert (Execution.objects.count(), Batch.objects.count()) == (0, 0)
    assert batch(api_nodocker, ana[1], inputs=[{}] * 4).status_code == 202


def test_cancel_ends_what_has_not_ended_and_leaves_the_rest(api_nodocker: ApiClient, ana: tuple[User, str]) -> None:
    key = ana[1]
    job_ids = batch(api_nodocker, key, inputs=[{}] * 4).json()["job_ids"]
    batch_id = str(Execution.objects.get(pk=job_ids[0]).batch_id)
    Execution.objects.filter(pk=job_ids[0]).update(status="succeeded")
    Execution.objects.filter(pk=job_ids[1]).update(status="running")
    response = api_nodocker.post(f"/batches/{batch_id}/cancel", HTTP_X_API_KEY=key)
    assert response.status_code == 200
    body = response.json()
    assert body["cancelled"] == 3
    assert [item["status"] for item in body["items"]] == ["succeeded", "running", "cancelled", "cancelled"]
    assert Execution.objects.get(pk=job_ids[1]).cancel_requested  # its worker stops it
    assert [item["error_type"] for item in body["items"]][2:] == ["cancelled", "cancelled"]
    again = api_nodocker.post(f"/batches/{batch_id}/cancel", HTTP_X_API_KEY=key).json()
    assert again["cancelled"] == 1  # the running one, asked again; nothing else is left


def test_a_batch_is_seen_only_by_its_owner_and_admins(api_nodocker: ApiClient, ana: tuple[User, str]) -> None:
    batch_id = batch(api_nodocker, ana[1], inputs=[{}]).json()["batch_id"]
    bob = User.objects.create_user("bob-batch", password="pw-for-tests-only")
    bob_key = ApiKey.issue(name="bob", owner=bob)[1]
    admin_key = ApiKey.issue(name="ops", owner=bob, scope="admin")[1]
    for method in ("get", "post"):
        path = f"/batches/{batch_id}" + ("/cancel" if method == "post" else "")
        response = getattr(api_nodocker, method)(path, HTTP_X_API_KEY=bob_key)
        assert (response.status_code, response.json()["detail"]) == (404, "Batch not found")
    assert api_nodocker.get(f"/batches/{batch_id}", HTTP_X_API_KEY=admin_key).status_code == 200
    assert Execution.objects.get().status == "queued"  # bob's cancel touched nothing


def test_each_job_of_a_batch_gets_its_webhook(api_nodocker: ApiClient, ana: tuple[User, str]) -> None:
    response = batch(api_nodocker, ana[1], inputs=[{}, {}], webhook_url="https://hooks.example.invalid/x")
    assert response.status_code == 202
    deliveries = WebhookDelivery.objects.filter(execution__in=response.json()["job_ids"])
    assert deliveries.count() == 2 and all(d.keyed for d in deliveries)


# -- the batch page ----------------------------------------------------------------------------------
def _page_client(user: User) -> Any:
    from django.test import Client

    client = Client()
    client.force_login(user)
    return client


def test_the_batch_page_shows_progress_and_each_job_and_polls_until_done(
    api_nodocker: ApiClient, ana: tuple[User, str]
) -> None:
    user, key = ana
    job_ids = batch(api_nodocker, key, inputs=[{}] * 3).json()["job_ids"]
    batch_id = Execution.objects.get(pk=job_ids[0]).batch_id
    Execution.objects.filter(pk=job_ids[0]).update(status="succeeded")
    Execution.objects.filter(pk=job_ids[1]).update(status="failed", error_type="division_error")
    client = _page_client(user)
    page = client.get(f"/ui/batches/{batch_id}/").content.decode()
    assert '<progress id="batch-bar" max="3" value="2">' in page
    assert "2 of 3 ended" in page and "division_error" in page
    assert all(f"/ui/executions/{job_id}/" in page for job_id in job_ids)
    assert 'hx-trigger="every 1s"' in page  # polls while a job has not ended
    Execution.objects.filter(pk=job_ids[2]).update(status="succeeded")
    panel = client.get(f"/ui/batches/{batch_id}/?panel=progress", HTTP_HX_REQUEST="true").content.decode()
    assert panel.lstrip().startswith('<section id="batch-progress"') and "<strong>done</strong>" in panel
    assert "hx-trigger" not in panel  # done: it stops polling
    member = client.get(f"/ui/executions/{job_ids[1]}/").content.decode()
    assert f'job 2 of <a href="/ui/batches/{batch_id}/">' in member


def test_the_batch_page_cancels_and_refuses_other_users(api_nodocker: ApiClient, ana: tuple[User, str]) -> None:
    user, key = ana
    job_ids = batch(api_nodocker, key, inputs=[{}] * 2).json()["job_ids"]
    batch_id = Execution.objects.get(pk=job_ids[0]).batch_id
    bob = User.objects.create_user("bob-page", password="pw-for-tests-only")
    assert _page_client(bob).get(f"/ui/batches/{batch_id}/").status_code == 403
    assert _page_client(bob).post(f"/ui/batches/{batch_id}/cancel/").status_code == 403
    response = _page_client(user).post(f"/ui/batches/{batch_id}/cancel/", HTTP_HX_REQUEST="true")
    assert response.status_code == 204 and "Cancelling 2 jobs" in response["HX-Trigger"]
    assert set(Execution.objects.values_list("status", flat=True)) == {"cancelled"}


# -- input files, shared by every job of the batch ---------------------------------------------------
@pytest.fixture
def data_dir(settings: Any, tmp_path: Path) -> Path:
    settings.DATA_DIR = tmp_path / "data"
    return settings.DATA_DIR / "inputs"


def stored_blobs(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


FILES = {"table.csv": b"n,label\n1,one\n", "nested/dir/blob.bin": bytes(range(256))}


def test_every_job_of_a_batch_lists_the_same_files(api_nodocker: ApiClient, ana: tuple[User, str], data_dir) -> None:
    key = ana[1]
    encoded = {path: b64(data) for path, data in FILES.items()}
    by_json = batch(api_nodocker, key, inputs=[{"n": 0}, {"n": 1}, {"n": 2}], files=encoded)
    assert by_json.status_code == 202, by_json.content
    body, content_type = multipart_body({"code": "print(1)", "inputs": [{"n": 3}, {"n": 4}]}, FILES)
    by_multipart = api_nodocker.post("/execute/batch", body, content_type=content_type, HTTP_X_API_KEY=key)
    assert by_multipart.status_code == 202, by_multipart.content
    expected = sorted(
        ({"path": p, "size_bytes": len(d), "sha256": hashlib.sha256(d).hexdigest()} for p, d in FILES.items()),
        key=lambda f: f["path"],
    )
    job_ids = by_json.json()["job_ids"] + by_multipart.json()["job_ids"]
    for job_id in job_ids:
        record = api_nodocker.get(f"/executions/{job_id}?view=full", HTTP_X_API_KEY=key).json()
        assert record["files"] == expected
        download = api_nodocker.get(f"/executions/{job_id}/files/table.csv", HTTP_X_API_KEY=key)
        assert b"".join(download.streaming_content) == FILES["table.csv"]
    assert [Execution.objects.get(pk=j).input_data for j in job_ids] == [{"n": n} for n in range(5)]
    assert len(stored_blobs(data_dir)) == 2  # stored once by content, for all five jobs


def test_a_rerun_of_a_batch_job_keeps_its_files(api_nodocker: ApiClient, ana: tuple[User, str], data_dir) -> None:
    key = ana[1]
    job_id = batch(api_nodocker, key, inputs=[{}], files={"a.txt": b64(b"x")}).json()["job_ids"][0]
    rerun = api_nodocker.post(f"/jobs/{job_id}/rerun", {}, HTTP_X_API_KEY=key).json()["job_id"]
    assert [f.path for f in Execution.objects.get(pk=rerun).input_files.all()] == ["a.txt"]


def _too_many() -> dict[str, str]:
    return {f"f{i}.txt": b64(b"x") for i in range(settings.TAKO_MAX_INPUT_FILES + 1)}


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"../etc/passwd": b64(b"x")}, "File '../etc/passwd': '..' and '.' are not allowed in a path"),
        ({"/etc/passwd": b64(b"x")}, "File '/etc/passwd': absolute paths are not allowed"),
        ({"data.json": b64(b"x")}, "File 'data.json': /input/data.json holds input_data"),
        ({"a b.csv": b64(b"x")}, "File 'a b.csv': the path must match"),
        ({"a": b64(b"1"), "a/b.csv": b64(b"2")}, "File 'a': the path is also a folder of another file"),
        ({"ok.csv": "not base64!!"}, "File 'ok.csv': its content is not valid base64"),
        ({"ok.csv": 5}, "File 'ok.csv': its content must be a base64 string"),
        (["ok.csv"], "files must be an object of {path: base64 content}"),
        (_too_many, "At most 20 files are allowed (21 sent)"),
        ({"big.bin": "big"}, "File 'big.bin': it is 11 bytes, over the limit of 10 bytes per file"),
        ({"a.txt": b64(b"x" * 9), "b.txt": b64(b"y" * 9)}, "Files total 18 bytes, over the limit of 15 bytes in all"),
    ],
)
def test_files_that_break_a_rule_refuse_the_whole_batch_naming_the_file(
    api_nodocker: ApiClient, ana: tuple[User, str], data_dir, settings, files: Any, message: str
) -> None:
    settings.TAKO_MAX_INPUT_FILE_BYTES, settings.TAKO_MAX_INPUT_FILES_BYTES = 10, 15
    if callable(files):
        files = files()
    elif files == {"big.bin": "big"}:
        files = {"big.bin": b64(b"z" * 11)}
    response = batch(api_nodocker, ana[1], inputs=[{}, {}], files=files)
    assert response.status_code == 422, response.content
    assert any(m.startswith(message) for m in response.json()["errors"]["files"]), response.json()
    assert (Execution.objects.count(), Batch.objects.count(), InputFile.objects.count()) == (0, 0, 0)
    assert stored_blobs(data_dir) == []


def test_multipart_batches_follow_the_same_rules(
    api_nodocker: ApiClient, ana: tuple[User, str], data_dir, settings
) -> None:
    settings.TAKO_MAX_INPUT_FILE_BYTES = 4
    key = ana[1]
    request = {"code": "print(1)", "inputs": [{}]}
    for part_request, files, field, message in [
        (request, {"a.bin": b"12345"}, "files", "File 'a.bin': it is 5 bytes, over the limit of 4 bytes per file"),
        (request, {"../x.csv": b"1"}, "files", "File '../x.csv': '..' and '.' are not allowed in a path"),
        ({**request, "files": {"b.csv": b64(b"2")}}, {"a.csv": b"1"}, "files", "In a multipart request, send"),
        (None, {"a.csv": b"1"}, "request", "A multipart request needs a 'request' part holding the JSON body"),
        ({"code": "print(1)"}, {"a.csv": b"1"}, "inputs", "Inputs is required"),
    ]:
        body, content_type = multipart_body(part_request, files)
        response = api_nodocker.post("/execute/batch", body, content_type=content_type, HTTP_X_API_KEY=key)
        assert response.status_code == 422, response.content
        assert response.json()["errors"][field][0].startswith(message), response.json()
    assert (Execution.objects.count(), Batch.objects.count(), InputFile.objects.count()) == (0, 0, 0)
    assert stored_blobs(data_dir) == []


def test_a_batch_refused_for_room_or_quota_stores_no_file(
    api_nodocker: ApiClient, ana: tuple[User, str], data_dir, settings
) -> None:
    files = {"a.txt": b64(b"kept only if admitted")}
    settings.TAKO_MAX_QUEUE_SIZE = 2
    assert batch(api_nodocker, ana[1], inputs=[{}] * 3, files=files).status_code == 503
    settings.TAKO_MAX_QUEUE_SIZE, settings.TAKO_MAX_JOBS_IN_PROGRESS = 100, 2
    assert batch(api_nodocker, ana[1], inputs=[{}] * 3, files=files).status_code == 429
    assert (Execution.objects.count(), Batch.objects.count(), InputFile.objects.count()) == (0, 0, 0)
    assert stored_blobs(data_dir) == []
    assert batch(api_nodocker, ana[1], inputs=[{}] * 2, files=files).status_code == 202
    assert (InputFile.objects.count(), len(stored_blobs(data_dir))) == (2, 1)
