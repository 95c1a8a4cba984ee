"""Host-wide kernel limits a big lab needs, raised for the run and put back after it.

The ARP (neighbour) table is one table for every network namespace on the host, capped
by ``net.ipv4.neigh.default.gc_thresh3`` (1024 by default). A lab whose hosts learn more
neighbours than that loses packets without a word to anyone but the kernel log
("neighbor table overflow"): gossip-200 (65 hosts on its public segment) did.
"""

from __future__ import annotations

from pathlib import Path

THRESH = Path("/proc/sys/net/ipv4/neigh/default")


def _read(name: str) -> int:
    return int((THRESH / name).read_text().split()[0])


def _write(name: str, value: int) -> None:
    (THRESH / name).write_text(f"{value}\n")


class NeighbourLimits:
    """Raises gc_thresh2/3 to what a plan needs (never lowers them) and, at the end,
    puts back the old values unless someone else changed them in between."""

    def __init__(self, needed: int) -> None:
        self.needed = needed
        self.before: dict[str, int] = {}
        self.set_to: dict[str, int] = {}
        self.restored = False

    def apply(self) -> None:
        wanted = {"gc_thresh3": 2 * self.needed, "gc_thresh2": self.needed}
        for name, value in wanted.items():
            current = _read(name)
            if current < value:
                self.before[name] = current
                self.set_to[name] = value
                _write(name, value)

    def restore(self) -> None:
        if self.restored:
            return
        self.restored = True
        for name in ("gc_thresh2", "gc_thresh3"):
            if name in self.set_to and _read(name) == self.set_to[name]:
                _write(name, self.before[name])

    def state(self) -> dict[str, dict[str, int]]:
        """What ``restore`` needs, for a kept lab that `p2plab down` ends later."""
        return {"before": dict(self.before), "set_to": dict(self.set_to)}

    @classmethod
    def from_state(cls, state: dict[str, dict[str, int]]) -> NeighbourLimits:
        limits = cls(0)
        limits.before = dict(state.get("before", {}))
        limits.set_to = dict(state.get("set_to", {}))
        return limits

    def describe(self) -> dict[str, object]:
        return {"neighbour_entries_needed": self.needed,
                "raised_for_the_run": {k: [self.before[k], v] for k, v in self.set_to.items()}}
