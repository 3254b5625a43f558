"""Settings from the environment: a bad value stops every entry point with one line naming it;
the process role decides persistent database connections; the anonymous-use system check."""

from __future__ import annotations

import os
import runpy
import subprocess
import sys
from typing import Any

import pytest
from django.core.checks import run_checks
from django.core.exceptions import ImproperlyConfigured

from takoweb.env import envfloat, envlist, envloglevel
from tests.support import ROOT

# A PostgreSQL URL nothing listens on: reading the settings never connects.
POSTGRES_URL = "postgres://tako:secret@127.0.0.1:9/tako"

EVERY_INTERFACE = "0.0.0.0"  # noqa: S104  (what the checks refuse; nothing binds it)


def _env(**overrides: str) -> dict[str, str]:
    """This environment without the variables under test, plus `overrides`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAKO_") or k == "TAKO_DATA_DIR"}
    for name in ("HOST", "PORT", "DATABASE_URL", "REDIS_URL", "DJANGO_ALLOW_ASYNC_UNSAFE"):
        env.pop(name, None)
    return env | overrides


def _run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=_env(**env), capture_output=True, text=True, timeout=120
    )


# -- every bad value: one line naming it, no traceback ---------------------------------------------
BAD_VALUES = {
    "bool": ("TAKO_DEBUG", "maybe"),
    "int": ("TAKO_MAX_WORKERS", "many"),
    "int-bounds": ("TAKO_MAX_TIMEOUT", "0"),
    "float": ("TAKO_RETRY_BASE_DELAY", "fast"),
    "float-unit": ("TAKO_QUEUE_POLL", "1s"),
    "float-bounds": ("TAKO_QUEUE_POLL", "-1"),
    "choice": ("TAKO_LOG_FORMAT", "xml"),
    "log-level": ("TAKO_LOG_LEVEL", "verbose"),
    "list": ("TAKO_ALLOWED_HOSTS", ""),
    "list-of-commas": ("TAKO_ALLOWED_HOSTS", " , "),
    "database-url": ("DATABASE_URL", "mysql://tako@127.0.0.1/tako"),
    "redis-url": ("REDIS_URL", "http://127.0.0.1:6379"),
    "address": ("HOST", "0.0.0.0:8000"),
    "port": ("PORT", "80000"),
    "role": ("TAKO_PROCESS_ROLE", "both"),
    "memory-size": ("TAKO_HOST_MEMORY", "lots"),
    "memory-over-the-machine": ("TAKO_HOST_MEMORY", "4096g"),
    "cpus-over-the-machine": ("TAKO_HOST_CPUS", "4096"),
    "request-too-small-for-files": ("TAKO_MAX_REQUEST_BYTES", "2097152"),
}


def _assert_one_line_naming(done: subprocess.CompletedProcess[str], name: str) -> None:
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    assert done.stderr.startswith(f"tako: {name}"), done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


@pytest.mark.parametrize(("name", "value"), BAD_VALUES.values(), ids=BAD_VALUES.keys())
def test_a_bad_value_stops_manage_py_with_one_line_naming_it(name: str, value: str) -> None:
    _assert_one_line_naming(_run("manage.py", "check", **{name: value}), name)


def test_a_bad_value_stops_a_custom_command_too() -> None:
    # Django's command line goes on without the settings for commands it cannot find without them.
    _assert_one_line_naming(_run("manage.py", "tako_worker", TAKO_LOG_LEVEL="verbose"), "TAKO_LOG_LEVEL")


def test_a_bad_value_stops_the_web_server_with_one_line() -> None:
    _assert_one_line_naming(_run("-m", "takoweb.serve", TAKO_QUEUE_POLL="1s"), "TAKO_QUEUE_POLL")


def test_a_bad_value_stops_the_asgi_module_with_one_line() -> None:
    done = _run("-c", "import takoweb.asgi", TAKO_ALLOWED_HOSTS="")
    _assert_one_line_naming(done, "TAKO_ALLOWED_HOSTS")


def test_a_good_configuration_passes_the_check() -> None:
    done = _run(
        "manage.py",
        "check",
        TAKO_DEBUG="0",
        TAKO_MAX_WORKERS="4",
        TAKO_RETRY_BASE_DELAY="0.5",
        TAKO_QUEUE_POLL="0.05",
        TAKO_LOG_FORMAT="json",
        TAKO_LOG_LEVEL="warning",
        TAKO_ALLOWED_HOSTS="tako.example.com, localhost,",
        REDIS_URL="redis://127.0.0.1:6379/0",
        HOST="::1",
        PORT="8123",
    )
    assert done.returncode == 0, done.stderr
    assert "System check identified no issues" in done.stdout


# -- the helpers, in process -------------------------------------------------------------------------
def test_envfloat_reads_a_number_within_its_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("X_DELAY", "0.25")
    assert envfloat("X_DELAY", 1.0, minimum=0, maximum=1) == 0.25
    monkeypatch.delenv("X_DELAY")
    assert envfloat("X_DELAY", 1.0) == 1.0
    for raw, message in (("2", "at most 1"), ("-0.1", "at least 0"), ("nan", "finite"), ("inf", "finite")):
        monkeypatch.setenv("X_DELAY", raw)
        with pytest.raises(ImproperlyConfigured, match=f"X_DELAY must be .*{message}"):
            envfloat("X_DELAY", 1.0, minimum=0, maximum=1)


def test_envloglevel_accepts_any_case_and_envlist_drops_empty_items(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("X_LEVEL", " debug ")
    assert envloglevel("X_LEVEL", "INFO") == "DEBUG"
    monkeypatch.setenv("X_HOSTS", "a.example, ,b.example,")
    assert envlist("X_HOSTS", "") == ["a.example", "b.example"]


# -- persistent database connections: none under ASGI, 60 s in workers ------------------------------
def _settings_under(monkeypatch: pytest.MonkeyPatch, **env: str) -> dict[str, Any]:
    """The settings module run afresh in this environment (the live settings stay untouched)."""
    monkeypatch.setenv("DATABASE_URL", POSTGRES_URL)
    monkeypatch.delenv("TAKO_PROCESS_ROLE", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(ROOT / "takoweb" / "settings.py"))


@pytest.mark.parametrize("role", ["web", "worker", None])  # (None: commands)
def test_every_role_keeps_connections_for_a_minute(monkeypatch: pytest.MonkeyPatch, role: str | None) -> None:
    """The web server too: its request threads are kept (takoweb/handlers.py), and their connections."""
    database = _settings_under(monkeypatch, **({"TAKO_PROCESS_ROLE": role} if role else {}))["DATABASES"]["default"]
    assert (database["ENGINE"], database["CONN_MAX_AGE"]) == ("django.db.backends.postgresql", 60)


def test_the_queue_name_names_both_clusters_and_refuses_a_bad_one(monkeypatch: pytest.MonkeyPatch) -> None:
    configured = _settings_under(monkeypatch, TAKO_QUEUE_NAME="tako-blue")
    assert configured["Q_CLUSTER"]["name"] == "tako-blue"
    assert configured["WEBHOOK_QUEUE"] == "tako-blue-webhooks"
    assert list(configured["Q_CLUSTER"]["ALT_CLUSTERS"]) == ["tako-blue-webhooks"]
    for bad in ("", "tako blue", "-tako", "x" * 64):
        monkeypatch.setenv("TAKO_QUEUE_NAME", bad)
        with pytest.raises(ImproperlyConfigured, match="TAKO_QUEUE_NAME must be 1-63 letters"):
            runpy.run_path(str(ROOT / "takoweb" / "settings.py"))


def test_the_web_entry_points_take_the_web_role() -> None:
    show = "from django.conf import settings as s; print(s.TAKO_PROCESS_ROLE, s.DATABASES['default']['CONN_MAX_AGE'])"
    through_asgi = _run("-c", f"import takoweb.asgi; {show}", DATABASE_URL=POSTGRES_URL)
    assert through_asgi.stdout.split() == ["web", "60"], through_asgi.stderr
    through_manage = _run("manage.py", "shell", "--no-imports", "-c", show, DATABASE_URL=POSTGRES_URL)
    assert through_manage.stdout.split() == ["worker", "60"], through_manage.stderr


# -- anonymous use only on loopback: a system check ---------------------------------------------------
def _anonymous_errors() -> list[str]:
    return [message.id for message in run_checks() if message.id == "tako.E001"]


@pytest.mark.parametrize("address", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_anonymous_use_on_loopback_passes_the_check(settings: Any, address: str) -> None:
    settings.TAKO_ALLOW_ANONYMOUS, settings.TAKO_BIND_ADDRESS = True, address
    assert _anonymous_errors() == []


@pytest.mark.parametrize("address", [EVERY_INTERFACE, "::", "10.1.2.3", "tako.example.com"])
def test_anonymous_use_on_a_public_bind_fails_the_check(settings: Any, address: str) -> None:
    settings.TAKO_ALLOW_ANONYMOUS, settings.TAKO_BIND_ADDRESS = True, address
    assert _anonymous_errors() == ["tako.E001"]
    settings.TAKO_ALLOW_ANONYMOUS = False  # with API keys any bind is fine
    assert _anonymous_errors() == []


def test_the_deploy_check_reports_anonymous_use_on_a_public_bind() -> None:
    done = _run("manage.py", "check", "--deploy", TAKO_ALLOW_ANONYMOUS="1", HOST=EVERY_INTERFACE, TAKO_DEBUG="1")
    assert done.returncode != 0
    assert "(tako.E001) TAKO_ALLOW_ANONYMOUS is on while the service binds 0.0.0.0" in done.stderr


def test_the_worker_refuses_to_start_with_anonymous_use_on_a_public_bind() -> None:
    done = _run("manage.py", "tako_worker", TAKO_ALLOW_ANONYMOUS="1", HOST=EVERY_INTERFACE)
    assert done.returncode != 0
    assert "tako.E001" in done.stderr
    assert "Recovered" not in done.stdout  # it stopped before doing anything
