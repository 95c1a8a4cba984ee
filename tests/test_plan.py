"""Address plan, NAT rules and node flags computed from the model."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import pytest

from node.identity import peer_id_for_seed
from topology.nat import nat_ruleset
from topology.plan import build_plan
from topology.scenario import load_scenario

pytestmark = pytest.mark.quick
SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"


def test_nat_relay_addresses_and_routes() -> None:
    plan = build_plan(load_scenario(SCENARIOS / "nat-relay.yaml"))
    alice, bob, relay = plan.nodes["alice"], plan.nodes["bob"], plan.nodes["relay"]
    assert str(alice.ip) == "10.1.0.10" and str(alice.gateway) == "10.1.0.1"
    assert str(bob.ip) == "10.2.0.10" and str(bob.gateway) == "10.2.0.1"
    assert relay.segment == "public" and relay.gateway is None
    assert {str(r.wan_ip) for r in plan.routers.values()} == {"203.0.113.2", "203.0.113.3"}
    assert plan.public_ip("alice") == plan.routers["home-a-gw"].wan_ip
    # bob dials alice through the relay's public address.
    dial = bob.args[bob.args.index("--dial") + 1]
    assert dial == (f"/ip4/{relay.ip}/tcp/4001/p2p/{relay.peer_id}"
                    f"/p2p-circuit/p2p/{alice.peer_id}")
    assert "--no-holepunch" in alice.args
    assert sorted(plan.graph.neighbors("home-a-gw")) == ["home-a", "public"]


def test_peer_ids_are_reproducible_from_the_seed() -> None:
    a = build_plan(load_scenario(SCENARIOS / "nat-holepunch.yaml"))
    b = build_plan(load_scenario(SCENARIOS / "nat-holepunch.yaml"))
    assert a.nodes["alice"].peer_id == b.nodes["alice"].peer_id
    assert a.nodes["alice"].peer_id == peer_id_for_seed(a.nodes["alice"].key_seed)
    assert a.nodes["alice"].peer_id != a.nodes["bob"].peer_id


def test_node_argv_points_into_the_run_dir() -> None:
    plan = build_plan(load_scenario(SCENARIOS / "lan.yaml"))
    argv = plan.nodes["n1"].argv(PurePosixPath("/run/x"))
    assert argv[argv.index("--events") + 1] == "/run/x/events/n1.jsonl"
    assert argv[argv.index("--control") + 1] == "/run/x/control/n1.fifo"
    assert "--mdns" in argv and "--dial" not in argv


def test_nat_rules_drop_unsolicited_traffic_and_snat_outbound() -> None:
    rules = nat_ruleset("port-restricted", lan_if="lan0", wan_if="wan0",
                        lan_subnet="10.1.0.0/24", wan_ip="203.0.113.2")
    assert "type filter hook forward priority filter; policy drop;" in rules
    assert "type filter hook input priority filter; policy drop;" in rules
    assert "ct state established,related accept" in rules
    assert 'oifname "wan0" ip saddr 10.1.0.0/24 snat to 203.0.113.2' in rules
    assert "reject" not in rules  # never answer a stray SYN with RST


def test_unknown_nat_preset_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown NAT preset"):
        nat_ruleset("magic", lan_if="a", wan_if="b", lan_subnet="10.0.0.0/24", wan_ip="1.2.3.4")
