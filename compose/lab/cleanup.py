"""Find and remove whatever a lab left behind, run by run.

Everything the netns backend makes lives inside namespaces named ``p2pl-<run>-...``
(bridges and veths included, nothing is created in the host's own namespace), so
killing their processes and deleting the namespaces removes it all. Helper processes
(link stages, echo servers, captures) carry their run in ``P2PLAB_RUN``; Docker
objects in a label (compose/backends/docker.py). ``clean`` removes what belongs to runs
that no live process owns (compose/lab/ownership.py), never a run in progress.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Container
from pathlib import Path

import psutil
from p2plab.compose.backends.base import PREFIX
from p2plab.compose.lab.ownership import RUN_ENV, run_id_of

from p2plab.processes import stop_pids


def lab_namespaces(prefix: str = PREFIX) -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False)
    names = [line.split()[0] for line in out.stdout.splitlines() if line.strip()]
    return [n for n in names if n.startswith(prefix)]


def namespace_pids(namespace: str) -> list[int]:
    out = subprocess.run(["ip", "netns", "pids", namespace], capture_output=True,
                         text=True, check=False)
    return [int(p) for p in out.stdout.split() if p.isdigit()]


def kill_namespace_processes(namespace: str, grace: float = 0.0) -> None:
    """SIGTERM (after ``grace``) then SIGKILL every process in the namespace."""
    stop_pids(namespace_pids(namespace), grace)
    # A process may have started in it meanwhile (a helper's child): no grace for it.
    stop_pids(namespace_pids(namespace), 0)


def remove_namespaces(prefix: str = PREFIX,
                      spare: Container[str] = frozenset()) -> list[str]:
    """Kill processes in, then delete, every namespace whose name starts with ``prefix``
    and whose run is not in ``spare`` (names without a run id go only when nothing is
    spared: ``clean --all``)."""
    removed = []
    namespaces = []
    for ns in lab_namespaces(prefix):
        owner = run_id_of(ns, PREFIX)
        if owner in spare or (owner is None and spare):
            continue
        namespaces.append(ns)
    for ns in namespaces:
        kill_namespace_processes(ns)
    # Node and router namespaces first, the fabric (bridges) last.
    for ns in sorted(namespaces, key=lambda n: n.endswith("-fabric")):
        result = subprocess.run(["ip", "netns", "del", ns], capture_output=True, text=True)
        if result.returncode == 0:
            removed.append(ns)
    return removed


# Helpers the runner starts from the host inside lab namespaces (link stages, UDP
# echoes, captures): a Docker container's namespace dies with it, but they do not.
# Every process a run starts inherits RUN_ENV (ownership.enter_run).


def helper_processes(spare: Container[str] = frozenset(),
                     only: str | None = None) -> list[tuple[int, str]]:
    out = []
    ours = {os.getpid(), *(p.pid for p in psutil.Process().parents())}
    for proc in psutil.process_iter(["pid", "cmdline"]):
        if proc.pid in ours:  # this process and whatever runs it (a suite, a test)
            continue
        try:
            owner = proc.environ().get(RUN_ENV)
        except (psutil.Error, OSError):
            continue
        if owner is None or owner in spare or (only is not None and owner != only):
            continue
        out.append((proc.pid, " ".join(proc.info["cmdline"] or [])))
    return out


def kill_helpers(spare: Container[str] = frozenset(),
                 only: str | None = None) -> list[str]:
    found = helper_processes(spare, only)
    stop_pids([pid for pid, _ in found], 0)
    return [f"process {pid} ({cmd[:60]})" for pid, cmd in found]


def clean(kept: bool = False, everything: bool = False) -> list[str]:
    """Remove what runs without a live owner left: their helpers, namespaces, Docker
    objects and records. Kept labs too with ``kept``; ``everything`` ignores owners."""
    from p2plab.compose.backends.registry import clean_all
    from p2plab.compose.lab import ownership
    from p2plab.compose.lab.host_limits import NeighbourLimits
    from p2plab.compose.lab.kept import KEPT_DIR, kept_labs, stop_captures

    records = ownership.records()
    spare: Container[str] = (frozenset() if everything
                             else ownership.ProtectedRuns(include_kept=not kept))
    removed = kill_helpers(spare)
    removed += clean_all(spare, {r.run_id: Path(r.run_dir) / "logs" for r in records})
    for lab in kept_labs():
        if lab.run_id not in spare:
            stop_captures(lab.capture_pids)
            if lab.host_limits:
                NeighbourLimits.from_state(lab.host_limits).restore()
            (KEPT_DIR / f"{lab.run_id}.json").unlink(missing_ok=True)
            removed.append(f"kept record {lab.run_id}")
    for record in records:
        if record.run_id not in spare:
            ownership.release(record.run_id)
            removed.append(f"run record {record.run_id}")
    return removed
