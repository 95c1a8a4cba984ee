"""The simulator's parts one at a time: the event queue's order, the gossipsub model's
rules (GRAFT, PRUNE and backoff, IHAVE/IWANT, the seen cache, fanout) and the engine's
connections (dials, a relay's death, hole punching from the one NAT theory)."""

from __future__ import annotations

import json

import pytest
from p2plab.compose.sim.engine import Simulation
from p2plab.compose.sim.events_queue import (
    CONNECT,
    DELIVER,
    GRAFT,
    IWANT,
    PRUNE,
    REDIAL,
    RESERVE,
    EventQueue,
)
from p2plab.compose.sim.gossipsub import PRUNE_BACKOFF_S, Message
from p2plab.compose.sim.network import SimNetwork, SimNode
from p2plab.topology.loading import parse_scenario
from p2plab.topology.plan import build_plan

pytestmark = pytest.mark.quick

THREE = """
name: three
seed: 2
nodes:
  - {name: a, lan: public}
  - {name: b, lan: public}
  - {name: c, lan: public}
"""


def simulation(text: str = THREE) -> Simulation:
    return Simulation(SimNetwork(build_plan(parse_scenario(text, "s.yaml"))))


def started(sim: Simulation) -> list[SimNode]:
    """Every node up and connected to every other, directly (no events run)."""
    nodes = sim.net.nodes
    for node in nodes:
        node.alive = True
        sim.gossip.on_start(node)
    for x in nodes:
        for y in nodes:
            if x is not y:
                x.peers[y.index] = -1
                x.topic_peers.setdefault("chat", set()).add(y.index)
    return nodes


def queued(sim: Simulation) -> list[tuple[int, object]]:
    return [(kind, data) for _, _, kind, data in sorted(sim.queue.heap)]


def test_the_queue_takes_events_by_time_then_in_the_order_they_came() -> None:
    queue = EventQueue()
    for t, kind in ((2.0, 1), (1.0, 2), (1.0, 3), (0.5, 4)):
        queue.at(t, kind, None)
    order = []
    while (event := queue.pop()) is not None:
        order.append(event[1])
    assert order == [4, 2, 3, 1] and not queue


def test_a_heartbeat_grafts_up_to_d_and_a_backed_off_peer_is_pruned() -> None:
    sim = simulation()
    a, b, c = started(sim)
    sim.gossip.on_heartbeat(a)
    assert a.mesh["chat"] == {b.index, c.index}  # D is larger than two peers
    assert sorted(kind for kind, _ in queued(sim)) == [GRAFT, GRAFT]
    sim.queue.heap.clear()
    b.backoff[a.index] = sim.now + 10  # b pruned a a moment ago
    sim.gossip.on_graft(b, a, "chat")
    assert a.index not in b.mesh.get("chat", set())
    assert [kind for kind, _ in queued(sim)] == [PRUNE]
    sim.gossip.on_prune(a, b, "chat")
    assert b.index not in a.mesh["chat"] and a.backoff[b.index] == sim.now + PRUNE_BACKOFF_S


def test_a_message_is_taken_once_and_passed_on_to_the_mesh_but_not_back() -> None:
    sim = simulation()
    a, b, c = started(sim)
    b.mesh["chat"] = {a.index, c.index}
    sim.gossip.messages.append(Message(0, a.index, 1, "chat", 100, "f", "a/1"))
    sim.gossip.on_message(b, 0, a.index)
    sim.gossip.on_message(b, 0, c.index)  # a second copy: already seen
    received = [json.loads(line) for line in sim.lines]
    assert [e["type"] for e in received] == ["message_received"]
    assert received[0]["node"] == "b" and received[0]["msg_id"] == "a/1"
    assert [(kind, data) for kind, data in queued(sim)] == [(DELIVER, (0, b.index, c.index))]


def test_ihave_asks_only_for_what_is_neither_seen_nor_asked_for() -> None:
    sim = simulation()
    a, b, _ = started(sim)
    b.seen.add(0)
    b.requested.add(1)
    sim.gossip.on_ihave(b, a, [0, 1, 2])
    assert queued(sim) == [(IWANT, (b.index, a.index, [2]))] and 2 in b.requested


def test_a_publisher_outside_the_topic_sends_through_its_fanout() -> None:
    sim = simulation("""
name: fanout
seed: 2
nodes:
  - {name: a, lan: public, topics: [other]}
  - {name: b, lan: public}
  - {name: c, lan: public}
""")
    a, b, c = started(sim)
    a.topic_peers["chat"] = {b.index, c.index}
    sim.gossip.on_publish(a.index, "chat", 50, "f")
    assert a.fanout["chat"] == {b.index, c.index}
    assert sorted(data[2] for kind, data in queued(sim) if kind == DELIVER) == [b.index,
                                                                                  c.index]


def test_a_relays_death_closes_the_connections_through_it_and_they_are_dialled_again() -> None:
    sim = simulation("""
name: relayed
seed: 2
lans:
  - {name: h1, subnet: 10.1.0.0/24, nat: symmetric}
  - {name: h2, subnet: 10.2.0.0/24, nat: symmetric}
nodes:
  - {name: relay, lan: public, role: relay}
  - {name: a, lan: h1, relay: [relay]}
  - {name: b, lan: h2, relay: [relay], dial: [{node: a, via: relay}]}
""")
    relay, a, b = (sim.net.nodes[sim.net.index[n]] for n in ("relay", "a", "b"))
    for node in (relay, a, b):
        node.alive = True
        sim.gossip.on_start(node)
    a.relay_ok = b.relay_ok = True
    sim.on_connect(b.index, a.index, relay.index, "dial")
    assert a.peers[b.index] == relay.index and b.peers[a.index] == relay.index
    sim.on_punch(b.index, a.index)  # two symmetric NATs: theory says no
    punches = [json.loads(line) for line in sim.lines if '"hole_punch"' in line]
    assert {e["outcome"] for e in punches} == {"failure"} and a.peers[b.index] == relay.index
    sim.queue.heap.clear()
    sim.kill_node(relay)
    assert b.index not in a.peers and not a.relay_ok
    closed = [json.loads(line) for line in sim.lines if '"connection_closed"' in line]
    assert {(e["node"], e["kind"]) for e in closed} >= {("a", "relayed"), ("b", "relayed")}
    kinds = {kind for kind, _ in queued(sim)}
    assert {REDIAL, RESERVE} <= kinds and CONNECT not in kinds  # tried again, not yet made
