"""A discrete-event simulation of a scenario: the executor that runs the timeline over
the lab's network model, with gossipsub as a model of its own (``gossipsub.py``) and
time from one queue of events (``events_queue.py``).

The engine owns what is not gossipsub: node starts and crashes, connections from the
dial plan (direct where reachable, relayed through a reservation otherwise, upgraded by
DCUtR when the NAT pair allows it), link latency, jitter, loss (as TCP retransmission
delay) and bandwidth per message size, the timeline's faults and its wait conditions.
What the model leaves out is listed in docs/reference/simulation.md.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from typing import Any

from p2plab.compose.sim.events_queue import (
    CONNECT,
    DELIVER,
    END,
    GRAFT,
    HEARTBEAT,
    IHAVE,
    IWANT,
    PROCESSED,
    PRUNE,
    PUBLISH,
    PUNCH,
    REDIAL,
    RESERVE,
    RETRANSMIT,
    START,
    STEP,
    SUBSCRIBE,
    WAIT,
    EventQueue,
)
from p2plab.compose.sim.gossipsub import CONTROL_BYTES, EPOCH, Gossipsub, Message
from p2plab.compose.sim.network import (
    CONNECT_RTTS,
    HOLE_PUNCH_DELAY_S,
    REDIAL_PAUSE_S,
    TCP_MIN_RTO_S,
    SimNetwork,
    SimNode,
)
from p2plab.topology.schema import LAB_EVENTS, Publish
from p2plab.topology.timeline import (
    At,
    Condition,
    Connected,
    MeshAtLeast,
    Pause,
    Reserved,
    Started,
    Timeline,
    Until,
    flows_of,
)

from p2plab.events import SCHEMA_VERSION

WAIT_TICK_S = 0.1
__all__ = ["EPOCH", "Message", "Simulation"]


class Simulation:
    def __init__(self, net: SimNetwork, progress: Callable[[str], None] = lambda m: None) -> None:
        self.net = net
        self.plan = net.plan
        self.scenario = net.plan.scenario
        self.rng = random.Random(f"{self.scenario.seed}:sim")
        self.queue = EventQueue()
        self.progress = progress
        self.lines: list[str] = []  # node events, in time order
        self.lab_lines: list[str] = []
        self.cut: set[int] = set()
        self.group_of: dict[int, int] = {}
        self.flow_of_publish: dict[int, str] = {}
        self.timeline = Timeline(self.scenario, self)
        self.actions = self.timeline.run()
        self.wait: tuple[float, Until] | None = None
        self._resolved: dict[tuple[str, ...], list[SimNode]] = {}
        self.timeline_start = 0.0
        self.timeline_error: str | None = None
        self.timeline_end: float | None = None
        self.events_processed = 0
        self.punched: set[frozenset[int]] = set()
        self.holepunch = [spec.holepunch for spec in self.scenario.nodes]
        self.transports = [(spec.tcp, spec.quic) for spec in self.scenario.nodes]
        self._publish_end = 0.0
        self.gossip = Gossipsub(self)

    @property
    def now(self) -> float:
        return self.queue.now

    @property
    def messages(self) -> list[Message]:
        return self.gossip.messages

    # -- plumbing -------------------------------------------------------------------
    def at(self, t: float, kind: int, data: Any) -> None:
        self.queue.at(t, kind, data)

    def emit(self, node: SimNode | None, type_: str, **fields: Any) -> None:
        event = {"v": SCHEMA_VERSION, "t": round(EPOCH + self.now, 6),
                 "node": node.name if node else LAB_EVENTS, "type": type_, **fields}
        (self.lines if node else self.lab_lines).append(json.dumps(event, separators=(",", ":")))

    def path_ok(self, a: SimNode, b: SimNode) -> bool:
        if a.index in self.cut or b.index in self.cut:
            return False
        if self.group_of:
            rest = self.group_of.get(-1, 0)
            return self.group_of.get(a.index, rest) == self.group_of.get(b.index, rest)
        return True

    def send_time(self, src: SimNode, dst: SimNode, size: int, start: float | None = None) -> float:
        """Arrival time of a message from src to dst over their connection (direct, or
        through the relay) when it leaves src at ``start`` (default: now)."""
        start = self.now if start is None else start
        via = src.peers.get(dst.index)
        if via is None or via < 0:
            return self.net.one_way(src, dst, size, start, self.rng)
        relay = self.net.nodes[via]
        hop = self.net.one_way(src, relay, size, start, self.rng)
        return self.net.one_way(relay, dst, size, hop, self.rng)

    def transmit(self, kind: int, src: SimNode, dst: SimNode, size: int, data: Any,
                 depart: float | None = None) -> None:
        via = src.peers.get(dst.index, -1)
        if not (self.path_ok(src, dst) if via < 0 else
                self.path_ok(src, self.net.nodes[via]) and self.path_ok(self.net.nodes[via], dst)):
            # The packet is lost; TCP retransmits with back-off until the path is back.
            self.at(self.now + TCP_MIN_RTO_S, RETRANSMIT, (kind, src.index, dst.index, size,
                                                           data, TCP_MIN_RTO_S))
            return
        self.at(self.send_time(src, dst, size, depart), kind, data)

    # -- run ------------------------------------------------------------------------
    def run(self) -> None:
        net = self.net
        start_rng = random.Random(f"{self.scenario.seed}:starts")
        for node in net.nodes:
            self.at(start_rng.uniform(0.5, 1.5), START, node.index)
        self.timeline_start = 2.0
        self.at(self.timeline_start, STEP, None)
        limit = 3600.0
        while (event := self.queue.pop()) is not None:
            t, kind, data = event
            if t > limit:
                break
            self.queue.now = t
            self.events_processed += 1
            if kind == END:
                break
            self.dispatch(kind, data)

    def dispatch(self, kind: int, data: Any) -> None:
        nodes = self.net.nodes
        gossip = self.gossip
        if kind == DELIVER:
            number, src, dst = data
            gossip.on_message(nodes[dst], number, src)
        elif kind == PROCESSED:
            number, node_index, src = data
            gossip.on_processed(nodes[node_index], number, src)
        elif kind == HEARTBEAT:
            node = nodes[data[0]]
            if node.alive and node.generation == data[1]:
                gossip.on_heartbeat(node)
                self.at(self.now + gossip.heartbeat, HEARTBEAT, data)
        elif kind == IHAVE:
            src, dst, numbers = data
            gossip.on_ihave(nodes[dst], nodes[src], numbers)
        elif kind == IWANT:
            src, dst, numbers = data
            gossip.on_iwant(nodes[dst], nodes[src], numbers)
        elif kind == GRAFT:
            src, dst, topic = data
            gossip.on_graft(nodes[dst], nodes[src], topic)
        elif kind == PRUNE:
            src, dst, topic = data
            gossip.on_prune(nodes[dst], nodes[src], topic)
        elif kind == SUBSCRIBE:
            src, dst = data
            gossip.on_subscribe(nodes[dst], nodes[src])
        elif kind == PUBLISH:
            gossip.on_publish(*data)
        elif kind == CONNECT:
            self.on_connect(*data)
        elif kind == PUNCH:
            self.on_punch(*data)
        elif kind == START:
            self.on_start(nodes[data])
        elif kind == RESERVE:
            self.reserve(*data)
        elif kind == REDIAL:
            self.dial(*data)
        elif kind == RETRANSMIT:
            kind_, src, dst, size, payload, rto = data
            a, b = nodes[src], nodes[dst]
            if not (a.alive and b.alive and dst in a.peers):
                return
            if self.path_ok(a, b):
                self.at(self.send_time(a, b, size), kind_, payload)
            else:
                self.at(self.now + rto * 2, RETRANSMIT, (kind_, src, dst, size, payload,
                                                         min(rto * 2, 60.0)))
        elif kind == STEP:
            self.advance()
        elif kind == WAIT:
            self.on_wait()

    # -- nodes ------------------------------------------------------------------------
    def on_start(self, node: SimNode) -> None:
        node.alive = True
        node.generation += 1
        node.up_free = node.down_free = node.cpu_free = self.now
        self.gossip.on_start(node)
        self.emit(node, "node_started", peer_id=node.peer_id, listen_addrs=[],
                  announced_addrs=[], role="relay" if node.role == "relay" else "peer",
                  topic=node.topics[0], topics=list(node.topics))
        if node.role != "relay":
            phase = self.rng.uniform(0, self.gossip.heartbeat)
            self.at(self.now + phase, HEARTBEAT, (node.index, node.generation))
        net = self.net
        for relay in net.relays_of.get(node.index, []):
            self.reserve(node.index, relay)
        for dial in net.dials_of.get(node.index, ()):
            self.dial(dial.dialer, dial.target, dial.via)
        for other in net.mdns_of.get(node.index, ()):
            if other != node.index and net.nodes[other].alive:
                self.at(self.now + 1.0 + CONNECT_RTTS * net.rtt(node, net.nodes[other]),
                        CONNECT, (node.index, other, -1, "mdns"))

    def dial(self, dialer: int, target: int, via: int | None) -> None:
        """A persistent dial: try now; if it cannot work yet, try again later."""
        net = self.net
        a, b = net.nodes[dialer], net.nodes[target]
        if not a.alive:
            return
        if target in a.peers:
            return
        if via is None:
            ok = b.alive and net.reachable_directly(a, b) and self.path_ok(a, b)
            if ok:
                self.at(self.now + CONNECT_RTTS * net.rtt(a, b) + 0.01, CONNECT,
                        (dialer, target, -1, "dial"))
                return
        else:
            r = net.nodes[via]
            if b.alive and r.alive and b.relay_ok and self.path_ok(a, r) and self.path_ok(r, b):
                delay = CONNECT_RTTS * (net.rtt(a, r) + net.rtt(r, b)) + 0.02
                self.at(self.now + delay, CONNECT, (dialer, target, via, "dial"))
                return
        self.at(self.now + REDIAL_PAUSE_S, REDIAL, (dialer, target, via))

    def on_connect(self, dialer: int, target: int, via: int, why: str) -> None:
        net = self.net
        a, b = net.nodes[dialer], net.nodes[target]
        if not (a.alive and b.alive):
            if why == "dial":
                self.at(self.now + REDIAL_PAUSE_S, REDIAL,
                        (dialer, target, via if via >= 0 else None))
            return
        if why == "reserve":
            a.relay_ok = True
            self.emit(a, "relay_reservation", relay=b.peer_id, outcome="ok", elapsed_ms=0.0,
                      reason="")
        kind = "relayed" if via >= 0 else "direct"
        if target in a.peers and (a.peers[target] < 0 or via >= 0):
            return  # already connected as well or better
        a.peers[target] = via
        b.peers[dialer] = via
        for x, y, direction in ((a, b, "outbound"), (b, a, "inbound")):
            self.emit(x, "connection_opened", peer=y.peer_id, remote_addr="", kind=kind,
                      transport="tcp", direction=direction)
        if a.role != "relay" and b.role != "relay":
            self.transmit(SUBSCRIBE, a, b, CONTROL_BYTES, (dialer, target))
            self.transmit(SUBSCRIBE, b, a, CONTROL_BYTES, (target, dialer))
        if via >= 0 and self.holepunch[dialer] and self.holepunch[target]:
            self.at(self.now + HOLE_PUNCH_DELAY_S, PUNCH, (dialer, target))

    def on_punch(self, dialer: int, target: int) -> None:
        net = self.net
        a, b = net.nodes[dialer], net.nodes[target]
        if not (a.alive and b.alive) or a.peers.get(target, -1) < 0:
            return
        (tcp_a, quic_a), (tcp_b, quic_b) = self.transports[dialer], self.transports[target]
        tcp, quic = tcp_a and tcp_b, quic_a and quic_b
        # The relayed connection's listener (b) starts DCUtR; over QUIC the dialler's
        # ClientHello must get in (nat.quic_punch_works).
        transport = net.punch_transport(b, a, tcp, quic) if self.path_ok(a, b) else None
        ok = transport is not None
        self.punched.add(frozenset((dialer, target)))
        for x, y, role in ((b, a, "initiator"), (a, b, "responder")):
            self.emit(x, "hole_punch", peer=y.peer_id, attempt=1,
                      outcome="success" if ok else "failure", elapsed_ms=200.0,
                      reason="" if ok else "the NAT pair does not allow a punch (theory)",
                      transport=transport or ("tcp" if tcp else "quic"), role=role)
        if ok:
            a.peers[target] = -1
            b.peers[dialer] = -1
            for x, y, d in ((a, b, "outbound"), (b, a, "inbound")):
                self.emit(x, "connection_opened", peer=y.peer_id, remote_addr="", kind="direct",
                          transport=transport, direction=d)

    def kill_node(self, node: SimNode) -> None:
        node.alive = False
        for peer_index in list(node.peers):
            peer = self.net.nodes[peer_index]
            kind = "relayed" if node.peers[peer_index] >= 0 else "direct"
            peer.peers.pop(node.index, None)
            for group in (*peer.mesh.values(), *peer.topic_peers.values(), *peer.fanout.values()):
                group.discard(node.index)
            self.emit(peer, "connection_closed", peer=node.peer_id, remote_addr="", kind=kind,
                      transport="tcp", direction="unknown")
        # Connections through a dead relay die too.
        if node.role == "relay":
            for other in self.net.nodes:
                for peer_index, via in list(other.peers.items()):
                    if via == node.index:
                        other.peers.pop(peer_index)
                        for group in (*other.mesh.values(), *other.topic_peers.values()):
                            group.discard(peer_index)
                        self.emit(other, "connection_closed",
                                  peer=self.net.nodes[peer_index].peer_id,
                                  remote_addr="", kind="relayed", transport="tcp",
                                  direction="unknown")
                if node.index in self.net.relays_of.get(other.index, []):
                    other.relay_ok = False
        node.peers.clear()
        node.mesh.clear()
        node.topic_peers.clear()
        node.fanout.clear()
        node.seen.clear()
        node.requested.clear()
        node.relay_ok = False
        # Peers that dialled it, and relayed pairs, dial again (persistent peers); nodes
        # that reserved on it try to reserve again.
        for dial in self.net.dials:
            if dial.target == node.index or dial.via == node.index:
                self.at(self.now + REDIAL_PAUSE_S, REDIAL, (dial.dialer, dial.target, dial.via))
        for other in self.net.nodes:
            if node.index in self.net.relays_of.get(other.index, []) and other.alive:
                self.at(self.now + REDIAL_PAUSE_S, RESERVE, (other.index, node.index))

    def reserve(self, node_index: int, relay_index: int) -> None:
        net = self.net
        node, relay = net.nodes[node_index], net.nodes[relay_index]
        if not node.alive or node.relay_ok:
            return
        if relay.alive and net.reachable_directly(node, relay) and self.path_ok(node, relay):
            self.at(self.now + CONNECT_RTTS * net.rtt(node, relay) + 0.01, CONNECT,
                    (node_index, relay_index, -1, "reserve"))
        else:
            self.at(self.now + REDIAL_PAUSE_S, RESERVE, (node_index, relay_index))

    # -- the timeline (topology/timeline.py says what each step means) ------------------
    def advance(self) -> None:
        """Run the timeline to its next time action and schedule that action."""
        try:
            action = next(self.actions)
        except StopIteration:
            self.timeline_end = self.now
            self.at(self.now + self.scenario.settle + self._publishing_left(), END, None)
            return
        if isinstance(action, At):
            self.at(max(self.now, self.timeline_start + action.offset), STEP, None)
        elif isinstance(action, Pause):
            self.at(self.now + action.seconds, STEP, None)
        else:
            self.wait = (self.now + action.timeout, action)
            self.at(self.now, WAIT, None)

    def on_wait(self) -> None:
        assert self.wait is not None
        deadline, action = self.wait
        if self.holds(action.condition):
            self.wait = None
            self.at(self.now, STEP, None)
        elif self.now >= deadline:
            self.wait = None
            if action.required:
                self.timeline_error = (f"timed out after {action.timeout:g} s waiting for "
                                       f"{action.what}")
                self.timeline_end = self.now
                self.at(self.now + self.scenario.settle, END, None)
            else:
                self.at(self.now, STEP, None)
        else:
            self.at(self.now + WAIT_TICK_S, WAIT, None)

    def _publishing_left(self) -> float:
        return max(0.0, self._publish_end - self.now)

    def _node(self, name: str) -> SimNode:
        return self.net.nodes[self.net.index[name]]

    def running(self) -> set[str]:
        return {n.name for n in self.net.nodes if n.alive}

    def clock(self) -> float:
        return EPOCH + self.now

    def publish(self, node: str, flow: str, topic: str, step: Publish,
                offsets: list[float]) -> None:
        origin = self.net.index[node]
        for offset in offsets:
            self.at(self.now + offset, PUBLISH, (origin, topic, step.size, flow))
        self._publish_end = max(self._publish_end, self.now + offsets[-1])

    def stop_traffic(self, flow: str, nodes: list[str]) -> None:
        self.gossip.flows_stopped.add(flow)
        if flow == "all":
            self.gossip.flows_stopped.update(flows_of(self.scenario))

    def kill(self, nodes: list[str]) -> None:
        for name in nodes:
            self.kill_node(self._node(name))

    def restart(self, nodes: list[str]) -> None:
        for name in nodes:  # a restarted process is up about a second later
            self.at(self.now + 1.0, START, self.net.index[name])

    def set_links(self, nodes: list[str], up: bool) -> None:
        for name in nodes:
            (self.cut.discard if up else self.cut.add)(self.net.index[name])

    def partition(self, groups: list[list[str]]) -> None:
        self.group_of = {self.net.index[n]: i for i, g in enumerate(groups) for n in g}
        self.group_of[-1] = len(groups)

    def heal(self) -> None:
        self.group_of = {}

    def set_nat(self, lan: str, nat: Any) -> str:
        return "(ignored by the simulator)"

    def lab_event(self, type_: str, **fields: Any) -> None:
        self.emit(None, type_, **fields)

    def _members(self, names: tuple[str, ...]) -> list[SimNode]:
        """The nodes a condition names, looked up once per wait (checked every tick)."""
        found = self._resolved.get(names)
        if found is None:
            found = self._resolved[names] = [self._node(n) for n in names]
        return found

    def holds(self, condition: Condition) -> bool:
        if isinstance(condition, Reserved):
            return all(m.relay_ok for m in self._members(condition.nodes))
        if isinstance(condition, MeshAtLeast):
            return all(len(m.mesh.get(m.topics[0], ())) >= condition.peers
                       for m in self._members(condition.nodes) if m.alive)
        if isinstance(condition, Started):
            return all(m.alive for m in self._members(condition.nodes))
        pairs = [(self._node(a), self._node(b)) for a, b in condition.pairs]
        if isinstance(condition, Connected):
            for a, b in pairs:
                via = a.peers.get(b.index)
                if via is None:
                    return False
                if ((condition.kind == "direct" and via >= 0)
                        or (condition.kind == "relayed" and via < 0)):
                    return False
            return True
        return all(frozenset((a.index, b.index)) in self.punched for a, b in pairs)
