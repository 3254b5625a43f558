"""Websocket routes (under /ws/, so they never collide with the JSON API or the pages)."""

from __future__ import annotations

websocket_urlpatterns: list = []
