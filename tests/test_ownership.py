"""Run ownership: who is live, who conflicts, and that `clean` spares live runs."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from p2plab.compose import ownership
from p2plab.compose.backend import PREFIX, BackendError
from p2plab.compose.cleanup import clean, lab_namespaces
from p2plab.compose.ownership import RUN_ENV
from p2plab.compose.ownership import RunRecord


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(ownership, "RUNS_DIR", tmp_path / "runs")
    return tmp_path / "runs"


def _dead_pid() -> tuple[int, float]:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    started = psutil.Process(proc.pid).create_time()
    proc.wait()
    return proc.pid, started


@pytest.mark.quick
def test_a_run_is_live_while_its_owner_is(state: Path) -> None:
    mine = RunRecord("aaaaaa", "netns", "s", "/tmp/x")
    assert mine.owner_alive() and mine.live
    pid, started = _dead_pid()
    gone = RunRecord("bbbbbb", "netns", "s", "/tmp/x", owner_pid=pid, owner_started=started)
    assert not gone.owner_alive() and not gone.live
    # A recycled pid is not the owner: its process started at another time.
    recycled = RunRecord("cccccc", "netns", "s", "/tmp/x", owner_started=time.time() - 3600)
    assert not recycled.owner_alive()
    kept = RunRecord("dddddd", "docker", "s", "/tmp/x", owner_pid=pid, owner_started=started,
                     kept=True)
    assert kept.live
    for r in (mine, gone, kept):
        ownership.register(r)
    assert ownership.protected_run_ids() == {"aaaaaa", "dddddd"}
    assert ownership.protected_run_ids(include_kept=False) == {"aaaaaa"}
    assert ownership.forget_dead() == ["record of run bbbbbb"]
    assert {r.run_id for r in ownership.records()} == {"aaaaaa", "dddddd"}


@pytest.mark.quick
def test_docker_runs_with_overlapping_subnets_conflict_netns_runs_do_not(state: Path) -> None:
    ownership.claim(RunRecord("aaaaaa", "docker", "nat-relay", "/r/a",
                              subnets=["203.0.113.0/24", "10.1.0.0/24"]))
    with pytest.raises(BackendError, match=r"run aaaaaa \(nat-relay on docker, owner pid"):
        ownership.claim(RunRecord("bbbbbb", "docker", "nat-relay", "/r/b",
                                  subnets=["10.1.0.128/25"]))
    assert not (state / "bbbbbb.json").exists()
    ownership.claim(RunRecord("cccccc", "docker", "other", "/r/c", subnets=["10.9.0.0/24"]))
    ownership.claim(RunRecord("dddddd", "netns", "nat-relay", "/r/d",
                              subnets=["203.0.113.0/24", "10.1.0.0/24"]))
    # A dead owner's record does not block anyone.
    pid, started = _dead_pid()
    ownership.register(RunRecord("eeeeee", "docker", "x", "/r/e", subnets=["10.50.0.0/24"],
                                 owner_pid=pid, owner_started=started))
    ownership.claim(RunRecord("ffffff", "docker", "y", "/r/f", subnets=["10.50.0.0/24"]))


@pytest.mark.quick
def test_run_ids_are_read_from_object_names() -> None:
    assert ownership.run_id_of("p2pl-0a1b2c-home-gw", PREFIX) == "0a1b2c"
    assert ownership.run_id_of("p2pl-export-home", PREFIX) is None
    assert ownership.run_id_of("other-0a1b2c-x", PREFIX) is None


@pytest.mark.netns
def test_clean_removes_orphans_and_spares_live_and_kept_runs(tmp_path: Path) -> None:
    """Real namespaces and processes for a live run, a dead owner's run, a kept lab and
    an unrecorded run; `clean` takes the dead and the unrecorded only, `--kept` the kept
    lab too."""
    live, dead, kept, unknown = (os.urandom(3).hex() for _ in range(4))
    pid, started = _dead_pid()
    ownership.register(RunRecord(live, "netns", "s", str(tmp_path)))
    ownership.register(RunRecord(dead, "netns", "s", str(tmp_path), owner_pid=pid,
                                 owner_started=started))
    ownership.register(RunRecord(kept, "netns", "s", str(tmp_path), owner_pid=pid,
                                 owner_started=started, kept=True))
    names = {rid: f"{PREFIX}{rid}-host" for rid in (live, dead, kept, unknown)}
    helpers = {}
    try:
        for rid, ns in names.items():
            subprocess.run(["ip", "netns", "add", ns], check=True)
            helpers[rid] = subprocess.Popen(["sleep", "300"], env={**os.environ, RUN_ENV: rid})
        removed = clean()
        present = set(lab_namespaces())
        assert names[live] in present and names[kept] in present
        assert names[dead] not in present and names[unknown] not in present
        assert helpers[live].poll() is None and helpers[kept].poll() is None
        assert helpers[dead].wait(5) and helpers[unknown].wait(5)  # killed
        assert f"run record {dead}" in removed
        clean(kept=True)
        assert names[kept] not in set(lab_namespaces()) and helpers[kept].wait(5)
        assert names[live] in set(lab_namespaces()) and helpers[live].poll() is None
    finally:
        for proc in helpers.values():
            proc.kill()
        for ns in names.values():
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        for rid in (live, dead, kept):
            ownership.release(rid)
