"""Schemathesis against the app's own OpenAPI schema, on a real server, with every check it has
(response conformance included): generated requests, valid and invalid, to every endpoint must
never get a 5xx, never an answer the schema does not describe, and valid ones must be accepted."""

import math

import pytest
import schemathesis
from hypothesis import HealthCheck, assume, given, settings
from pydantic import ValidationError
from schemathesis import GenerationMode

from bnscope.config import RunConfig
from bnscope.runs.stacking import MAX_MEMBERS, grid, too_big
from tests.servers import live_server


pytestmark = pytest.mark.slow  # schemathesis against a real `bnscope serve`
EXAMPLES_PER_OPERATION = 100


def breaks_a_product_cap(case) -> bool:
    """A schema-valid request that breaks a rule JSON Schema cannot state (the OpenAPI says it in words): a
    network over the parameter cap, a sweep's grid over its member or parameter cap, or a grid combining
    values that fit alone but not together. Other tests check their 422s; here they are not drawn."""
    body = case.body if isinstance(case.body, dict) else {}
    config = {k: v for k, v in (body.get("config") or {}).items() if v is not None}
    try:
        if case.path == "/api/runs" and not body.get("paired_with"):
            RunConfig(**config)
        elif case.path == "/api/sweeps":
            vary = body.get("vary") if isinstance(body.get("vary"), dict) else {}
            if math.prod(len(values or []) for values in vary.values()) > MAX_MEMBERS:
                return True
            for setting, values in vary.items():  # each value fits alone (else the schema and the config disagree)
                for value in values or []:
                    RunConfig(**{**config, setting: value})
            try:
                members = grid(config, vary)
            except (ValidationError, TypeError):
                return True  # a combination breaks a rule between settings (batch_size 1 with BatchNorm on)
            return too_big(members) is not None
    except (ValidationError, TypeError) as err:
        return "parameters" in str(err)
    return False


def test_no_input_gets_a_server_error_or_breaks_the_schema(tmp_path):
    # run 1 exists (ids can hit it); few slots and a short queue, so generated runs are cheap
    env = {"BNSCOPE_AUTOSTART": "true", "BNSCOPE_MAX_RUNS": "1", "BNSCOPE_MAX_QUEUED": "4"}
    with live_server(tmp_path / "data", env=env) as server:
        schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
        # the event stream never ends by design; it has its own tests (test_events.py)
        operations = [result.ok() for result in schema.exclude(path_regex=r".*/events$").get_all_operations()]
        assert len(operations) >= 16
        calls = []
        for operation in operations:

            @given(
                case=operation.as_strategy(generation_mode=GenerationMode.POSITIVE)
                | operation.as_strategy(generation_mode=GenerationMode.NEGATIVE)
            )
            @settings(
                max_examples=EXAMPLES_PER_OPERATION,
                deadline=None,
                suppress_health_check=list(HealthCheck),
                database=None,
            )
            def fuzz(case):
                if case.meta.generation.mode is GenerationMode.POSITIVE:
                    assume(not breaks_a_product_cap(case))
                response = case.call_and_validate(timeout=30)
                calls.append(response.status_code)

            fuzz()
        print(f"schemathesis: {len(calls)} requests over {len(operations)} operations, statuses {sorted(set(calls))}")
        assert all(status < 500 for status in calls)
