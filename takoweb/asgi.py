"""ASGI entry point: HTTP through Django, websockets through Channels (served by daphne)."""

from __future__ import annotations

import os

import django
from django.conf import settings

from takoweb.env import exit_on_bad_settings

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "takoweb.settings")
if not settings.configured:  # this module loads them (`daphne takoweb.asgi:application`): the web role
    os.environ.setdefault("TAKO_PROCESS_ROLE", "web")
with exit_on_bad_settings():
    django.setup(set_prefix=False)  # (as django.core.asgi.get_asgi_application does)

# What follows needs Django set up.
from channels.auth import AuthMiddlewareStack
from channels.routing import ProtocolTypeRouter, URLRouter
from channels.security.websocket import AllowedHostsOriginValidator

from executions.api.events import EventStreams
from executions.middleware import RequestLimits
from takoweb.handlers import ReusedThreadsASGIHandler

try:  # under daphne: let big headers through to RequestLimits, which answers 431 (Twisted would hang up)
    from twisted.web.http import HTTPChannel

    HTTPChannel.totalHeadersSize = HTTPChannel.MAX_LENGTH = 1024 * 1024
    # Twisted parses a multipart body itself (into request.args, which daphne never reads) and
    # answers one it cannot parse with an empty 400 before the service sees it; the service parses
    # bodies itself (api/routing.py), answering in its own JSON errors, and a large upload is not
    # parsed twice.
    from daphne.http_protocol import WebRequest

    _web_request_init = WebRequest.__init__

    def _init_without_form_parsing(self: WebRequest, *args: object, **kwargs: object) -> None:
        _web_request_init(self, *args, **kwargs)
        self._parsePOSTFormSubmission = False  # (set per request by Twisted's own __init__)

    WebRequest.__init__ = _init_without_form_parsing
except ImportError:  # pragma: no cover
    pass
from executions.routing import websocket_urlpatterns

if settings.TAKO_PROCESS_ROLE == "web":  # the web server beats (executions/services/heartbeats.py)
    from executions.models import ProcessBeat
    from executions.services.heartbeats import Heartbeat

    Heartbeat(ProcessBeat.Role.WEB).start_thread()

django_asgi_app = ReusedThreadsASGIHandler()  # Django's ASGIHandler, its request threads reused
application = ProtocolTypeRouter(
    {
        "http": RequestLimits(EventStreams(django_asgi_app)),
        "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)
