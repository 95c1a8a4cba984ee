"""Shared fixtures and skips.

Integration tests need root with ip and nft (``netns``) or a reachable Docker engine
(``docker``); every lab test checks that nothing of p2plab is left afterwards.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Container
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
P2PLAB = [sys.executable, "-m", "p2plab.cli"]

pytest_plugins = ["p2plab.testing"]


def _docker_ok() -> bool:
    try:
        import docker

        docker.from_env().ping()
        return True
    except Exception:
        return False


def require(ok: bool, why: str) -> None:
    """A test's own prerequisite: skipped on a developer's machine without it, a failure
    in CI (``CI`` set), where a skip would pass a run that tested nothing."""
    if ok:
        return
    if os.environ.get("CI"):
        pytest.fail(f"CI is set and this test cannot run: {why}", pytrace=False)
    pytest.skip(why)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    can_netns = os.geteuid() == 0 and shutil.which("ip") and shutil.which("nft")
    can_docker = os.geteuid() == 0 and _docker_ok()
    if os.environ.get("CI"):
        # In CI a missing prerequisite is a broken machine, never a green run with the
        # lab tests quietly skipped.
        wanted = {mark for item in items for mark in ("netns", "docker", "swarm")
                  if mark in item.keywords}
        missing = [m for m, ok in (("netns", can_netns), ("docker", can_docker),
                                   ("swarm", can_docker)) if m in wanted and not ok]
        if missing:
            raise pytest.UsageError(f"CI is set and the {' and '.join(missing)} tests cannot "
                                    "run here (they need root with ip and nft, and a Docker "
                                    "engine): fix the machine instead of skipping them")
    for item in items:
        if "netns" in item.keywords and not can_netns:
            item.add_marker(pytest.mark.skip(reason="needs root with ip and nft"))
        if ("docker" in item.keywords or "swarm" in item.keywords) and not can_docker:
            item.add_marker(pytest.mark.skip(reason="needs root and a Docker engine"))


def node_processes(spare: Container[str]) -> list[str]:
    import psutil
    from p2plab.compose.lab.ownership import RUN_ENV

    pattern = "python.* -m p2plab.node --name|p2plab-node-rs(-053)? --name"
    out = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True)
    found = []
    own_mounts = os.stat("/proc/self/ns/mnt").st_ino
    for pid in out.stdout.split():
        try:
            if os.stat(f"/proc/{pid}/ns/mnt").st_ino != own_mounts:
                continue  # inside a container: counted with the containers below
            proc = psutil.Process(int(pid))
            owner = proc.environ().get(RUN_ENV)
            # A lab's nodes carry their run's id; nodes without one are a unit test's
            # own (tests/test_node.py, test_contract.py), which may run meanwhile.
            if owner is None or owner in spare:
                continue
            found.append(f"{pid} {' '.join(proc.cmdline())[:80]}")
        except (psutil.Error, OSError):  # gone since pgrep listed it (a container's, too)
            continue
    return found


# Under pytest-xdist the lab tests run on several workers at once. A run one worker's
# test keeps (tests/test_keep.py) or kills (tests/test_interrupt.py) has no live owner
# while that test still works on it; the test itself asserts it leaves nothing, so the
# other workers leave it alone. Set per worker by `_worker_temp`.
_WORKERS_ROOT: Path | None = None  # this session's temp root, holding every worker's
_OWN_TEMP: Path | None = None  # this worker's part of it
CLAIMS_FILE = "p2plab-run-ids"  # run ids a test makes without a run record


@pytest.fixture(scope="session", autouse=True)
def _worker_temp(tmp_path_factory: pytest.TempPathFactory) -> None:
    global _WORKERS_ROOT, _OWN_TEMP
    _OWN_TEMP = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        _WORKERS_ROOT = _OWN_TEMP.parent


def claim_run_ids(*run_ids: str) -> None:
    """Mark run ids this worker's test makes objects for without a run record (a
    fabricated orphan), so that the other workers do not count them."""
    assert _OWN_TEMP is not None
    with open(_OWN_TEMP / CLAIMS_FILE, "a") as claims:
        claims.writelines(f"{r}\n" for r in run_ids)


def _another_workers(run_id: str) -> bool:
    """Whether the run is another worker's test's: its results folder lies in that
    worker's temp, or that worker claimed the id."""
    from p2plab.compose.lab.ownership import RUNS_DIR, RunRecord

    if _WORKERS_ROOT is None or _OWN_TEMP is None:
        return False
    record = RunRecord.load(RUNS_DIR / f"{run_id}.json")
    if record is not None:
        run_dir = Path(record.run_dir)
        return _WORKERS_ROOT in run_dir.parents and _OWN_TEMP not in run_dir.parents
    for claims in _WORKERS_ROOT.glob(f"*/{CLAIMS_FILE}"):
        if claims.parent != _OWN_TEMP and run_id in claims.read_text().split():
            return True
    return False


