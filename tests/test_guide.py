"""The user's guide's own Python snippets, run against the server (its URL substituted)."""

from __future__ import annotations

import time

import requests

from executions.models import Environment, Execution
from executions.resilience import breaker_failure
from executions.services import dead_letter_add, execution_create


def _guide_functions(base_url: str) -> dict:
    """The guide's execute_safely, execute_with_retry and check_system_health, as printed there."""
    calls: list[dict] = []

    def execute_safely(code, input_data, **kwargs):
        calls.append({"code": code})
        try:
            response = requests.post(
                f"{base_url}/execute",
                json={"code": code, "input_data": input_data, **kwargs},
                timeout=kwargs.get("timeout", 30) + 10,
            )
            response.raise_for_status()
        except requests.exceptions.Timeout:
            return {"success": False, "error": "HTTP request timed out"}
        except requests.exceptions.ConnectionError:
            return {"success": False, "error": "Cannot connect to Tako VM"}
        except requests.exceptions.HTTPError as e:
            return {"success": False, "error": f"HTTP error: {e}"}
        result = response.json()
        if not result["success"]:
            print(f"Execution failed: {result.get('error')}")
        return result

    def execute_with_retry(code, input_data, max_retries=3, **kwargs):
        retryable = {"service_unavailable", "network_error", "network_timeout"}
        permanent = {"syntax_error", "import_error", "name_error", "type_error"}
        for attempt in range(max_retries):
            result = execute_safely(code, input_data, **kwargs)
            if result["success"]:
                return result
            error = result.get("error", {})
            error_type = error.get("type") if isinstance(error, dict) else None
            if error_type in permanent:
                return result
            if error_type not in retryable:
                return result
            if attempt < max_retries - 1:
                time.sleep(2**attempt)
        return result

    def check_system_health():
        health = requests.get(f"{base_url}/health", timeout=10).json()
        dlq = requests.get(f"{base_url}/dlq/stats", timeout=10).json()
        issues = []
        if health["status"] != "healthy":
            issues.append(f"System degraded: {health['circuit_breaker']['state']}")
        if health["circuit_breaker"]["state"] == "open":
            issues.append("Circuit breaker open - Docker issues")
        if dlq["total"] > 10:
            issues.append(f"High DLQ count: {dlq['total']} failed jobs")
        return issues

    return {
        "execute_safely": execute_safely,
        "execute_with_retry": execute_with_retry,
        "check_system_health": check_system_health,
        "calls": calls,
    }


def test_execute_with_retry_returns_a_success_at_once(live_url: str) -> None:
    guide = _guide_functions(live_url)
    result = guide["execute_with_retry"]("print('ok')", {})
    assert result["success"] is True and result["stdout"] == "ok\n"
    assert len(guide["calls"]) == 1


def test_execute_with_retry_does_not_retry_a_code_error(live_url: str) -> None:
    guide = _guide_functions(live_url)
    result = guide["execute_with_retry"]("def broken(", {})
    assert result["success"] is False and "SyntaxError" in result["stderr"]
    assert result["error_type"] == "syntax_error"
    assert len(guide["calls"]) == 1


def test_execute_safely_reports_an_unreachable_server() -> None:
    guide = _guide_functions("http://127.0.0.1:9")  # nothing listens on the discard port
    assert guide["execute_safely"]("print(1)", {}) == {"success": False, "error": "Cannot connect to Tako VM"}


def test_check_system_health_is_empty_when_healthy(live_url: str) -> None:
    guide = _guide_functions(live_url)
    guide["check_system_health"]()
    time.sleep(0.5)  # the engine probe runs in the background
    assert guide["check_system_health"]() == []


def test_check_system_health_reports_an_open_breaker_and_a_long_dlq(live_url: str) -> None:
    for _ in range(5):
        breaker_failure("connection refused")
    environment = Environment.objects.get(name="default")
    for _ in range(11):
        execution = execution_create(code="1", input_data={}, environment=environment)
        Execution.objects.filter(pk=execution.pk).update(status="failed", error_type="internal_error")
        execution.refresh_from_db()
        dead_letter_add(execution)
    issues = _guide_functions(live_url)["check_system_health"]()
    assert issues == [
        "System degraded: open",
        "Circuit breaker open - Docker issues",
        "High DLQ count: 11 failed jobs",
    ]
