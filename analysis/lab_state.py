"""Who was up and who could reach whom, at any moment of a run, from its events.

Nodes say when they started; the lab's own log (node "_lab") says when the timeline
killed, restarted, cut or partitioned them. Delivery counts only receivers that were
alive when a message went out ("eligible"), and separately those that could also reach
the publisher then ("reachable"), so a partition or a crash shows as what it is.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Any

from p2plab.analysis.event_log import EventLog

LAB = "_lab"
# A receiver killed this soon after a publish is not expected to have received it.
GRACE_S = 2.0


@dataclass
class _Snapshot:
    t: float
    cut: frozenset[str]
    group_of: dict[str, int]


@dataclass
class LabState:
    down: dict[str, list[tuple[float, float]]] = field(default_factory=dict)  # node -> [start, end)
    snapshots: list[_Snapshot] = field(default_factory=list)
    faults: list[dict[str, Any]] = field(default_factory=list)
    starts: dict[str, float] = field(default_factory=dict)  # node -> first node_started
    _times: list[float] = field(default_factory=list, repr=False)  # snapshot times, for bisect

    @classmethod
    def from_events(cls, events: EventLog) -> LabState:
        state = cls()
        if events.empty:
            return state
        faults = events.of("fault")
        lab = faults[faults["node"] == LAB] if len(faults) else faults
        started = events.of("node_started")
        starts: dict[str, list[float]] = {}
        for row in started.itertuples():
            starts.setdefault(row.node, []).append(float(row.t))
        cut: set[str] = set()
        group_of: dict[str, int] = {}
        state.snapshots.append(_Snapshot(float("-inf"), frozenset(), {}))
        for row in lab.itertuples():
            t = float(row.t)
            targets = list(row.targets)
            action = row.action
            state.faults.append({"t": t, "action": action, "targets": targets})
            if action == "kill":
                for node in targets:
                    back = next((s for s in starts.get(node, []) if s > t), float("inf"))
                    state.down.setdefault(node, []).append((t, back))
            elif action in ("link-down", "link-up"):
                (cut.update if action == "link-down" else cut.difference_update)(targets)
            elif action == "partition":
                group_of = {n: i for i, g in enumerate(row.groups) for n in g}
                group_of["*"] = len(row.groups)
            elif action == "heal":
                group_of = {}
            state.snapshots.append(_Snapshot(t, frozenset(cut), dict(group_of)))
        state.starts = {n: min(ts) for n, ts in starts.items()}
        return state

    @property
    def steady(self) -> bool:
        """Nothing was killed, cut or partitioned: every started node could reach every
        other all along (big runs then skip the per-node checks)."""
        return not self.faults

    def started_by(self, node: str, t: float) -> bool:
        first = self.starts.get(node)
        return first is not None and first <= t

    def alive(self, node: str, t: float, grace: float = GRACE_S) -> bool:
        first = self.starts.get(node)
        if first is None or first > t:
            return False
        return not any(start - grace <= t < end for start, end in self.down.get(node, []))

    def _at(self, t: float) -> _Snapshot:
        if len(self._times) != len(self.snapshots):
            self._times = [s.t for s in self.snapshots]
        i = bisect.bisect_right(self._times, t) - 1
        return self.snapshots[max(i, 0)]

    def reachable(self, a: str, b: str, t: float) -> bool:
        snap = self._at(t)
        if a in snap.cut or b in snap.cut:
            return False
        if not snap.group_of:
            return True
        rest = snap.group_of["*"]
        return snap.group_of.get(a, rest) == snap.group_of.get(b, rest)