class _NotALeftover:
    """Runs whose objects are not leftovers: a live owner's, or another worker's test's.
    Asked per object, as ProtectedRuns is: a run another test starts meanwhile
    registered first."""

    def __init__(self) -> None:
        from p2plab.compose.lab.ownership import ProtectedRuns

        self.live = ProtectedRuns(include_kept=False)

    def __contains__(self, run_id: object) -> bool:
        return run_id in self.live or (isinstance(run_id, str) and _another_workers(run_id))


def leftovers() -> list[str]:
    """Everything of p2plab still on the machine that no live run owns: namespaces,
    processes, containers, networks, rules. Runs of others (a concurrent CI job, a kept
    lab is not one) are theirs: only what belongs to no live owner is a leftover.

    A leftover stays: what is gone a second later was another run's passing object (the
    netns backend's probe namespace lives a few milliseconds before its run is claimed),
    and is not counted."""
    first = _leftovers_now()
    if not first:
        return []
    time.sleep(1.0)
    again = set(_leftovers_now())
    return [thing for thing in first if thing in again]


def _leftovers_now() -> list[str]:
    from p2plab.compose.backends.base import PREFIX
    from p2plab.compose.backends.containers import RUN_LABEL
    from p2plab.compose.lab.cleanup import helper_processes, lab_namespaces
    from p2plab.compose.lab.ownership import run_id_of

    spare = _NotALeftover()
    found = [f"namespace {n}" for n in lab_namespaces() if run_id_of(n, PREFIX) not in spare]
    found += [f"process {p}" for p in node_processes(spare)]
    found += [f"helper {pid} {cmd[:60]}" for pid, cmd in helper_processes(spare)]
    if shutil.which("docker") and _docker_ok():
        import docker

        client = docker.from_env()
        found += [f"container {c.attrs['Names'][0].lstrip('/')}" for c in  # sparse: no race
                  client.containers.list(all=True, sparse=True, filters={"label": RUN_LABEL})
                  if (c.attrs.get("Labels") or {}).get(RUN_LABEL) not in spare]
        found += [f"network {n.name}" for n in client.networks.list(filters={"label": RUN_LABEL})
                  if (n.attrs.get("Labels") or {}).get(RUN_LABEL) not in spare]
        rules = subprocess.run(["iptables", "-w", "-S", "DOCKER-USER"], capture_output=True,
                               text=True)
        found += [f"rule {r}" for r in rules.stdout.splitlines() if "p2pl-" in r and
                  run_id_of(r.split("--comment", 1)[-1].strip().strip('"'), PREFIX) not in spare]
    return found


@pytest.fixture
def no_leftovers():
    assert leftovers() == [], "something of p2plab existed before the test"
    yield
    left = leftovers()
    subprocess.run([*P2PLAB, "clean"], capture_output=True)
    assert left == [], f"left behind: {left}"
