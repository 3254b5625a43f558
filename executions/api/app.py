"""The one NinjaAPI: every router at the root paths Tako VM uses, Tako's errors, and the OpenAPI
3.1 document generated from api/schemas.py (served at /openapi.json, rendered at /docs)."""

from __future__ import annotations

import functools
import json
import re
from typing import Any

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.urls import URLPattern
from ninja import NinjaAPI
from ninja.openapi.schema import REF_TEMPLATE, OpenAPISchema
from ninja.operation import Operation
from ninja.responses import NinjaJSONEncoder
from ninja.schema import NinjaGenerateJsonSchema

from executions.api import batches, errors, events, execute, job_types, jobs, operations
from executions.api.routing import Router, front_door
from executions.api.schemas import Error

# What any operation may answer besides its own responses, and what any that needs a caller may.
COMMON_ERRORS = {
    400: "Malformed request (for example a NUL character in the query string)",
    405: "Wrong method",
    500: "A fault of the service (no traceback)",
}
AUTH_ERRORS = {
    401: "No API key (X-API-Key or Authorization: Bearer), or an invalid or revoked one",
    403: "The key lacks the admin scope this needs, or a browser session's change lacks its CSRF token",
    429: "Too many requests a minute, or too many jobs in progress (Retry-After)",
}


class TakoAPI(NinjaAPI):
    def set_default_exception_handlers(self) -> None:
        errors.install(self)  # Tako's error bodies, for everything

    def get_content_type(self) -> str:
        return "application/json"  # as Django's JsonResponse says it (and the error bodies do)

    def get_openapi_operation_id(self, operation: Operation) -> str:
        return operation.view_func.__name__

    def get_openapi_schema(self, *, path_prefix: str | None = None, path_params: Any = None) -> OpenAPISchema:
        schema = super().get_openapi_schema(path_prefix="", path_params=path_params)
        _document_common_responses(schema)
        _drop_unused_schemas(schema)
        return schema

    @property
    def urls(self) -> tuple[list[Any], str, str]:
        """Ninja's URL patterns, each behind the front door (routing.py), without ninja's root view
        (the dashboard redirect owns `/`)."""
        patterns, app_name, namespace = super().urls
        kept: list[Any] = []
        for pattern in patterns:
            if isinstance(pattern, URLPattern) and pattern.name != "api-root":
                pattern.callback = front_door(pattern.callback)
                kept.append(pattern)
        return kept, app_name, namespace


def _document_common_responses(schema: OpenAPISchema) -> None:
    """Every operation documents the errors any operation may answer (and the secured ones, those
    of authentication); HEAD, answered wherever GET is, is left out as OpenAPI documents it."""
    components = schema["components"]
    components["schemas"]["Error"] = Error.model_json_schema(
        ref_template=REF_TEMPLATE, schema_generator=NinjaGenerateJsonSchema
    )
    components.setdefault("securitySchemes", {})["bearer"] = {"type": "http", "scheme": "bearer"}
    error = {"content": {"application/json": {"schema": {"$ref": REF_TEMPLATE.format(model="Error")}}}}
    for methods in schema["paths"].values():
        methods.pop("head", None)
        for operation in methods.values():
            secured = bool(operation.get("security"))
            if secured:
                operation["security"] = [*operation["security"], {"bearer": []}]
            for status, description in {**COMMON_ERRORS, **(AUTH_ERRORS if secured else {})}.items():
                operation["responses"].setdefault(status, {"description": description, **error})


def _drop_unused_schemas(schema: OpenAPISchema) -> None:
    """The query-string models are listed as parameters; their own components are never referenced."""
    schemas = schema["components"]["schemas"]
    used = set(re.findall(r'"#/components/schemas/([^"]+)"', json.dumps([schema["paths"], schemas], default=str)))
    for name in set(schemas) - used:
        del schemas[name]


api = TakoAPI(
    title="Tako VM for Django",
    version=settings.VERSION,
    description=(
        "Runs untrusted Python in locked-down Docker containers. Wire-compatible with Tako VM's REST API. "
        'Every response carries X-Correlation-ID; errors are `{"detail": ..., "correlation_id": ...}`.'
    ),
    urls_namespace="api",
    openapi_url=None,  # served by openapi_json below, as an operation (method check, HEAD, JSON errors)
    docs_url=None,  # /docs is the dashboard's page with the vendored Swagger UI (no CDN)
    default_router=Router(),
)
for module in (execute, batches, jobs, events, job_types, operations):
    api.add_router("", module.router)


@functools.cache
def openapi_document() -> dict[str, Any]:
    """The document as JSON reads it (settings are read once, at startup, as the schemas are)."""
    document: dict[str, Any] = json.loads(json.dumps(api.get_openapi_schema(), cls=NinjaJSONEncoder))
    return document


@api.get("/openapi.json", auth=None, include_in_schema=False)
def openapi_json(request: HttpRequest) -> JsonResponse:
    return JsonResponse(openapi_document())
