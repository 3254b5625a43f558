"""GET /executions and GET /executions/{id}."""

from __future__ import annotations

import uuid

import pytest

from executions import services
from executions.models import Environment, Execution


def _make(status: str = "succeeded", job_type: str = "default", **fields) -> Execution:
    environment = Environment.objects.get_or_create(name=job_type)[0]
    execution = services.execution_create(code="print(1)", input_data={"n": 1}, environment=environment)
    Execution.objects.filter(pk=execution.pk).update(status=status, **fields)
    execution.refresh_from_db()
    return execution


def test_it_lists_newest_first_with_pagination(api_nodocker) -> None:
    made = [_make() for _ in range(5)]
    page = api_nodocker.get("/executions?limit=2&offset=1").json()
    assert [item["execution_id"] for item in page["items"]] == [str(e.pk) for e in reversed(made)][1:3]
    assert (page["limit"], page["offset"], page["count"], page["has_more"]) == (2, 1, 2, True)
    last = api_nodocker.get("/executions?limit=2&offset=4").json()
    assert (last["count"], last["has_more"]) == (1, False)


def test_it_filters_by_status_and_job_type(api_nodocker) -> None:
    _make("failed")
    wanted = _make("succeeded", job_type="other")
    _make("succeeded")
    page = api_nodocker.get("/executions?status=succeeded&job_type=other").json()
    assert [item["execution_id"] for item in page["items"]] == [str(wanted.pk)]


def test_view_full_adds_the_extended_fields(api_nodocker) -> None:
    execution = _make()
    slim = api_nodocker.get(f"/executions/{execution.pk}").json()
    full = api_nodocker.get(f"/executions/{execution.pk}?view=full").json()
    assert "code_hash" not in slim and "artifacts" not in slim
    assert full["code_hash"] == execution.code_hash and full["artifacts"] == []
    assert full["input_hash"] == services.sha256_hex('{"n":1}')
    listed = api_nodocker.get("/executions?view=full").json()["items"][0]
    assert listed["code_hash"] == execution.code_hash


def test_the_record_has_the_documented_shape(api_nodocker) -> None:
    execution = _make(
        "failed", error_type="division_error", error_message="ZeroDivisionError: x", error_phase="execution"
    )
    record = api_nodocker.get(f"/executions/{execution.pk}").json()
    assert record["error"] == {
        "type": "division_error",
        "message": "ZeroDivisionError: x",
        "phase": "execution",
    }
    assert record["created_at"].endswith("Z")
    assert record["timing"]["phase_at_exit"] == "failed"


def test_an_unknown_execution_is_a_404(api_nodocker) -> None:
    response = api_nodocker.get(f"/executions/{uuid.uuid4()}")
    assert response.status_code == 404
    assert response.json()["detail"] == "Execution not found"


def test_a_malformed_id_is_a_404_not_a_500(api_nodocker) -> None:
    response = api_nodocker.get("/executions/not-a-uuid")
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"


@pytest.mark.parametrize(
    ("query", "field"),
    [("limit=0", "limit"), ("limit=1001", "limit"), ("limit=x", "limit"), ("offset=-1", "offset"),
     ("status=done", "status"), ("view=huge", "view"), ("offset=4670109154146193052547416064", "offset")],
)  # fmt: skip
def test_it_rejects_bad_query_parameters(api_nodocker, query: str, field: str) -> None:
    response = api_nodocker.get(f"/executions?{query}")
    assert response.status_code == 422
    assert field in response.json()["errors"]
