"""POST /execute: the user's guide examples, the response contract and bad input."""

from __future__ import annotations

import uuid

import pytest

from executions.models import Execution

GUIDE_RUNTIME_ERROR = """
import json
with open('/input/data.json') as f:
    data = json.load(f)
result = 100 / data['value']  # Division by zero if value=0
"""


@pytest.fixture
def api(api, container_path):
    """Every job of this module runs twice: in a container created for it, and in a pooled one."""
    return api


# -- the examples of the user's guide, as written ----------------------------------------------
def test_guide_syntax_error(api) -> None:
    body = api.post("/execute", {"code": "def broken(", "input_data": {}}).json()
    assert body["success"] is False
    assert "SyntaxError" in body["stderr"]
    assert body["error_type"] == "syntax_error"


def test_guide_runtime_error(api) -> None:
    body = api.post("/execute", {"code": GUIDE_RUNTIME_ERROR, "input_data": {"value": 0}}).json()
    assert body["success"] is False
    assert "ZeroDivisionError: division by zero" in body["stderr"]
    assert body["error"] == "ZeroDivisionError: division by zero"
    assert body["error_type"] == "division_error"
    assert body["exit_code"] == 1
    assert body["output"] is None


def test_guide_timeout(api) -> None:
    body = api.post("/execute", {"code": "import time; time.sleep(60)", "input_data": {}, "timeout": 5}).json()
    assert body["success"] is False
    assert body["error"] == "Execution timeout exceeded (5s)"
    assert 5 <= body["execution_time"] < 15


def test_guide_import_error(api) -> None:
    body = api.post("/execute", {"code": "import pandas", "input_data": {}, "job_type": "default"}).json()
    assert body["success"] is False
    assert "ModuleNotFoundError: No module named 'pandas'" in body["stderr"]


# -- the success path ----------------------------------------------------------------------------
def test_it_returns_result_json_as_output(api) -> None:
    code = (
        "import json\n"
        "data = json.load(open('/input/data.json'))\n"
        "print('adding')\n"
        "json.dump({'sum': data['a'] + data['b']}, open('/output/result.json', 'w'))\n"
    )
    response = api.post("/execute", {"code": code, "input_data": {"a": 2, "b": 40}})
    body = response.json()
    assert response.status_code == 200
    assert body["success"] is True
    assert body["output"] == {"sum": 42}
    assert body["stdout"] == "adding\n"
    assert (body["stderr"], body["exit_code"], body["error"], body["error_type"]) == ("", 0, None, None)
    assert body["job_type"] == "default"
    assert body["runtime"] == "runc"


def test_output_is_null_without_result_json(api) -> None:
    body = api.post("/execute", {"code": "print(1)"}).json()
    assert body["success"] is True and body["output"] is None and body["stdout"] == "1\n"


def test_every_run_is_stored_as_an_execution(api) -> None:
    code = "import sys; print('out'); print('err', file=sys.stderr)"
    response = api.post("/execute", {"code": code, "input_data": {"k": 1}}, HTTP_X_CORRELATION_ID="trace-42")
    body = response.json()
    execution = Execution.objects.get(pk=body["execution_id"])
    assert execution.status == "succeeded"
    assert (execution.stdout, execution.stderr) == ("out\n", "err\n")
    assert execution.input_data == {"k": 1}
    assert execution.correlation_id == "trace-42"
    assert execution.started_at is not None and execution.ended_at >= execution.started_at
    assert execution.job_ref.startswith("tako-vm-default@sha256:")
    assert len(execution.code_hash) == 64 and len(execution.input_hash) == 64


def test_output_is_capped_at_64_kib_on_a_utf8_boundary(api) -> None:
    body = api.post("/execute", {"code": "print('é' * 70000)"}).json()
    assert body["success"] is True
    kept, marker = body["stdout"].rsplit("\n", 1)
    assert marker == "[TRUNCATED: output exceeded 65536 bytes]"
    assert set(kept) == {"é"} and len(kept.encode()) <= 65536
    record = api.get(f"/executions/{body['execution_id']}?view=full").json()
    assert record["stdout_truncated"] is True and record["stderr_truncated"] is False


def test_stderr_is_capped_separately(api) -> None:
    body = api.post("/execute", {"code": "import sys; sys.stderr.write('x' * 200000); print('ok')"}).json()
    assert body["stdout"] == "ok\n"
    assert body["stderr"].endswith("[TRUNCATED: output exceeded 65536 bytes]")


