from __future__ import annotations

import json
from typing import Any

from django import template

from executions.hints import HINTS, Hint

register = template.Library()


@register.filter
def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False)


@register.filter
def hint(error_type: str | None) -> Hint | None:
    return HINTS.get(error_type or "")


@register.simple_tag
def rich_outputs(execution: Any) -> dict[str, Any]:
    """`{% rich_outputs execution as outputs %}`: displays, figures and artifact previews
    (views/outputs.py), for the page and for the websocket's re-render of the result alike."""
    from executions.views.outputs import execution_outputs

    return execution_outputs(execution)
