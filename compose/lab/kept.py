"""The records of labs kept up after their timeline (`p2plab run --keep`), for
reproducing bugs by hand.

A kept lab is recorded in /run/p2plab/kept/RUN_ID.json (gone at reboot, as its
namespaces and containers are): which backend, which hosts, which packet captures, and
what the backend needs to reach the lab again (``Backend.kept_details``).
``Lab.reattach`` brings such a lab back for `p2plab exec HOST -- CMD` and `p2plab down`.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from p2plab.compose.backends.base import BackendError

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
    # NeighbourLimits.state(), put back by down
    host_limits: dict[str, dict[str, int]] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)  # Backend.kept_details()

    def save(self) -> Path:
        KEPT_DIR.mkdir(parents=True, exist_ok=True)
        path = KEPT_DIR / f"{self.run_id}.json"
        write_atomic(path, json.dumps(asdict(self), indent=2))
        return path


def kept_labs() -> list[KeptLab]:
    if not KEPT_DIR.exists():
        return []
    return [KeptLab(**json.loads(p.read_text())) for p in sorted(KEPT_DIR.glob("*.json"))]


def find_kept(run_id: str | None) -> KeptLab:
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


def forget_kept(lab: KeptLab) -> None:
    """The kept lab's record, its run's record and the host limits it raised: gone."""
    from p2plab.compose.lab.host_limits import NeighbourLimits
    from p2plab.compose.lab.ownership import release

    (KEPT_DIR / f"{lab.run_id}.json").unlink(missing_ok=True)
    release(lab.run_id)
    if lab.host_limits:
        NeighbourLimits.from_state(lab.host_limits).restore()
