"""Environments (job types): shipped images with packages, per-run requirements, builds."""

from __future__ import annotations

import threading

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.test import Client

from executions import services, tasks
from executions.models import Environment, Execution
from executions.sandbox import get_sandbox
from executions.sandbox.images import definition_hash, ensure_image
from tests.support import wait_for

PANDAS_AGGREGATE = """
import json
import pandas as pd
data = json.load(open('/input/data.json'))
frame = pd.DataFrame(data['rows'])
totals = frame.groupby('team')['points'].sum().sort_index()
json.dump({'totals': totals.to_dict(), 'pandas': pd.__version__}, open('/output/result.json', 'w'))
"""

SKLEARN_FIT = """
import json
from sklearn.linear_model import LinearRegression
data = json.load(open('/input/data.json'))
model = LinearRegression().fit([[x] for x in data['x']], data['y'])
json.dump({'slope': round(float(model.coef_[0]), 6), 'intercept': round(float(model.intercept_), 6)},
          open('/output/result.json', 'w'))
"""

ROWS = [{"team": "a", "points": 3}, {"team": "b", "points": 5}, {"team": "a", "points": 4}]


def test_pandas_fails_in_default_and_works_in_data_processing(api, shipped_images) -> None:
    default = api.post("/execute", {"code": PANDAS_AGGREGATE, "input_data": {"rows": ROWS}}).json()
    assert default["error_type"] == "import_error"
    assert "ModuleNotFoundError: No module named 'pandas'" in default["stderr"]
    body = {"code": PANDAS_AGGREGATE, "input_data": {"rows": ROWS}, "job_type": "data-processing"}
    processed = api.post("/execute", body).json()
    assert processed["success"] is True, processed["stderr"]
    assert processed["output"]["totals"] == {"a": 7, "b": 5}


def test_ml_inference_fits_a_scikit_learn_model(api, shipped_images) -> None:
    body = {"code": SKLEARN_FIT, "input_data": {"x": [0, 1, 2, 3], "y": [1, 3, 5, 7]}, "job_type": "ml-inference"}
    result = api.post("/execute", body).json()
    assert result["success"] is True, result["stderr"]
    assert result["output"] == {"slope": 2.0, "intercept": 1.0}


def test_each_environments_memory_limit_is_enforced(api, shipped_images) -> None:
    code = "x = bytearray(700 * 1024 * 1024); x[::4096] = b'1' * len(x[::4096]); print('allocated')"
    on_default = api.post("/execute", {"code": code}).json()
    assert (on_default["error_type"], on_default["exit_code"]) == ("oom", 137)
    on_data = api.post("/execute", {"code": code, "job_type": "data-processing"}).json()
    assert on_data["success"] is True and on_data["stdout"] == "allocated\n"


def test_executions_record_the_image_they_ran_on(api, shipped_images) -> None:
    body = api.post("/execute", {"code": "print(1)", "job_type": "data-processing"}).json()
    record = api.get(f"/executions/{body['execution_id']}?view=full").json()
    digest = get_sandbox().image_ref("tako-vm-data-processing:latest")
    assert record["job_ref"] == digest and digest.startswith("tako-vm-data-processing@sha256:")


# -- per-run requirements ------------------------------------------------------------------------
TABULATE = """
import json, os
from tabulate import tabulate
print(tabulate([[1, 2]], headers=['a', 'b']))
json.dump({'ifaces': sorted(os.listdir('/sys/class/net'))}, open('/output/result.json', 'w'))
"""


def test_per_run_requirements_install_with_the_network_off(api) -> None:
    response = api.post("/execute", {"code": TABULATE, "requirements": ["tabulate"]})
    body = response.json()
    assert body["success"] is True, body["stderr"]
    assert "a    b" in body["stdout"]
    assert body["output"] == {"ifaces": ["lo"]}
    timing = api.get(f"/executions/{body['execution_id']}").json()["timing"]
    assert timing["dep_install_ms"] is not None and timing["startup_ms"] >= timing["dep_install_ms"]


def test_another_run_does_not_see_those_packages(api) -> None:
    api.post("/execute", {"code": "import tabulate", "requirements": ["tabulate"]})
    body = api.post("/execute", {"code": "import tabulate"}).json()
    assert body["error_type"] == "import_error"


def test_an_unresolvable_requirement_is_a_dependency_error(api) -> None:
    body = api.post("/execute", {"code": "print(1)", "requirements": ["tako-no-such-package-zz9"]}).json()
    assert body["success"] is False
    assert body["error_type"] == "dependency_error"
    assert "tako-no-such-package-zz9" in body["error"]
    record = api.get(f"/executions/{body['execution_id']}").json()
    assert record["error"]["phase"] == "startup"


