"""Hole punches against NAT theory and as a population beside a field campaign: the
transport rule, the interval, the figures from synthetic events, and a simulated
``wild`` whose outcome is counted here from its NATs without the theory code."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from p2plab.analysis.event_log import read_event_log
from p2plab.analysis.expectations import check
from p2plab.analysis.punch_field import punch_population, wilson_interval
from p2plab.analysis.punch_theory import Side
from p2plab.orchestrate.session import run_scenario
from p2plab.topology.loading import load_scenario
from p2plab.topology.nat import preset_chain, punch_transport
from p2plab.topology.plan import build_plan
from p2plab.topology.schema import Expectations

from tests.conftest import ROOT

pytestmark = pytest.mark.quick

PR, RC, SYM = (preset_chain(p) for p in ("port-restricted", "restricted-cone", "symmetric"))


def test_the_transport_a_punch_ends_on() -> None:
    assert punch_transport(PR, PR, tcp=True, quic=True) == "quic"
    assert punch_transport(PR, PR, tcp=True, quic=False) == "tcp"
    assert punch_transport(PR, SYM, tcp=True, quic=True) is None
    # QUIC's fixed roles (libp2p/specs#487): the dialler's ClientHello must get in, which
    # a restricted-cone listener admits from a symmetric dialler's new port; TCP's
    # simultaneous open works either way round.
    assert punch_transport(RC, SYM, tcp=True, quic=True) == "quic"
    assert punch_transport(SYM, RC, tcp=True, quic=True) == "tcp"
    assert punch_transport(SYM, RC, tcp=False, quic=True) is None
    blocked = [replace(PR[0], udp_blocked=True)]
    assert punch_transport(blocked, PR, tcp=True, quic=True) == "tcp"
    assert punch_transport([], PR, tcp=False, quic=False) is None


def test_the_wilson_interval() -> None:
    low, high = wilson_interval(5, 10)
    assert (low, high) == (pytest.approx(0.2366, abs=1e-4), pytest.approx(0.7634, abs=1e-4))
    low, high = wilson_interval(0, 10)
    assert low == 0.0 and high == pytest.approx(0.2775, abs=1e-4)
    assert wilson_interval(10, 10)[1] == pytest.approx(1.0)
    assert wilson_interval(0, 0) == (0.0, 1.0)


def _punch(node: str, peer: str, attempt: int, outcome: str, transport: str,
           role: str = "initiator") -> dict:
    return {"v": 1, "t": float(attempt), "node": node, "type": "hole_punch", "peer": f"P{peer}",
            "attempt": attempt, "outcome": outcome, "elapsed_ms": 100.0, "reason": "",
            "transport": transport, "role": role}


def test_a_population_is_measured_the_campaigns_way(tmp_path: Path) -> None:
    """Single-transport attempts give the TCP and QUIC rates, unfiltered ones the final
    transport; responders' events are not attempts."""
    both, tcp, quic = Side("x", PR, True, True), Side("x", PR, True, False), \
        Side("x", PR, False, True)
    sides = {"a": both, "b": both, "c": tcp, "d": quic, "t": both}
    nodes = {name: {"peer_id": f"P{name}"} for name in sides}
    events = [_punch("a", "t", 1, "success", "quic"),
              _punch("t", "a", 1, "success", "quic", role="responder"),
              _punch("b", "t", 1, "failure", "tcp"), _punch("b", "t", 2, "success", "tcp"),
              _punch("c", "t", 1, "failure", "tcp"),
              _punch("d", "t", 1, "success", "quic")]
    out = tmp_path / "events"
    out.mkdir()
    for name in sides:
        mine = [e for e in events if e["node"] == name]
        (out / f"{name}.jsonl").write_text("".join(json.dumps(e) + "\n" for e in mine))
    figures = punch_population(read_event_log(out), nodes, sides, "dcutr-campaign-2025")
    assert figures["pairs"] == 4
    assert (figures["success"]["successes"], figures["success"]["attempts"]) == (3, 5)
    assert figures["first_attempt_share"] == pytest.approx(2 / 3, abs=1e-4)
    by = figures["by_transport"]
    assert [(by[k]["successes"], by[k]["attempts"]) for k in ("both", "tcp", "quic")] == [
        (2, 3), (0, 1), (1, 1)]
    assert figures["final_transport_quic_share"] == 0.5
    assert figures["overlaps_published_range"] is True
    assert figures["published"][0]["figure"] == "success rate"


def test_wild_in_the_simulator_punches_where_neither_nat_is_symmetric(tmp_path: Path) -> None:
    """Counted from the plan, not from the theory code: every NAT in wild is port-
    restricted or symmetric, so a pair punches exactly when neither side is symmetric."""
    path = ROOT / "scenarios" / "wild.yaml"
    plan = build_plan(load_scenario(path))
    symmetric = {name for name, node in plan.nodes.items()
                 if node.segment != "public" and plan.router_for(node.segment).nat == "symmetric"}
    result = run_scenario(path, "sim", tmp_path, lambda _: None)
    summary = json.loads((result.run_dir / "summary.json").read_text())
    pairs = [pair["nodes"] for pair in summary["hole_punch"].values()]
    assert len(pairs) == 112
    expected = sum(1 for a, b in pairs if a not in symmetric and b not in symmetric)
    field = summary["punch_field"]
    assert field["success"]["successes"] == expected
    assert 0 < expected < 112
    theory = summary["punch_theory"]
    assert (theory["agree"], theory["pairs"], theory["theory_direct"]) == (112, 112, expected)
    assert not theory["disagreements"]
    report = (result.run_dir / "report.md").read_text()
    assert "Hole punches against NAT theory" in report
    assert "Hole punching beside the field" in report and "Trautwein et al." in report


def test_only_a_named_cause_explains_a_difference_from_theory() -> None:
    """What the routers recorded is always there with forensics on; a pair counts as
    explained only when it names a cause NAT theory does not model."""
    def disagreement(pair: str, cause: str | None) -> dict:
        return {"pair": pair, "nats": "port-restricted / port-restricted",
                "theory": "direct over tcp", "observed": "relayed",
                "recorded": "bob sent TCP to ...; it let none of bob's packets in",
                "explained": cause}

    theory = {"pairs": 20, "agree": 17, "disagreements": [
        disagreement("a<->b", "no-common-transport"), disagreement("a<->c", None),
        disagreement("a<->d", None)]}
    summary = {"punch_theory": theory, "hole_punch": {}, "delivery": {}}
    [_, verdict] = check(Expectations(punch_theory_agreement_min=0.95), summary, None)
    assert not verdict.passed and verdict.value == pytest.approx(18 / 20)
    assert "17 as theory says, 1 no-common-transport" in verdict.observed
    assert "a<->c" in verdict.observed and "a<->b" not in verdict.observed.split("unexplained")[1]
    theory["disagreements"] = theory["disagreements"][:1]
    theory["pairs"] = 18
    [_, verdict] = check(Expectations(punch_theory_agreement_min=0.95), summary, None)
    assert verdict.passed and verdict.value == 1.0
