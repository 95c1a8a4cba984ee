"""The simulator's clock: one heap of timed events, taken in (time, sequence) order, so
the same seed gives the same run, event for event. What an event means is the
engine's (``engine.py``) and the gossipsub model's (``gossipsub.py``)."""

from __future__ import annotations

import heapq
from typing import Any

# Event kinds.
(START, CONNECT, RESERVE, HEARTBEAT, DELIVER, GRAFT, PRUNE, IHAVE, IWANT, PUBLISH,
 STEP, WAIT, PUNCH, SUBSCRIBE, REDIAL, END, PROCESSED, RETRANSMIT) = range(18)


class EventQueue:
    """Timed events; ``now`` is the time of the one being handled."""

    def __init__(self) -> None:
        self.heap: list[tuple[float, int, int, Any]] = []
        self.order = 0
        self.now = 0.0

    def at(self, t: float, kind: int, data: Any) -> None:
        self.order += 1
        heapq.heappush(self.heap, (t, self.order, kind, data))

    def pop(self) -> tuple[float, int, Any] | None:
        """The next event (time, kind, data), or None when none is left."""
        if not self.heap:
            return None
        t, _, kind, data = heapq.heappop(self.heap)
        return t, kind, data

    def __bool__(self) -> bool:
        return bool(self.heap)
