"""Tiny helpers that read settings from the environment and fail loudly on bad values."""

from __future__ import annotations

import os

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def envstr(name: str, default: str) -> str:
    return os.environ.get(name, default)


def envbool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (1/0, true/false, yes/no, on/off), got {raw!r}")


def envint(name: str, default: int, *, minimum: int | None = None, maximum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ImproperlyConfigured(f"{name} must be at most {maximum}, got {value}")
    return value


def envchoice(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = os.environ.get(name, default)
    if value not in choices:
        raise ImproperlyConfigured(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


def env_database(name: str) -> dict | None:
    """Django's DATABASES entry from a URL (postgres://user:password@host:5432/db or sqlite:///path),
    or None when the variable is not set."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    import dj_database_url

    try:
        database = dj_database_url.parse(raw, conn_max_age=60, conn_health_checks=True)
    except ValueError as exc:
        raise ImproperlyConfigured(
            f"{name} is not a database URL ({exc}); use postgres://user:password@host:5432/name"
        ) from None
    engine = database.get("ENGINE", "")
    if engine not in ("django.db.backends.postgresql", "django.db.backends.sqlite3"):
        raise ImproperlyConfigured(f"{name}: only PostgreSQL (postgres://…) and SQLite (sqlite:///…) are supported")
    if not database.get("NAME"):
        raise ImproperlyConfigured(f"{name} names no database: add it as the path, e.g. postgres://host:5432/tako")
    return dict(database)


def env_redis_url(name: str) -> str:
    """A Redis URL (redis://, rediss:// or unix://), or "" when the variable is not set."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return ""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(raw)
        parts.port  # noqa: B018  (raises ValueError for a port that is not a number)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} is not a URL ({exc}); use redis://host:6379/0") from None
    if parts.scheme not in ("redis", "rediss", "unix") or (parts.scheme != "unix" and not parts.hostname):
        raise ImproperlyConfigured(f"{name} must look like redis://host:6379/0 (or rediss://, unix://), got {raw!r}")
    return raw
