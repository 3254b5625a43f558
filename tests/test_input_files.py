"""Input files (`files`): every rule of docs/API.md, as JSON and as multipart/form-data; stored
once by content, listed in the record, downloadable, kept by rerun and fork; nothing stored when
refused. The container's view of them is in test_input_files_sandbox.py."""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import User

from executions.models import Execution, InputFile
from executions.services import input_blobs_sweep
from executions.services.input_files import input_blob_path
from tests.support import ApiClient, multipart_body


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def refused(response: Any) -> list[str]:
    assert response.status_code == 422, response.content
    body = response.json()
    assert body["detail"] and body["correlation_id"]
    return list(body["errors"]["files"]) if "files" in body["errors"] else [json.dumps(body["errors"])]


def nothing_stored() -> None:
    assert not Execution.objects.exists()
    assert not InputFile.objects.exists()
    root = Path(settings.DATA_DIR) / "inputs"
    assert not root.exists() or not any(p.is_file() for p in root.rglob("*"))


@pytest.fixture(autouse=True)
def _own_data_dir(settings: Any, tmp_path: Path) -> None:
    settings.DATA_DIR = tmp_path / "data"


def post_multipart(api: ApiClient, path: str, request: Any, files: dict[str, bytes], **extra: Any) -> Any:
    body, content_type = multipart_body(request, files)
    return api.post(path, body, content_type=content_type, **extra)


# -- the rules, in JSON -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("path", "rule"),
    [
        ("../etc/passwd", "'..'"),
        ("a/../b.csv", "'..'"),
        ("/etc/passwd", "absolute"),
        ("data.json", "input_data"),
        ("data.json/x.csv", "input_data"),
        ("a b.csv", "must match"),
        ("a//b.csv", "must match"),
        ("dir/", "must match"),
        ("ünï.csv", "must match"),
        ("./a.csv", "'..' and '.'"),
    ],
)
def test_it_refuses_a_bad_path_naming_the_file(api_nodocker: ApiClient, path: str, rule: str) -> None:
    response = api_nodocker.post("/execute/async", {"code": "print(1)", "files": {path: b64(b"x")}})
    (message,) = refused(response)
    assert repr(path) in message and rule in message
    nothing_stored()


def test_it_refuses_broken_base64(api_nodocker: ApiClient) -> None:
    response = api_nodocker.post("/execute", {"code": "print(1)", "files": {"ok.csv": "not base64!!"}})
    assert refused(response) == ["File 'ok.csv': its content is not valid base64"]
    nothing_stored()


def test_it_refuses_content_that_is_not_a_string(api_nodocker: ApiClient) -> None:
    (message,) = refused(api_nodocker.post("/execute/async", {"code": "print(1)", "files": {"a.csv": 5}}))
    assert "'a.csv'" in message and "base64" in message
    (message,) = refused(api_nodocker.post("/execute/async", {"code": "print(1)", "files": ["a.csv"]}))
    assert "object" in message


def test_it_refuses_too_many_files(api_nodocker: ApiClient) -> None:
    files = {f"f{i}.txt": b64(b"x") for i in range(settings.TAKO_MAX_INPUT_FILES + 1)}
    (message,) = refused(api_nodocker.post("/execute/async", {"code": "print(1)", "files": files}))
    assert message == f"At most {settings.TAKO_MAX_INPUT_FILES} files are allowed (21 sent)"
    nothing_stored()


