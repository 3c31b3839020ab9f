"""Schemathesis over the live app's /openapi.json: no 5xx, nothing the schema does not say.

Fixed seed and example count, so the run is the same in CI and here; bench/fuzz.py runs the
same fuzzer deeper. See tests/fixtures/fuzz.py for what counts as a finding.
"""

from __future__ import annotations

import pytest

from tests.fixtures.app import ApiFactory
from tests.fixtures.fuzz import build_world, fuzz_app

SEED = 20261203
EXAMPLES = 12


@pytest.mark.slow
def test_every_operation_survives_schema_fuzzing(api_factory: ApiFactory) -> None:
    # Rate limits off: hundreds of requests from one key would otherwise end in 429s, which
    # would stop the fuzzer from reaching the handlers (the 429 itself is documented).
    api = api_factory(rate_limit_read_per_sec=0, rate_limit_write_per_sec=0)
    world = build_world(api)
    operations, findings = fuzz_app(world, max_examples=EXAMPLES, seed=SEED)
    documented = sum(len(ops) for ops in api.client.get("/openapi.json").json()["paths"].values())
    assert operations == documented >= 19  # every operation, storage URLs included
    assert not findings, f"{len(findings)} findings:\n\n" + "\n\n".join(findings)
