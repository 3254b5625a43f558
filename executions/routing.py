"""Websocket routes (under /ws/, so they never collide with the JSON API or the pages)."""

from __future__ import annotations

from django.urls import path

from executions.consumers import ExecutionConsumer

websocket_urlpatterns = [
    path("ws/executions/<uuid:execution_id>/", ExecutionConsumer.as_asgi()),
]
