"""The timeline's meaning, once for every executor: what each step asks of an executor."""

from __future__ import annotations

from typing import Any

import pytest
from p2plab.topology.loading import parse_scenario
from p2plab.topology.schema import Publish
from p2plab.topology.timeline import (
    At,
    Connected,
    MeshAtLeast,
    Pause,
    Reserved,
    Started,
    Timeline,
    Until,
)

pytestmark = pytest.mark.quick

SCENARIO = """
name: t
lans:
  - {name: home, subnet: 10.1.0.0/24, nat: full-cone}
nodes:
  - {name: relay, lan: public, role: relay}
  - {name: alice, lan: home, relay: [relay]}
  - {name: bob, lan: public, dial: [alice]}
  - {name: carol, lan: public}
timeline:
  - wait: reservation
    nodes: [alice]
  - wait: topic-peers
    nodes: ["*"]
    min: 1
    required: false
  - wait: connection
    pairs: [[alice, bob]]
    kind: direct
    required: false
  - publish: [alice, bob]
    count: 3
    rate: 1
    name: hello
  - at: 5
    kill: [bob]
  - wait: topic-peers
    nodes: ["*"]
    min: 1
  - restart: [bob]
  - sleep: 2
  - link-down: [home]
  - partition: [[alice], [bob]]
  - heal: true
  - set-nat: home
    nat: symmetric
  - stop-traffic: all
"""


class Recorder:
    """An executor that records every primitive it is asked for."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.alive = {"relay", "alice", "bob", "carol"}

    def running(self) -> set[str]:
        return set(self.alive)

    def clock(self) -> float:
        return 100.0 + len(self.calls)

    def publish(self, node: str, flow: str, topic: str, step: Publish,
                offsets: list[float]) -> None:
        self.calls.append(("publish", node, flow, topic, len(offsets)))

    def stop_traffic(self, flow: str, nodes: list[str]) -> None:
        self.calls.append(("stop", flow, tuple(nodes)))

    def kill(self, nodes: list[str]) -> None:
        self.alive -= set(nodes)
        self.calls.append(("kill", tuple(nodes)))

    def restart(self, nodes: list[str]) -> None:
        self.alive |= set(nodes)
        self.calls.append(("restart", tuple(nodes)))

    def set_links(self, nodes: list[str], up: bool) -> None:
        self.calls.append(("links", tuple(nodes), up))

    def partition(self, groups: list[list[str]]) -> None:
        self.calls.append(("partition", tuple(map(tuple, groups))))

    def heal(self) -> None:
        self.calls.append(("heal",))

    def set_nat(self, lan: str, nat: Any) -> str:
        self.calls.append(("set-nat", lan, nat))
        return "APDM+APDF"

    def lab_event(self, type_: str, **fields: Any) -> None:
        self.events.append((type_, fields))

    def progress(self, message: str) -> None:
        pass


def test_each_step_becomes_primitives_and_time_actions() -> None:
    scenario = parse_scenario(SCENARIO, "t.yaml")
    recorder = Recorder()
    timeline = Timeline(scenario, recorder)
    actions = list(timeline.run())

    assert actions == [
        Until(Reserved(("alice",)), 30.0, True, "relay reservations of alice"),
        Until(MeshAtLeast(("alice", "bob", "carol"), 1), 30.0, False,
              "1+ gossipsub mesh peers at alice, bob, carol"),
        Until(Connected((("alice", "bob"),), "direct"), 30.0, False,
              "a direct connection alice <-> bob"),
        At(5.0),
        # bob is down: a topic-peers wait no longer waits for him
        Until(MeshAtLeast(("alice", "carol"), 1), 30.0, True,
              "1+ gossipsub mesh peers at alice, carol"),
        Until(Started(("bob",)), 30.0, True, "bob to start again"),
        Pause(2.0),
    ]
    assert recorder.calls == [
        ("publish", "alice", "hello", "chat", 3), ("publish", "bob", "hello", "chat", 3),
        ("kill", ("bob",)), ("restart", ("bob",)), ("links", ("alice",), False),
        ("partition", (("alice",), ("bob",))), ("heal",), ("set-nat", "home", "symmetric"),
        ("stop", "all", ("alice", "bob", "carol")),
    ]
    kinds = [(t, f.get("action")) for t, f in recorder.events]
    assert kinds == [("traffic", "start"), ("fault", "kill"), ("fault", "restart"),
                     ("fault", "link-down"), ("fault", "partition"), ("fault", "heal"),
                     ("fault", "set-nat"), ("traffic", "stop")]
    assert recorder.events[-2][1]["nat"] == "APDM+APDF"
    assert [s["step"].get("wait") or next(iter(s["step"])) for s in timeline.steps][:4] == [
        "reservation", "topic-peers", "connection", "publish"]
    assert len(timeline.steps) == len(scenario.timeline)


def test_a_step_without_a_meaning_is_refused() -> None:
    timeline = Timeline(parse_scenario(SCENARIO, "t.yaml"), Recorder())
    with pytest.raises(TypeError, match="no meaning for object"):
        list(timeline.run_step(0, object()))
