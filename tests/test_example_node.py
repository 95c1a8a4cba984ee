"""The example node (examples/chat-node: rust-libp2p's chat shape, the contract through
the kit), registered only by its declaration, passes every clause of the contract."""

from __future__ import annotations

import pytest
from p2plab.compose.impls.registry import Registry
from p2plab.orchestrate.conformance.checker import Case, cases, run_case, run_lab_cases
from p2plab.orchestrate.conformance.clauses import Clause

from tests.conftest import ROOT

REGISTRY = Registry.load(extra=[ROOT / "examples" / "chat-node" / "p2plab-impl.yaml"])
CASES = [c for c in cases("example-chat", REGISTRY) if isinstance(c.clause, Clause)]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_example_node_clause(case: Case) -> None:
    outcome = run_case(case, REGISTRY)
    assert outcome.passed, outcome.detail


@pytest.mark.quick
def test_it_claims_no_relay_or_hole_punching() -> None:
    """Its declaration says capabilities: []: every relay and DCUtR case in which it
    plays a role is listed as not claimed (no lab is built for them), and fails nothing."""
    lab_cases = [c for c in cases("example-chat", REGISTRY) if not isinstance(c.clause, Clause)]
    outcomes = run_lab_cases(lab_cases, REGISTRY)
    assert len(outcomes) == 14 and not any(o.claimed or o.failed for o in outcomes)
    assert "leaves out holepunch, relay-client, relay-hop" in outcomes[-7].detail
