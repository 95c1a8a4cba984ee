"""Wait conditions over what the nodes have reported so far (their events, read live
by ``EventTail``): what a timeline's wait step, the start-up and the end of publishing
wait for. A node that exits while the lab waits fails the wait at once."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from p2plab.compose.backends.base import Backend
from p2plab.compose.lab.events_tail import EventTail
from p2plab.topology.plan import LabPlan
from p2plab.topology.timeline import Condition, Connected, MeshAtLeast, Punched, Reserved

from p2plab.events import EventFormatError

POLL_S = 0.1


class StepFailed(Exception):
    """A step could not complete: the run goes on to teardown and is reported as failed."""


class StepTimeout(StepFailed):
    """A wait step's condition did not come true in time."""


class Waits:
    def __init__(self, plan: LabPlan, backend: Backend, tail: EventTail,
                 down: set[str], started: dict[str, float]) -> None:
        self.plan = plan
        self.backend = backend
        self.tail = tail
        self.down = down  # killed and not restarted: not expected to run
        self.started = started  # nodes started so far (the NAT probe runs before any)
        self.starts_before: dict[str, int] = {}  # node_started events before a restart
        self.first_topic = {n.name: plan.scenario.topics_of(n)[0] for n in plan.scenario.nodes}

    def wait_until(self, what: str, condition: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.tail.poll()
            except EventFormatError as exc:  # a node broke the event schema: its bug
                raise StepFailed(f"a node wrote an event the schema rejects: {exc}") from None
            if condition():
                return
            for name in list(self.started):  # probe hosts may come and go
                if name not in self.down and not self.backend.node_running(name):
                    raise StepFailed(f"node {name} exited while waiting for {what}; "
                                     f"see logs/{name}.log")
            if time.monotonic() > deadline:
                raise StepTimeout(f"timed out after {timeout:g} s waiting for {what}")
            time.sleep(POLL_S)

    def restarting(self, nodes: list[str]) -> None:
        """Before a restart: the next node_started of each of ``nodes`` is the new one."""
        self.starts_before = {n: len(self.tail.of(n, "node_started")) for n in nodes}

    def holds(self, condition: Condition) -> bool:
        """Whether a wait step's condition is true, from the nodes' events so far."""
        return next(self.unmet(condition), None) is None

    def unmet(self, condition: Condition) -> Iterator[str]:
        """The nodes (or ``a<->b`` pairs) for which the condition is not true yet, lazily:
        ``holds`` stops at the first, a timeout's message names them all."""
        if isinstance(condition, Reserved):
            yield from (n for n in condition.nodes if not self.reserved(n))
        elif isinstance(condition, MeshAtLeast):
            yield from (n for n in condition.nodes if self.mesh_size(n) < condition.peers)
        elif isinstance(condition, Connected):
            kind = condition.kind
            yield from (f"{a}<->{b}" for a, b in condition.pairs
                        if not (self.connected(a, b, kind) or self.connected(b, a, kind)))
        elif isinstance(condition, Punched):
            yield from (f"{a}<->{b}" for a, b in condition.pairs if not self.punched(a, b))
        else:
            yield from (n for n in condition.nodes
                        if len(self.tail.of(n, "node_started")) <= self.starts_before.get(n, 0))

    def reserved(self, node: str) -> bool:
        return any(e["outcome"] == "ok" for e in self.tail.of(node, "relay_reservation"))

    def mesh_size(self, node: str) -> int:
        """Mesh peers on the node's first topic, as it last reported them."""
        topic = self.first_topic[node]
        for event in reversed(self.tail.of(node, "topic_peers")):
            if event["topic"] == topic:
                return len(event.get("mesh", event["peers"]))
        return 0

    def punched(self, a: str, b: str) -> bool:
        ids = {a: self.plan.nodes[a].peer_id, b: self.plan.nodes[b].peer_id}
        return any(e["peer"] == ids[y] for x, y in ((a, b), (b, a))
                   for e in self.tail.of(x, "hole_punch"))

    def connected(self, a: str, b: str, kind: str) -> bool:
        conns = self.tail.open_connections(a, self.plan.nodes[b].peer_id)
        return any(kind == "any" or c["kind"] == kind for c in conns)
