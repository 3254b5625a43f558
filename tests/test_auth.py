"""API keys, scopes, rate limits and request limits, through the HTTP API."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import pytest
import requests
from django.conf import settings
from django.contrib.auth.models import User
from django.core.cache import cache
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from executions.models import ApiKey, Environment, Execution
from executions.services import execution_create
from tests.support import ROOT


@pytest.fixture(autouse=True)
def _keys_required(settings) -> None:
    settings.TAKO_ALLOW_ANONYMOUS = False
    settings.TAKO_RATE_LIMIT_PER_MINUTE = 600
    cache.clear()  # rate-limit counters


@pytest.fixture
def alice(db) -> User:
    return User.objects.create_user("alice", password="pw-for-tests-only")


def key_for(user: User, scope: str = "execute") -> str:
    return ApiKey.issue(name="script", owner=user, scope=scope)[1]


def test_no_key_is_401(api_nodocker) -> None:
    response = api_nodocker.get("/executions")
    assert response.status_code == 401
    assert response.json()["detail"].startswith("Authentication required")
    assert response["WWW-Authenticate"] == 'Bearer realm="tako"'
    assert api_nodocker.post("/execute/async", {"code": "1"}).status_code == 401
    assert Execution.objects.count() == 0


@pytest.mark.parametrize("header", ["X-API-Key", "Authorization"])
def test_a_valid_key_is_accepted_in_either_header(api_nodocker, alice, header: str) -> None:
    key = key_for(alice)
    value = f"Bearer {key}" if header == "Authorization" else key
    response = api_nodocker.get("/executions", **{f"HTTP_{header.upper().replace('-', '_')}": value})
    assert response.status_code == 200
    assert ApiKey.objects.get().last_used_at is not None


def test_bad_revoked_foreign_and_query_string_keys_are_401(api_nodocker, alice) -> None:
    key = key_for(alice)
    assert api_nodocker.get("/executions", HTTP_X_API_KEY="tako_not-a-key").status_code == 401
    assert api_nodocker.get("/executions", HTTP_X_API_KEY="tako_" + "x" * 43).status_code == 401  # another deployment's
    query = api_nodocker.get(f"/executions?api_key={key}")
    assert query.status_code == 401 and "query string" in query.json()["detail"]
    ApiKey.objects.update(revoked_at=timezone.now())
    revoked = api_nodocker.get("/executions", HTTP_X_API_KEY=key)
    assert revoked.status_code == 401 and revoked.json()["detail"].startswith("This API key was revoked at 20")


def test_admin_endpoints_need_the_admin_scope(api_nodocker, alice) -> None:
    execute, admin = key_for(alice), key_for(alice, "admin")
    for method, path in [("GET", "/dlq"), ("GET", "/dlq/stats"), ("DELETE", "/dlq/1"), ("POST", "/dlq/1/requeue"),
                         ("POST", "/job-types/default/build"), ("GET", "/metrics")]:  # fmt: skip
        response = api_nodocker.client.generic(method, path, HTTP_X_API_KEY=execute)
        assert response.status_code == 403, (method, path)
        assert response.json()["detail"] == "This needs an API key with the admin scope"
    assert api_nodocker.get("/dlq", HTTP_X_API_KEY=admin).status_code == 200


def test_health_and_the_api_document_are_public(api_nodocker) -> None:
    assert api_nodocker.get("/openapi.json").status_code == 200
    assert Client().get("/health").status_code == 200


def test_an_execute_key_sees_only_its_owners_jobs(api_nodocker, alice) -> None:
    bob = User.objects.create_user("bob", password="p")
    environment = Environment.objects.get(name="default")
    theirs = execution_create(code="1", input_data={}, environment=environment, submitted_by=bob)
    key = key_for(alice)
    mine = api_nodocker.post("/execute/async", {"code": "print(1)"}, HTTP_X_API_KEY=key).json()["job_id"]
    assert Execution.objects.get(pk=mine).submitted_by == alice
    listed = [i["execution_id"] for i in api_nodocker.get("/executions", HTTP_X_API_KEY=key).json()["items"]]
    assert listed == [mine]
    assert api_nodocker.get(f"/executions/{theirs.pk}", HTTP_X_API_KEY=key).status_code == 404
    assert api_nodocker.get(f"/jobs/{theirs.pk}", HTTP_X_API_KEY=key).status_code == 404
    assert api_nodocker.post(f"/jobs/{theirs.pk}/cancel", HTTP_X_API_KEY=key).status_code == 404
    admin_view = api_nodocker.get(f"/jobs/{theirs.pk}", HTTP_X_API_KEY=key_for(alice, "admin"))
    assert admin_view.status_code == 200


def test_the_browsers_session_works_for_the_api(db, alice) -> None:
    client = Client()
    client.force_login(alice)
    assert client.get("/executions").status_code == 200
    assert client.get("/dlq").status_code == 403  # an analyst, not staff


def test_requests_per_minute_are_limited(api_nodocker, alice, settings) -> None:
    settings.TAKO_RATE_LIMIT_PER_MINUTE = 3
    key = key_for(alice)
    if time.time() % 60 > 45:  # counters start again each minute: do not straddle two
        time.sleep(61 - time.time() % 60)
    codes = [api_nodocker.get("/executions", HTTP_X_API_KEY=key).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    limited = api_nodocker.get("/executions", HTTP_X_API_KEY=key)
    assert 1 <= int(limited["Retry-After"]) <= 60
    assert limited.json()["detail"] == "Rate limit exceeded: 3 requests per minute"
    assert (limited["RateLimit-Limit"], limited["RateLimit-Remaining"]) == ("3", "0")
    assert limited["RateLimit-Reset"] == limited["Retry-After"]
    other = key_for(User.objects.create_user("carol", password="p"))
    assert api_nodocker.get("/executions", HTTP_X_API_KEY=other).status_code == 200  # per key


def test_jobs_in_progress_are_limited_per_caller(api_nodocker, alice, settings) -> None:
    settings.TAKO_MAX_JOBS_IN_PROGRESS = 1
    key = key_for(alice)
    assert api_nodocker.post("/execute/async", {"code": "1"}, HTTP_X_API_KEY=key).status_code == 202
    second = api_nodocker.post("/execute/async", {"code": "2"}, HTTP_X_API_KEY=key)
    assert second.status_code == 429 and second["Retry-After"] == "5"
    assert second.json()["detail"] == "Too many jobs in progress (1); wait for some to finish"


def test_anonymous_use_with_a_public_bind_refuses_to_start() -> None:
    env = {**os.environ, "TAKO_ALLOW_ANONYMOUS": "1", "HOST": "0.0.0.0", "TAKO_DEBUG": "0"}  # noqa: S104
    done = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode != 0
    assert "TAKO_ALLOW_ANONYMOUS is on while the service binds 0.0.0.0" in done.stderr


def test_the_key_command_creates_lists_and_revokes(alice, capsys) -> None:
    call_command("tako_apikey", "create", "ci", "--user", "alice", "--scope", "admin")
    secret = capsys.readouterr().out.splitlines()[1]
    key = ApiKey.objects.get(key_hash=ApiKey.hash(secret))
    assert (key.scope, key.owner, secret.startswith("tako_")) == ("admin", alice, True)
    assert secret not in str(list(ApiKey.objects.values()))  # only the hash is stored
    call_command("tako_apikey", "list")
    assert "ci\tactive" in capsys.readouterr().out
    call_command("tako_apikey", "revoke", str(key.pk))
    assert ApiKey.objects.get(pk=key.pk).revoked_at is not None


def test_absurd_bodies_and_headers_are_refused_early(live_url: str) -> None:
    big = requests.post(f"{live_url}/execute", data=b"x" * (settings.TAKO_MAX_REQUEST_BYTES + 1), timeout=30,
                        headers={"Content-Type": "application/json"})  # fmt: skip
    assert big.status_code == 413 and big.json()["detail"].startswith("Request body too large")
    headers = requests.get(f"{live_url}/health", headers={"X-Junk": "y" * 100_000}, timeout=30)
    assert headers.status_code == 431
    assert headers.json()["detail"] == "Request headers too large"


def test_the_tako_client_sends_a_key(live_url: str, alice) -> None:
    from tako_vm import TakoVM

    client = TakoVM(live_url, headers={"X-API-Key": key_for(alice)})
    job_id = client.submit_code("print('with a key')")
    assert client.get_result(job_id, timeout=60)["stdout"] == "with a key\n"
    assert Execution.objects.get(pk=job_id).submitted_by == alice  # the key was what identified us


def test_the_production_settings_pass_djangos_deploy_check() -> None:
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_ALLOW_ASYNC_UNSAFE"}  # (the tests' own)
    env |= {"TAKO_HTTPS": "1", "TAKO_ALLOWED_HOSTS": "tako.example.com", "TAKO_DEBUG": "0"}
    done = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no issues" in done.stdout


def test_security_headers_on_every_kind_of_response(db) -> None:
    client = Client()
    for path in ("/health", "/executions", "/ui/login/", "/docs", "/nope"):
        response = client.get(path)
        assert response["X-Content-Type-Options"] == "nosniff", path
        assert response["X-Frame-Options"] == "DENY", path
        assert response["Referrer-Policy"] == "same-origin", path


# -- CSRF: a session is the browser's, and another site can make the browser send it ----------------
@pytest.fixture
def boss(db) -> User:
    return User.objects.create_user("boss", password="pw-for-tests-only", is_staff=True)


def _browser(user: User) -> Client:
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    return client


def test_a_session_cannot_change_anything_through_the_api_without_the_csrf_token(boss, monkeypatch) -> None:
    from executions import services

    monkeypatch.setattr(services, "environment_build", lambda **_: pytest.fail("built for another site"))
    client = _browser(boss)
    evil = {"HTTP_ORIGIN": "https://evil.example"}
    for path in ("/job-types/default/build", "/execute", "/execute/async"):
        response = client.post(path, '{"code": "print(1)"}', content_type="application/json", **evil)
        assert response.status_code == 403, path
        body = response.json()
        assert set(body) == {"detail", "correlation_id"} and body["detail"].startswith("CSRF check failed"), body
    without_token = client.post("/execute/async", '{"code": "print(1)"}', content_type="application/json")
    assert without_token.status_code == 403
    assert Execution.objects.count() == 0
    assert client.get("/executions").status_code == 200  # reading needs no token


def test_a_session_with_the_csrf_token_may_use_the_api(boss) -> None:
    client = _browser(boss)
    client.get("/ui/new/")  # any page sets the csrftoken cookie
    token = client.cookies["csrftoken"].value
    response = client.post(
        "/execute/async", '{"code": "print(1)"}', content_type="application/json", HTTP_X_CSRFTOKEN=token
    )
    assert response.status_code == 202


def test_an_api_key_needs_no_csrf_token(alice) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)  # a session too: the key is what authenticates
    response = client.post(
        "/execute/async",
        '{"code": "print(1)"}',
        content_type="application/json",
        HTTP_X_API_KEY=key_for(alice),
        HTTP_ORIGIN="https://evil.example",
    )
    assert response.status_code == 202


def test_anonymous_loopback_use_needs_no_csrf_token(db, settings) -> None:
    settings.TAKO_ALLOW_ANONYMOUS = True
    response = Client(enforce_csrf_checks=True).post(
        "/execute/async", '{"code": "print(1)"}', content_type="application/json"
    )
    assert response.status_code == 202


def test_the_api_docs_viewer_sends_the_csrf_token_with_the_session(db) -> None:
    """Swagger UI's "Try it out" uses the login session: it must pass the check above."""
    client = Client()
    html = client.get("/docs").content.decode()
    token = re.search(r'data-csrf-token="([^"]+)"', html)
    assert token and client.cookies["csrftoken"].value
    assert "X-CSRFToken" in (ROOT / "static" / "js" / "api-docs.js").read_text()
