"""While the database is away, requests get a clear 503 with Retry-After, never a 500: the API in
Tako's error format, the pages as a short HTML page. The server here is pointed at a PostgreSQL
port where nothing listens, as during a database restart."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from tests.support import ServiceProcess, free_port, wait_for


@pytest.fixture
def server_without_database(tmp_path: Path):
    port = free_port()
    server = ServiceProcess(
        ["-m", "takoweb.serve"], tmp_path / "web.log",
        HOST="127.0.0.1", PORT=str(port), TAKO_DATA_DIR=str(tmp_path),
        DATABASE_URL=f"postgres://tako:tako@127.0.0.1:{free_port()}/tako",
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        try:
            requests.get(f"{url}/openapi.json", timeout=2)
            return True
        except requests.ConnectionError:
            return False

    wait_for(answers, timeout=30, what="the web server")
    yield url, server
    server.stop()


@pytest.mark.system
def test_the_api_and_the_pages_answer_503_while_the_database_is_away(server_without_database) -> None:
    url, server = server_without_database
    for method, path, body in [
        ("GET", "/executions", None),
        ("POST", "/execute/async", {"code": "print(1)"}),
        ("GET", "/health", None),
    ]:
        response = requests.request(method, f"{url}{path}", json=body, timeout=10)
        assert response.status_code == 503, (path, response.text)
        assert response.headers["Retry-After"] == "5"
        assert "database is unavailable" in response.json()["detail"] and response.json()["correlation_id"]
    page = requests.get(f"{url}/ui/executions/", cookies={"sessionid": "x" * 32}, timeout=10, allow_redirects=False)
    assert page.status_code == 503 and page.headers["Retry-After"] == "5"
    assert "Service unavailable" in page.text and "Traceback" not in page.text
    assert "Internal Server Error" not in server.output()
