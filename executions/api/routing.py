"""How a request reaches an operation, as Tako VM's clients expect: GET also answers HEAD, a JSON
body is read strictly, and what ninja answers before any operation runs is Tako's JSON too."""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Callable
from io import BytesIO
from typing import Any, TypeVar

import ninja
from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.core.exceptions import TooManyFilesSent
from django.db import connections
from django.http import HttpRequest, HttpResponseBase, HttpResponseNotAllowed
from django.http.multipartparser import MultiPartParser, MultiPartParserError
from ninja.params.models import Body, BodyModel
from ninja.types import TCallable

from executions.api.errors import ApiError, error
from executions.errors import FieldErrors, InvalidRequest

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


MULTIPART = "multipart/form-data"
REQUEST_PART = "request"


class _PathNamedParser(MultiPartParser):
    """Django keeps only the last component of an upload's filename; here a filename is the file's
    path under /input (validated strictly later, as an input path). Each upload is named by its
    index into `paths`, which keeps the filenames as sent."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.paths: list[str] = []

    def sanitize_file_name(self, file_name: str) -> str | None:
        if not file_name:
            return None
        self.paths.append(file_name)
        return str(len(self.paths) - 1)


def read_json_or_multipart(request: HttpRequest) -> Any:
    """The body of POST /execute, /execute/async and /execute/batch: JSON, or multipart/form-data
    with a `request` part holding the JSON body and one part per input file, its filename the
    file's path. The files join the body as `files` ({path: bytes}), validated with it."""
    if (request.content_type or "") != MULTIPART:
        return read_json(request, empty_is_object=False)
    try:
        parser = _PathNamedParser(request.META, BytesIO(request.body), request.upload_handlers, request.encoding)
        fields, uploads = parser.parse()
    except TooManyFilesSent:
        raise InvalidRequest({"files": [f"At most {settings.TAKO_MAX_INPUT_FILES} files are allowed"]}) from None
    except MultiPartParserError as exc:
        raise ApiError(400, f"Malformed multipart body: {exc}") from None
    errors = FieldErrors()
    raw: Any = fields.get(REQUEST_PART)
    if raw is None and REQUEST_PART in uploads:
        raw = uploads.getlist(REQUEST_PART)[0].read()
    for name in fields:
        if name != REQUEST_PART:
            errors.add(
                name, f"Unknown part '{name}': send the JSON body as the 'request' part and each file with a filename"
            )
    if raw is None:
        errors.add(REQUEST_PART, "A multipart request needs a 'request' part holding the JSON body")
    files: dict[str, bytes] = {}
    for name, parts in uploads.lists():
        for upload in parts if name != REQUEST_PART else parts[1:]:
            path = parser.paths[int(str(upload.name))]
            if path in files:
                errors.add("files", f"File {path!r}: sent twice")
            files[path] = upload.read()
    errors.raise_if_any()
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"Malformed JSON in the 'request' part: {exc}") from None
    if not isinstance(body, dict):
        raise InvalidRequest({REQUEST_PART: ["The 'request' part must hold a JSON object"]})
    field = _field_with_nul(body)
    if field is not None:
        raise InvalidRequest({field or "body": ["Text must not contain NUL characters (\\u0000)"]})
    if "files" in body:
        raise InvalidRequest({"files": ["In a multipart request, send each file as a part of its own, not in 'files'"]})
    if files:
        body["files"] = files
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


class _JsonOrMultipartBodyModel(_JsonBodyModel):
    @classmethod
    def get_request_data(cls, request: HttpRequest, api: Any, path_params: Any) -> dict[str, Any]:
        return {cls.__read_from_single_attr__: read_json_or_multipart(request)}


class JsonBody(Body):  # type: ignore[misc]
    """A body parameter read by read_json: `payload: Annotated[Model, JsonBody(...)]`."""

    _model = _JsonBodyModel

    @classmethod
    def _param_source(cls) -> str:
        return "body"


class JsonBodyOrEmpty(JsonBody):  # type: ignore[misc]
    """A body that may be left out (read as {}): `Annotated[Model, JsonBodyOrEmpty({})]`."""

    _model = _JsonBodyOrEmptyModel


class JsonOrMultipartBody(JsonBody):  # type: ignore[misc]
    """A JSON body, or the same as multipart/form-data with files (read_json_or_multipart)."""

    _model = _JsonOrMultipartBodyModel


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
