"""HTML pages. The dashboard lives under /ui/; /docs renders the OpenAPI document."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

from executions.api.decorators import error

# Paths that answer JSON only; anything else gets HTML error pages.
HTML_PREFIXES = ("/ui/", "/docs", "/admin/", "/static/")


def api_docs(request: HttpRequest) -> HttpResponse:
    return render(request, "executions/api_docs.html")


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if request.path.startswith(HTML_PREFIXES):
        return render(request, "404.html", status=404)
    return error(404, "Not found")


def server_error(request: HttpRequest) -> JsonResponse | HttpResponse:
    if request.path.startswith(HTML_PREFIXES):
        return render(request, "500.html", status=500)
    return error(500, "Internal error")
