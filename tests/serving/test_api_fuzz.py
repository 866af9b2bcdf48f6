"""Schemathesis over the service's own OpenAPI schema: no server error, no undocumented status,
no answer that breaks the schema; a bounded run (a dozen cases a route, with and without the
token)."""

from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from conftest import TinyRun
from pneumonia.inference.loading import load_bundle
from pneumonia.serving.security import Door, Tokens
from pneumonia.serving.serve import create_app

TOKEN = "fuzzing-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def service(tiny_run: TinyRun) -> FastAPI:
    door = Door(tokens=Tokens((TOKEN,)), allowed_hosts=("localhost", "testserver"))
    return create_app(load_bundle(tiny_run.bundle), door=door)


def test_every_route_documents_its_refusals(service: FastAPI) -> None:
    paths = TestClient(service).get("/openapi.json", headers=AUTH).json()["paths"]
    for route in ("/predict", "/explain"):
        assert {"401", "413", "415", "422"} <= set(paths[route]["post"]["responses"])
    assert "401" not in paths["/health"]["get"]["responses"]  # the one open route


def test_generated_requests_get_documented_answers(service: FastAPI) -> None:
    raw = TestClient(service).get("/openapi.json", headers=AUTH).json()
    schema = schemathesis.openapi.from_dict(raw)
    schema.app = service
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/predict", "/explain", "/health", "/model"}
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
        def run(case: Any) -> None:
            # any bytes fit the schema's "binary", but not every file is an image: a 415 for
            # well-formed non-images is documented, so "valid data accepted" is not checked
            lenient = {"excluded_checks": [positive_data_acceptance]}
            case.call_and_validate(headers=AUTH, **lenient)
            case.call_and_validate(**lenient)  # without the token: a documented 401

        run()
