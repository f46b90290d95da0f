"""Issue 4 item 9: schemathesis against docs/openapi.json (the generated document of the REST memory routes),
through the local gateway with a real companion key: no 5xx, and every answer matches its documented schema.

Path parameters are pinned to a real companion and user, so generated bodies and queries reach the handlers
(a random companion id would stop every case at the 404 of the access check)."""

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from localdev.stack import Running
from tests.support.rest import make_tenant

ROOT = Path(__file__).resolve().parents[2]
CASES_PER_OPERATION = 25


def test_generated_requests_never_get_a_5xx_or_an_undocumented_answer(
    stack: Running, security_cases: Callable[[str, str], None]
) -> None:
    base_url = stack.env["API_URL"]
    with httpx.Client(base_url=base_url, timeout=60) as api:
        tenant = make_tenant(api, "Schemathesis Ltd")
    auth = {"authorization": f"Bearer {tenant['key']}"}
    schema = schemathesis.openapi.from_dict(json.loads((ROOT / "docs" / "openapi.json").read_text()))
    counts: dict[str, int] = {}
    failures: list[str] = []

    def fuzz(operation: Any) -> None:
        label = operation.label

        @given(case=operation.as_strategy())
        @settings(
            max_examples=CASES_PER_OPERATION,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        def run(case: Any) -> None:
            case.path_parameters = {
                **(case.path_parameters or {}),
                "companion_id": tenant["companion_id"],
                "user_id": "schemathesis-user",
            }
            response = case.call(base_url=base_url, headers=auth)
            counts[label] = counts.get(label, 0) + 1
            security_cases("schemathesis (REST memories)", f"status {response.status_code // 100}xx")
            case.validate_response(response, checks=[not_a_server_error, response_schema_conformance])

        run()

    for result in schema.get_all_operations():
        operation = result.ok()
        try:
            fuzz(operation)
        except Exception as error:  # every operation is fuzzed; the failures are reported together below
            failures.append(f"{operation.label}: {type(error).__name__}: {str(error)[:1500]}")
    print(f"schemathesis: {sum(counts.values())} cases over {len(counts)} operations: {counts}")
    assert not failures, "\n".join(failures)
    assert len(counts) == 9
