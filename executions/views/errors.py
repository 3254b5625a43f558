"""The project's error handlers: HTML for pages, Tako VM's JSON error body for everything else."""

from __future__ import annotations

import sys

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

from executions.correlation import current_correlation_id
from executions.errors import DATABASE_RETRY_AFTER, DATABASE_UNAVAILABLE, database_unavailable

# Paths that answer JSON only; anything else gets HTML error pages.
HTML_PREFIXES = ("/ui/", "/docs", "/admin/", "/static/")


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
    # Django calls this while handling the exception: sys.exc_info() is the error itself.
    if database_unavailable(sys.exc_info()[1]):
        return unavailable(request)
    if _is_page(request):
        return render(request, "500.html", status=500)
    return error(500, "Internal error")


def unavailable(request: HttpRequest) -> JsonResponse | HttpResponse:
    """503 while the database is unavailable: nothing accepted is lost, try again shortly."""
    detail = DATABASE_UNAVAILABLE
    response: HttpResponse
    if _is_page(request):  # no template: rendering one may need the database (context processors)
        response = HttpResponse(
            f"<!doctype html><html lang=en><meta charset=utf-8><title>Unavailable · Tako VM</title>"
            f"<main><h1>Service unavailable</h1><p>{detail}</p></main>",
            status=503,
        )
    else:
        response = error(503, detail)
    response["Retry-After"] = str(DATABASE_RETRY_AFTER)
    return response
