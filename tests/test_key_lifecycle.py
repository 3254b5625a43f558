"""API keys: expiry, rotation with a grace period, per-key rate limits; rate limits shared by
every process (counted in the database, or in Redis when the deployment has it), with
RateLimit-* headers."""

from __future__ import annotations

import time
from datetime import timedelta
from io import StringIO

import pytest
import requests
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from executions.models import ApiKey, AuditEvent, RateCounter
from executions.services.limits import UPSERT_COUNT, rate_counters_prune, request_count
from tests.support import service_database_env, start_daphne

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _keys_required(settings) -> None:
    settings.TAKO_ALLOW_ANONYMOUS = False
    settings.TAKO_RATE_LIMIT_PER_MINUTE = 600


@pytest.fixture
def alice(db) -> User:
    return User.objects.create_user("alice", password="a long enough password")


def well_inside_a_minute() -> None:
    """Counters start again each minute: a test that counts must not straddle two."""
    if time.time() % 60 > 45:
        time.sleep(61 - time.time() % 60)


def get(key: str, path: str = "/executions") -> object:
    return Client().get(path, HTTP_X_API_KEY=key)


def test_an_expired_key_is_401_naming_when_it_expired(alice: User) -> None:
    key, secret = ApiKey.issue(name="k", owner=alice)
    assert get(secret).status_code == 200
    ApiKey.objects.filter(pk=key.pk).update(expires_at=timezone.now() - timedelta(minutes=1))
    response = get(secret)
    assert response.status_code == 401 and response.json()["detail"].startswith("This API key expired at 20")


def test_rotation_gives_a_new_secret_and_the_old_one_works_for_the_grace_period(alice: User) -> None:
    key, old = ApiKey.issue(name="k", owner=alice)
    new = key.rotate(grace=timedelta(hours=1))
    assert new != old and key.prefix == new[:12]
    assert get(new).status_code == 200 and get(old).status_code == 200  # within the grace
    ApiKey.objects.filter(pk=key.pk).update(previous_valid_until=timezone.now() - timedelta(seconds=1))
    response = get(old)
    assert response.status_code == 401 and "was rotated; its old secret stopped working at" in response.json()["detail"]
    assert get(new).status_code == 200
    key.rotate(grace=timedelta(0))  # a second rotation: the first secret is gone for good
    assert get(old).json()["detail"] == "Invalid API key"


def test_the_command_line_makes_expiring_keys_and_rotates(alice: User) -> None:
    out = StringIO()
    call_command("tako_apikey", "create", "nightly", "--user", "alice", "--expires-in-days", "7", stdout=out)
    key = ApiKey.objects.get(name="nightly")
    assert key.expires_at is not None and timedelta(days=6) < key.expires_at - timezone.now() <= timedelta(days=7)
    first = out.getvalue().splitlines()[1]
    out = StringIO()
    call_command("tako_apikey", "rotate", str(key.pk), "--grace-hours", "0", stdout=out)
    second = out.getvalue().splitlines()[1]
    assert get(second).status_code == 200 and get(first).status_code == 401
    assert list(AuditEvent.objects.order_by("id").values_list("action", flat=True)) == [
        "apikey.create",
        "apikey.rotate",
    ]


def test_an_admin_rotates_a_key_and_sees_the_new_secret_once(alice: User, admin_user: User) -> None:
    key, old = ApiKey.issue(name="k", owner=alice)
    browser = Client()
    browser.force_login(admin_user)
    page = browser.post(
        "/admin/executions/apikey/", {"action": "rotate", "_selected_action": [key.pk]}, follow=True
    ).content.decode()
    new = page.split("New secret of ")[1].split("): ")[1].split("<")[0].strip()
    assert get(new).status_code == 200 and get(old).status_code == 200  # the old one within the grace
    assert AuditEvent.objects.filter(action="apikey.rotate", actor="admin").exists()


def test_a_key_has_its_own_rate_limit_and_every_response_says_where_it_stands(alice: User, settings) -> None:
    settings.TAKO_RATE_LIMIT_PER_MINUTE = 100
    key, secret = ApiKey.issue(name="k", owner=alice)
    ApiKey.objects.filter(pk=key.pk).update(rate_limit_per_minute=2)
    well_inside_a_minute()
    first = get(secret)
    assert (first.status_code, first["RateLimit-Limit"], first["RateLimit-Remaining"]) == (200, "2", "1")
    assert 1 <= int(first["RateLimit-Reset"]) <= 60
    assert get(secret).status_code == 200
    assert get(secret).status_code == 429
    ApiKey.objects.filter(pk=key.pk).update(rate_limit_per_minute=0)  # 0: no limit for this key
    unlimited = get(secret)
    assert unlimited.status_code == 200 and "RateLimit-Limit" not in unlimited


def test_counters_are_one_atomic_upsert_on_the_shared_database(settings) -> None:
    settings.REDIS_URL = ""  # (the scale-out pass has Redis, where counters go otherwise)
    assert RateCounter._meta.db_table in UPSERT_COUNT  # the statement names the model's table
    well_inside_a_minute()
    states = [request_count("key:42", 5) for _ in range(3)]
    assert [s.remaining for s in states if s] == [4, 3, 2]
    assert RateCounter.objects.get(key="key:42").count == 3
    RateCounter.objects.create(key="key:42", window=1, count=9)  # a minute long gone
    assert rate_counters_prune() == 1 and RateCounter.objects.count() == 1


def test_while_redis_is_away_the_database_counts(settings, free_port_nothing_listens: str) -> None:
    """A Redis restart must not turn every API request into a 500: the limit is counted on the
    database meanwhile (tests/test_chaos_scaleout.py kills Redis under a stream of requests)."""
    settings.REDIS_URL = free_port_nothing_listens
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": settings.REDIS_URL}
    }
    well_inside_a_minute()
    states = [request_count("key:43", 5) for _ in range(2)]
    assert [s.remaining for s in states if s] == [4, 3]
    assert RateCounter.objects.get(key="key:43").count == 2


@pytest.fixture
def free_port_nothing_listens() -> str:
    from tests.support import free_port

    return f"redis://127.0.0.1:{free_port()}/0"


@pytest.mark.django_db(transaction=True)
def test_two_web_processes_share_one_limit(alice: User, service_logs) -> None:
    """Two daphne processes on one database: a key gets its limit once, not once per process."""
    _, secret = ApiKey.issue(name="k", owner=alice)
    env = {"TAKO_RATE_LIMIT_PER_MINUTE": "6", "TAKO_ALLOW_ANONYMOUS": "0", **service_database_env()}
    first, first_url = start_daphne(service_logs / "rate-1.log", **env)
    second, second_url = start_daphne(service_logs / "rate-2.log", **env)
    well_inside_a_minute()
    try:
        codes = [
            requests.get(f"{url}/executions", headers={"X-API-Key": secret}, timeout=10).status_code
            for url in (first_url, second_url) * 4
        ]
    finally:
        first.stop()
        second.stop()
    assert codes.count(200) == 6 and codes[-2:] == [429, 429], codes
