"""The one hole-punch theory (``topology/nat.py``), checked against a packet-level model
of NAT chains (RFC 4787 mapping and filtering, hop by hop) for every chain of up to two
NATs of every kind, and used alike by the grid and the simulator."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import pytest
from p2plab.topology.nat import DEPENDENCE, NatBehaviour, chain_behaviour, punch_works

pytestmark = pytest.mark.quick

Endpoint = tuple[str, int]
RELAY: Endpoint = ("198.51.100.1", 4001)


@dataclass
class Mapping:
    inside: Endpoint
    outside: Endpoint
    sent: set[Endpoint] = field(default_factory=set)


@dataclass
class ModelNat:
    """One NAT: a table of mappings keyed as its mapping behaviour says, each with the
    remote endpoints it has sent to, which its filtering behaviour admits replies from."""

    behaviour: NatBehaviour
    address: str
    mappings: dict[tuple[object, ...], Mapping] = field(default_factory=dict)

    def key(self, inside: Endpoint, remote: Endpoint) -> tuple[object, ...]:
        kind = self.behaviour.mapping
        if kind == "endpoint-independent":
            return (inside,)
        if kind == "address-dependent":
            return (inside, remote[0])
        return (inside, remote)

    def out(self, inside: Endpoint, remote: Endpoint) -> Endpoint:
        key = self.key(inside, remote)
        if key not in self.mappings:
            self.mappings[key] = Mapping(inside, (self.address, 20000 + len(self.mappings)))
        mapping = self.mappings[key]
        mapping.sent.add(remote)
        return mapping.outside

    def inbound(self, outside: Endpoint, remote: Endpoint) -> Endpoint | None:
        mapping = next((m for m in self.mappings.values() if m.outside == outside), None)
        if mapping is None:
            return None
        kind = self.behaviour.filtering
        if kind == "address-dependent" and remote[0] not in {r[0] for r in mapping.sent}:
            return None
        if kind == "address-and-port-dependent" and remote not in mapping.sent:
            return None
        return mapping.inside


class Side:
    """A host behind a chain of model NATs (innermost first)."""

    def __init__(self, name: str, chain: list[NatBehaviour]) -> None:
        self.socket: Endpoint = (f"10.{name}.0.10", 4001)
        self.nats = [ModelNat(b, f"203.0.{name}.{i + 1}") for i, b in enumerate(chain)]

    def send(self, remote: Endpoint) -> Endpoint:
        """Send from the punch socket; returns the source the remote sees."""
        source = self.socket
        for nat in self.nats:
            source = nat.out(source, remote)
        return source

    def receive(self, at: Endpoint, remote: Endpoint) -> bool:
        for nat in reversed(self.nats):
            inside = nat.inbound(at, remote)
            if inside is None:
                return False
            at = inside
        return at == self.socket


def modelled_punch(a_chain: list[NatBehaviour], b_chain: list[NatBehaviour]) -> bool:
    """DCUtR in the model: both reach the relay from the punch socket (the relay tells
    each the other's observed address), then both send at once; either packet in wins."""
    a, b = Side("1", a_chain), Side("2", b_chain)
    observed_a, observed_b = a.send(RELAY), b.send(RELAY)
    from_a, from_b = a.send(observed_b), b.send(observed_a)
    return b.receive(observed_b, from_a) or a.receive(observed_a, from_b)


KINDS = [NatBehaviour(m, f) for m in DEPENDENCE for f in DEPENDENCE]
CHAINS = [[]] + [[k] for k in KINDS] + [[i, o] for i in KINDS for o in KINDS]


def test_the_theory_matches_the_packet_model_for_every_chain_of_two_nats() -> None:
    wrong = [(a, b) for a, b in itertools.combinations_with_replacement(CHAINS, 2)
             if punch_works(a, b) != modelled_punch(a, b)]
    assert not wrong, [(" > ".join(n.short() for n in a), " > ".join(n.short() for n in b))
                       for a, b in wrong[:10]]


def test_a_symmetric_home_behind_a_full_cone_carrier_is_symmetric() -> None:
    """The case the grid's old rule (the carrier's behaviour alone) got wrong: the
    home's per-destination mapping hands the carrier a new source every time."""
    home = NatBehaviour("address-and-port-dependent", "address-and-port-dependent")
    carrier = NatBehaviour("endpoint-independent", "endpoint-independent")
    port_restricted = [NatBehaviour("endpoint-independent", "address-and-port-dependent")]
    assert not modelled_punch([home, carrier], port_restricted)
    assert not punch_works([home, carrier], port_restricted)
    combined = chain_behaviour([home, carrier])
    assert combined is not None and combined.mapping == "address-and-port-dependent"


def test_the_grid_and_the_simulator_judge_a_double_nat_alike(tmp_path) -> None:
    """Both read the one theory: the grid from presets, the simulator from the plan."""
    from p2plab.compose.sim.network import SimNetwork
    from p2plab.topology.loading import load_scenario
    from p2plab.topology.matrix import theory
    from p2plab.topology.plan import build_plan

    for a, b in itertools.combinations_with_replacement(
            ["port-restricted", "symmetric", "double-nat", "full-cone", "restricted-cone"], 2):
        path = tmp_path / f"{a}-{b}.yaml"
        path.write_text(f"""
name: pair
lans:
  - {{name: a, subnet: 10.1.0.0/24, nat: {a}}}
  - {{name: b, subnet: 10.2.0.0/24, nat: {b}}}
nodes:
  - {{name: relay, lan: public, role: relay}}
  - {{name: x, lan: a, relay: [relay]}}
  - {{name: y, lan: b, relay: [relay]}}
""")
        net = SimNetwork(build_plan(load_scenario(path)))
        x, y = (next(n for n in net.nodes if n.name == name) for name in ("x", "y"))
        simulated = "direct" if net.punch_transport(x, y, tcp=True, quic=False) else "relayed"
        assert simulated == theory(a, b, "tcp"), (a, b)
