"""/docs: the OpenAPI document (/openapi.json) rendered with the vendored Swagger UI (no CDN)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


def api_docs(request: HttpRequest) -> HttpResponse:
    return render(request, "executions/api_docs.html")
