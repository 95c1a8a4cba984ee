"""Run ownership: who is live, who conflicts, and that `clean` spares live runs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from p2plab.compose.backends.base import PREFIX, BackendError
from p2plab.compose.lab import ownership
from p2plab.compose.lab.cleanup import clean, lab_namespaces
from p2plab.compose.lab.ownership import RUN_ENV, RUNS_DIR, RunRecord

from tests.conftest import claim_run_ids


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(ownership, "RUNS_DIR", tmp_path / "runs")
    return tmp_path / "runs"


def _dead_pid() -> tuple[int, int]:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    started = ownership.started_ticks(proc.pid)
    assert started is not None
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
    recycled = RunRecord("cccccc", "netns", "s", "/tmp/x", owner_started=mine.owner_started - 100)
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
def test_owner_start_is_counted_from_boot_not_from_the_wall_clock(state: Path,
                                                                  tmp_path: Path) -> None:
    """psutil's ``create_time`` adds the boot time as the wall clock tells it now, so a
    clock step (NTP, a VM resumed from a snapshot) moves it and a live owner looked
    dead. The record keeps clock ticks since boot: the same instant, no wall clock."""
    mine = RunRecord("aaaaaa", "netns", "s", "/tmp/x")
    since_boot = psutil.Process().create_time() - psutil.boot_time()
    assert isinstance(mine.owner_started, int)
    assert abs(mine.owner_started / os.sysconf("SC_CLK_TCK") - since_boot) < 0.02
    # A command name with spaces and parentheses does not shift the fields.
    odd_name = tmp_path / "a) (b c"
    odd_name.symlink_to(shutil.which("sleep") or "/bin/sleep")
    odd = subprocess.Popen([str(odd_name), "30"])
    try:
        time.sleep(0.2)
        assert "a) (b c" in Path(f"/proc/{odd.pid}/stat").read_text()
        ticks = ownership.started_ticks(odd.pid)
        assert ticks is not None and ticks >= mine.owner_started
    finally:
        odd.kill()
        odd.wait()
    assert ownership.started_ticks(odd.pid) is None


@pytest.mark.quick
def test_a_run_that_starts_while_clean_is_under_way_is_spared(state: Path) -> None:
    """`clean` asks about each run when it meets its objects: a run registered after
    `clean` began (it registers before making anything) is live to it. A snapshot
    taken at the start let a concurrent `clean` remove a starting swarm run's TLS
    material in CI."""
    protected = ownership.ProtectedRuns()
    assert "aaaaaa" not in protected and not protected
    ownership.register(RunRecord("aaaaaa", "swarm", "s", "/tmp/x"))
    assert "aaaaaa" in protected and protected
    pid, started = _dead_pid()
    ownership.register(RunRecord("bbbbbb", "docker", "s", "/tmp/x", owner_pid=pid,
                                 owner_started=started))
    ownership.register(RunRecord("cccccc", "docker", "s", "/tmp/x", owner_pid=pid,
                                 owner_started=started, kept=True))
    assert "bbbbbb" not in protected and "cccccc" in protected
    assert "cccccc" not in ownership.ProtectedRuns(include_kept=False)
    assert None not in protected and "../runs/aaaaaa" not in protected


@pytest.mark.quick
def test_docker_runs_with_overlapping_subnets_conflict_netns_runs_do_not(state: Path) -> None:
    def docker(run_id: str, scenario: str, subnets: list[str], **kw: int | None) -> RunRecord:
        return RunRecord(run_id, "docker", scenario, f"/r/{run_id}", subnets=subnets,
                         shared_address_space=True, **kw)  # type: ignore[arg-type]  # pids

    ownership.claim(docker("aaaaaa", "nat-relay", ["203.0.113.0/24", "10.1.0.0/24"]))
    with pytest.raises(BackendError, match=r"run aaaaaa \(nat-relay on docker, owner pid"):
        ownership.claim(docker("bbbbbb", "nat-relay", ["10.1.0.128/25"]))
    assert not (state / "bbbbbb.json").exists()
    ownership.claim(docker("cccccc", "other", ["10.9.0.0/24"]))
    ownership.claim(RunRecord("dddddd", "netns", "nat-relay", "/r/d",
                              subnets=["203.0.113.0/24", "10.1.0.0/24"]))
    # A dead owner's record does not block anyone.
    pid, started = _dead_pid()
    ownership.register(docker("eeeeee", "x", ["10.50.0.0/24"], owner_pid=pid,
                              owner_started=started))
    ownership.claim(docker("ffffff", "y", ["10.50.0.0/24"]))


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
    claim_run_ids(live, dead, kept, unknown)  # the unknown one has no record
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
        clean()
        present = set(lab_namespaces())
        assert names[live] in present and names[kept] in present
        assert names[dead] not in present and names[unknown] not in present
        assert helpers[live].poll() is None and helpers[kept].poll() is None
        assert helpers[dead].wait(5) and helpers[unknown].wait(5)  # killed
        # Gone (by this clean, or by another worker's test's teardown clean meanwhile).
        assert not (RUNS_DIR / f"{dead}.json").exists()
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
