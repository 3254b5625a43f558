"""Tiny helpers that read settings from the environment and fail loudly on bad values.

Every bad value raises ImproperlyConfigured naming its variable; the entry points (manage.py,
takoweb.serve, takoweb.asgi) print that one line and exit, through `exit_on_bad_settings()`.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager

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


def _within(name: str, value: float, minimum: float | None, maximum: float | None) -> None:
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ImproperlyConfigured(f"{name} must be at most {maximum}, got {value}")


def envint(name: str, default: int, *, minimum: int | None = None, maximum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, got {raw!r}") from None
    _within(name, value, minimum, maximum)
    return value


def envfloat(name: str, default: float, *, minimum: float | None = None, maximum: float | None = None) -> float:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number such as 0.5, got {raw!r}") from None
    if not math.isfinite(value):
        raise ImproperlyConfigured(f"{name} must be a finite number, got {raw!r}")
    _within(name, value, minimum, maximum)
    return value


_MEMORY = re.compile(r"^([0-9]+)([kmg]?)$", re.IGNORECASE)
_MEMORY_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def machine_memory() -> int:
    """Bytes of memory this machine has."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def envmemory(name: str, default: int, *, minimum: int, maximum: int) -> int:
    """A size in bytes, written as 512m, 16g or a number of bytes."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    found = _MEMORY.match(raw.strip())
    if not found:
        raise ImproperlyConfigured(f"{name} must be a size such as 512m or 16g, got {raw!r}")
    value = int(found.group(1)) * _MEMORY_UNITS[found.group(2).lower()]
    if value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum // 1024**2}m, got {raw}")
    if value > maximum:
        raise ImproperlyConfigured(
            f"{name}={raw} is more than this machine's memory ({maximum / 1024**3:.1f} GiB): "
            "the budget would let containers run that the machine cannot hold"
        )
    return value


def envchoice(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = os.environ.get(name, default)
    if value not in choices:
        raise ImproperlyConfigured(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


def envname(name: str, default: str) -> str:
    """A short name used as a key elsewhere (letters, digits, '.', '_', '-'; at most 63)."""
    value = os.environ.get(name, default)
    if not _NAME.match(value):
        raise ImproperlyConfigured(
            f"{name} must be 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit, got {value!r}"
        )
    return value


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def envloglevel(name: str, default: str) -> str:
    """A logging level name, in any case (logging itself would fail later with no name to it)."""
    raw = os.environ.get(name, default)
    value = raw.strip().upper()
    if value not in LOG_LEVELS:
        raise ImproperlyConfigured(f"{name} must be one of {', '.join(LOG_LEVELS)}, got {raw!r}")
    return value


def envlist(name: str, default: str) -> list[str]:
    """A comma-separated list with at least one item (an empty one is an error, not [''])."""
    raw = os.environ.get(name, default)
    items = [item.strip() for item in raw.split(",") if item.strip()]
    if not items:
        raise ImproperlyConfigured(f"{name} must list at least one value (comma-separated), got {raw!r}")
    return items


_HOSTNAME = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*$")


def envaddress(name: str, default: str) -> str:
    """An address to bind to: an IP address (IPv4 or IPv6) or a host name, without a port."""
    value = os.environ.get(name, default).strip()
    try:
        ipaddress.ip_address(value)
    except ValueError:
        if not _HOSTNAME.match(value):
            raise ImproperlyConfigured(
                f"{name} must be an address to bind to (127.0.0.1, 0.0.0.0, ::1, localhost) with no port, got {value!r}"
            ) from None
    return value


def env_database(name: str, *, conn_max_age: int = 60) -> dict | None:
    """Django's DATABASES entry from a URL (postgres://user:password@host:5432/db or sqlite:///path),
    or None when the variable is not set. `conn_max_age`: seconds a connection is kept for reuse."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    import dj_database_url

    try:
        database = dj_database_url.parse(raw, conn_max_age=conn_max_age, conn_health_checks=True)
    except ValueError as exc:
        raise ImproperlyConfigured(
            f"{name} is not a database URL ({exc}); use postgres://user:password@host:5432/name"
        ) from None
    engine = database.get("ENGINE", "")
    if engine not in ("django.db.backends.postgresql", "django.db.backends.sqlite3"):
        raise ImproperlyConfigured(f"{name}: only PostgreSQL (postgres://…) and SQLite (sqlite:///…) are supported")
    if not database.get("NAME"):
        raise ImproperlyConfigured(f"{name} names no database: add it as the path, e.g. postgres://host:5432/tako")
    if engine == "django.db.backends.postgresql":  # an unreachable server fails in seconds, not minutes
        database.setdefault("OPTIONS", {}).setdefault("connect_timeout", 5)
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


@contextmanager
def exit_on_bad_settings() -> Iterator[None]:
    """A bad setting ends the process with one line naming it (exit status 2), not a traceback."""
    try:
        yield
    except ImproperlyConfigured as exc:
        print(f"tako: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
