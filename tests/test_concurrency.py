"""Runs side by side: two of one scenario on netns both pass; on Docker a second run
whose subnets overlap a live one, the host's routes or a foreign Docker network stops
before making anything, naming what it collides with; an unwritable results folder is
a usage error. Each refusal exits 2 and leaves no results folder and no lab object."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from p2plab.compose.lab import ownership
from p2plab.compose.lab.ownership import RunRecord

from tests.conftest import P2PLAB, ROOT, leftovers

pytestmark = pytest.mark.usefixtures("no_leftovers")


def _run(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([*P2PLAB, "run", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT)


@pytest.mark.netns
def test_the_same_scenario_twice_at_once_on_netns(tmp_path: Path) -> None:
    first = _run("nat-relay", "--backend", "netns", "--results", str(tmp_path / "a"))
    second = _run("nat-relay", "--backend", "netns", "--results", str(tmp_path / "b"))
    for proc in (first, second):
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err[-2000:]
        assert "nat-relay: PASS" in out


@pytest.mark.docker
def test_a_docker_run_that_collides_with_a_live_one_is_refused(tmp_path: Path) -> None:
    # A live run (this test process owns it) holding nat-relay's public segment.
    other = RunRecord(os.urandom(3).hex(), "docker", "someone-else", "/results/elsewhere",
                      subnets=["203.0.113.0/24"])
    ownership.register(other)
    try:
        proc = _run("nat-relay", "--backend", "docker", "--results", str(tmp_path))
        _out, err = proc.communicate(timeout=300)
    finally:
        ownership.release(other.run_id)
    assert proc.returncode == 2, err[-2000:]
    assert f"run {other.run_id} (someone-else on docker, owner pid {os.getpid()}" in err
    assert "--backend netns" in err
    assert not list(tmp_path.glob("*")) and leftovers() == []


@pytest.mark.docker
def test_docker_subnets_of_the_host_are_refused(tmp_path: Path) -> None:
    scenario = tmp_path / "clash.yaml"
    # docker0 holds 172.17.0.0/16 on every Docker host.
    scenario.write_text("name: clash\nlans:\n  - {name: home, subnet: 172.17.200.0/24, "
                        "nat: port-restricted}\nnodes:\n  - {name: alice, lan: home}\n"
                        "  - {name: bob, lan: public, dial: [alice]}\n")
    proc = _run(str(scenario), "--backend", "docker", "--results", str(tmp_path / "out"))
    _out, err = proc.communicate(timeout=300)
    assert proc.returncode == 2, err[-2000:]
    assert "subnet 172.17.200.0/24 overlaps" in err and "172.17.0.0/16" in err, err
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())
    assert leftovers() == []


@pytest.mark.netns
def test_an_unwritable_results_folder_is_a_usage_error(tmp_path: Path) -> None:
    blocked = tmp_path / "file-not-folder"
    blocked.write_text("")
    proc = _run("nat-relay", "--backend", "netns", "--results", str(blocked / "results"))
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 2, err
    assert f"cannot write results into {blocked / 'results'}" in err and "--results" in err
    assert "Traceback" not in err and leftovers() == []
