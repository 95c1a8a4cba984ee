"""The simulator's picture of a lab: nodes, access links, who can reach whom, NATs.

Built from the same LabPlan the emulation backends realise, so addressing, NAT
behaviour, link impairment and the dial plan are computed once, in topology/. Delays
follow the emulated link model: a packet from u to v crosses u's access link and v's,
each adding its latency (± jitter) and serialising at its bandwidth.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from p2plab.node.config import GossipParams
from p2plab.topology.nat import punch_transport
from p2plab.topology.plan import LabPlan, nat_chain
from p2plab.topology.schema import PUBLIC, DialTarget

# Seconds. Measured on this project's labs (see docs/reference/simulation.md): a TCP connection
# with noise and yamux takes about four round trips to become usable; DCUtR in
# py-libp2p 0.8.1 first waits out a 10 s dial to private addresses.
CONNECT_RTTS = 4
HOLE_PUNCH_DELAY_S = 10.4
REDIAL_PAUSE_S = 2.0
TCP_MIN_RTO_S = 0.2
MSS = 1400  # bytes of payload per packet, for loss and serialisation
OVERHEAD = 60  # bytes of headers per packet (IP, TCP, noise, yamux)


@dataclass(slots=True)
class SimNode:
    index: int
    name: str
    peer_id: str
    segment: str
    role: str
    topics: tuple[str, ...]
    latency: float  # s, one way, this node's access link
    jitter: float
    loss: float  # per packet, each way
    byte_time: float  # s per byte on the access link (0: unlimited)
    nat_key: str  # segments sharing a NAT address share this (partition filters)
    alive: bool = False
    generation: int = 0  # bumped at every start, so a dead node's timers lapse
    cpu_free: float = 0.0  # when the node's (modelled) CPU is next free
    up_free: float = 0.0  # when the uplink is next free
    down_free: float = 0.0
    peers: dict[int, int] = field(default_factory=dict)  # peer -> relay index, -1: direct
    topic_peers: dict[str, set[int]] = field(default_factory=dict)
    mesh: dict[str, set[int]] = field(default_factory=dict)
    fanout: dict[str, set[int]] = field(default_factory=dict)
    backoff: dict[int, float] = field(default_factory=dict)  # peer -> until (after PRUNE)
    seen: set[int] = field(default_factory=set)  # message numbers
    mcache: list[list[int]] = field(default_factory=list)  # newest window first
    requested: set[int] = field(default_factory=set)
    relay_ok: bool = False


@dataclass
class PlannedDial:
    dialer: int
    target: int
    via: int | None  # relay node index


class SimNetwork:
    def __init__(self, plan: LabPlan) -> None:
        self.plan = plan
        scenario = plan.scenario
        self.gossip = GossipParams()
        self.nodes: list[SimNode] = []
        self.index: dict[str, int] = {}
        for spec in scenario.nodes:
            node_plan = plan.nodes[spec.name]
            link = node_plan.link
            nat_key = str(plan.public_ip(spec.name))
            self.index[spec.name] = len(self.nodes)
            self.nodes.append(SimNode(
                index=len(self.nodes), name=spec.name, peer_id=node_plan.peer_id,
                segment=spec.lan_name, role=spec.role, topics=tuple(scenario.topics_of(spec)),
                latency=(link.latency_ms / 1000) if link else 0.0,
                jitter=(link.jitter_ms / 1000) if link else 0.0,
                loss=(link.loss_pct / 100) if link else 0.0,
                byte_time=(8.0 / (link.bandwidth_kbit * 1000)) if link and link.bandwidth_kbit
                else 0.0,
                nat_key=nat_key))
        self.dials: list[PlannedDial] = []
        for spec in scenario.nodes:
            for target in spec.dial:
                if isinstance(target, DialTarget):
                    self.dials.append(PlannedDial(
                        self.index[spec.name], self.index[target.node],
                        self.index[target.via] if target.via else None))
        self.dials_of: dict[int, list[PlannedDial]] = {}
        for d in self.dials:
            self.dials_of.setdefault(d.dialer, []).append(d)
        self.relays_of = {self.index[n.name]: [self.index[r] for r in n.relay]
                          for n in scenario.nodes}
        self.mdns_groups: dict[str, list[int]] = {}
        for spec in scenario.nodes:
            if spec.mdns:
                self.mdns_groups.setdefault(spec.lan_name, []).append(self.index[spec.name])
        self.mdns_of = {i: members for members in self.mdns_groups.values() for i in members}
        self._chain = {seg: nat_chain(plan, seg)
                       if seg != PUBLIC and plan.segments[seg].gateway is not None else []
                       for seg in {n.segment for n in self.nodes}}
        self.routed = plan.routed

    # -- reachability -------------------------------------------------------------
    def reachable_directly(self, dialer: SimNode, target: SimNode) -> bool:
        """Can ``dialer`` open a connection to ``target`` without help?"""
        if dialer.segment == target.segment:
            return True
        isolated = dialer.segment not in self.routed and not self._chain.get(dialer.segment)
        return target.segment in self.routed and not isolated

    def punch_transport(self, listener: SimNode, dialler: SimNode, tcp: bool,
                        quic: bool) -> str | None:
        """The transport a DCUtR punch ends on by the NAT literature for the two sides'
        chains of NATs (``nat.punch_transport``, the hole-punch grid's rule too), or None."""
        return punch_transport(self._chain.get(listener.segment, []),
                               self._chain.get(dialler.segment, []), tcp, quic)

    # -- delays -------------------------------------------------------------------
    def one_way(self, src: SimNode, dst: SimNode, size: int, now: float,
                rng: random.Random) -> float:
        """When a ``size``-byte message sent by ``src`` at ``now`` reaches ``dst``:
        serialise on src's uplink, propagate over both links, serialise on dst's
        downlink; a lost packet costs a TCP retransmission timeout (and is retried)."""
        wire = size + OVERHEAD * (1 + size // MSS)
        t = now
        if src.byte_time:
            start = max(t, src.up_free)
            src.up_free = start + wire * src.byte_time
            t = src.up_free
        t += src.latency + dst.latency
        if src.jitter:
            t += rng.uniform(-src.jitter, src.jitter)
        if dst.jitter:
            t += rng.uniform(-dst.jitter, dst.jitter)
        if dst.byte_time:
            start = max(t, dst.down_free)
            dst.down_free = start + wire * dst.byte_time
            t = dst.down_free
        if src.loss or dst.loss:
            packets = 1 + size // MSS
            keep = ((1 - src.loss) * (1 - dst.loss)) ** packets
            rto = max(TCP_MIN_RTO_S, 2 * (src.latency + dst.latency) * 2)
            while rng.random() > keep:
                t += rto
                rto *= 2
        return max(t, now)

    def rtt(self, a: SimNode, b: SimNode) -> float:
        return 2 * (a.latency + b.latency)
