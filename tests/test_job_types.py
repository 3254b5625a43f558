"""GET /job-types and GET /job-types/{name}."""

from __future__ import annotations

from executions import tasks
from executions.models import Environment


def test_it_lists_the_shipped_default_with_its_limits(api) -> None:
    tasks.build_environment("default")  # records the (up-to-date) image, as set-up's build does
    items = api.get("/job-types").json()
    default = next(item for item in items if item["name"] == "default")
    assert default["requirements"] == []
    assert (default["memory_limit"], default["cpu_limit"], default["timeout"]) == ("512m", 1.0, 30)
    assert default["network_enabled"] is False
    assert default["image_exists"] is True


def test_image_exists_is_false_when_the_image_is_not_built(api) -> None:
    Environment.objects.create(name="unbuilt-env")
    body = api.get("/job-types/unbuilt-env").json()
    assert body["image_exists"] is False
    assert body["image"] == "tako-vm-unbuilt-env:latest"


def test_an_unknown_job_type_is_a_404(api_nodocker) -> None:
    response = api_nodocker.get("/job-types/nope")
    assert response.status_code == 404
    assert response.json()["detail"] == "Job type 'nope' not found"
