"""Login throttling (django-axes): failed logins per user name and address, lockout, unlock."""

from __future__ import annotations

import pytest
from axes.models import AccessAttempt
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client

pytestmark = pytest.mark.django_db

PASSWORD = "a long enough password"


@pytest.fixture
def analyst(settings) -> User:
    settings.AXES_FAILURE_LIMIT = 3
    return User.objects.create_user("analyst", password=PASSWORD)


def log_in(address: str, password: str, path: str = "/ui/login/") -> object:
    return Client(REMOTE_ADDR=address).post(path, {"username": "analyst", "password": password})


def test_failed_logins_lock_the_name_out_from_that_address(analyst: User) -> None:
    for _ in range(2):
        assert log_in("10.0.0.1", "wrong").status_code == 200  # the form again, with its error
    locked = log_in("10.0.0.1", "wrong")
    assert locked.status_code == 429 and "Too many failed logins" in locked.content.decode()
    # Locked out: even the right password is refused, from that address.
    assert log_in("10.0.0.1", PASSWORD).status_code == 429
    # Another address is not locked out (the pair is): the real user still gets in.
    assert log_in("10.0.0.2", PASSWORD).status_code == 302


def test_the_admin_login_is_throttled_too(analyst: User) -> None:
    for _ in range(3):
        response = log_in("10.0.0.3", "wrong", path="/admin/login/")
    assert response.status_code == 429


def test_a_success_resets_the_count(analyst: User) -> None:
    for _ in range(2):
        log_in("10.0.0.4", "wrong")
    assert log_in("10.0.0.4", PASSWORD).status_code == 302
    for _ in range(2):
        assert log_in("10.0.0.4", "wrong").status_code == 200  # counted from zero again


def test_an_admin_unlocks_a_locked_out_name(analyst: User, admin_user: User) -> None:
    for _ in range(3):
        log_in("10.0.0.5", "wrong")
    assert log_in("10.0.0.5", PASSWORD).status_code == 429
    attempt = AccessAttempt.objects.get(username="analyst")
    admin = Client()
    admin.force_login(admin_user)
    deleted = admin.post(
        "/admin/axes/accessattempt/", {"action": "delete_selected", "_selected_action": [attempt.pk], "post": "yes"}
    )
    assert deleted.status_code == 302 and not AccessAttempt.objects.exists()
    assert log_in("10.0.0.5", PASSWORD).status_code == 302


def test_the_command_line_unlocks_too(analyst: User) -> None:
    for _ in range(3):
        log_in("10.0.0.6", "wrong")
    call_command("axes_reset_username", "analyst")
    assert log_in("10.0.0.6", PASSWORD).status_code == 302
