"""The netns backend: NAT routers drop strays and the lab is sealed (interruptions:
tests/test_interrupt.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from p2plab.compose.cleanup import lab_namespaces
from p2plab.compose.netns import NetnsBackend
from tests.conftest import ROOT
from p2plab.topology.plan import build_plan
from p2plab.topology.loading import load_scenario

pytestmark = [pytest.mark.netns, pytest.mark.usefixtures("no_leftovers")]


def test_routers_drop_unsolicited_inbound_and_the_lab_is_sealed(tmp_path: Path) -> None:
    plan = build_plan(load_scenario(ROOT / "scenarios" / "nat-relay.yaml"))
    backend = NetnsBackend(os.urandom(3).hex())
    try:
        backend.create(plan, tmp_path)
        wan = str(plan.routers["home-a-gw"].wan_ip)
        probe = ("import socket,sys\ns=socket.socket();s.settimeout(2)\n"
                 "try:\n s.connect((sys.argv[1],int(sys.argv[2])));print('open')\n"
                 "except socket.timeout: print('timeout')\n"
                 "except ConnectionRefusedError: print('refused')\n")
        relay_ip = str(plan.nodes["relay"].ip)
        # Control: a closed port on a plain host answers with RST.
        closed = backend.exec("relay", [sys.executable, "-c", probe, relay_ip, "4999"])
        assert closed.stdout.strip() == "refused", closed.stderr
        # A stray SYN at the NAT's public address is dropped silently, never RST.
        stray = backend.exec("relay", [sys.executable, "-c", probe, wan, "4001"])
        assert stray.stdout.strip() == "timeout", stray.stderr
        # No route out of the lab (no packet is sent to check): a NAT'd node's only
        # way is its lab router, and routers and public nodes have no route at all.
        route = backend.exec("alice", ["ip", "route", "get", "192.0.2.1"])
        assert "via 10.1.0.1 dev eth0" in route.stdout, route
        for host in ("home-a-gw", "home-b-gw", "relay"):
            route = backend.exec(host, ["ip", "route", "get", "192.0.2.1"])
            assert route.returncode != 0 and "unreachable" in route.stderr, (host, route)
        # The host's own namespace got nothing: no lab link or bridge.
        links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
        assert "br0" not in links.split() and "lan0" not in links
    finally:
        backend.destroy()
    assert not [n for n in lab_namespaces() if n.startswith(backend.prefix)]


