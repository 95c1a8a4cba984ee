"""Labs kept up after their timeline (`p2plab run --keep`), for reproducing bugs by hand.

A kept lab is recorded in /run/p2plab/kept/RUN_ID.json (gone at reboot, as its
namespaces and containers are): which backend, which hosts, which packet captures.
`p2plab exec HOST -- CMD` runs a command or a shell in it; `p2plab down` tears it down.
"""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any
from dataclasses import asdict, dataclass, field
from pathlib import Path

from p2plab.compose.backend import PREFIX, BackendError
from p2plab.compose.hosts import Host, LogReader, exec_argv
from p2plab.control import send_command
from p2plab.files import write_atomic
from p2plab.processes import stop_pids

KEPT_DIR = Path(os.environ.get("P2PLAB_STATE_DIR", "/run/p2plab")) / "kept"


@dataclass
class KeptLab:
    run_id: str
    backend: str
    run_dir: str
    hosts: list[str]
    capture_pids: list[int] = field(default_factory=list)
    host_limits: dict = field(default_factory=dict)  # NeighbourLimits.state(), put back by down
    details: dict = field(default_factory=dict)  # Backend.kept_details(): swarm's agents

    def save(self) -> Path:
        KEPT_DIR.mkdir(parents=True, exist_ok=True)
        path = KEPT_DIR / f"{self.run_id}.json"
        write_atomic(path, json.dumps(asdict(self), indent=2))
        return path

    def __getitem__(self, host: str) -> Host:
        """A handle on one host: ``find()["alice"].exec([...])``."""
        if host not in self.hosts:
            raise BackendError(f"no host {host!r} in kept lab {self.run_id}; hosts: "
                               f"{', '.join(self.hosts)}")
        return Host(host, _KeptOwner(self))


class _KeptOwner(LogReader):
    """Host handles of a kept lab: commands through ip netns exec or docker exec."""

    def __init__(self, lab: KeptLab) -> None:
        self.lab = lab
        self.run_dir = Path(lab.run_dir)

    def argv_in(self, host: str, argv: list[str]) -> list[str]:
        return self._argv(host, argv, interactive=True)

    def exec_in(self, host: str, argv: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self._argv(host, argv), capture_output=True, text=True)

    def _argv(self, host: str, argv: list[str], interactive: bool = False) -> list[str]:
        if self.lab.backend == "swarm":
            from p2plab.compose.swarm import kept as swarm_kept

            keep = swarm_kept.SwarmKeep.of(self.lab.details)
            return swarm_kept.exec_argv(keep, self.lab.run_id, host, argv, interactive)
        return exec_argv(self.lab.backend, self.lab.run_id, host, argv, interactive)

    def kill_host(self, host: str) -> None:
        raise BackendError("a kept lab's timeline is over: stop its nodes with p2plab down")

    def send_to(self, host: str, command: dict[str, Any]) -> None:
        if self.lab.backend == "swarm":
            from p2plab.compose.swarm import kept as swarm_kept

            swarm_kept.send(swarm_kept.SwarmKeep.of(self.lab.details), host, command)
            return
        send_command(self.run_dir / "control" / f"{host}.fifo", command)


def kept_labs() -> list[KeptLab]:
    if not KEPT_DIR.exists():
        return []
    return [KeptLab(**json.loads(p.read_text())) for p in sorted(KEPT_DIR.glob("*.json"))]


def find(run_id: str | None) -> KeptLab:
    labs = kept_labs()
    if run_id is not None:
        labs = [lab for lab in labs if lab.run_id == run_id]
    if not labs:
        raise BackendError("no kept lab" + (f" with run id {run_id}" if run_id else "")
                           + ": start one with p2plab run SCENARIO --keep")
    if len(labs) > 1:
        raise BackendError("several kept labs: choose one with --run "
                           + " or ".join(lab.run_id for lab in labs))
    return labs[0]


def stop_captures(pids: list[int]) -> None:
    stop_pids(pids, grace=5)


def down(lab: KeptLab) -> list[str]:
    """Tear a kept lab down and forget it."""
    from p2plab.compose.cleanup import kill_helpers, remove_namespaces
    from p2plab.compose.docker_backend import remove_docker_objects
    from p2plab.compose.ownership import release

    stop_captures(lab.capture_pids)
    removed = kill_helpers(only=lab.run_id)
    if lab.backend == "swarm":  # captures stopped first: their last packets are synced
        from p2plab.compose.swarm import kept as swarm_kept

        removed += swarm_kept.bring_down(swarm_kept.SwarmKeep.of(lab.details), lab.run_id,
                                         Path(lab.run_dir))
    elif lab.backend == "netns":
        removed += remove_namespaces(f"{PREFIX}{lab.run_id}-")
    else:
        removed += remove_docker_objects(run_id=lab.run_id,
                                         logs_dirs={lab.run_id: Path(lab.run_dir) / "logs"})
    (KEPT_DIR / f"{lab.run_id}.json").unlink(missing_ok=True)
    release(lab.run_id)
    if lab.host_limits:
        from p2plab.compose.host_limits import NeighbourLimits

        NeighbourLimits.from_state(lab.host_limits).restore()
    return removed
