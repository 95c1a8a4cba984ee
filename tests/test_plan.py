"""Address plan, NAT rules and node flags computed from the model."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import pytest
from p2plab.node.identity import peer_id_for_seed
from p2plab.topology.loading import ScenarioError, load_scenario, parse_scenario
from p2plab.topology.plan import build_plan

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


def test_nodes_behind_one_nat_each_listen_on_a_port_of_their_own() -> None:
    """Housemates sharing a port would have it remapped by their NAT for some
    destinations only (and rust-libp2p would advertise the wrong one); public nodes
    keep 4001, and dials name the target's own port."""
    plan = build_plan(parse_scenario("""
name: ports
public: {subnet: 203.0.113.0/24}
lans: [{name: home, subnet: 10.1.0.0/24, nat: port-restricted},
       {name: flat, subnet: 10.2.0.0/24, nat: public}]
nodes:
  - {name: relay, lan: public, role: relay}
  - {name: srv, lan: public}
  - {name: h, count: 3, lan: home, relay: [relay]}
  - {name: f, count: 2, lan: flat}
  - {name: out, lan: public, dial: [h-3]}
""", "ports.yaml"))
    port = {name: int(n.args[n.args.index("--port") + 1]) for name, n in plan.nodes.items()}
    assert port == {"relay": 4001, "srv": 4001, "h-1": 4001, "h-2": 4002, "h-3": 4003,
                    "f-1": 4001, "f-2": 4001, "out": 4001}
    out = plan.nodes["out"].args
    assert out[out.index("--dial") + 1].startswith(f"/ip4/{plan.nodes['h-3'].ip}/tcp/4003/")


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


def test_double_nat_adds_a_carrier_segment_and_router() -> None:
    scenario = parse_scenario("""
name: d
lans:
  - {name: home, subnet: 10.1.0.0/24, nat: double-nat}
  - {name: open, subnet: 10.2.0.0/24, nat: public}
nodes:
  - {name: a, lan: home}
  - {name: r, lan: public, role: relay}
""")
    plan = build_plan(scenario)
    assert set(plan.routers) == {"home-gw", "home-cgnat", "open-gw"}
    home, cgnat = plan.routers["home-gw"], plan.routers["home-cgnat"]
    assert home.upstream == "home-carrier" and cgnat.lan == "home-carrier"
    assert str(plan.segments["home-carrier"].subnet) == "100.64.1.0/24"
    assert home.default_via == cgnat.lan_ip and cgnat.upstream == "public"
    assert cgnat.behaviour.mapping == "address-and-port-dependent"
    assert plan.public_ip("a") == cgnat.wan_ip
    # A LAN without NAT is routed: hosts on the public segment learn its subnet.
    open_gw = plan.routers["open-gw"]
    assert plan.nodes["r"].routes == (("10.2.0.0/24", str(open_gw.wan_ip)),)
    assert cgnat.routes == (("10.2.0.0/24", str(open_gw.wan_ip)),)
    assert home.routes == ()
    # Probe hosts come after the nodes, so probing never moves a node's address.
    assert plan.nodes["a"].ip < plan.probes["probe.home"].ip
    assert not plan.probing and list(plan.hosts()) == list(plan.nodes.values())
    assert build_plan(scenario, probing=True).probing


def test_nat_spec_errors_name_the_field() -> None:
    with pytest.raises(ScenarioError) as info:
        parse_scenario("""
name: x
lans:
  - {name: a, subnet: 10.1.0.0/24, nat: cone}
  - {name: b, subnet: 10.2.0.0/24, nat: {preset: public, hairpin: true}}
  - {name: c, subnet: 10.3.0.0/24, nat: {preset: full-cone, mapping: sticky}}
nodes: []
""", "x.yaml")
    lines = str(info.value).splitlines()
    assert any(line.startswith("x.yaml:4: lans[0].nat: unknown NAT preset 'cone'")
               for line in lines)
    assert any(line.startswith("x.yaml:5: lans[1].nat") and "takes no ['hairpin']" in line
               for line in lines), lines
    assert any(line.startswith("x.yaml:6: lans[2].nat.mapping") for line in lines), lines


def test_implementations_and_message_ids_reach_each_node() -> None:
    """A scenario's impl is the default; a node or group may name its own. Each backend
    says how it starts an implementation; the flags are the contract's, identical."""
    scenario = load_scenario(SCENARIOS / "interop.yaml")
    plan = build_plan(scenario)
    assert {n: plan.nodes[n].impl for n in ("relay-rs", "relay-py", "alice", "bob")} == \
        {"relay-rs": "rust", "relay-py": "py", "alice": "py", "bob": "rust"}
    programs = {"py": ["/venv/python", "-m", "p2plab.node"], "rust": ["/bin/p2plab-node-rs"]}
    bob = plan.nodes["bob"].command(PurePosixPath("/run/x"), programs)
    alice = plan.nodes["alice"].command(PurePosixPath("/run/x"), programs)
    assert bob[0] == "/bin/p2plab-node-rs" and alice[:3] == ["/venv/python", "-m", "p2plab.node"]
    assert bob[bob.index("--msg-id") + 1] == "origin-seq"
    everyone_rust = build_plan(load_scenario(SCENARIOS / "gossip-200.yaml"))
    assert {n.impl for n in everyone_rust.nodes.values()} == {"rust"}


def test_a_big_lab_raises_the_host_arp_limits_and_puts_them_back(monkeypatch, tmp_path) -> None:
    """gossip-200 needs more neighbour entries than Linux's default host-wide 1024."""
    from p2plab.compose.lab import host_limits

    needed = build_plan(load_scenario(SCENARIOS / "gossip-200.yaml")).neighbour_entries()
    assert needed > 1024 > build_plan(
        load_scenario(SCENARIOS / "nat-relay.yaml")).neighbour_entries()
    for name, value in (("gc_thresh2", "512\n"), ("gc_thresh3", "1024\n")):
        (tmp_path / name).write_text(value)
    monkeypatch.setattr(host_limits, "THRESH", tmp_path)
    limits = host_limits.NeighbourLimits(needed)
    limits.apply()
    assert int((tmp_path / "gc_thresh3").read_text()) == 2 * needed
    limits.restore()
    assert (tmp_path / "gc_thresh3").read_text() == "1024\n"
    assert limits.describe()["raised_for_the_run"]["gc_thresh3"] == [1024, 2 * needed]
    # Someone raised it further meanwhile: theirs is kept.
    again = host_limits.NeighbourLimits(needed)
    again.apply()
    (tmp_path / "gc_thresh3").write_text("99999\n")
    again.restore()
    assert (tmp_path / "gc_thresh3").read_text() == "99999\n"


@pytest.mark.quick
def test_a_lan_without_a_router_is_described_as_isolated_not_routed() -> None:
    from p2plab.topology.describe import describe

    plan = build_plan(parse_scenario("""
name: iso
lans:
  - {name: island, subnet: 10.5.0.0/24, nat: null}
  - {name: open, subnet: 10.6.0.0/24, nat: public}
nodes:
  - {name: a, lan: island}
  - {name: b, lan: island}
  - {name: c, lan: open}
""", "iso.yaml"))
    text = describe(plan)
    island = next(line for line in text.splitlines() if line.strip().startswith("island"))
    assert "isolated" in island and "routed" not in island
    assert plan.routed == {"public", "open"}