def test_the_job_types_default_timeout_applies(api) -> None:
    body = api.post("/execute", {"code": "print(1)"}).json()
    assert Execution.objects.get(pk=body["execution_id"]).timeout == 30


# -- headers -------------------------------------------------------------------------------------
def test_it_echoes_a_valid_correlation_id(api_nodocker) -> None:
    response = api_nodocker.post("/execute", {"code": ""}, HTTP_X_CORRELATION_ID="my-trace-123")
    assert response["X-Correlation-ID"] == "my-trace-123"
    assert response.json()["correlation_id"] == "my-trace-123"


def test_it_replaces_an_invalid_correlation_id(api_nodocker) -> None:
    response = api_nodocker.post("/execute", {"code": ""}, HTTP_X_CORRELATION_ID="bad id with spaces")
    assert uuid.UUID(response["X-Correlation-ID"]).version == 4


def test_every_response_has_the_security_headers(api_nodocker) -> None:
    response = api_nodocker.get("/executions")
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["X-Frame-Options"] == "DENY"
    assert uuid.UUID(response["X-Correlation-ID"])


# -- bad input: a specific 4xx, nothing stored, nothing started ----------------------------------
@pytest.mark.parametrize(
    ("body", "field", "detail"),
    [
        ({"code": ""}, "code", "Code cannot be empty"),
        ({"code": "   \n\t"}, "code", "Code cannot be empty"),
        ({}, "code", "Code is required"),
        ({"code": 5}, "code", "Code must be a string"),
        ({"code": "x" * 100_001}, "code", "Code exceeds size limit (100000 characters)"),
        ({"code": "1", "input_data": [1]}, "input_data", "input_data must be a JSON object"),
        ({"code": "1", "input_data": "x"}, "input_data", "input_data must be a JSON object"),
        ({"code": "1", "input_data": {"k": "x" * 1_000_001}}, "input_data", "input_data exceeds size limit"),
        ({"code": "1", "timeout": 0}, "timeout", "Timeout must be between 1 and 300 seconds"),
        ({"code": "1", "timeout": 301}, "timeout", "Timeout must be between 1 and 300 seconds"),
        ({"code": "1", "timeout": "5"}, "timeout", "Timeout must be between 1 and 300 seconds"),
        ({"code": "1", "timeout": True}, "timeout", "Timeout must be between 1 and 300 seconds"),
        ({"code": "1", "timeout": 2.5}, "timeout", "Timeout must be between 1 and 300 seconds"),
        (
            {"code": "1", "startup_timeout": 5},
            "startup_timeout",
            "startup_timeout must be between 10 and 600",
        ),
        ({"code": "1", "job_type": "x"}, "job_type", "Unknown job_type 'x'; available: data-processing, default"),
        ({"code": "1", "job_type": "../etc"}, "job_type", "job_type must be a name of letters"),
        ({"code": "1", "job_type": 7}, "job_type", "job_type must be a name of letters"),
        ({"code": "1", "idempotency_key": "short"}, "idempotency_key", "idempotency_key must be 8-255"),
        ({"code": "1", "requirements": "tabulate"}, "requirements", "Requirements must be a list of strings"),
        ({"code": "1", "requirements": ["pandas; rm -rf /"]}, "requirements", "Invalid requirement 'pandas; rm -rf /'"),
        ({"code": "1", "requirements": ["--index-url=http://x"]}, "requirements", "Invalid requirement"),
        ({"code": "1", "requirements": ["a\nRUN evil"]}, "requirements", "Invalid requirement"),
        ({"code": "1", "requirements": ["./local/pkg"]}, "requirements", "Invalid requirement"),
        ({"code": "1", "requirements": ["https://x.test/p.whl"]}, "requirements", "Invalid requirement"),
        ({"code": "1", "requirements": ["pkg @ file:///etc"]}, "requirements", "Invalid requirement"),
        ({"code": "1", "requirements": ["x"] * 51}, "requirements", "At most 50 requirements"),
        ({"code": "1", "colour": "red"}, "colour", "Unknown field 'colour'"),
        ({"code": "print(1)\x00"}, "code", "Text must not contain NUL characters"),
        ({"code": "1", "input_data": {"a": ["ok", "b\x00"]}}, "input_data.a.1", "Text must not contain NUL"),
    ],
)
def test_it_rejects_invalid_bodies(api_nodocker, body: dict, field: str, detail: str) -> None:
    response = api_nodocker.post("/execute", body)
    assert response.status_code == 422
    payload = response.json()
    assert payload["detail"].startswith(detail)
    assert any(m.startswith(detail) for m in payload["errors"][field])
    assert payload["correlation_id"] == response["X-Correlation-ID"]
    assert Execution.objects.count() == 0


