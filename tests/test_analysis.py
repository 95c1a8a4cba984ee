"""Metrics and verdicts from synthetic event logs (no network needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from p2plab.analysis.expectations import check
from p2plab.analysis.metrics import summarize
from p2plab.topology.schema import ConnectionExpectation, Expectations, HolePunchExpectation

pytestmark = pytest.mark.quick

IDS = {"a": "PA", "b": "PB", "c": "PC", "r": "PR"}


def _write(tmp: Path, events: list[dict]) -> Path:
    out = tmp / "events"
    out.mkdir()
    by_node: dict[str, list[dict]] = {}
    for e in events:
        by_node.setdefault(e["node"], []).append({"v": 1, **e})
    for node, evs in by_node.items():
        (out / f"{node}.jsonl").write_text("".join(json.dumps(e) + "\n" for e in evs))
    return out


def _started(node: str, role: str = "peer") -> dict:
    return {"t": 0.0, "node": node, "type": "node_started", "peer_id": IDS[node],
            "listen_addrs": [], "announced_addrs": [], "role": role, "topic": "chat"}


def _msg(kind: str, node: str, origin: str, seq: int, t: float) -> dict:
    return {"t": t, "node": node, "type": kind, "msg_id": f"{IDS[origin]}/{seq}",
            "origin": IDS[origin], "seq": seq, "size": 10, "topic": "chat"}


def _conn(kind: str, node: str, peer: str, t: float, how: str, addr: str) -> dict:
    return {"t": t, "node": node, "type": kind, "peer": IDS[peer], "remote_addr": addr,
            "kind": how, "transport": "tcp", "direction": "outbound"}


def test_delivery_ratio_latency_and_missing(tmp_path: Path) -> None:
    events = [_started("a"), _started("b"), _started("c"), _started("r", "relay"),
              _msg("message_published", "a", "a", 1, 10.0),
              _msg("message_received", "b", "a", 1, 10.010),
              _msg("message_received", "c", "a", 1, 10.030),
              _msg("message_received", "c", "a", 1, 10.040),  # a duplicate
              _msg("message_published", "a", "a", 2, 11.0),
              _msg("message_received", "b", "a", 2, 11.020)]
    summary = summarize(_write(tmp_path, events))
    d = summary["delivery"]
    # The relay is not a subscriber, so each message expects 2 receivers.
    assert (d["deliveries"], d["deliveries_expected"]) == (3, 4)
    assert d["delivery_ratio"] == pytest.approx(0.75)
    assert d["duplicate_receptions"] == 1
    assert d["latency_ms"]["max"] == pytest.approx(30.0, abs=1e-6)
    assert d["latency_ms"]["p50"] == pytest.approx(20.0, abs=1e-6)
    second = d["per_message"][1]
    assert second["missing"] == ["c"] and second["ratio"] == 0.5
    verdicts = check(Expectations(delivery_ratio_min=1.0), summary, None)
    assert [v.passed for v in verdicts] == [True, False]


def test_arrivals_split_mesh_pushes_from_gossip(tmp_path: Path) -> None:
    def got(node: str, seq: int, t: float, via_mesh: bool | None) -> dict:
        event = _msg("message_received", node, "a", seq, t)
        return event if via_mesh is None else {**event, "via_peer": IDS["r"],
                                               "via_mesh": via_mesh}
    events = [_started("a"), _started("b"), _started("c"),
              _msg("message_published", "a", "a", 1, 10.0),
              got("b", 1, 10.010, True), got("c", 1, 10.900, False),
              got("c", 1, 10.950, True),  # a later copy: only the first one counts
              _msg("message_published", "a", "a", 2, 11.0),
              got("b", 2, 11.020, True), got("c", 2, 11.030, None)]
    arrivals = summarize(_write(tmp_path, events))["arrivals"]
    assert arrivals["deliveries"] == 4
    assert (arrivals["mesh"]["count"], arrivals["outside_mesh"]["count"],
            arrivals["unknown"]["count"]) == (2, 1, 1)
    assert arrivals["outside_mesh"]["latency_ms_p50"] == pytest.approx(900.0, abs=1e-6)
    assert arrivals["mesh"]["share"] == 0.5


def test_connection_final_state_and_hole_punch_time(tmp_path: Path) -> None:
    events = [_started("a"), _started("b"),
              _conn("connection_opened", "a", "b", 1.0, "relayed", "/p2p/X/p2p-circuit"),
              _conn("connection_opened", "a", "b", 3.5, "direct", "/ip4/1.2.3.4/tcp/1"),
              _conn("connection_closed", "a", "b", 4.0, "relayed", "/p2p/X/p2p-circuit"),
              {"t": 3.6, "node": "a", "type": "hole_punch", "peer": "PB", "attempt": 1,
               "outcome": "success", "elapsed_ms": 200.0, "reason": "", "transport": "tcp",
               "role": "initiator"},
              {"t": 3.6, "node": "b", "type": "hole_punch", "peer": "PA", "attempt": 1,
               "outcome": "success", "elapsed_ms": 200.0, "reason": "", "transport": "tcp",
               "role": "responder"},
              # at shutdown, after the timeline: must not count
              _conn("connection_closed", "a", "b", 9.0, "direct", "/ip4/1.2.3.4/tcp/1")]
    summary = summarize(_write(tmp_path, events), until=5.0)
    pair = summary["connections"]["a<->b"]
    assert pair["final"] == "direct" and pair["ever"] == ["relayed", "direct"]
    punch = summary["hole_punch"]["a<->b"]
    assert (punch["attempts"], punch["successes"], punch["outcome"]) == (1, 1, "success")
    assert punch["time_to_direct_ms"] == pytest.approx(2500.0)
    expect = Expectations(
        connections=[ConnectionExpectation(between=("b", "a"), final="relayed")],
        hole_punch=[HolePunchExpectation(between=("a", "b"), outcome="success")],
    )
    verdicts = check(expect, summary, None)
    assert [(v.name, v.passed) for v in verdicts] == [
        ("timeline completed", True), ("connection a<->b", False), ("hole punch a<->b", True)]
    summary_after = summarize(tmp_path / "events", until=None)
    assert summary_after["connections"]["a<->b"]["final"] == "none"


def test_a_failed_punch_with_a_direct_connection_is_told_apart(tmp_path: Path) -> None:
    def punch(node: str, peer: str, t: float, role: str) -> dict:
        return {"t": t, "node": node, "type": "hole_punch", "peer": IDS[peer], "attempt": 1,
                "outcome": "failure", "elapsed_ms": 9000.0, "reason": "Giving up",
                "transport": "quic", "role": role}

    events = [_started("a"), _started("b"), _started("c"),
              _conn("connection_opened", "a", "b", 1.0, "relayed", "/p2p/X/p2p-circuit"),
              # b's own dial got in: a direct connection, though a's DCUtR gave up
              _conn("connection_opened", "a", "b", 1.5, "direct", "/ip4/1.2.3.4/udp/9"),
              punch("a", "b", 10.0, "initiator"),
              _conn("connection_opened", "a", "c", 1.0, "relayed", "/p2p/X/p2p-circuit"),
              punch("a", "c", 10.0, "initiator")]
    summary = summarize(_write(tmp_path, events))
    ab, ac = summary["hole_punch"]["a<->b"], summary["hole_punch"]["a<->c"]
    assert (ab["outcome"], ab["direct_anyway"]) == ("failure", True)
    assert (ac["outcome"], ac["direct_anyway"]) == ("failure", False)
    [_, verdict] = check(Expectations(hole_punch=[
        HolePunchExpectation(between=("a", "b"), outcome="failure")]), summary, None)
    assert verdict.passed and "a direct connection opened" in verdict.observed


def test_the_share_of_pairs_that_punched() -> None:
    """hole_punch_success_min: pairs that tried DCUtR and punched, with why the others
    did not (each pair's last failure, commonest first)."""
    fail = {"outcome": "failure", "failures": [{"reason": "early"}, {"reason": "gave up"}]}
    punches = {"a<->b": {"outcome": "success", "failures": []}, "c<->d": fail,
               "e<->f": fail, "g<->h": {"outcome": "failure", "failures": [{"reason": "x"}]}}
    summary = {"delivery": {}, "hole_punch": punches}
    (verdict,) = check(Expectations(hole_punch_success_min=0.25), summary, None)[1:]
    assert verdict.passed and verdict.value == 0.25
    assert verdict.observed == "25.0% (1/4 pairs); failed: 2 x gave up; 1 x x"
    (strict,) = check(Expectations(hole_punch_success_min=0.5), summary, None)[1:]
    assert not strict.passed and strict.expected == ">= 50% of pairs that tried"
    (none,) = check(Expectations(hole_punch_success_min=0.5),
                    {"delivery": {}, "hole_punch": {}}, None)[1:]
    assert not none.passed and none.observed == "no pair tried"


def test_timeline_error_fails_the_run(tmp_path: Path) -> None:
    summary = summarize(_write(tmp_path, [_started("a")]))
    verdicts = check(Expectations(), summary, "timed out waiting")
    assert not verdicts[0].passed and "timed out" in verdicts[0].observed
    assert summary["delivery"]["delivery_ratio"] is None
