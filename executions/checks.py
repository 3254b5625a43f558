"""Django system checks: settings that are each valid but unsafe together.

They run before every start (`manage.py check`, `check --deploy`, the worker, the web server
through takoweb.serve), which refuses to start on an Error.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, register


def is_loopback(address: str) -> bool:
    """Only this machine can reach a server bound to `address` (127.0.0.0/8, ::1, localhost)."""
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:
        return False


@register(Tags.security)
def anonymous_use_stays_on_loopback(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Anonymous use lets whoever reaches the server run code (and administer it): loopback only."""
    if not settings.TAKO_ALLOW_ANONYMOUS or is_loopback(settings.TAKO_BIND_ADDRESS):
        return []
    return [
        Error(
            f"TAKO_ALLOW_ANONYMOUS is on while the service binds {settings.TAKO_BIND_ADDRESS} (HOST): "
            "anyone who can reach it could run code.",
            hint="Turn TAKO_ALLOW_ANONYMOUS off and use API keys (manage.py tako_apikey), or set HOST=127.0.0.1.",
            id="tako.E001",
        )
    ]
