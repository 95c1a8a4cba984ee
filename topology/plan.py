"""From a validated scenario to a lab plan: addresses, routers, NAT rules, routes, flags.

Everything a backend needs is computed here once, so backends only apply it: the
address plan, each router's nftables ruleset and conntrack sysctls, every host's routes,
and each host's command line (chat nodes, and the NAT probe's reflectors and clients).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath

import networkx as nx
from p2plab.node.identity import peer_id_for_seed
from p2plab.topology.nat import NatBehaviour, chain_behaviour
from p2plab.topology.nat_rules import conntrack_sysctls, nat_ruleset
from p2plab.topology.placement import PlacementRule, rule_for
from p2plab.topology.scenario import Scenario
from p2plab.topology.schema import PUBLIC, DialTarget, LinkSpec, NatSpec, nat_spec

NODE_PORT = 4001
MAX_NODE_PORT = 32767  # below Linux's ephemeral ports, which the nodes' dials use
PROBE_PORTS = (3478, 3479)
# Interface names inside namespaces and containers, fixed so rules can name them.
LAN_IF = "lan0"
WAN_IF = "wan0"
NODE_IF = "eth0"
# Hosts the NAT probe adds; a "." never appears in a scenario's names.
REFLECTORS = ("stun.1", "stun.2")

Address = ipaddress.IPv4Address
Route = tuple[str, str]  # (destination subnet, via address)
# How a backend starts each implementation a node names (``py``, ``rust@0.53``), and
# under LAB_PYTHON the lab's own Python (the NAT probe's hosts).
Programs = Mapping[str, Sequence[str]]
LAB_PYTHON = ":python"  # not a valid implementation name


@dataclass(frozen=True)
class SegmentPlan:
    """A layer-2 segment: the public one, a LAN, or a carrier segment (double NAT)."""

    name: str
    subnet: ipaddress.IPv4Network
    gateway: Address | None  # the LAN side of its router, if any

    @property
    def engine_address(self) -> Address:
        """Kept free for a container engine, which insists on a bridge address."""
        return self.subnet.broadcast_address - 1


@dataclass(frozen=True)
class RouterPlan:
    name: str
    lan: str  # the segment on its LAN side
    upstream: str  # the segment on its WAN side (public, or a carrier segment)
    lan_ip: Address
    wan_ip: Address
    nat: str  # the preset name, for reports
    behaviour: NatBehaviour | None
    nft_ruleset: str
    sysctls: dict[str, str]
    default_via: Address | None  # a router behind a carrier NAT routes through it
    routes: tuple[Route, ...] = ()
    placement: PlacementRule | None = None  # where it may run on a cluster


@dataclass(frozen=True)
class NodePlan:
    name: str
    segment: str
    ip: Address
    gateway: Address | None
    role: str  # peer | relay | reflector | probe
    peer_id: str
    key_seed: str
    args: tuple[str, ...]  # program flags except the run-directory paths
    routes: tuple[Route, ...] = ()
    link: LinkSpec | None = None  # access-link impairment, both directions
    impl: str = "py"  # which node implementation runs it (docs/reference/node-contract.md)
    placement: PlacementRule | None = None  # where it may run on a cluster

    def argv(self, run_dir: PurePosixPath) -> list[str]:
        """Flags with the event log and control FIFO under ``run_dir`` as the node sees it."""
        return [
            *self.args,
            "--events", str(run_dir / "events" / f"{self.name}.jsonl"),
            "--control", str(run_dir / "control" / f"{self.name}.fifo"),
        ]

    def command(self, run_dir: PurePosixPath, programs: Programs) -> list[str]:
        """The whole command line this host runs; ``programs`` says how each node
        implementation (and Python, for the probe's hosts) is started on a backend."""
        if self.role == "reflector":
            return [*programs[LAB_PYTHON], "-m", "p2plab.natprobe", "serve", *self.args,
                    "--ready-file", str(run_dir / "probe" / f"{self.name}.ready")]
        if self.role == "probe":
            return [*programs[LAB_PYTHON], "-c", "import time\nwhile True: time.sleep(3600)"]
        return [*programs[self.impl], *self.argv(run_dir)]


@dataclass(frozen=True)
class LabPlan:
    scenario: Scenario
    segments: dict[str, SegmentPlan]
    routers: dict[str, RouterPlan]
    nodes: dict[str, NodePlan]
    probes: dict[str, NodePlan]  # NAT probe hosts: created only when probing
    graph: nx.Graph = field(compare=False)
    probing: bool = False

    def hosts(self) -> Iterator[NodePlan]:
        """Every host a backend creates: chat nodes, and probe hosts when probing."""
        yield from self.nodes.values()
        if self.probing:
            yield from self.probes.values()

    def impl_specs(self) -> list[str]:
        """Each implementation the nodes name (``rust@0.53``), once: what a backend must
        build before the lab is made."""
        return sorted({node.impl for node in self.nodes.values()})

    def neighbour_entries(self) -> int:
        """ARP entries the lab can need: every host may learn every other host on each
        segment it is on (routers sit on two; one more address for a container engine)."""
        on_segment = {name: 1 for name in self.segments}
        for host in self.hosts():
            on_segment[host.segment] += 1
        for router in self.routers.values():
            on_segment[router.lan] += 1
            on_segment[router.upstream] += 1
        return sum(n * (n - 1) for n in on_segment.values())

    def host(self, name: str) -> NodePlan:
        return self.nodes[name] if name in self.nodes else self.probes[name]

    def public_ip(self, node: str) -> Address:
        """Where the rest of the lab sees ``node``: its own IP or its outermost router's."""
        segment = self.nodes[node].segment
        if self.segments[segment].gateway is None:
            return self.nodes[node].ip  # an isolated LAN: seen only by its own nodes
        while segment != PUBLIC:
            router = self.router_for(segment)
            if router.behaviour is None:
                return self.nodes[node].ip
            segment = router.upstream
            if segment == PUBLIC:
                return router.wan_ip
        return self.nodes[node].ip

    def router_for(self, lan: str) -> RouterPlan:
        return next(r for r in self.routers.values() if r.lan == lan)

    @property
    def routed(self) -> set[str]:
        """The segments every host reaches as they are: the public one and LANs routed
        without NAT (``routed_lans``). A LAN with no router (nat: null) is isolated."""
        return {PUBLIC} | routed_lans(self.routers.values())

    def ruleset_for(self, router: str,
                    nat: str | NatSpec) -> tuple[NatBehaviour | None, str, dict[str, str]]:
        """A router's behaviour, ruleset and sysctls under another NAT (for set-nat steps)."""
        r = self.routers[router]
        behaviour, _ = nat_spec(nat).behaviour()
        return behaviour, _ruleset(r.name, behaviour, self.segments[r.lan].subnet, r.wan_ip), \
            conntrack_sysctls(behaviour)


def home_router(lan: str) -> str:
    return f"{lan}-gw"


def carrier_router(lan: str) -> str:
    return f"{lan}-cgnat"


def carrier_segment(lan: str) -> str:
    return f"{lan}-carrier"


def _ruleset(name: str, behaviour: NatBehaviour | None, lan_subnet: ipaddress.IPv4Network,
             wan_ip: Address) -> str:
    return nat_ruleset(behaviour, lan_if=LAN_IF, wan_if=WAN_IF, lan_subnet=str(lan_subnet),
                       wan_ip=str(wan_ip), name=name)


def node_ports(scenario: Scenario, natted: set[str]) -> dict[str, int]:
    """Each node's TCP and QUIC port. Behind a NAT every node has a port of its own
    (NODE_PORT, NODE_PORT + 1, ... in the LAN's order), as devices in one home running
    their own apps do: a Linux NAT keeps a source port only while no other host's flow to
    the same destination holds it, so LAN hosts sharing one port get it remapped for some
    destinations and not others, and rust-libp2p's identify then translates the remapped
    observed port back to the listen port (another host's mapping): hole punches fail
    (rust-libp2p#4896 discusses that translation). Elsewhere every node listens on
    NODE_PORT."""
    ports: dict[str, int] = {}
    taken: dict[str, int] = {}
    for node in scenario.nodes:
        lan = node.lan_name
        if lan in natted:
            ports[node.name] = NODE_PORT + taken.get(lan, 0)
            taken[lan] = taken.get(lan, 0) + 1
        else:
            ports[node.name] = NODE_PORT
    most = max(ports.values(), default=NODE_PORT)
    if most > MAX_NODE_PORT:
        raise ValueError(f"{most - NODE_PORT + 1} nodes behind one NAT: at most "
                         f"{MAX_NODE_PORT - NODE_PORT + 1} fit its ports below Linux's "
                         "ephemeral range; spread them over more LANs")
    return ports


def build_plan(scenario: Scenario, probing: bool | None = None) -> LabPlan:
    """Assign addresses, generate NAT rules, routes and flags; build the topology graph."""
    graph = nx.Graph()
    segments: dict[str, SegmentPlan] = {}
    free: dict[str, Iterator[Address]] = {}

    def add_segment(name: str, subnet: ipaddress.IPv4Network, gateway: Address | None,
                    first_host: int) -> None:
        segments[name] = SegmentPlan(name, subnet, gateway)
        # Host addresses from the (first_host+1)th on, short of the last host address
        # (kept for a container engine), made one at a time: big labs have /12s.
        base = subnet.network_address
        free[name] = (base + i for i in range(1 + first_host, subnet.num_addresses - 2))
        graph.add_node(name, kind="segment", subnet=str(subnet))

    add_segment(PUBLIC, ipaddress.IPv4Network(scenario.public.subnet), None, 1)
    routers: dict[str, RouterPlan] = {}

    def add_router(name: str, lan: str, upstream: str, nat: str, behaviour: NatBehaviour | None,
                   default_via: Address | None, placement: PlacementRule | None) -> None:
        lan_seg = segments[lan]
        assert lan_seg.gateway is not None
        wan_ip = next(free[upstream])
        routers[name] = RouterPlan(
            name=name, lan=lan, upstream=upstream, lan_ip=lan_seg.gateway, wan_ip=wan_ip,
            nat=nat, behaviour=behaviour,
            nft_ruleset=_ruleset(name, behaviour, lan_seg.subnet, wan_ip),
            sysctls=conntrack_sysctls(behaviour), default_via=default_via,
            placement=placement,
        )
        graph.add_node(name, kind="router", nat=nat)
        graph.add_edge(name, lan, ip=str(lan_seg.gateway), interface=LAN_IF)
        graph.add_edge(name, upstream, ip=str(wan_ip), interface=WAN_IF)

    carriers = scenario.carrier_subnets()
    for lan in scenario.lans:
        net = ipaddress.IPv4Network(lan.subnet)
        spec = lan.nat_spec
        gateway = next(iter(net.hosts())) if spec is not None else None
        add_segment(lan.name, net, gateway, 9)  # nodes from .10 on
        if spec is None:
            continue
        behaviour, cgnat = spec.behaviour()
        placement = _router_placement(scenario, lan.name)
        if cgnat is not None:
            carrier = carrier_segment(lan.name)
            c_net = carriers[lan.name]
            add_segment(carrier, c_net, next(iter(c_net.hosts())), 1)
            add_router(carrier_router(lan.name), carrier, PUBLIC, "carrier-grade NAT", cgnat, None,
                       placement)
            add_router(home_router(lan.name), lan.name, carrier, spec.preset, behaviour,
                       segments[carrier].gateway, placement)
        else:
            add_router(home_router(lan.name), lan.name, PUBLIC, spec.preset, behaviour, None,
                       placement)

    # A LAN without NAT ("public") is routed: everything on the public segment learns it.
    routed = routed_lans(routers.values())
    public_routes = tuple((str(segments[r.lan].subnet), str(r.wan_ip)) for r in routers.values()
                          if r.lan in routed)
    routers = {name: _with_routes(r, public_routes) for name, r in routers.items()}

    addresses = {}
    for spec_node in scenario.nodes:
        addresses[spec_node.name] = next(free[spec_node.lan_name])
    ports = node_ports(scenario, {r.lan for r in routers.values() if r.behaviour is not None})
    peer_ids = {n.name: peer_id_for_seed(_seed(scenario, n.name)) for n in scenario.nodes}

    specs = {n.name: n for n in scenario.nodes}

    def node_addr(name: str, dialer: str) -> str:
        """TCP, or QUIC when the dialer cannot speak TCP (both must then speak QUIC)."""
        if not specs[dialer].tcp and specs[name].quic:
            return f"/ip4/{addresses[name]}/udp/{ports[name]}/quic-v1/p2p/{peer_ids[name]}"
        return f"/ip4/{addresses[name]}/tcp/{ports[name]}/p2p/{peer_ids[name]}"

    def host_routes(segment: str) -> tuple[Route, ...]:
        return public_routes if segment == PUBLIC else ()

    nodes: dict[str, NodePlan] = {}
    for spec_node in scenario.nodes:
        args = [
            "--name", spec_node.name,
            "--key-seed", _seed(scenario, spec_node.name),
            "--listen-ip", str(addresses[spec_node.name]),
            "--port", str(ports[spec_node.name]),
            "--role", "relay" if spec_node.role == "relay" else "peer",
            "--ping-interval", f"{scenario.ping_interval:g}",
            "--no-stdin",
            "--msg-id", scenario.msg_id,
        ]
        limits = spec_node.relay_limits_flag()
        if limits is not None:  # absent: the relay's library defaults, as shipped
            args += ["--relay-limits", limits.render()]
        for topic in scenario.topics_of(spec_node):
            args += ["--topic", topic]
        if spec_node.quic:
            args.append("--quic")
        if not spec_node.tcp:
            args.append("--no-tcp")
        if spec_node.mdns:
            args.append("--mdns")
        if not spec_node.holepunch:
            args.append("--no-holepunch")
        for relay in spec_node.relay:
            args += ["--relay", node_addr(relay, spec_node.name)]
        for target in spec_node.dial:
            if isinstance(target, str) and target.startswith("/"):
                args += ["--dial", target]
                continue
            if isinstance(target, str):
                target = DialTarget(node=target)
            if target.via is None:
                args += ["--dial", node_addr(target.node, spec_node.name)]
            else:
                args += ["--dial", f"{node_addr(target.via, spec_node.name)}/p2p-circuit/p2p/"
                         f"{peer_ids[target.node]}"]
        nodes[spec_node.name] = NodePlan(
            name=spec_node.name, segment=spec_node.lan_name, ip=addresses[spec_node.name],
            gateway=segments[spec_node.lan_name].gateway, role=spec_node.role,
            peer_id=peer_ids[spec_node.name], key_seed=_seed(scenario, spec_node.name),
            args=tuple(args), routes=host_routes(spec_node.lan_name),
            link=_impairment(scenario.link_of(spec_node)),
            impl=scenario.impl_of(spec_node),
            placement=_node_placement(scenario, spec_node.name),
        )
        graph.add_node(spec_node.name, kind="node", role=spec_node.role,
                       peer_id=peer_ids[spec_node.name], impl=scenario.impl_of(spec_node))
        graph.add_edge(spec_node.name, spec_node.lan, ip=str(addresses[spec_node.name]),
                       interface=NODE_IF)

    # The NAT probe's hosts take the next free addresses, so nodes keep theirs.
    probes: dict[str, NodePlan] = {}
    reflector_ips = [next(free[PUBLIC]) for _ in REFLECTORS]
    for name, ip, other in zip(REFLECTORS, reflector_ips, reversed(reflector_ips), strict=True):
        probes[name] = NodePlan(
            name=name, segment=PUBLIC, ip=ip, gateway=None, role="reflector", peer_id="",
            key_seed="", routes=public_routes,
            args=("--ip", str(ip), "--peer", str(other),
                  "--ports", ",".join(str(p) for p in PROBE_PORTS)),
        )
    for lan in scenario.lans:
        if lan.nat is None:
            continue
        name = f"probe.{lan.name}"
        probes[name] = NodePlan(
            name=name, segment=lan.name, ip=next(free[lan.name]),
            gateway=segments[lan.name].gateway, role="probe", peer_id="", key_seed="", args=(),
        )
    return LabPlan(scenario, segments, routers, nodes, probes, graph,
                   probing=scenario.probe_nat if probing is None else probing)


def _node_placement(scenario: Scenario, node: str) -> PlacementRule:
    """Every node has a rule naming its group, so a packed group can share an engine."""
    spec = scenario.file.node_specs[scenario.node_origin(node)]
    place = spec.placement
    return rule_for(f"nodes group {spec.name!r}", place.constraints if place else None,
                    place.strategy if place else None)


def _router_placement(scenario: Scenario, lan: str) -> PlacementRule | None:
    spec = scenario.file.lan_specs[scenario.lan_origin[lan]]
    place = spec.placement
    if place is None:
        return None
    return rule_for(f"routers of lans {spec.name!r}", place.constraints, place.strategy)


def _impairment(link: LinkSpec | None) -> LinkSpec | None:
    return link if link is not None and link.is_impaired() else None


def _with_routes(router: RouterPlan, routes: tuple[Route, ...]) -> RouterPlan:
    if router.upstream != PUBLIC:
        return router
    own = str(router.wan_ip)
    return RouterPlan(**{**router.__dict__, "routes": tuple(r for r in routes if r[1] != own)})


def _seed(scenario: Scenario, node: str) -> str:
    """Identity seed: the scenario's seed and the node's name, so ids are reproducible."""
    return f"{scenario.name}:{scenario.seed}:{node}"


def routed_lans(routers: Iterable[RouterPlan]) -> set[str]:
    """The one rule for which LANs are routed: a router that translates nothing, on the
    public segment, makes its LAN part of the public address space."""
    return {r.lan for r in routers if r.behaviour is None and r.upstream == PUBLIC}


def nat_chain(plan: LabPlan, lan: str) -> list[NatBehaviour]:
    """The NATs between a host on ``lan`` and the public segment, innermost first."""
    chain = []
    segment = lan
    while segment != PUBLIC:
        router = plan.router_for(segment)
        if router.behaviour is not None:
            chain.append(router.behaviour)
        segment = router.upstream
    return chain


def combined_behaviour(plan: LabPlan, lan: str) -> NatBehaviour | None:
    """What a host on ``lan`` sees of all the NATs between it and the public segment,
    as one NAT (``nat.chain_behaviour``); None if nothing translates."""
    return chain_behaviour(nat_chain(plan, lan))



@dataclass(frozen=True)
class LinkCheck:
    """A UDP round-trip measurement the runner makes before the timeline."""

    source: str
    target: str
    configured_rtt_ms: float
    port: int


def link_checks(plan: LabPlan) -> list[LinkCheck]:
    """One check per distinct impaired link: from the first node with that link to a
    public host (unimpaired if there is one), else to a neighbour on its own LAN.
    Configured round trip: 2 x (latency of both access links)."""
    checks: list[LinkCheck] = []
    seen: set[tuple[str, str]] = set()
    routed = plan.routed
    public = [n for n in plan.nodes.values() if n.segment in routed]
    public.sort(key=lambda n: n.link is not None)
    for node in plan.nodes.values():
        if node.link is None:
            continue
        key = (node.segment, node.link.model_dump_json())
        if key in seen:
            continue
        seen.add(key)
        target = next((t for t in public if t.name != node.name), None)
        if target is None:
            target = next((t for t in plan.nodes.values()
                           if t.segment == node.segment and t.name != node.name), None)
        if target is None:
            continue
        latency = node.link.latency_ms + (target.link.latency_ms if target.link else 0.0)
        checks.append(LinkCheck(node.name, target.name, round(2 * latency, 3),
                                20000 + len(checks)))
    return checks