def test_the_code_timeout_does_not_include_package_install(api) -> None:
    code = "import time, tabulate; time.sleep(1.5); print('done')"
    body = api.post("/execute", {"code": code, "timeout": 2, "requirements": ["tabulate"]}).json()
    assert body["success"] is True, body


# -- image builds --------------------------------------------------------------------------------
def test_an_unchanged_image_is_not_rebuilt(default_image: str) -> None:
    assert ensure_image("default", requirements=[]).built is False


def test_the_definition_hash_follows_the_requirements() -> None:
    base = definition_hash(requirements=[], base="b")
    assert definition_hash(requirements=["pandas"], base="b") != base
    assert definition_hash(requirements=["a", "b"], base="b") == definition_hash(requirements=["b", "a"], base="b")


def test_the_build_endpoint_queues_a_build_whose_outcome_the_worker_records(api) -> None:
    response = api.post("/job-types/default/build")
    assert response.status_code == 202
    assert response.json()["build_status"] == "queued"
    tasks.build_environment("default")  # as a worker runs it (a live service's worker may have it already)
    wait_for(lambda: Environment.objects.get(name="default").build_status == "built", what="the build")
    listed = api.get("/job-types/default").json()
    assert listed["build_status"] == "built" and listed["image_digest"].startswith("sha256:")
    assert listed["image_ref"] == get_sandbox().image_ref("tako-vm-default:latest")


def test_a_second_build_of_the_same_environment_is_refused(api) -> None:
    Environment.objects.filter(name="default").update(build_status="building")
    response = api.post("/job-types/default/build")
    assert response.status_code == 409
    assert response.json()["detail"] == "A build of 'default' is already running"


def test_building_an_unknown_job_type_is_a_404(api_nodocker) -> None:
    assert api_nodocker.post("/job-types/nope/build").status_code == 404


@pytest.mark.django_db(transaction=True)
def test_a_job_waits_for_an_image_being_built(default_image: str, scratch_environment_name) -> None:
    environment = Environment.objects.create(name=scratch_environment_name, build_status="building")
    execution = services.execution_create(code="print('waited')", input_data={}, environment=environment)
    done: list[Execution] = []
    runner = threading.Thread(target=lambda: done.append(services.execution_run(execution_id=execution.pk)))
    runner.start()
    ensure_image(scratch_environment_name, requirements=[])
    Environment.objects.filter(pk=environment.pk).update(build_status="built")
    runner.join(timeout=60)
    execution.refresh_from_db()
    assert (execution.status, execution.stdout) == ("succeeded", "waited\n")


# -- definitions that must be refused ----------------------------------------------------------
@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"name": "bad name"}, "name"),
        ({"name": "x;rm"}, "name"),
        ({"memory_limit": "lots"}, "memory_limit"),
        ({"memory_limit": "1k"}, "memory_limit"),
        ({"cpu_limit": 0}, "cpu_limit"),
        ({"cpu_limit": 1000}, "cpu_limit"),
        ({"timeout": 301}, "timeout"),
        ({"requirements": ["pandas\nRUN curl evil"]}, "requirements"),
        ({"requirements": ["--extra-index-url", "http://x"]}, "requirements"),
        ({"env_vars": {"BAD-NAME": "1"}}, "env_vars"),
        ({"env_vars": {"TAKO_NONCE": "1"}}, "env_vars"),
    ],
)
def test_an_invalid_definition_is_refused(db, fields: dict, field: str) -> None:
    environment = Environment(**{"name": "candidate", **fields})
    with pytest.raises(ValidationError) as caught:
        environment.full_clean()
    assert field in caught.value.message_dict


def test_the_admin_shows_a_form_error_for_an_invalid_memory_limit(db) -> None:
    admin = User.objects.create_superuser("admin", "a@example.test", "pw-for-tests-only")
    client = Client()
    client.force_login(admin)
    form = {
        "name": "adminmade",
        "requirements": "[]",
        "python_version": "3.11",
        "memory_limit": "huge",
        "cpu_limit": "1.0",
        "timeout": "30",
        "startup_timeout": "60",
        "env_vars": "{}",
        "build_status": "none",
    }
    response = client.post("/admin/executions/environment/add/", form)
    assert response.status_code == 200  # the form again, not a redirect
    assert "A size such as 512m or 2g" in response.content.decode()
    assert not Environment.objects.filter(name="adminmade").exists()
