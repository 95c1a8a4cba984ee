"""The scenario model: shipped scenarios load; broken ones fail with file, line, field."""

from __future__ import annotations

from pathlib import Path

import pytest
from p2plab.topology.loading import ScenarioError, load_scenario, parse_scenario, shipped_files

pytestmark = pytest.mark.quick

HERE = Path(__file__).parent
SHIPPED = [p for p in shipped_files(HERE.parent / "scenarios")
           if "matrix:" not in p.read_text()]  # matrices: tests/test_matrix.py

# file -> (line, field, words the message must contain)
BROKEN = {
    "unknown-field.yaml": (5, "nodes[0].colour", "unknown field 'colour'"),
    "missing-lan.yaml": (6, "nodes[1].lan", "LAN 'office' does not exist"),
    "overlapping-subnets.yaml": (4, "lans[1].subnet", "overlaps 10.1.0.0/24"),
    "relay-not-relay.yaml": (4, "nodes[1].relay[0]", "not a node with role: relay"),
    "bad-step.yaml": (6, "timeline[1]", "a step is one of"),
    "publish-by-relay.yaml": (5, "timeline[0]", "relays do not chat"),
    "bad-subnet.yaml": (3, "lans[0].subnet", "is not an IPv4 subnet"),
    "not-yaml.yaml": (3, None, "not valid YAML"),
    "too-many-nodes.yaml": (3, "lans[0].subnet", "has room for 4"),
    "duplicate-node.yaml": (4, "nodes[1].name", "used twice"),
    "group-name-too-long.yaml": (3, "nodes[0].name", "longer than 20 characters"),
    "lan-pool-too-small.yaml": (3, "lans[0].count", "holds only 2 /24 subnets, not 5"),
    "pattern-matches-nothing.yaml": (5, "nodes[0].lan", "pattern 'office-*' matches no LAN"),
    "unreachable-connect.yaml": (8, "nodes[0].connect[0]", "neither reserves on a relay"),
    "jitter-above-latency.yaml": (4, "lans[0].link", "jitter_ms cannot exceed latency_ms"),
    "partition-splits-nat.yaml": (8, "timeline[0].partition", "share its NAT address"),
    "unknown-flow.yaml": (9, "expect.flows[0].flow", "no publish step is named 'warm-up'"),
    "recovery-without-fault.yaml": (9, "expect.recovery[0].after", "has no heal step"),
    "at-out-of-order.yaml": (6, "timeline[1].at", "comes before an earlier step's at: 10"),
    "isolated-lan-dial.yaml": (7, "connect", "has nat: null (no router, no way out)"),
    "impossible-graph.yaml": (4, "connect", "cannot build a random-regular graph"),
    "kill-unknown-node.yaml": (5, "timeline[0]", "node 'peer-4' does not exist"),
    "bad-impl-spec.yaml": (5, "nodes[0].impl", "give NAME or NAME@VERSION"),
    "unknown-msg-id.yaml": (2, "msg_id", "'origin-seq' or 'content'"),
    "alias-bomb.yaml": (7, None, "more than 200,000 values through aliases"),
    "recursive-alias.yaml": (2, None, "recursive alias"),
    "duplicate-key.yaml": (5, "expect", "duplicate key 'expect' (first at line 4)"),
    "not-utf8.yaml": (1, None, "not UTF-8 text"),
    "nested-too-deep.yaml": (None, None, "nested hundreds of levels deep"),
    "node-named-like-router.yaml": (5, "nodes[0].name", "LAN 'home''s NAT router"),
    "lan-named-like-carrier.yaml": (4, "lans[1].name", "LAN 'isp''s carrier segment"),
    "dial-self.yaml": (3, "nodes[0].dial[0]", "'alice' dials itself"),
    "dial-outside-lab.yaml": (3, "nodes[0].dial[0]", "points outside the lab"),
    "name-with-newline.yaml": (3, "nodes[0].name", "is not a valid name"),
    "sleep-infinite.yaml": (5, "timeline[0].sleep", "inf is not a finite number"),
    "timeout-nan.yaml": (5, "timeline[0].timeout", "nan is not a finite number"),
    "timeout-negative.yaml": (5, "timeline[0].timeout", "-5 is out of range"),
    "at-too-late.yaml": (5, "timeline[0].at", "out of range: input should be less than"),
    "topic-like-flag.yaml": (3, "nodes[0].topics", "'-rf' is not a valid topic"),
    "publish-topic-like-flag.yaml": (5, "timeline[0].topic", "'--help' is not a valid topic"),
    "subnet-everything.yaml": (3, "lans[0].subnet", "larger than a /8"),
    "subnet-loopback.yaml": (3, "lans[0].subnet", "lies in loopback"),
    "subnet-multicast.yaml": (3, "lans[0].subnet", "lies in multicast"),
    "subnet-link-local.yaml": (3, "lans[0].subnet", "lies in link-local"),
    "placement-unknown-key.yaml": (5, "nodes[0].placement.constraints",
                                   "use one of node.id, node.hostname"),
    "punch-reference-without-relay.yaml": (2, "punch_reference",
                                           "no pair can punch without a relay"),
}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_scenarios_load(path: Path) -> None:
    scenario = load_scenario(path)
    assert scenario.name == path.stem
    # Every shipped scenario proves something: messages delivered, NATs as declared, or
    # hole punches as NAT theory says.
    expect = scenario.expect
    assert (expect.delivery_ratio_min is not None or expect.flows or scenario.probe_nat
            or expect.punch_theory_agreement_min is not None), path


def test_every_broken_file_has_a_case() -> None:
    assert sorted(p.name for p in (HERE / "broken").glob("*.yaml")) == sorted(BROKEN)


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_scenario_errors_name_file_line_and_field(name: str) -> None:
    line, field, words = BROKEN[name]
    path = HERE / "broken" / name
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    message = str(info.value)
    prefix = (f"{path}:{line}: " if line else f"{path}: ") + (f"{field}: " if field else "")
    assert any(m.startswith(prefix) and words in m for m in message.splitlines()), message


def test_all_cross_reference_errors_reported_together() -> None:
    text = """\
name: x
nodes:
  - {name: a, lan: nowhere}
  - {name: b, lan: public, dial: [{node: ghost}]}
"""
    with pytest.raises(ScenarioError) as info:
        parse_scenario(text, "x.yaml")
    lines = str(info.value).splitlines()
    assert "x.yaml:3: nodes[0].lan: LAN 'nowhere' does not exist; known: public" in lines
    assert "x.yaml:4: nodes[1].dial[0]: node 'ghost' does not exist" in lines


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="cannot read the scenario"):
        load_scenario(tmp_path / "nope.yaml")
