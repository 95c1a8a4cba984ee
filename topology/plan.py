"""From a validated scenario to a lab plan: addresses, routers, NAT rules, node flags.

Everything a backend needs is computed here once, so backends only apply it: the
address plan, each router's nftables ruleset, and each node's command line.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import PurePosixPath

import networkx as nx

from node.identity import peer_id_for_seed
from topology.nat import nat_ruleset
from topology.scenario import PUBLIC, DialTarget, Scenario

NODE_PORT = 4001
# Interface names inside namespaces and containers, fixed so rules can name them.
LAN_IF = "lan0"
WAN_IF = "wan0"
NODE_IF = "eth0"


@dataclass(frozen=True)
class SegmentPlan:
    """A layer-2 segment: the public one or a LAN."""

    name: str
    subnet: ipaddress.IPv4Network
    gateway: ipaddress.IPv4Address | None  # the LAN side of its NAT router, if any

    @property
    def engine_address(self) -> ipaddress.IPv4Address:
        """Kept free for a container engine, which insists on a bridge address."""
        return self.subnet.broadcast_address - 1


@dataclass(frozen=True)
class RouterPlan:
    name: str
    lan: str
    lan_ip: ipaddress.IPv4Address
    wan_ip: ipaddress.IPv4Address
    nat: str
    nft_ruleset: str


@dataclass(frozen=True)
class NodePlan:
    name: str
    segment: str
    ip: ipaddress.IPv4Address
    gateway: ipaddress.IPv4Address | None
    role: str
    peer_id: str
    key_seed: str
    args: tuple[str, ...]  # node flags except the run-directory paths

    def argv(self, run_dir: PurePosixPath) -> list[str]:
        """Flags with the event log and control FIFO under ``run_dir`` as the node sees it."""
        return [
            *self.args,
            "--events", str(run_dir / "events" / f"{self.name}.jsonl"),
            "--control", str(run_dir / "control" / f"{self.name}.fifo"),
        ]


@dataclass(frozen=True)
class LabPlan:
    scenario: Scenario
    segments: dict[str, SegmentPlan]
    routers: dict[str, RouterPlan]
    nodes: dict[str, NodePlan]
    graph: nx.Graph = field(compare=False)

    def public_ip(self, node: str) -> ipaddress.IPv4Address:
        """Where the rest of the lab sees ``node``: its own IP or its router's WAN IP."""
        plan = self.nodes[node]
        if plan.segment == PUBLIC:
            return plan.ip
        return self.routers[router_name(plan.segment)].wan_ip


def router_name(lan: str) -> str:
    return f"{lan}-gw"


def _hosts(subnet: ipaddress.IPv4Network) -> list[ipaddress.IPv4Address]:
    return list(subnet.hosts())


def build_plan(scenario: Scenario) -> LabPlan:
    """Assign addresses, generate NAT rules and node flags; build the topology graph."""
    graph = nx.Graph()
    public_net = ipaddress.IPv4Network(scenario.public.subnet)
    segments = {PUBLIC: SegmentPlan(PUBLIC, public_net, None)}
    graph.add_node(PUBLIC, kind="segment", subnet=str(public_net))
    public_hosts = iter(_hosts(public_net)[1:])  # .1 is left free, like a provider gateway
    routers: dict[str, RouterPlan] = {}
    lan_hosts: dict[str, "iter[ipaddress.IPv4Address]"] = {}
    for lan in scenario.lans:
        net = ipaddress.IPv4Network(lan.subnet)
        hosts = iter(_hosts(net))
        gateway = next(hosts) if lan.nat is not None else None
        segments[lan.name] = SegmentPlan(lan.name, net, gateway)
        graph.add_node(lan.name, kind="segment", subnet=str(net))
        if lan.nat is not None:
            assert gateway is not None
            wan_ip = next(public_hosts)
            name = router_name(lan.name)
            routers[name] = RouterPlan(
                name=name,
                lan=lan.name,
                lan_ip=gateway,
                wan_ip=wan_ip,
                nat=lan.nat,
                nft_ruleset=nat_ruleset(lan.nat, lan_if=LAN_IF, wan_if=WAN_IF,
                                        lan_subnet=str(net), wan_ip=str(wan_ip)),
            )
            graph.add_node(name, kind="router", nat=lan.nat)
            graph.add_edge(name, lan.name, ip=str(gateway), interface=LAN_IF)
            graph.add_edge(name, PUBLIC, ip=str(wan_ip), interface=WAN_IF)
        lan_hosts[lan.name] = iter(_hosts(net)[9:])  # nodes from .10 on
    lan_hosts[PUBLIC] = public_hosts

    addresses: dict[str, ipaddress.IPv4Address] = {}
    for spec in scenario.nodes:
        try:
            addresses[spec.name] = next(lan_hosts[spec.lan])
        except StopIteration:
            raise ValueError(f"segment {spec.lan!r} has no address left for {spec.name!r}") from None
    peer_ids = {n.name: peer_id_for_seed(_seed(scenario, n.name)) for n in scenario.nodes}

    def node_addr(name: str) -> str:
        """A dialable address for ``name`` as seen from the public segment."""
        return f"/ip4/{addresses[name]}/tcp/{NODE_PORT}/p2p/{peer_ids[name]}"

    nodes: dict[str, NodePlan] = {}
    for spec in scenario.nodes:
        args = [
            "--name", spec.name,
            "--key-seed", _seed(scenario, spec.name),
            "--listen-ip", str(addresses[spec.name]),
            "--port", str(NODE_PORT),
            "--topic", scenario.topic,
            "--role", spec.role,
            "--no-stdin",
        ]
        if spec.quic:
            args.append("--quic")
        if spec.mdns:
            args.append("--mdns")
        if not spec.holepunch:
            args.append("--no-holepunch")
        for relay in spec.relay:
            args += ["--relay", node_addr(relay)]
        for target in spec.dial:
            if isinstance(target, str) and target.startswith("/"):
                args += ["--dial", target]
                continue
            if isinstance(target, str):
                target = DialTarget(node=target)
            if target.via is None:
                args += ["--dial", node_addr(target.node)]
            else:
                args += ["--dial", f"{node_addr(target.via)}/p2p-circuit/p2p/{peer_ids[target.node]}"]
        segment = segments[spec.lan]
        nodes[spec.name] = NodePlan(
            name=spec.name,
            segment=spec.lan,
            ip=addresses[spec.name],
            gateway=segment.gateway,
            role=spec.role,
            peer_id=peer_ids[spec.name],
            key_seed=_seed(scenario, spec.name),
            args=tuple(args),
        )
        graph.add_node(spec.name, kind="node", role=spec.role, peer_id=peer_ids[spec.name])
        graph.add_edge(spec.name, spec.lan, ip=str(addresses[spec.name]), interface=NODE_IF)
    return LabPlan(scenario, segments, routers, nodes, graph)


def _seed(scenario: Scenario, node: str) -> str:
    """Identity seed: the scenario's seed and the node's name, so ids are reproducible."""
    return f"{scenario.name}:{scenario.seed}:{node}"