def test_it_reports_every_invalid_field_at_once(api_nodocker) -> None:
    payload = api_nodocker.post("/execute", {"code": "", "timeout": 0, "extra": 1}).json()
    assert set(payload["errors"]) == {"code", "timeout", "extra"}


def test_it_accepts_whole_number_floats_and_nulls(api_nodocker, monkeypatch) -> None:
    from executions.services import execute_request_parse

    parsed = execute_request_parse({"code": "1", "timeout": 5.0, "input_data": None, "job_type": None})
    assert (parsed.timeout, parsed.input_data, parsed.environment.name) == (5, {}, "default")


def test_a_nul_in_the_url_is_a_clear_error_on_every_database(api_nodocker) -> None:
    job = "7bdd3ab1-1641-48bb-9625-4f9a65b278c3"
    assert api_nodocker.get(f"/jobs/{job}/artifacts/report.csv%00").status_code == 404
    response = api_nodocker.get("/executions?job_type=default%00")
    assert response.status_code == 400 and "NUL" in response.json()["detail"]


def test_nul_characters_in_the_programs_output_and_error_are_stored_as_replacements(api) -> None:
    code = (
        "import json\njson.dump({'k\\u0000': 'v\\u0000'}, open('/output/result.json', 'w'))\n"
        "raise ValueError('a\\x00b')"
    )
    body = api.post("/execute", {"code": code}).json()
    assert body["output"] == {"k\ufffd": "v\ufffd"} and body["error_type"] == "value_error"
    assert "\x00" not in body["error"]


def test_it_rejects_a_body_that_is_not_an_object(api_nodocker) -> None:
    response = api_nodocker.post("/execute", [1, 2])
    assert response.status_code == 422
    assert response.json()["detail"] == "Request body must be a JSON object"


def test_it_rejects_malformed_json(api_nodocker) -> None:
    response = api_nodocker.post("/execute", '{"code": ')
    assert response.status_code == 400
    assert response.json()["detail"].startswith("Malformed JSON body")
    assert Execution.objects.count() == 0


def test_it_rejects_a_form_body(api_nodocker) -> None:
    response = api_nodocker.post("/execute", "code=1", content_type="application/x-www-form-urlencoded")
    assert response.status_code == 415
    assert "application/json" in response.json()["detail"]


def test_it_rejects_get_with_405_json(api_nodocker) -> None:
    response = api_nodocker.get("/execute")
    assert response.status_code == 405
    assert response["Allow"] == "POST"
    assert response.json()["detail"] == "Method GET not allowed; use POST"


def test_an_unknown_api_path_is_a_json_404(api_nodocker) -> None:
    response = api_nodocker.get("/no/such/thing")
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json()["detail"] == "Not found"


def test_a_disallowed_host_gets_a_json_400_on_api_paths(db) -> None:
    from django.test import Client

    response = Client(HTTP_HOST="evil.example").post("/execute", "{}", content_type="application/json")
    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert response.json()["detail"].startswith("Bad request")


def test_an_unexpected_fault_is_a_json_500_without_traceback(api_nodocker, monkeypatch) -> None:
    from executions import services

    def explode(*args, **kwargs):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(services, "execute_request_parse", explode)
    response = api_nodocker.post("/execute", {"code": "1"})
    assert response.status_code == 500
    assert response.json()["detail"] == "Internal error"
    assert "secret" not in response.content.decode()


def test_requirements_can_be_turned_off(api_nodocker, settings) -> None:
    settings.TAKO_ALLOW_REQUIREMENTS = False
    response = api_nodocker.post("/execute", {"code": "1", "requirements": ["tabulate"]})
    assert response.status_code == 422
    assert response.json()["detail"] == "Per-run requirements are turned off on this deployment"
