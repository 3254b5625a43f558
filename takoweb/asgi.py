"""ASGI entry point: HTTP through Django, websockets through Channels (served by daphne)."""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "takoweb.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402  (needs Django set up)
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from executions.middleware import RequestLimits  # noqa: E402

try:  # under daphne: let big headers through to RequestLimits, which answers 431 (Twisted would hang up)
    from twisted.web.http import HTTPChannel

    HTTPChannel.totalHeadersSize = HTTPChannel.MAX_LENGTH = 1024 * 1024
except ImportError:  # pragma: no cover
    pass
from executions.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": RequestLimits(django_asgi_app),
        "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)
