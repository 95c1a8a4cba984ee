"""Relays as shipped: the --relay-limits value, the scenario's relay_limits, what each
implementation honours, the relay's own account of its circuits, and labs where a relay
really cuts a circuit at its limit."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from p2plab.analysis.expectations import check
from p2plab.analysis.metrics import summarize
from p2plab.compose.impls.declaration import DeclarationError, load_declaration
from p2plab.compose.impls.registry import Registry, resolve_scenario
from p2plab.topology.loading import ScenarioError, parse_scenario
from p2plab.topology.plan import build_plan
from p2plab.topology.schema import Expectations, RelayCutExpectation

from p2plab.relay_limits import RelayLimits, RelayLimitsError, parse
from tests.conftest import P2PLAB, ROOT
from tests.test_analysis import IDS, _conn, _msg, _started, _write

LAB = """name: limits
lans:
  - {name: home-a, subnet: 10.1.0.0/24, nat: port-restricted}
  - {name: home-b, subnet: 10.2.0.0/24, nat: port-restricted}
nodes:
  - {name: relay, lan: public, role: relay, RELAY}
  - {name: alice, lan: home-a, relay: [relay], holepunch: false}
  - {name: bob, lan: home-b, relay: [relay], holepunch: false, dial: [{node: alice, via: relay}]}
