"""Reproducing a NAT bug by hand: keep the lab up, run commands in its hosts, capture
packets, tear it down; on both backends."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from p2plab.compose.lab.kept import kept_labs

from tests.conftest import P2PLAB, ROOT, leftovers

BACKENDS = [pytest.param("netns", marks=pytest.mark.netns),
            pytest.param("docker", marks=pytest.mark.docker)]
pytestmark = pytest.mark.usefixtures("no_leftovers")


@pytest.mark.parametrize("backend", BACKENDS)
def test_keep_exec_capture_down(backend: str, tmp_path: Path) -> None:
    run = subprocess.run([*P2PLAB, "run", "nat-relay", "--backend", backend, "--keep",
                          "--capture", "--results", str(tmp_path)],
                         capture_output=True, text=True, timeout=600, cwd=ROOT)
    try:
        assert run.returncode == 0, run.stdout + run.stderr
        # Only this test's lab: the swarm tests may keep one of their own meanwhile.
        (lab,) = [k for k in kept_labs() if k.backend == backend]
        run = ["--run", lab.run_id]
        assert lab.backend == backend and "home-a-gw" in lab.hosts and "alice" in lab.hosts
        assert any(line.startswith(("namespace", "container")) for line in leftovers())
        # A command in a node and in a router, through the CLI.
        addr = subprocess.run([*P2PLAB, "exec", *run, "alice", "--", "ip", "-4", "-o", "addr"],
                              capture_output=True, text=True, timeout=60)
        assert addr.returncode == 0 and "10.1.0.10" in addr.stdout, addr.stderr
        rules = subprocess.run([*P2PLAB, "exec", *run, "home-a-gw", "--", "nft", "list", "ruleset"],
                               capture_output=True, text=True, timeout=60)
        assert re.search(r"snat (ip )?to 203\.0\.113\.2", rules.stdout), rules.stdout[-800:]
        bad = subprocess.run([*P2PLAB, "exec", *run, "nobody", "--", "true"], capture_output=True,
                             text=True)
        assert bad.returncode == 2 and "no host 'nobody'" in bad.stderr
    finally:
        down = subprocess.run([*P2PLAB, "down", *run], capture_output=True, text=True,
                              timeout=120)
    assert down.returncode == 0, down.stderr
    assert lab.run_id not in {k.run_id for k in kept_labs()} and leftovers() == []
    # The captures hold the relayed traffic: the router saw alice's flows leave.
    run_dir = next(tmp_path.iterdir())
    pcap = run_dir / "pcap" / "home-a-gw.pcap"
    assert pcap.stat().st_size > 1000
    read = subprocess.run(["tcpdump", "-nr", str(pcap)], capture_output=True, text=True)
    assert "203.0.113.2" in read.stdout and "10.1.0.10" in read.stdout
    assert (run_dir / "pcap" / "alice.pcap").stat().st_size > 1000
