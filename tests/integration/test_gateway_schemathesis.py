"""schemathesis against the live gateway's own OpenAPI document, three ways: with a valid key,
without one, and with another tenant's key on this tenant's runs. Every answer must be no server
error, a status the document declares for its operation, with the declared content type, headers
and schema. Valid and invalid data (schemathesis' positive and negative modes) both."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from streams.api_keys import KeyStore, api_keys_file
from tests.integration.conftest import Stack, eventually

pytestmark = pytest.mark.integration

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance]
EXAMPLES = 8
"""Examples per operation, mode and run id: enough to reach every declared answer, in about a minute."""


@dataclass
class Findings:
    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)

    def summary(self) -> str:
        by_status = Counter(status for (_, status) in self.statuses.elements())
        return (f"{sum(by_status.values())} requests, statuses {dict(sorted(by_status.items()))}, "
                f"{len(self.failures)} failures")


@pytest.fixture(scope="module")
def schema(stack: Stack) -> Any:
    return schemathesis.openapi.from_url(f"http://127.0.0.1:{stack.settings.gateway_port}/openapi.json")


@pytest.fixture(scope="module")
def tenant(stack: Stack) -> dict[str, str]:
    """A key of tenant `st-a`, one of `st-b`, and a completed run of `st-a`."""
    store = KeyStore(api_keys_file(stack.settings))
    mine, theirs = store.create(tenant_id="st-a", name="schemathesis")[1], store.create(
        tenant_id="st-b", name="schemathesis")[1]
    http = stack.client("st-a")
    run_id = http.post("/v1/runs", json={"text": "What are the API rate limits?"}).json()["run_id"]
    eventually(lambda: http.get(f"/v1/runs/{run_id}").json().get("status") == "completed", what="the run")
    return {"mine": mine, "theirs": theirs, "run_id": run_id}


def _key(secret: str) -> dict[str, str]:
    # Both ways a key is presented, so neither is left to the generator to fill with garbage.
    return {"Authorization": f"Bearer {secret}", "X-API-Key": secret}


def _explore(schema: Any, *, headers: dict[str, str], run_id: str | None = None,
             only_runs: bool = False) -> Findings:
    """Every operation, in both generation modes; `run_id` replaces the generated one."""
    found = Findings()
    for result in schema.get_all_operations():
        operation = result.ok()
        has_run = "{run_id}" in operation.path
        if only_runs and not has_run:
            continue
        fixed = {"run_id": run_id} if run_id and has_run else None
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            _explore_one(operation, mode, fixed, headers, found)
    return found


def _explore_one(operation: Any, mode: GenerationMode, fixed: dict[str, str] | None,
                 headers: dict[str, str], found: Findings) -> None:
    strategy = operation.as_strategy(generation_mode=mode, path_parameters=fixed)

    @hypothesis.given(case=strategy)
    @hypothesis.settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                         phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    def explore(case: Any) -> None:
        response = case.call(headers=headers, timeout=30)
        found.statuses[(operation.label, response.status_code)] += 1
        try:
            case.validate_response(response, checks=CHECKS, headers=headers)
        except FailureGroup as exc:
            # Collected rather than raised: a failure is reported with every other, not shrunk.
            found.failures.append(f"{operation.label} ({mode.value}): {exc}")

    try:
        explore()
    except hypothesis.errors.Unsatisfiable:
        assert mode is GenerationMode.NEGATIVE  # an operation with nothing to get wrong (/healthz)


def _assert_clean(found: Findings, what: str) -> None:
    print(f"schemathesis, {what}: {found.summary()}")
    for (label, status), n in sorted(found.statuses.items()):
        print(f"  {label}: {status} x{n}")
    assert not found.failures, "\n".join(found.failures)


def test_with_a_valid_key_every_answer_is_declared_and_no_server_error(
        schema: Any, tenant: dict[str, str]):
    auth = _key(tenant["mine"])
    found = _explore(schema, headers=auth)
    on_a_run = _explore(schema, headers=auth, run_id=tenant["run_id"], only_runs=True)
    found.statuses += on_a_run.statuses
    found.failures += on_a_run.failures
    _assert_clean(found, "valid key")
    statuses = {status for _, status in found.statuses}
    assert {200, 202, 404, 409, 422} <= statuses  # it reached the operations' work, not just refusals


def test_without_a_key_everything_but_health_is_a_declared_401(schema: Any):
    found = _explore(schema, headers={})
    _assert_clean(found, "no key")
    # Only what is refused before a key is looked at: a malformed request, a body too large.
    # /healthz and /metrics answer without one, for probes and scrapers.
    open_to_all = ("GET /healthz", "GET /metrics")
    assert {status for (label, status) in found.statuses if label not in open_to_all} <= {400, 401, 413}


def test_another_tenants_key_finds_no_run_of_this_tenant(schema: Any, tenant: dict[str, str]):
    found = _explore(schema, headers=_key(tenant["theirs"]),
                     run_id=tenant["run_id"], only_runs=True)
    _assert_clean(found, "another tenant's key")
    assert not [s for (_, s) in found.statuses if s < 300 or s in (403, 409)], found.statuses
    assert 404 in {status for _, status in found.statuses}