def test_it_refuses_a_file_over_the_limit_before_decoding_it(
    api_nodocker: ApiClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    big = b64(b"x" * (settings.TAKO_MAX_INPUT_FILE_BYTES + 1))
    monkeypatch.setattr(base64, "b64decode", lambda *a, **k: pytest.fail("decoded a file over the limit"))
    (message,) = refused(api_nodocker.post("/execute/async", {"code": "print(1)", "files": {"big.bin": big}}))
    assert message == (
        f"File 'big.bin': it is {settings.TAKO_MAX_INPUT_FILE_BYTES + 1} bytes, over the limit of "
        f"{settings.TAKO_MAX_INPUT_FILE_BYTES} bytes per file"
    )
    nothing_stored()


def test_it_refuses_files_over_the_total(api_nodocker: ApiClient, settings: Any) -> None:
    settings.TAKO_MAX_INPUT_FILES_BYTES = 25
    files = {"a.txt": b64(b"x" * 10), "b.txt": b64(b"y" * 10), "c.txt": b64(b"z" * 10)}
    (message,) = refused(api_nodocker.post("/execute/async", {"code": "print(1)", "files": files}))
    assert message == "Files total 30 bytes, over the limit of 25 bytes in all"
    nothing_stored()


def test_a_path_cannot_be_both_a_file_and_a_folder(api_nodocker: ApiClient) -> None:
    files = {"a": b64(b"1"), "a/b.csv": b64(b"2")}
    (message,) = refused(api_nodocker.post("/execute/async", {"code": "print(1)", "files": files}))
    assert message == "File 'a': the path is also a folder of another file"


def test_the_request_limit_leaves_room_for_the_files() -> None:
    """The body limit (checked before a body is read) is derived from the file limits: files at
    their limit, base64-encoded, with the largest code and input_data, fit."""
    encoded_files = (settings.TAKO_MAX_INPUT_FILES_BYTES + 2) // 3 * 4
    room = settings.TAKO_MAX_CODE_CHARS + settings.TAKO_MAX_INPUT_BYTES
    assert encoded_files + room <= settings.TAKO_MAX_REQUEST_BYTES
    assert settings.DATA_UPLOAD_MAX_MEMORY_SIZE == settings.TAKO_MAX_REQUEST_BYTES


# -- the rules, in multipart ------------------------------------------------------------------------
def test_multipart_without_a_request_part_is_refused(api_nodocker: ApiClient) -> None:
    body, content_type = multipart_body(None, {"a.csv": b"1,2\n"})
    response = api_nodocker.post("/execute/async", body, content_type=content_type)
    assert response.status_code == 422
    assert response.json()["errors"] == {
        "request": ["A multipart request needs a 'request' part holding the JSON body"]
    }
    nothing_stored()


@pytest.mark.parametrize(
    ("path", "rule"), [("../x.csv", "'..'"), ("/abs.csv", "absolute"), ("data.json", "input_data")]
)
def test_multipart_paths_follow_the_same_rules(api_nodocker: ApiClient, path: str, rule: str) -> None:
    (message,) = refused(post_multipart(api_nodocker, "/execute/async", {"code": "print(1)"}, {path: b"x"}))
    assert repr(path) in message and rule in message
    nothing_stored()


def test_multipart_sizes_follow_the_same_rules(api_nodocker: ApiClient, settings: Any) -> None:
    settings.TAKO_MAX_INPUT_FILE_BYTES = 4
    (message,) = refused(post_multipart(api_nodocker, "/execute/async", {"code": "print(1)"}, {"a.bin": b"12345"}))
    assert message == "File 'a.bin': it is 5 bytes, over the limit of 4 bytes per file"
    nothing_stored()


def test_multipart_with_files_in_the_json_too_is_refused(api_nodocker: ApiClient) -> None:
    request = {"code": "print(1)", "files": {"a.csv": b64(b"1")}}
    (message,) = refused(post_multipart(api_nodocker, "/execute/async", request, {"b.csv": b"2"}))
    assert "part of its own" in message


def test_multipart_with_a_malformed_request_part_is_a_400(api_nodocker: ApiClient) -> None:
    body, content_type = multipart_body("{not json", {"a.csv": b"1"})
    response = api_nodocker.post("/execute/async", body, content_type=content_type)
    assert response.status_code == 400 and "request" in response.json()["detail"]


# -- stored, listed, downloaded, kept -----------------------------------------------------------------
def test_json_and_multipart_store_the_same_files(api_nodocker: ApiClient) -> None:
    files = {"sales.csv": b"region,amount\nnorth,3\n", "nested/dir/blob.bin": bytes(range(256))}
    by_json = api_nodocker.post(
        "/execute/async", {"code": "print(1)", "files": {p: b64(d) for p, d in files.items()}}
    ).json()["job_id"]
    by_multipart = post_multipart(api_nodocker, "/execute/async", {"code": "print(1)"}, files).json()["job_id"]
    expected = sorted(
        ({"path": p, "size_bytes": len(d), "sha256": hashlib.sha256(d).hexdigest()} for p, d in files.items()),
        key=lambda f: f["path"],
    )
    for job_id in (by_json, by_multipart):
        record = api_nodocker.get(f"/executions/{job_id}?view=full").json()
        assert record["files"] == expected
        assert "files" not in api_nodocker.get(f"/executions/{job_id}").json()  # the default view stays slim
        for path, data in files.items():
            download = api_nodocker.get(f"/executions/{job_id}/files/{path}")
            assert download.status_code == 200
            assert b"".join(download.streaming_content) == data
            assert download["ETag"] == f'"sha256:{hashlib.sha256(data).hexdigest()}"'
            assert download["Content-Disposition"].startswith("attachment")
            again = api_nodocker.get(f"/executions/{job_id}/files/{path}", HTTP_IF_NONE_MATCH=download["ETag"])
            assert again.status_code == 304
    # Stored once by content, whoever sent it how often.
    blobs = [p for p in (Path(settings.DATA_DIR) / "inputs").rglob("*") if p.is_file()]
    assert len(blobs) == 2


def test_a_file_that_is_not_there_is_a_404(api_nodocker: ApiClient) -> None:
    job_id = api_nodocker.post("/execute/async", {"code": "print(1)", "files": {"a.csv": b64(b"1")}}).json()["job_id"]
    for path in ("b.csv", "../a.csv", "data.json"):
        assert api_nodocker.get(f"/executions/{job_id}/files/{path}").status_code == 404
    assert api_nodocker.get(f"/executions/{uuid.uuid4()}/files/a.csv").status_code == 404


def test_downloads_follow_the_visibility_of_executions(db: None, settings: Any) -> None:
    settings.TAKO_ALLOW_ANONYMOUS = False
    alice = User.objects.create_user("alice", password="pw-alice-1")
    bob = User.objects.create_user("bob", password="pw-bob-1")
    as_alice, as_bob = ApiClient(), ApiClient()
    as_alice.client.force_login(alice)
    as_bob.client.force_login(bob)
    job_id = as_alice.post("/execute/async", {"code": "print(1)", "files": {"secret.csv": b64(b"s")}}).json()["job_id"]
    assert as_alice.get(f"/executions/{job_id}/files/secret.csv").status_code == 200
    assert as_bob.get(f"/executions/{job_id}/files/secret.csv").status_code == 404
    assert ApiClient().get(f"/executions/{job_id}/files/secret.csv").status_code == 401


def test_rerun_and_fork_keep_the_files(api_nodocker: ApiClient) -> None:
    files = {"in/a.csv": b"x,y\n1,2\n"}
    parent = api_nodocker.post(
        "/execute/async", {"code": "print(1)", "files": {p: b64(d) for p, d in files.items()}}
    ).json()["job_id"]
    listed = api_nodocker.get(f"/executions/{parent}?view=full").json()["files"]
    rerun = api_nodocker.post(f"/jobs/{parent}/rerun", {}).json()["job_id"]
    fork = api_nodocker.post(f"/jobs/{parent}/fork", {"code": "print(2)"}).json()["job_id"]
    for child in (rerun, fork):
        assert api_nodocker.get(f"/executions/{child}?view=full").json()["files"] == listed
        download = api_nodocker.get(f"/executions/{child}/files/in/a.csv")
        assert b"".join(download.streaming_content) == files["in/a.csv"]
    assert len([p for p in (Path(settings.DATA_DIR) / "inputs").rglob("*") if p.is_file()]) == 1


def test_the_same_idempotency_key_with_other_files_is_a_conflict(api_nodocker: ApiClient) -> None:
    first = {"code": "print(1)", "idempotency_key": "files-key-1", "files": {"a.csv": b64(b"1")}}
    assert api_nodocker.post("/execute/async", first).status_code == 202
    assert api_nodocker.post("/execute/async", first).status_code == 200
    other = {**first, "files": {"a.csv": b64(b"2")}}
    assert api_nodocker.post("/execute/async", other).status_code == 409


def test_content_no_execution_lists_is_swept(api_nodocker: ApiClient) -> None:
    job_id = api_nodocker.post("/execute/async", {"code": "print(1)", "files": {"a.csv": b64(b"1")}}).json()["job_id"]
    blob = input_blob_path(hashlib.sha256(b"1").hexdigest())
    assert blob.is_file()
    assert input_blobs_sweep(grace_seconds=0) == 0  # still listed
    Execution.objects.filter(pk=job_id).delete()
    assert input_blobs_sweep(grace_seconds=0) == 1
    assert not blob.exists()


def test_a_requeued_dead_letter_keeps_the_files(api_nodocker: ApiClient) -> None:
    from executions.services import dead_letter_add, dlq_requeue

    job_id = api_nodocker.post("/execute/async", {"code": "print(1)", "files": {"a.csv": b64(b"1")}}).json()["job_id"]
    execution = Execution.objects.get(pk=job_id)
    execution.error_type = "internal_error"
    entry = dead_letter_add(execution)
    assert entry is not None
    requeued = dlq_requeue(entry=entry, by="test")
    assert [f.to_dict() for f in requeued.input_files.all()] == [f.to_dict() for f in execution.input_files.all()]


def test_the_request_part_may_be_a_file_part_too(api_nodocker: ApiClient) -> None:
    """curl -F request=@body.json sends the JSON with a filename: it is still the request part."""
    boundary = "b0undary"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="request"; filename="body.json"\r\n'
        f'Content-Type: application/json\r\n\r\n{{"code": "print(1)"}}\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="f"; filename="x/y.txt"\r\n\r\nhello\r\n'
        f"--{boundary}--\r\n"
    ).encode()
    response = api_nodocker.post("/execute/async", body, content_type=f"multipart/form-data; boundary={boundary}")
    assert response.status_code == 202, response.content
    record = api_nodocker.get(f"/executions/{response.json()['job_id']}?view=full").json()
    assert [f["path"] for f in record["files"]] == ["x/y.txt"]


def test_multipart_parts_without_a_filename_are_refused(api_nodocker: ApiClient) -> None:
    boundary = "b0undary"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="request"\r\n\r\n{{"code": "print(1)"}}\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="stray"\r\n\r\nvalue\r\n'
        f"--{boundary}--\r\n"
    ).encode()
    response = api_nodocker.post("/execute/async", body, content_type=f"multipart/form-data; boundary={boundary}")
    assert response.status_code == 422
    assert "stray" in response.json()["errors"]
    nothing_stored()


def test_multipart_duplicate_paths_are_refused(api_nodocker: ApiClient) -> None:
    boundary = "b0undary"
    part = f'--{boundary}\r\nContent-Disposition: form-data; name="f"; filename="a.txt"\r\n\r\nx\r\n'
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="request"\r\n\r\n{{"code": "print(1)"}}\r\n'
        + part
        + part
        + f"--{boundary}--\r\n"
    ).encode()
    response = api_nodocker.post("/execute/async", body, content_type=f"multipart/form-data; boundary={boundary}")
    assert refused(response) == ["File 'a.txt': sent twice"]
    nothing_stored()