"""


# -- the flag's value -------------------------------------------------------------------
@pytest.mark.quick
@pytest.mark.parametrize("text", ["unlimited", "circuit-bytes=0", "circuits=3,rate-limits=off",
                                  "reservation-duration=60,circuit-duration=120"])
def test_a_value_reads_back_as_written(text: str) -> None:
    assert parse(text).render() == text


@pytest.mark.quick
@pytest.mark.parametrize(("text", "words"), [
    ("unlimited,circuits=1", "stands alone"),
    ("circuits", "KEY=VALUE"),
    ("speed=3", "KEY one of reservations"),
    ("circuits=1,circuits=2", "given twice"),
    ("circuit-bytes=-1", "whole number of bytes"),
    ("circuit-duration=1.5", "whole number of seconds"),
    ("rate-limits=yes", "on or off"),
])
def test_a_bad_value_says_what_to_write(text: str, words: str) -> None:
    with pytest.raises(RelayLimitsError, match=words):
        parse(text)


# -- the scenario field -----------------------------------------------------------------
def _args(relay: str) -> list[str]:
    return list(build_plan(parse_scenario(LAB.replace("RELAY", relay))).nodes["relay"].args)


@pytest.mark.quick
def test_the_plan_passes_limits_only_when_the_scenario_sets_them() -> None:
    assert "--relay-limits" not in _args("relay_limits: default")
    args = _args("relay_limits: unlimited")
    assert args[args.index("--relay-limits") + 1] == "unlimited"
    args = _args("relay_limits: {circuit_duration_s: 0, circuit_bytes: 4096, rate_limits: false}")
    assert args[args.index("--relay-limits") + 1] == (
        "circuit-duration=0,circuit-bytes=4096,rate-limits=off")


@pytest.mark.quick
@pytest.mark.parametrize(("relay", "words"), [
    ("relay_limits: {}", "nodes[0].relay_limits: an empty relay_limits"),
    ("relay_limits: {circuit_byte: 3}", "nodes[0].relay_limits.circuit_byte: unknown field"),
    ("relay_limits: none", "nodes[0].relay_limits: 'none' is not relay limits"),
])
def test_bad_relay_limits_name_line_and_field(relay: str, words: str) -> None:
    with pytest.raises(ScenarioError) as error:
        parse_scenario(LAB.replace("RELAY", relay))
    assert f"<scenario>:6: {words}" in str(error.value)


@pytest.mark.quick
def test_limits_on_a_node_that_is_not_a_relay_are_refused() -> None:
    text = LAB.replace("RELAY", "").replace("holepunch: false}", "holepunch: false, "
                                            "relay_limits: unlimited}", 1)
    with pytest.raises(ScenarioError, match=r":7: nodes\[1\].relay_limits: only a relay"):
        parse_scenario(text)


@pytest.mark.quick
def test_a_limit_the_relays_implementation_lacks_is_refused_at_its_field() -> None:
    registry = Registry.load()
    resolve_scenario(registry, parse_scenario(LAB.replace(
        "RELAY", "impl: rust, relay_limits: {circuits: 3, rate_limits: false}")))
    with pytest.raises(ScenarioError) as error:
        resolve_scenario(registry, parse_scenario(LAB.replace(
            "RELAY", "impl: py, relay_limits: {circuits: 3, circuit_bytes: 9}")))
    message = str(error.value)
    assert "<scenario>:6: nodes[0].relay_limits: py@0.8.1's relay does not honour circuits " \
        in message and "circuit-bytes" not in message.split("(")[0]


@pytest.mark.quick
def test_a_declaration_with_an_unknown_limit_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "p2plab-impl.yaml"
    path.write_text("name: mine\nversion: '1'\nlibrary: {name: x, version: '1'}\n"
                    "build: {python: {module: mine, package: mine}}\n"
                    "relay_limits: [unlimited, circuit-bits]\n")
    with pytest.raises(DeclarationError, match=r":5: relay_limits: 'circuit-bits': not a "):
        load_declaration(path)


@pytest.mark.quick
@pytest.mark.parametrize(("argv", "words"), [
    (["--relay-limits", "circuit-bytes=9"], "--relay-limits needs --role relay"),
    (["--role", "relay", "--relay-limits", "circuits=9"], "py-libp2p's relay has no circuits"),
    (["--role", "relay", "--relay-limits", "circuits=x"], "whole number"),
])
def test_the_py_node_refuses_limits_it_cannot_apply(argv: list[str], words: str) -> None:
    done = subprocess.run([sys.executable, "-m", "p2plab.node", "--no-stdin", *argv],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and words in done.stderr and len(
        done.stderr.strip().splitlines()) == 1, done.stderr


@pytest.mark.quick
def test_the_py_relay_maps_limits_onto_py_libp2p() -> None:
    from libp2p.relay.circuit_v2.protocol import DEFAULT_RELAY_LIMITS
    from p2plab.node.relay import UNLIMITED_RELAY_LIMITS, relay_limits

    assert relay_limits(None) == DEFAULT_RELAY_LIMITS
    assert relay_limits(RelayLimits(unlimited=True)) == UNLIMITED_RELAY_LIMITS
    mapped = relay_limits(parse("circuit-bytes=0,circuit-duration=7,reservations=2"))
    assert (mapped.data, mapped.duration, mapped.max_reservations) == (0, 7, 2)
    assert mapped.max_circuit_conns == DEFAULT_RELAY_LIMITS.max_circuit_conns


# -- the relay's account ----------------------------------------------------------------
def _hop(t: float, action: str, src: str = "", dst: str = "", reason: str = "") -> dict:
    return {"t": t, "node": "r", "type": "relay_hop", "action": action,
            "src_peer": IDS.get(src, ""), "dst_peer": IDS.get(dst, ""), "reason": reason}


def _relayed(node: str, peer: str, t: float, kind: str = "connection_opened") -> dict:
    return {**_conn(kind, node, peer, t, "relayed", "/p2p-circuit"), "transport": "circuit"}


@pytest.mark.quick
def test_a_cut_is_set_against_the_pair_and_its_messages(tmp_path: Path) -> None:
    events = [_started("a"), _started("b"), _started("r", "relay"),
              _hop(1.0, "reservation-accepted", "a"),
              _hop(2.0, "circuit-accepted", "b", "a"), _relayed("b", "a", 2.0),
              _msg("message_published", "a", "a", 1, 3.0),
              _msg("message_received", "b", "a", 1, 3.01),
              _hop(5.0, "circuit-closed", "b", "a", "bytes"),
              _relayed("b", "a", 5.0, "connection_closed"),
              _msg("message_published", "a", "a", 2, 5.5),  # while apart: lost
              _msg("message_published", "a", "a", 3, 6.0),
              _msg("message_received", "b", "a", 3, 6.2),   # came round another way
              _hop(7.0, "circuit-accepted", "b", "a"), _relayed("b", "a", 7.0),
              _msg("message_published", "a", "a", 4, 7.5),
              _hop(9.0, "circuit-closed", "b", "a", "ended")]
    circuits = summarize(_write(tmp_path, events))["relay_circuits"]
    assert circuits["actions"] == {"circuit-accepted": 2, "circuit-closed": 2,
                                   "reservation-accepted": 1}
    assert circuits["closed_by_reason"] == {"bytes": 1, "ended": 1}
    assert circuits["limit_cuts"] == 1
    [cut] = circuits["cuts"]  # a circuit its ends finished is not a cut
    assert cut == {"relay": "r", "src": "b", "dst": "a", "reason": "bytes", "at_s": 5.0,
                   "lived_s": 3.0, "reconnected_after_s": 2.0, "reconnected_kind": "relayed",
                   "messages_while_cut": 2, "arrived_while_cut": 1}


@pytest.mark.quick
def test_cut_verdicts_count_reasons_and_relays(tmp_path: Path) -> None:
    events = [_started("a"), _started("b"), _started("r", "relay"),
              _hop(2.0, "circuit-closed", "b", "a", "duration"),
              _hop(4.0, "circuit-closed", "b", "a", "bytes")]
    summary = summarize(_write(tmp_path, events))
    summary["status"] = "PASS"

    def verdicts(*cuts: RelayCutExpectation) -> list[tuple[bool, str]]:
        found = check(Expectations(relay_cuts=list(cuts)), summary, None)[1:]
        return [(v.passed, v.observed) for v in found]

    assert verdicts(RelayCutExpectation(reason="limit", min=2))[0][0]
    assert verdicts(RelayCutExpectation(reason="bytes", max=0)) == [
        (False, "1 cut (b->a at 4 s)")]
    assert not verdicts(RelayCutExpectation(reason="duration", relay="other"))[0][0]
    assert not verdicts(RelayCutExpectation(reason="connection-lost"))[0][0]
    # A run whose relays wrote no account cannot pass "none cut" by silence.
    (tmp_path / "quiet").mkdir()
    quiet = summarize(_write(tmp_path / "quiet", [_started("a"), _started("r", "relay")]))
    [verdict] = check(Expectations(relay_cuts=[RelayCutExpectation(reason="bytes", max=0)]),
                      quiet, None)[1:]
    assert not verdict.passed and "no relay reported" in verdict.observed


@pytest.mark.quick
def test_min_and_max_must_be_in_order() -> None:
    with pytest.raises(ValueError, match="max 1 is below min 2"):
        RelayCutExpectation(reason="bytes", min=2, max=1)
    assert RelayCutExpectation(reason="bytes").at_least == 1
    assert RelayCutExpectation(reason="bytes", max=3).at_least == 0


# -- real relays ------------------------------------------------------------------------
@pytest.mark.netns
@pytest.mark.usefixtures("no_leftovers")
def test_a_relay_as_shipped_cuts_the_circuit_at_128_kib(tmp_path: Path) -> None:
    done = subprocess.run([*P2PLAB, "run", "relay-limits", "--backend", "netns",
                           "--results", str(tmp_path)], capture_output=True, text=True,
                          timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    run = next(tmp_path.iterdir())
    circuits = json.loads((run / "summary.json").read_text())["relay_circuits"]
    assert {c["reason"] for c in circuits["cuts"]} == {"bytes"}, circuits
    for cut in circuits["cuts"]:
        # Alice sends 20 KiB/s: 128 KiB lasts about 6 s, never the 2 minutes.
        assert (cut["src"], cut["dst"]) == ("bob", "alice") and 3 < cut["lived_s"] < 20
    closed = [json.loads(line) for name in ("alice", "bob")
              for line in (run / "events" / f"{name}.jsonl").read_text().splitlines()
              if '"connection_closed"' in line and '"relayed"' in line]
    # Both ends saw each cut as their relayed connection closing.
    assert len(closed) >= 2 * len(circuits["cuts"]), closed
    assert "Relayed circuits" in (run / "report.md").read_text()


@pytest.mark.netns
@pytest.mark.usefixtures("no_leftovers")
def test_the_py_relay_cuts_at_the_byte_limit_it_was_given(tmp_path: Path) -> None:
    scenario = tmp_path / "py-limits.yaml"
    scenario.write_text(LAB.replace("RELAY", "impl: py, relay_limits: {circuit_bytes: 40000}")
                        + "timeline:\n"
                        "  - {wait: connection, between: [alice, bob], kind: relayed}\n"
                        "  - {wait: topic-peers, nodes: [alice, bob], min: 1}\n"
                        "  - {publish: [alice], count: 40, size: 2048, rate: 10}\n"
                        "  - {sleep: 2}\n")
    done = subprocess.run([*P2PLAB, "run", str(scenario), "--backend", "netns",
                           "--results", str(tmp_path / "results")], capture_output=True,
                          text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    run = next((tmp_path / "results").iterdir())
    closed = [line for line in (run / "events" / "alice.jsonl").read_text().splitlines()
              if '"connection_closed"' in line and '"relayed"' in line]
    summary = json.loads((run / "summary.json").read_text())
    # 80 KiB through a 40,000-byte circuit: py-libp2p's relay resets it at least once.
    assert closed, "the relayed connection was never cut"
    assert summary["delivery"]["delivery_ratio"] < 1.0
    assert summary["relay_circuits"] == {}  # the py relay writes no account of its own
