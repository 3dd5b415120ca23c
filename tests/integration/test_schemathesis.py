"""Property-based requests from the live /openapi.json: no 5xx, no response off its schema.

Bounded: a few examples per operation (PREPSHELF_SCHEMATHESIS_EXAMPLES, default 15). It runs
against its own service and database, so deleting and cancelling whatever it finds is fine.
Server-sent-event streams are left out (a stream that finds its object never ends), and so is
/v1/embeddings (it runs the model: slow on small machines and covered by its own tests).
"""

from __future__ import annotations

import os
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from support.service import Service

EXAMPLES = int(os.environ.get("PREPSHELF_SCHEMATHESIS_EXAMPLES", "15"))
SKIPPED = ("/v1/events", "/v1/jobs/{job_id}/events", "/v1/embeddings")
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def api_schema(service: Service) -> Any:
    url = f"http://127.0.0.1:{service.port}/openapi.json"
    schema = schemathesis.openapi.from_url(url)
    return schema.exclude(path=list(SKIPPED))


def test_api_conforms(api_schema: Any, service: Service) -> None:
    # The Python API rather than the pytest plugin: one test, every operation, every failure.
    headers = {"Authorization": f"Bearer {service.api_key}"}
    failures: list[str] = []
    operations = 0
    calls: list[int] = []
    for result in api_schema.get_all_operations():
        operation = result.ok()
        operations += 1

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            phases=[Phase.explicit, Phase.generate],  # no shrinking: keep the run bounded
            database=None,
        )
        def run(case: Any) -> None:
            calls.append(case.call_and_validate(headers=headers, checks=CHECKS).status_code)

        try:
            run()
        except Exception as exc:
            failures.append(f"{operation.label}: {str(exc)[:1500]}")
    assert operations > 30 and len(calls) >= operations
    print(f"{len(calls)} calls over {operations} operations: {sorted(set(calls))}")
    assert not failures, "\n\n".join(failures)
