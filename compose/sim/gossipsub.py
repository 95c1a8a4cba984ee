"""The gossipsub model, following the gossipsub v1.1 spec with the parameters the real
node uses (D, D_lo, D_hi, heartbeat): subscriptions, mesh maintenance with GRAFT and
PRUNE (and prune backoff), eager push to mesh peers, fanout for publishers outside a
topic, IHAVE/IWANT gossip from a sliding message cache, the seen cache. It reacts to
the engine's events and sends through the engine (``Simulation.transmit``), which owns
connections, links and faults."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from p2plab.compose.sim.events_queue import DELIVER, GRAFT, IHAVE, IWANT, PROCESSED, PRUNE
from p2plab.compose.sim.network import SimNode

from p2plab.events import SCHEMA_VERSION

if TYPE_CHECKING:
    from p2plab.compose.sim.engine import Simulation

EPOCH = 1_700_000_000.0  # simulated runs start here: logs do not depend on the host clock
HISTORY_LENGTH = 5  # mcache windows kept
HISTORY_GOSSIP = 3  # windows advertised in IHAVE
D_LAZY = 6
GOSSIP_FACTOR = 0.25
PRUNE_BACKOFF_S = 60.0
CONTROL_BYTES = 64


@dataclass
class Message:
    number: int
    origin: int
    seq: int
    topic: str
    size: int
    flow: str
    msg_id: str


class Gossipsub:
    def __init__(self, sim: Simulation) -> None:
        self.sim = sim
        self.net = sim.net
        self.rng = sim.rng  # one stream of draws for the whole run: same seed, same run
        g = sim.net.gossip
        self.D, self.D_lo, self.D_hi = g.degree, g.degree_low, g.degree_high
        self.heartbeat = g.heartbeat_interval
        scenario = sim.scenario
        self.cpu_receive = scenario.sim.receive_ms / 1000
        self.cpu_send = scenario.sim.send_ms / 1000
        self.messages: list[Message] = []
        self.seq: dict[int, int] = {}
        self.flows_stopped: set[str] = set()

    @property
    def now(self) -> float:
        return self.sim.queue.now

    def transmit(self, kind: int, src: SimNode, dst: SimNode, size: int, data: Any,
                 depart: float | None = None) -> None:
        self.sim.transmit(kind, src, dst, size, data, depart)

    def on_start(self, node: SimNode) -> None:
        node.mcache = [[] for _ in range(HISTORY_LENGTH)]

    def on_prune(self, node: SimNode, peer: SimNode, topic: str) -> None:
        if node.alive:
            node.mesh.get(topic, set()).discard(peer.index)
            node.backoff[peer.index] = self.now + PRUNE_BACKOFF_S

    def on_subscribe(self, node: SimNode, peer: SimNode) -> None:
        if node.alive and peer.index in node.peers:
            for topic in peer.topics:
                node.topic_peers.setdefault(topic, set()).add(peer.index)

    def send_copies(self, node: SimNode, targets: list[int], size: int,
                    payload: Callable[[int], Any], ready: float) -> None:
        """One copy of a message to each target, one after another on the node's CPU."""
        depart = ready
        for p in targets:
            if self.cpu_send:
                depart = max(depart, node.cpu_free) + self.cpu_send
                node.cpu_free = depart
            self.transmit(DELIVER, node, self.net.nodes[p], size, payload(p), depart)

    def on_heartbeat(self, node: SimNode) -> None:
        rng = self.rng
        for topic in node.topics:
            mesh = node.mesh.setdefault(topic, set())
            known = node.topic_peers.get(topic, set())
            if len(mesh) < self.D_lo:
                candidates = [p for p in known if p not in mesh
                              and node.backoff.get(p, 0.0) <= self.now]
                candidates.sort()
                for p in rng.sample(candidates, min(len(candidates), self.D - len(mesh))):
                    mesh.add(p)
                    self.transmit(GRAFT, node, self.net.nodes[p], CONTROL_BYTES,
                                  (node.index, p, topic))
            elif len(mesh) > self.D_hi:
                members = sorted(mesh)
                for p in rng.sample(members, len(mesh) - self.D):
                    mesh.discard(p)
                    node.backoff[p] = self.now + PRUNE_BACKOFF_S
                    self.transmit(PRUNE, node, self.net.nodes[p], CONTROL_BYTES,
                                  (node.index, p, topic))
            advertised = [n for window in node.mcache[:HISTORY_GOSSIP] for n in window
                          if self.messages[n].topic == topic]
            if advertised:
                others = sorted(p for p in known if p not in mesh)
                count = max(D_LAZY, int(GOSSIP_FACTOR * len(others)))
                for p in rng.sample(others, min(count, len(others))):
                    self.transmit(IHAVE, node, self.net.nodes[p],
                                  CONTROL_BYTES + 8 * len(advertised),
                                  (node.index, p, advertised))
        node.mcache.insert(0, [])
        del node.mcache[HISTORY_LENGTH:]

    def on_graft(self, node: SimNode, peer: SimNode, topic: str) -> None:
        if not node.alive or peer.index not in node.peers:
            return
        if topic not in node.topics or node.backoff.get(peer.index, 0.0) > self.now:
            self.transmit(PRUNE, node, peer, CONTROL_BYTES, (node.index, peer.index, topic))
            return
        node.mesh.setdefault(topic, set()).add(peer.index)

    def on_ihave(self, node: SimNode, peer: SimNode, numbers: list[int]) -> None:
        if not node.alive or peer.index not in node.peers:
            return
        wanted = [n for n in numbers if n not in node.seen and n not in node.requested]
        if wanted:
            node.requested.update(wanted)
            self.transmit(IWANT, node, peer, CONTROL_BYTES + 8 * len(wanted),
                          (node.index, peer.index, wanted))

    def on_iwant(self, node: SimNode, peer: SimNode, numbers: list[int]) -> None:
        if not node.alive or peer.index not in node.peers:
            return
        cached = {n for window in node.mcache for n in window}
        for n in numbers:
            if n in cached:
                self.transmit(DELIVER, node, peer, self.messages[n].size,
                              (n, node.index, peer.index))

    def on_publish(self, origin: int, topic: str, size: int, flow: str) -> None:
        node = self.net.nodes[origin]
        if not node.alive or flow in self.flows_stopped:
            return
        seq = self.seq.get(origin, 0) + 1
        self.seq[origin] = seq
        msg = Message(len(self.messages), origin, seq, topic, size, flow,
                      f"{node.peer_id}/{seq}")
        self.messages.append(msg)
        self.sim.emit(node, "message_published", msg_id=msg.msg_id, origin=node.peer_id, seq=seq,
                  size=size, topic=topic, flow=flow)
        node.seen.add(msg.number)
        node.mcache[0].append(msg.number)
        if topic in node.topics:
            targets = node.mesh.get(topic, set())
        else:
            fanout = node.fanout.setdefault(topic, set())
            if len(fanout) < self.D:
                known = sorted(p for p in node.topic_peers.get(topic, set()) if p not in fanout)
                fanout.update(self.rng.sample(known, min(len(known), self.D - len(fanout))))
            targets = fanout
        self.send_copies(node, sorted(targets), size, lambda p: (msg.number, origin, p), self.now)

    def on_message(self, node: SimNode, number: int, src: int) -> None:
        if not node.alive or number in node.seen or src not in node.peers:
            return
        node.seen.add(number)
        msg = self.messages[number]
        if msg.topic not in node.topics:
            return
        if self.cpu_receive:
            done = max(self.now, node.cpu_free) + self.cpu_receive
            node.cpu_free = done
            self.sim.queue.at(done, PROCESSED, (number, node.index, src))
            return
        self.on_processed(node, number, src)

    def on_processed(self, node: SimNode, number: int, src: int) -> None:
        """The node has the message: the application sees it, mesh peers get copies."""
        if not node.alive:
            return
        msg = self.messages[number]
        node.mcache[0].append(number)
        # The commonest event by far: formatted directly (the same JSON json.dumps
        # would write for these plain fields), in the schema's field order.
        self.sim.lines.append(
            f'{{"v":{SCHEMA_VERSION},"t":{round(EPOCH + self.now, 6)!r},"node":"{node.name}",'
            f'"type":"message_received","msg_id":"{msg.msg_id}","origin":'
            f'"{self.net.nodes[msg.origin].peer_id}","seq":{msg.seq},"size":{msg.size},'
            f'"topic":{json.dumps(msg.topic)}}}')
        targets = [p for p in sorted(node.mesh.get(msg.topic, ())) if p != src and p != msg.origin]
        self.send_copies(node, targets, msg.size, lambda p: (number, node.index, p), self.now)
