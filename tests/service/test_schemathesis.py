"""Schemathesis against the app's own OpenAPI schema: no 5xx, responses match the schema."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import checks

from app.config import Settings
from app.main import create_app
from tests.conftest import STORE

pytestmark = pytest.mark.slow

app = create_app(Settings(models_dir=STORE))
schema = schemathesis.openapi.from_asgi("/openapi.json", app)

CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.response_headers_conformance,
]


@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_schema(case: schemathesis.Case) -> None:
    # Every check but positive_data_acceptance: any bytes are a schema-valid "binary" upload,
    # yet only images are acceptable, so random files rightly get 415.
    case.call_and_validate(checks=CHECKS)
