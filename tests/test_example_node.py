"""The example node (examples/chat-node: rust-libp2p's chat shape, the contract through
the kit), registered only by its declaration, passes every clause of the contract."""

from __future__ import annotations

import pytest
from p2plab.compose.impls.registry import Registry
from p2plab.orchestrate.conformance.checker import Case, cases, run_case

from tests.conftest import ROOT

REGISTRY = Registry.load(extra=[ROOT / "examples" / "chat-node" / "p2plab-impl.yaml"])
CASES = cases("example-chat", REGISTRY)


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_example_node_clause(case: Case) -> None:
    outcome = run_case(case, REGISTRY)
    assert outcome.passed, outcome.detail
