"""Fuzz every operation from the service's own OpenAPI description: whatever the
input, never a 500, and every answer matches what the description promises."""

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)


@pytest.fixture(scope="module")
def fuzz_world(module_api):
    api = module_api
    api.user("cm", "care_manager")
    api.user("doc", "physician")
    api.pid = api.patient("cm")
    api.join(api.pid, "doc", "primary_physician", by="cm")
    api.note = api.call("cm", "POST", f"/api/v1/patients/{api.pid}/notes", {"body": "x", "category": "other"}).json[
        "id"
    ]
    api.observation = api.call(
        "cm", "POST", f"/api/v1/patients/{api.pid}/observations", {"kind": "spo2", "value": 97}
    ).json["id"]
    return api


@pytest.fixture(scope="module")
def api_schema(fuzz_world):
    loaded = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", fuzz_world.app)
    # Valid and invalid inputs both: bad input must be a 4xx problem, never a 500.
    loaded.config.generation.update(modes=[schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE])
    return loaded


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_input_breaks_the_api(case, fuzz_world):
    # Aim most requests at a real patient the caller may see, so fuzzing reaches
    # the record code instead of stopping at 404.
    params = case.path_parameters or {}
    if "patient_id" in params:
        params["patient_id"] = fuzz_world.pid
    if "note_id" in params:
        params["note_id"] = fuzz_world.note
    if "observation_id" in params:
        params["observation_id"] = fuzz_world.observation
    if "user_id" in params and case.method == "DELETE":
        params["user_id"] = fuzz_world.users["doc"]["id"]
    if case.path == "/api/v1/auth/tokens/current":
        token = fuzz_world.spare_token("cm")  # revoking must not end the shared token
    elif case.path.startswith(("/api/v1/audit", "/api/v1/users", "/api/v1/organizations")):
        token = fuzz_world.tokens["admin"]
    else:
        token = fuzz_world.tokens["cm"]
    response = case.call(headers={"Authorization": "Bearer " + token})
    case.validate_response(
        response,
        checks=[not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance],
    )
