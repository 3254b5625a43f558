"""Telling open pages that an execution changed. Pages always read the database (the worker is
another process); with a shared channel layer (Redis) the worker also wakes them at once."""

from __future__ import annotations

import logging
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings

logger = logging.getLogger(__name__)


def execution_group(execution_id: Any) -> str:
    return f"execution.{execution_id}"


def notify_execution_changed(execution_id: Any) -> None:
    if not settings.REDIS_URL:  # an in-memory layer cannot reach daphne from a worker process
        return
    try:
        async_to_sync(get_channel_layer().group_send)(execution_group(execution_id), {"type": "execution.changed"})
    except Exception:  # live updates are best effort; pages also poll the database
        logger.warning("Could not notify pages about %s", execution_id, exc_info=True)
