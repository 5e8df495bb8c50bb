"""Schemathesis against the app's own OpenAPI schema, on a real server: generated requests,
valid and invalid, to every endpoint must never get a 5xx nor an answer that breaks the schema."""

import schemathesis
from hypothesis import HealthCheck, given, settings

from tests.web.conftest import live_server

EXAMPLES_PER_OPERATION = 25
# A schema-valid config can still be refused (422) for settings that do not fit together
# (batch_size 1 with BatchNorm, a network over the parameter cap): JSON Schema cannot say so.
positive_data_acceptance = schemathesis.checks.positive_data_acceptance


def test_no_input_gets_a_server_error_or_breaks_the_schema(tmp_path):
    env = {"BNSCOPE_AUTOSTART": "true", "BNSCOPE_MAX_RUNS": "2"}  # run 1 exists, so ids can hit it
    with live_server(tmp_path / "data", env=env) as server:
        schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
        # the event stream never ends by design; it has its own tests (test_events.py)
        operations = [result.ok() for result in schema.exclude(path_regex=r".*/events$").get_all_operations()]
        assert len(operations) >= 12
        calls = []
        for operation in operations:

            @given(case=operation.as_strategy())
            @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, suppress_health_check=list(HealthCheck),
                      database=None)  # fmt: skip
            def fuzz(case):
                response = case.call_and_validate(timeout=30, excluded_checks=[positive_data_acceptance])
                calls.append(response.status_code)

            fuzz()
        print(f"schemathesis: {len(calls)} requests over {len(operations)} operations, statuses {sorted(set(calls))}")
        assert all(status < 500 for status in calls)
