"""Which run owns what, so that cleaning up after one run never touches another.

Every run registers itself (``/run/p2plab/runs/RUN_ID.json``) before it creates
anything: its owner process (pid and start time, so a recycled pid is not mistaken for
it; the start time in clock ticks since boot, which a step of the wall clock does not
move), backend, scenario, results folder and the subnets it uses. Everything the run
creates carries its run id (namespace names, Docker labels, firewall rule comments,
helper command lines), and the record goes when the run has torn down.

A run is *live* while its owner process exists; a *kept* lab (``--keep``) belongs to
nobody until ``p2plab down``; anything else carrying a run id is an orphan (its owner
was killed, or the machine rebooted), and ``p2plab clean`` removes only those.
"""

from __future__ import annotations

import ipaddress
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from p2plab.files import write_atomic

# Every process a run starts inherits its run id in this variable (helpers the runner
# starts from the host: link stages, UDP echoes, captures), so `p2plab clean` finds them.
RUN_ENV = "P2PLAB_RUN"

STATE_DIR = Path(os.environ.get("P2PLAB_STATE_DIR", "/run/p2plab"))
RUNS_DIR = STATE_DIR / "runs"


def started_ticks(pid: int) -> int | None:
    """When a process started, in clock ticks since boot (``/proc/PID/stat``, field 22),
    or None if it is gone. Not psutil's ``create_time``: that adds the boot time as the
    wall clock now tells it, so a clock step (NTP, a VM resumed from a snapshot) moves
    every process's start by the step and made live owners look dead to `clean`."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: count from its end.
    return int(stat.rsplit(")", 1)[1].split()[19])


@dataclass
class RunRecord:
    run_id: str
    backend: str
    scenario: str
    run_dir: str
    subnets: list[str] = field(default_factory=list)
    owner_pid: int = field(default_factory=os.getpid)
    owner_started: int | None = field(default_factory=lambda: started_ticks(os.getpid()))
    created: float = field(default_factory=time.time)
    kept: bool = False
    # Its backend's labs share one address space with other runs of that backend
    # (Backend.shares_address_space): overlapping subnets are refused.
    shared_address_space: bool = False

    @property
    def path(self) -> Path:
        return RUNS_DIR / f"{self.run_id}.json"

    def save(self) -> None:
        RUNS_DIR.mkdir(parents=True, exist_ok=True)
        write_atomic(self.path, json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> RunRecord | None:
        """The record in ``path``, or None if it is missing, torn or foreign."""
        try:
            return cls(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def owner_alive(self) -> bool:
        return started_ticks(self.owner_pid) == self.owner_started

    def protected(self, include_kept: bool = True) -> bool:
        """Whether ``p2plab clean`` must leave the run's objects alone."""
        return self.owner_alive() or (self.kept and include_kept)

    @property
    def live(self) -> bool:
        return self.kept or self.owner_alive()

    def describe(self) -> str:
        owner = "kept lab (p2plab down)" if self.kept else f"owner pid {self.owner_pid}"
        return (f"run {self.run_id} ({self.scenario} on {self.backend}, {owner}, "
                f"results in {self.run_dir})")


def register(record: RunRecord) -> RunRecord:
    record.save()
    return record


def release(run_id: str) -> None:
    (RUNS_DIR / f"{run_id}.json").unlink(missing_ok=True)


def enter_run(run_id: str) -> str | None:
    """From now on every process started carries the run id (``P2PLAB_RUN``); returns
    what the variable said before, for ``leave_run``."""
    previous = os.environ.get(RUN_ENV)
    os.environ[RUN_ENV] = run_id
    return previous


def leave_run(record: RunRecord, previous: str | None) -> None:
    """The end of ``enter_run``: the record released unless the lab was kept."""
    if previous is None:
        os.environ.pop(RUN_ENV, None)
    else:
        os.environ[RUN_ENV] = previous
    if not record.kept:
        release(record.run_id)


def records() -> list[RunRecord]:
    if not RUNS_DIR.exists():
        return []
    out = []
    for path in sorted(RUNS_DIR.glob("*.json")):
        record = RunRecord.load(path)
        if record is None:
            path.unlink(missing_ok=True)  # torn or foreign: it protects nothing
        else:
            out.append(record)
    return out


def protected_run_ids(include_kept: bool = True) -> set[str]:
    """Runs whose objects ``p2plab clean`` must leave alone: live owners, and kept labs
    unless ``include_kept`` is False (``clean --kept``)."""
    return {r.run_id for r in records() if r.protected(include_kept)}


class ProtectedRuns:
    """The runs ``protected_run_ids`` names, asked again at each decision. A run
    registers before it makes anything, so one that starts while `clean` is under way
    (after a snapshot of the live runs was taken) is spared when its objects are met;
    with a snapshot, a concurrent `clean` took a starting swarm run's certificates."""

    def __init__(self, include_kept: bool = True) -> None:
        self.include_kept = include_kept

    def __contains__(self, run_id: object) -> bool:
        if not isinstance(run_id, str) or not run_id or "/" in run_id:
            return False
        record = RunRecord.load(RUNS_DIR / f"{run_id}.json")
        return record is not None and record.protected(self.include_kept)

    def __bool__(self) -> bool:
        return bool(protected_run_ids(self.include_kept))


def forget_dead() -> list[str]:
    """Drop the records of runs whose owner is gone (not kept labs)."""
    gone = []
    for r in records():
        if not r.kept and not r.owner_alive():
            release(r.run_id)
            gone.append(f"record of run {r.run_id}")
    return gone


def overlapping_run(record: RunRecord) -> RunRecord | None:
    """A live run on the same backend whose subnets overlap the record's, where that
    backend's labs share an address space. Docker networks (and the host bridges behind
    them) share one per machine, a swarm's overlays the cluster's; network namespaces do
    not, so two netns runs of one scenario never collide."""
    if not record.shared_address_space:
        return None
    ours = [ipaddress.IPv4Network(s) for s in record.subnets]
    for other in records():
        if other.run_id == record.run_id or other.backend != record.backend or not other.live:
            continue
        theirs = [ipaddress.IPv4Network(s) for s in other.subnets]
        if any(a.overlaps(b) for a in ours for b in theirs):
            return other
    return None


def run_id_of(name: str, prefix: str) -> str | None:
    """The run id in an object name ``PREFIX<run id>-...`` (six hex digits)."""
    if not name.startswith(prefix):
        return None
    rest = name[len(prefix):]
    candidate = rest[:6]
    if len(rest) >= 7 and rest[6] == "-" and all(c in "0123456789abcdef" for c in candidate):
        return candidate
    return None


def claim(record: RunRecord) -> RunRecord:
    """Register a run unless a live one already holds overlapping shared subnets, under
    a lock so that two runs starting at once cannot both pass the check."""
    import fcntl

    from p2plab.compose.backends.base import BackendError

    RUNS_DIR.mkdir(parents=True, exist_ok=True)
    with open(RUNS_DIR / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        other = overlapping_run(record)
        if other is not None:
            raise BackendError(
                f"this scenario's subnets overlap those of {other.describe()}: Docker "
                "networks share one address space per machine. Wait for that run, give "
                "this scenario other subnets, or run it with --backend netns (each lab "
                "has its own namespaces there)")
        return register(record)
