"""schemathesis generates requests from the service's own OpenAPI schema: no 5xx, no response that breaks it.

Bounded: a dozen derandomized examples per operation, against the real app (in process, through ASGI).
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from service.api.app import create_app
from tests.conftest import API_KEY, build_service

pytestmark = [pytest.mark.integration, pytest.mark.slow]
EXAMPLES = 12


def test_generated_requests_get_no_server_error_and_valid_responses(tmp_path, settings_for, embedder, nlp, prompts):
    service = build_service(settings_for(tmp_path), embedder, nlp, prompts)
    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(service=service))
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10
    tried: list[str] = []
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def run(case: schemathesis.Case) -> None:
            case.call_and_validate(headers={"Authorization": f"Bearer {API_KEY}"},
                                   checks=[not_a_server_error, response_schema_conformance])

        run()
        tried.append(operation.label)
    assert "POST /v1/ask" in tried and "POST /v1/documents" in tried
