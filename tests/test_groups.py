"""Node groups, generated LANs and connections, traffic schedules and fault filters:
everything random comes from the seed, so a plan can be rebuilt exactly."""

from __future__ import annotations

import ipaddress
import itertools
import statistics
from pathlib import Path

import pytest
from p2plab.topology.faults import fault_ruleset, partition_blocks
from p2plab.topology.loading import parse_scenario
from p2plab.topology.plan import LabPlan, build_plan, link_checks
from p2plab.topology.schema import DialTarget, Publish
from p2plab.topology.traffic import send_offsets

pytestmark = pytest.mark.quick
SCENARIOS = Path(__file__).parent.parent / "scenarios"

HOMES = """\
name: homes
seed: {seed}
lans:
  - {{name: home, count: 10, subnet: 10.20.0.0/16, nat: port-restricted,
     link: {{latency_ms: 10}}}}
nodes:
  - {{name: relay, lan: public, role: relay}}
  - {{name: boot, count: 2, lan: public, role: bootstrap}}
  - name: peer
    count: 30
    lan: [home-*]
    relay: [relay]
    connect:
      - {{to: bootstrap}}
      - {{to: random, k: 3, among: ["peer-*"]}}
timeline:
  - {{publish: ["peer-0*"], count: 20, rate: 2, pattern: poisson, name: p}}
"""


def plan_for(seed: int) -> LabPlan:
    return build_plan(parse_scenario(HOMES.format(seed=seed), "homes.yaml"))


def test_groups_expand_into_numbered_nodes_dealt_round_robin() -> None:
    scenario = parse_scenario(HOMES.format(seed=1), "homes.yaml")
    assert [lan.name for lan in scenario.lans][:3] == ["home-1", "home-2", "home-3"]
    assert [lan.subnet for lan in scenario.lans][:2] == ["10.20.0.0/24", "10.20.1.0/24"]
    peers = [n for n in scenario.nodes if n.name.startswith("peer-")]
    assert [p.name for p in peers[:3]] == ["peer-01", "peer-02", "peer-03"]
    assert [p.lan for p in peers[:11]] == [f"home-{i}" for i in range(1, 11)] + ["home-1"]
    assert all(p.relay == ["relay"] for p in peers)
    assert scenario.node_origin("peer-17") == 2


def test_connection_strategies_reach_through_relays_when_both_sides_are_natted() -> None:
    scenario = parse_scenario(HOMES.format(seed=1), "homes.yaml")
    node = scenario.node("peer-05")
    bootstraps = [d for d in node.dial if isinstance(d, DialTarget) and d.node.startswith("boot")]
    assert bootstraps == [DialTarget(node="boot-1"), DialTarget(node="boot-2")]
    for n in scenario.nodes:
        for d in n.dial:
            assert isinstance(d, DialTarget)
            if d.node.startswith("peer-") and scenario.node(d.node).lan != n.lan:
                assert d.via == "relay", (n.name, d)


def test_same_seed_same_plan_and_another_seed_other_choices() -> None:
    a, b, c = plan_for(7), plan_for(7), plan_for(8)
    assert {n: p.args for n, p in a.nodes.items()} == {n: p.args for n, p in b.nodes.items()}
    assert {n: p.args for n, p in a.nodes.items()} != {n: p.args for n, p in c.nodes.items()}
    step = a.scenario.timeline[0]
    assert isinstance(step, Publish)
    assert send_offsets(step, a.scenario, 0, "peer-01") == send_offsets(step, b.scenario, 0,
                                                                        "peer-01")
    assert send_offsets(step, a.scenario, 0, "peer-01") != send_offsets(step, c.scenario, 0,
                                                                        "peer-01")


def test_traffic_patterns_keep_their_mean_rate() -> None:
    scenario = parse_scenario(HOMES.format(seed=3), "homes.yaml")
    for pattern, spread in (("constant", 0.0), ("poisson", 0.5), ("burst", 0.5)):
        step = Publish.model_validate({"publish": ["peer-01"], "count": 400, "rate": 4.0,
                                       "pattern": pattern, "burst": 5})
        offsets = send_offsets(step, scenario, 0, "peer-01")
        assert len(offsets) == 400 and offsets == sorted(offsets)
        assert offsets[-1] == pytest.approx(100, rel=0.15)
        gaps = [b - a for a, b in itertools.pairwise(offsets)]
        if pattern == "constant":
            assert max(gaps) - min(gaps) < 1e-6
        else:
            assert statistics.pstdev(gaps) > spread * statistics.mean(gaps)


def test_partition_blocks_the_other_groups_addresses_as_each_node_sees_them() -> None:
    plan = build_plan(parse_scenario((SCENARIOS / "relay-failure.yaml").read_text(), "r.yaml"))
    blocks = partition_blocks(plan, [["alice", "relay"], ["bob"]])
    bob_public = str(plan.public_ip("bob"))
    assert bob_public in blocks["alice"] and bob_public in blocks["relay"]
    assert str(plan.nodes["relay"].ip) in blocks["bob"]
    assert str(plan.public_ip("alice")) in blocks["carol"]  # the rest is a group too
    assert str(plan.public_ip("carol")) not in blocks["dave"]
    text = fault_ruleset(False, blocks["bob"])
    assert f"ip saddr {{ {', '.join(blocks['bob'])} }} drop" in text
    assert 'iifname != "lo" drop' in fault_ruleset(True, [])
    assert "drop" not in fault_ruleset(False, [])


def test_link_checks_measure_each_distinct_link_against_an_unimpaired_host() -> None:
    plan = build_plan(parse_scenario((SCENARIOS / "lossy-links.yaml").read_text(), "l.yaml"))
    checks = link_checks(plan)
    assert len(checks) == 3  # one per home LAN
    for check in checks:
        assert plan.nodes[check.target].segment == "public"
        assert plan.nodes[check.target].link is None
        assert check.configured_rtt_ms == 40.0
    assert len({c.port for c in checks}) == 3


def test_shipped_big_scenario_fits_its_address_plan() -> None:
    plan = build_plan(parse_scenario((SCENARIOS / "gossip-50.yaml").read_text(), "g.yaml"))
    assert len(plan.nodes) == 50
    ips = [n.ip for n in plan.nodes.values()]
    assert len(set(ips)) == 50
    for node in plan.nodes.values():
        assert node.ip in ipaddress.IPv4Network(plan.segments[node.segment].subnet)
