"""What each timeline step means, written once for every executor.

The runner (real nodes over a backend) and the simulator both run a scenario's timeline
through ``Timeline``: it picks the nodes a step acts on, calls the executor's primitives
(kill, restart, publish, link and NAT changes), writes the lab's events, and tells the
executor what to do with time: ``At`` (wait until an offset from the timeline's start),
``Pause`` (sleep) or ``Until`` (wait for a condition, with a timeout). The runner does
those with the wall clock and event logs; the simulator with its event heap. Adding a
step kind touches this module and each executor's primitive, nothing else.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from p2plab.topology import traffic
from p2plab.topology.scenario import Scenario
from p2plab.topology.schema import (
    Heal,
    Kill,
    LinkDown,
    LinkUp,
    Partition,
    Publish,
    Restart,
    SetNat,
    Sleep,
    StopTraffic,
    WaitConnection,
    WaitHolePunch,
    WaitReservation,
    WaitTopicPeers,
    step_kind,
)

# A restarted node imports libp2p again: on a loaded host that takes seconds.
RESTART_TIMEOUT_S = 30.0


# -- conditions a wait step waits for (each executor says whether one holds) -----------
@dataclass(frozen=True)
class Reserved:
    """Every node holds a relay reservation."""

    nodes: tuple[str, ...]


@dataclass(frozen=True)
class MeshAtLeast:
    """Every node (still running) has at least ``peers`` mesh peers on its first topic."""

    nodes: tuple[str, ...]
    peers: int


@dataclass(frozen=True)
class Connected:
    """Each pair has a connection of ``kind`` (direct, relayed or any), either way."""

    pairs: tuple[tuple[str, str], ...]
    kind: str


@dataclass(frozen=True)
class Punched:
    """Each pair finished a hole punch."""

    pairs: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Started:
    """Every node restarted by the step before is up again."""

    nodes: tuple[str, ...]


Condition = Reserved | MeshAtLeast | Connected | Punched | Started


# -- what the executor does with time ---------------------------------------------------
@dataclass(frozen=True)
class At:
    """Wait until ``offset`` seconds after the timeline started (a step's ``at``)."""

    offset: float


@dataclass(frozen=True)
class Pause:
    seconds: float


@dataclass(frozen=True)
class Until:
    """Wait until ``condition`` holds; after ``timeout`` a required wait fails the
    timeline, an optional one goes on."""

    condition: Condition
    timeout: float
    required: bool
    what: str


TimeAction = At | Pause | Until


class Executor(Protocol):
    """The primitives a timeline needs; the runner and the simulator implement them."""

    def running(self) -> set[str]:
        """Nodes not killed (or restarted since)."""

    def clock(self) -> float:
        """Now, as a Unix time (the simulator's is simulated)."""

    def publish(self, node: str, flow: str, topic: str, step: Publish,
                offsets: list[float]) -> None:
        """``node`` publishes ``step.count`` messages at these offsets from now."""

    def stop_traffic(self, flow: str, nodes: list[str]) -> None:
        """Flow ``flow`` (or ``all``) stops at these chatting nodes."""

    def kill(self, nodes: list[str]) -> None: ...

    def restart(self, nodes: list[str]) -> None: ...

    def set_links(self, nodes: list[str], up: bool) -> None: ...

    def partition(self, groups: list[list[str]]) -> None: ...

    def heal(self) -> None: ...

    def set_nat(self, lan: str, nat: Any) -> str:
        """Switch the LAN's router to another NAT; return the new behaviour's name."""

    def lab_event(self, type_: str, **fields: Any) -> None:
        """One event in the lab's own log (same format as the nodes')."""

    def progress(self, message: str) -> None: ...


class Timeline:
    """One run of a scenario's timeline on one executor. ``steps`` records what ran
    and when (it goes into the manifest)."""

    def __init__(self, scenario: Scenario, executor: Executor) -> None:
        self.scenario = scenario
        self.ex = executor
        self.steps: list[dict[str, Any]] = []

    def run(self, steps: list[Any] | None = None) -> Iterator[TimeAction]:
        """Each step in order (the scenario's, or ``steps``); the executor carries out
        each time action yielded."""
        for index, step in enumerate(self.scenario.timeline if steps is None else steps):
            if step.at is not None:
                yield At(step.at)
            self.steps.append({"t": self.ex.clock(),
                               "step": step.model_dump(by_alias=True, exclude_none=True)})
            yield from self.run_step(index, step)

    def run_step(self, index: int, step: Any) -> Iterator[TimeAction]:
        s, ex = self.scenario, self.ex
        if isinstance(step, WaitReservation):
            nodes = s.match_nodes(step.nodes)
            ex.progress(f"waiting for relay reservations of {names(nodes)}")
            yield Until(Reserved(tuple(nodes)), step.timeout, step.required,
                        f"relay reservations of {names(nodes)}")
        elif isinstance(step, WaitTopicPeers):
            running = ex.running()
            nodes = [n for n in s.match_chatting(step.nodes) if n in running]
            ex.progress(f"waiting until {names(nodes)} have {step.min}+ mesh peers")
            yield Until(MeshAtLeast(tuple(nodes), step.min), step.timeout, step.required,
                        f"{step.min}+ gossipsub mesh peers at {names(nodes)}")
        elif isinstance(step, (WaitConnection, WaitHolePunch)):
            pairs = tuple(step.all_pairs())
            if isinstance(step, WaitConnection):
                what: str = f"a {step.kind} connection "
                condition: Condition = Connected(pairs, step.kind)
            else:
                what, condition = "a finished hole punch ", Punched(pairs)
            what += ", ".join(f"{a} <-> {b}" for a, b in pairs)
            ex.progress(f"waiting for {what}")
            yield Until(condition, step.timeout, step.required, what)
        elif isinstance(step, Sleep):
            yield Pause(step.sleep)
        elif isinstance(step, Publish):
            self._publish(index, step)
        elif isinstance(step, StopTraffic):
            flow = step.stop_traffic
            chatting = {n.name for n in s.nodes if n.chats}
            ex.stop_traffic(flow, sorted(ex.running() & chatting))
            ex.lab_event("traffic", flow=flow, publishers=[], count=0, topic="", action="stop")
            ex.progress(f"stopped traffic: {flow}")
        elif isinstance(step, SetNat):
            behaviour = ex.set_nat(step.set_nat, step.nat)
            ex.lab_event("fault", action="set-nat", targets=[step.set_nat], nat=behaviour)
            ex.progress(f"switched the NAT of {step.set_nat} to {behaviour}")
        elif isinstance(step, Kill):
            running = ex.running()
            nodes = [n for n in s.match_nodes(step.kill) if n in running]
            ex.kill(nodes)
            ex.lab_event("fault", action="kill", targets=nodes)
            ex.progress(f"killed {names(nodes)}")
        elif isinstance(step, Restart):
            running = ex.running()
            nodes = [n for n in s.match_nodes(step.restart) if n not in running]
            ex.restart(nodes)
            ex.lab_event("fault", action="restart", targets=nodes)
            ex.progress(f"restarted {names(nodes)}")
            yield Until(Started(tuple(nodes)), RESTART_TIMEOUT_S, True,
                        f"{names(nodes)} to start again")
        elif isinstance(step, (LinkDown, LinkUp)):
            up = isinstance(step, LinkUp)
            named = step.link_up if isinstance(step, LinkUp) else step.link_down
            nodes = s.match_link_targets(named)
            ex.set_links(nodes, up)
            ex.lab_event("fault", action=step_kind(step), targets=nodes, named=named)
            ex.progress(f"link {'up' if up else 'down'}: {names(nodes)}")
        elif isinstance(step, Partition):
            groups = [s.match_link_targets(g) for g in step.partition]
            ex.partition(groups)
            ex.lab_event("fault", action="partition",
                         targets=sorted(n for g in groups for n in g), groups=groups)
            ex.progress("partitioned: " + " | ".join(names(g) for g in groups) + " | rest")
        elif isinstance(step, Heal):
            ex.heal()
            ex.lab_event("fault", action="heal", targets=[])
            ex.progress("partition healed")
        else:  # a new step kind must be given a meaning here
            raise TypeError(f"the timeline has no meaning for {type(step).__name__}")

    def _publish(self, index: int, step: Publish) -> None:
        s, ex = self.scenario, self.ex
        flow = step.name or f"step-{index}"
        running = ex.running()
        publishers = [n for n in traffic.publishers(step, s) if n in running]
        for name in publishers:
            ex.publish(name, flow, traffic.topic_for(step, s, name), step,
                       traffic.send_offsets(step, s, index, name))
        ex.lab_event("traffic", flow=flow, publishers=publishers, count=step.count,
                     topic=step.topic or "", pattern=step.pattern, rate=step.rate,
                     size=step.size, action="start")
        ex.progress(f"{names(publishers)} publishing {step.count} x {step.size} B, "
                    f"{step.pattern} at {step.rate:g}/s ({flow})")


def flows_of(scenario: Scenario) -> list[str]:
    """Every flow name a ``stop-traffic: all`` stops: named flows and unnamed steps'."""
    return scenario.flows() + [f"step-{i}" for i in range(len(scenario.timeline))]


def names(nodes: list[str] | tuple[str, ...], limit: int = 6) -> str:
    """A readable list of node names for progress lines, shortened for big groups."""
    if len(nodes) <= limit:
        return ", ".join(nodes) or "nobody"
    return f"{', '.join(nodes[:limit])} and {len(nodes) - limit} more"
