"""Keep each node's fault filter (cut link, partition) in step with the timeline.

The rules come from topology/faults.py; this loads them into the node's namespace
with the host's nft, the same way on every backend, and loads them again into a
restarted node (a restarted container has a new namespace).
"""

from __future__ import annotations

import subprocess

from p2plab.compose.backends.base import Backend, BackendError
from p2plab.topology.faults import fault_ruleset, partition_blocks
from p2plab.topology.plan import LabPlan


class FaultFilters:
    def __init__(self, plan: LabPlan, backend: Backend) -> None:
        self.plan = plan
        self.backend = backend
        self.cut: set[str] = set()
        self.blocks: dict[str, list[str]] = {}

    def _load(self, name: str) -> None:
        ruleset = fault_ruleset(name in self.cut, self.blocks.get(name, []))
        done = subprocess.run([*self.backend.netns_command(name), "nft", "-f", "-"],
                              input=ruleset, capture_output=True, text=True)
        if done.returncode != 0:
            raise BackendError(f"loading the fault filter of {name}: {done.stderr.strip()}")

    def active(self, name: str) -> bool:
        return name in self.cut or bool(self.blocks.get(name))

    def restore(self, name: str) -> None:
        """After a restart: give the node back the filter it had."""
        if self.active(name):
            self._load(name)

    def set_link(self, names: list[str], up: bool, running: set[str]) -> None:
        for name in names:
            (self.cut.discard if up else self.cut.add)(name)
            if name in running:
                self._load(name)

    def partition(self, groups: list[list[str]], running: set[str]) -> None:
        self.blocks = partition_blocks(self.plan, groups)
        for name in self.plan.nodes:
            if name in running:
                self._load(name)

    def heal(self, running: set[str]) -> None:
        had = [n for n, blocked in self.blocks.items() if blocked]
        self.blocks = {}
        for name in had:
            if name in running:
                self._load(name)
