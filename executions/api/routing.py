"""How a request reaches an operation, as Tako VM's clients expect: GET also answers HEAD, a JSON
body is read strictly, and what ninja answers before any operation runs is Tako's JSON too."""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Callable
from typing import Any, TypeVar

import ninja
from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.db import connections
from django.http import HttpRequest, HttpResponseBase, HttpResponseNotAllowed
from ninja.params.models import Body, BodyModel
from ninja.types import TCallable

from executions.api.errors import ApiError, error
from executions.errors import InvalidRequest

T = TypeVar("T")


class Router(ninja.Router):
    def __init__(self, **kwargs: Any) -> None:
        # A response carries exactly the keys its values have: an optional field left out stays out.
        super().__init__(**{"exclude_unset": True, **kwargs})

    def get(self, path: str, **kwargs: Any) -> Callable[[TCallable], TCallable]:
        """A GET operation, which HEAD reaches too (as with Django's own views)."""
        return self.api_operation(["GET", "HEAD"], path, **kwargs)


# -- JSON bodies -------------------------------------------------------------------------------------
def read_json(request: HttpRequest, *, empty_is_object: bool) -> Any:
    """The request's JSON body: 415 for another content type, 400 if malformed, 422 for text
    holding a NUL character; with `empty_is_object`, no body at all reads as {}."""
    if empty_is_object and not request.body.strip():
        return {}
    content_type = request.content_type or ""
    if content_type and content_type != "application/json" and not content_type.endswith("+json"):
        raise ApiError(415, f"Content-Type must be application/json, not {content_type}")
    try:
        body = json.loads(request.body or b"")
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"Malformed JSON body: {exc}") from None
    field = _field_with_nul(body)
    if field is not None:
        # No database stores them in text (PostgreSQL refuses), and no Python source holds one.
        raise InvalidRequest({field or "body": ["Text must not contain NUL characters (\\u0000)"]})
    return body


def _field_with_nul(value: Any, path: str = "") -> str | None:
    """The dotted path of the first string (or key) in `value` holding a NUL character, else None."""
    if isinstance(value, str):
        return path if "\x00" in value else None
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        here = f"{path}.{key}" if path else str(key)
        if isinstance(key, str) and "\x00" in key:
            return here
        found = _field_with_nul(item, here)
        if found is not None:
            return found
    return None


class _JsonBodyModel(BodyModel):
    __empty_is_object__ = False

    @classmethod
    def get_request_data(cls, request: HttpRequest, api: Any, path_params: Any) -> dict[str, Any]:
        return {cls.__read_from_single_attr__: read_json(request, empty_is_object=cls.__empty_is_object__)}


class _JsonBodyOrEmptyModel(_JsonBodyModel):
    __empty_is_object__ = True


class JsonBody(Body):  # type: ignore[misc]
    """A body parameter read by read_json: `payload: Annotated[Model, JsonBody(...)]`."""

    _model = _JsonBodyModel

    @classmethod
    def _param_source(cls) -> str:
        return "body"


class JsonBodyOrEmpty(JsonBody):  # type: ignore[misc]
    """A body that may be left out (read as {}): `Annotated[Model, JsonBodyOrEmpty({})]`."""

    _model = _JsonBodyOrEmptyModel


# -- before ninja --------------------------------------------------------------------------------------
def front_door(view: Callable[..., Any]) -> Callable[..., Any]:
    """Wraps the view of one API path: a NUL in the path names nothing (404) and one in the query
    string is refused (400) before anything else; ninja's plain-text 405 becomes Tako's JSON."""

    def refuse(request: HttpRequest) -> HttpResponseBase | None:
        if "\x00" in request.path:  # no job, artifact or key has such a name
            return error(404, "Not found")
        if "%00" in request.META.get("QUERY_STRING", ""):
            return error(400, "NUL characters (%00) are not allowed in the query string")
        return None

    def finish(request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        if not isinstance(response, HttpResponseNotAllowed):
            return response
        allowed = sorted(method.strip() for method in response["Allow"].split(","))
        named = ", ".join(method for method in allowed if method != "HEAD")
        refused = error(405, f"Method {request.method} not allowed; use {named}")
        refused["Allow"] = ", ".join(allowed)
        return refused

    if iscoroutinefunction(view):

        @functools.wraps(view)
        async def async_door(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            return refuse(request) or finish(request, await view(request, *args, **kwargs))

        return markcoroutinefunction(async_door)

    @functools.wraps(view)
    def door(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        return refuse(request) or finish(request, view(request, *args, **kwargs))

    return door


async def in_worker_thread(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """Run blocking work (a container run, an image build) off the event loop and off Django's
    one sync thread."""

    def call() -> T:
        try:
            return fn(*args, **kwargs)
        finally:
            connections.close_all()  # this thread's own connections

    return await asyncio.to_thread(call)
