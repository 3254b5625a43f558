"""The project's error handlers (HTML for pages, Tako VM's JSON error body for everything else)
and /docs, which renders the OpenAPI document."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

from executions.logging import current_correlation_id

# Paths that answer JSON only; anything else gets HTML error pages.
HTML_PREFIXES = ("/ui/", "/docs", "/admin/", "/static/")


def api_docs(request: HttpRequest) -> HttpResponse:
    return render(request, "executions/api_docs.html")


def error(status: int, detail: str) -> JsonResponse:
    """Tako VM's error body, as the API answers (api/errors.py): pages do not import the API."""
    return JsonResponse({"detail": detail, "correlation_id": current_correlation_id()}, status=status)


def _is_page(request: HttpRequest) -> bool:
    return request.path.startswith(HTML_PREFIXES)


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    # Reached for a Host header not in ALLOWED_HOSTS, among others.
    if _is_page(request):
        return render(request, "400.html", status=400)
    return error(400, "Bad request: the Host header or request line is not accepted")


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if _is_page(request):
        return render(request, "403.html", status=403)
    return error(403, "Permission denied")


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if _is_page(request):
        return render(request, "404.html", status=404)
    return error(404, "Not found")


def server_error(request: HttpRequest) -> JsonResponse | HttpResponse:
    if _is_page(request):
        return render(request, "500.html", status=500)
    return error(500, "Internal error")
