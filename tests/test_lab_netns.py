"""The netns backend: NAT routers drop strays and the lab is sealed (interruptions:
tests/test_interrupt.py)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from p2plab.events import read_events

pytestmark = [pytest.mark.netns, pytest.mark.usefixtures("no_leftovers")]


def test_routers_drop_unsolicited_inbound_and_the_lab_is_sealed(p2plab_lab) -> None:
    lab = p2plab_lab("nat-relay", backend="netns")
    plan = lab.plan
    wan = str(plan.routers["home-a-gw"].wan_ip)
    probe = ("import socket,sys\ns=socket.socket();s.settimeout(2)\n"
             "try:\n s.connect((sys.argv[1],int(sys.argv[2])));print('open')\n"
             "except socket.timeout: print('timeout')\n"
             "except ConnectionRefusedError: print('refused')\n")
    relay_ip = str(plan.nodes["relay"].ip)
    # Control: a closed port on a plain host answers with RST.
    closed = lab["relay"].exec([sys.executable, "-c", probe, relay_ip, "4999"])
    assert closed.stdout.strip() == "refused", closed.stderr
    # A stray SYN at the NAT's public address is dropped silently, never RST.
    stray = lab["relay"].exec([sys.executable, "-c", probe, wan, "4001"])
    assert stray.stdout.strip() == "timeout", stray.stderr
    # No route out of the lab (no packet is sent to check): a NAT'd node's only
    # way is its lab router, and routers and public nodes have no route at all.
    route = lab["alice"].exec(["ip", "route", "get", "192.0.2.1"])
    assert "via 10.1.0.1 dev eth0" in route.stdout, route
    for host in ("home-a-gw", "home-b-gw", "relay"):
        route = lab[host].exec(["ip", "route", "get", "192.0.2.1"])
        assert route.returncode != 0 and "unreachable" in route.stderr, (host, route)
    # The host's own namespace got nothing: no lab link or bridge.
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert "br0" not in links.split() and "lan0" not in links


def test_host_handles_act_inside_the_lab(p2plab_lab) -> None:
    """lab["bob"]: commands in its namespace, node-contract commands, its events, a
    crash recorded as the timeline records one."""
    lab = p2plab_lab("nat-relay", backend="netns")
    bob = lab["bob"]
    assert str(lab.plan.nodes["bob"].ip) in bob.exec(["ip", "-4", "-o", "addr"]).stdout
    assert bob.argv(["sh"])[:3] == ["ip", "netns", "exec"]
    started = bob.events("node_started")
    assert len(started) == 1 and started[0]["peer_id"] == lab.plan.nodes["bob"].peer_id
    bob.send({"cmd": "say", "text": "hello from a handle"})
    lab.wait_for("bob to take the command", lambda: any(e["cmd"] == "say"
                                                       for e in bob.events("command")))
    bob.kill()
    assert not lab.backend.node_running("bob")
    faults = [e for e in read_events(lab.run_dir / "events" / "_lab.jsonl")
              if e["type"] == "fault"]
    assert faults and faults[-1]["targets"] == ["bob"] and faults[-1]["action"] == "kill"
    with pytest.raises(KeyError, match="no host 'nobody'"):
        lab["nobody"]
