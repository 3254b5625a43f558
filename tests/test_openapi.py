"""The OpenAPI document: valid, complete, served, rendered. (conftest validates every response.)"""

from __future__ import annotations

from django.urls import URLPattern, get_resolver
from jsonschema import Draft202012Validator

from executions.api import urls as api_urls
from executions.api.openapi import openapi_document


def _route_template(pattern: URLPattern) -> str:
    route = str(pattern.pattern)
    for converter in ("uuid", "str", "int"):
        route = route.replace(f"<{converter}:", "{")
    return "/" + route.replace(">", "}")


def test_every_api_route_is_documented_and_every_documented_path_exists() -> None:
    documented = set(openapi_document()["paths"])
    routes = {_route_template(p) for p in api_urls.urlpatterns} - {"/openapi.json"}
    assert routes == documented


def test_every_documented_schema_is_valid_json_schema() -> None:
    for schema in openapi_document()["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)  # raises SchemaError naming the problem


def test_every_operation_documents_its_errors() -> None:
    for path, operations in openapi_document()["paths"].items():
        for method, operation in operations.items():
            assert {"405", "500"} <= set(operation["responses"]), (method, path)
            if path not in ("/health", "/health/ready"):  # public
                assert {"401", "403", "429"} <= set(operation["responses"]), (method, path)


def test_the_document_is_served(api_nodocker) -> None:
    response = api_nodocker.get("/openapi.json")
    assert response.status_code == 200
    assert response.json()["openapi"] == "3.1.0"


def test_the_docs_page_uses_the_vendored_viewer(client) -> None:
    response = client.get("/docs")
    html = response.content.decode()
    assert response.status_code == 200
    assert "/static/vendor/swagger-ui/swagger-ui-bundle.js" in html
    assert "https://" not in html  # no CDN
    assert client.get("/static/vendor/swagger-ui/swagger-ui-bundle.js").status_code == 200


def test_the_docs_page_needs_no_login(client) -> None:
    assert client.get("/docs").status_code == 200


def test_the_api_routes_are_mounted_at_the_root() -> None:
    assert get_resolver().resolve("/execute").url_name == "api-execute"
