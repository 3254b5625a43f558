"""The OpenAPI document generated from api/schemas.py: valid, complete, served, rendered, and
bounded by the settings the server validates with. (tests/support.py's ApiClient checks every
response against it.)"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
from django.urls import URLPattern, get_resolver
from jsonschema import Draft202012Validator

from executions.api.app import api, openapi_document
from tests import support

API_PATHS = {
    "/execute", "/execute/async", "/jobs/{job_id}", "/jobs/{job_id}/result", "/jobs/{job_id}/cancel",
    "/jobs/{job_id}/rerun", "/jobs/{job_id}/fork", "/jobs/{job_id}/artifacts/{name}", "/jobs/{job_id}/webhooks",
    "/jobs/{job_id}/events", "/execute/batch", "/batches/{batch_id}", "/batches/{batch_id}/cancel",
    "/pool/stats",
    "/executions", "/executions/{execution_id}", "/executions/{execution_id}/files/{path}",
    "/job-types", "/job-types/{name}", "/job-types/{name}/build",
    "/health", "/health/ready", "/dlq", "/dlq/stats", "/dlq/{entry_id}", "/dlq/{entry_id}/requeue", "/dlq/requeue",
    "/audit", "/metrics",
}  # fmt: skip


def _route_template(pattern: URLPattern) -> str:
    return "/" + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", str(pattern.pattern))


def test_every_api_route_is_documented_and_every_documented_path_exists() -> None:
    documented = set(openapi_document()["paths"])
    routes = {_route_template(p) for p in api.urls[0]} - {"/openapi.json"}
    assert routes == documented == API_PATHS


def test_every_documented_schema_is_valid_json_schema() -> None:
    for schema in openapi_document()["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)  # raises SchemaError naming the problem


def test_every_operation_documents_its_errors() -> None:
    for path, operations in openapi_document()["paths"].items():
        for method, operation in operations.items():
            assert {"405", "500"} <= set(operation["responses"]), (method, path)
            if path not in ("/health", "/health/ready"):  # public
                assert {"401", "403", "429"} <= set(operation["responses"]), (method, path)


def test_the_enums_come_from_the_code() -> None:
    from executions.models import Execution
    from executions.sandbox.classify import ERROR_TYPES
    from executions.services.dlq import DEAD_LETTER_TYPES

    schemas = openapi_document()["components"]["schemas"]
    assert schemas["Status"]["enum"] == list(Execution.Status.values)
    assert schemas["ErrorInfo"]["properties"]["type"]["enum"] == list(ERROR_TYPES)
    assert set(schemas["DeadLetter"]["properties"]["error_type"]["enum"]) == DEAD_LETTER_TYPES


def test_the_document_is_served(api_nodocker) -> None:
    response = api_nodocker.get("/openapi.json")
    assert response.status_code == 200
    assert response.json()["openapi"] == "3.1.0"
    assert response.json() == openapi_document()
    assert api_nodocker.post("/openapi.json").status_code == 405


def test_the_docs_page_uses_the_vendored_viewer(client) -> None:
    response = client.get("/docs")
    html = response.content.decode()
    assert response.status_code == 200
    assert "/static/vendor/swagger-ui/swagger-ui-bundle.js" in html
    assert 'data-spec-url="/openapi.json"' in html
    assert "https://" not in html  # no CDN
    assert client.get("/static/vendor/swagger-ui/swagger-ui-bundle.js").status_code == 200


def test_the_docs_page_needs_no_login(client) -> None:
    assert client.get("/docs").status_code == 200


def test_the_api_routes_are_mounted_at_the_root() -> None:
    assert get_resolver().resolve("/execute").view_name == "api:execute"
    assert get_resolver().resolve("/jobs/7bdd3ab1-1641-48bb-9625-4f9a65b278c3/result").view_name == "api:job_result"


def test_get_answers_head_too(api_nodocker) -> None:
    assert api_nodocker.client.head("/health").status_code == 200
    refused = api_nodocker.client.delete("/health")
    assert refused.status_code == 405 and refused["Allow"] == "GET, HEAD"
    assert refused.json()["detail"] == "Method DELETE not allowed; use GET"


def test_a_response_carries_only_the_keys_its_values_have(api_nodocker) -> None:
    """An optional field of a response schema that the values leave out stays out of the body."""
    submitted = api_nodocker.post("/execute/async", {"code": "print(1)"}).json()
    assert set(submitted) == {"job_id", "status"}
    rerun = api_nodocker.post(f"/jobs/{submitted['job_id']}/rerun", "", content_type="application/json").json()
    assert set(rerun) == {"job_id", "status", "parent_execution_id", "relationship"}


def test_query_strings_are_refused_in_takos_words(api_nodocker) -> None:
    body = api_nodocker.get("/executions?limit=0&offset=x&status=done").json()
    assert body["errors"] == {
        "limit": ["limit must be between 1 and 1000"],
        "offset": ["offset must be an integer"],
        "status": ["status must be one of queued, running, succeeded, failed, timeout, oom, cancelled"],
    }
    assert api_nodocker.get("/executions?limit=&status=&view=").status_code == 200  # empty: the default
    assert api_nodocker.get("/dlq?error_type=timeout").json()["detail"].startswith("error_type must be one of")


# -- the bounds are the deployment's settings, read at startup ------------------------------------
CHECK_BOUNDS = """
import json, django
django.setup()
from django.test import Client
client = Client(HTTP_HOST="127.0.0.1")  # (not a test run: ALLOWED_HOSTS applies)
document = client.get("/openapi.json").json()
timeout = document["components"]["schemas"]["ExecuteRequest"]["properties"]["timeout"]["anyOf"][0]
answers = {
    seconds: client.post("/execute/async", json.dumps({"code": "print(1)", "timeout": seconds}),
                         content_type="application/json")
    for seconds in (600, 601)
}
print(json.dumps({
    "maximum": timeout["maximum"],
    "accepted": (answers[600].status_code, answers[600].json().get("job_id")),
    "refused": (answers[601].status_code, answers[601].json().get("errors")),
}))
"""


@pytest.mark.django_db(transaction=True)
def test_a_higher_max_timeout_is_documented_and_accepted() -> None:
    """TAKO_MAX_TIMEOUT=600: the document says 600, and the server takes 600 and refuses 601."""
    from executions.models import Execution

    env = {**os.environ, **support.service_database_env(), "TAKO_MAX_TIMEOUT": "600", "TAKO_ALLOW_ANONYMOUS": "1",
           "DJANGO_SETTINGS_MODULE": "takoweb.settings"}  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-c", CHECK_BOUNDS], cwd=support.ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["maximum"] == 600
    status, job_id = seen["accepted"]
    assert status == 202 and Execution.objects.get(pk=job_id).timeout == 600
    assert seen["refused"] == [422, {"timeout": ["Timeout must be between 1 and 600 seconds"]}]
