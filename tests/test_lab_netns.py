"""The whole lab on network namespaces: shipped scenarios end to end, NAT behaviour,
sealing, and cleanup after success, Ctrl-C and a crash."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from compose.cleanup import lab_namespaces
from compose.netns import NetnsBackend
from topology.plan import build_plan
from topology.scenario import load_scenario

pytestmark = pytest.mark.netns
ROOT = Path(__file__).resolve().parent.parent
P2PLAB = [sys.executable, "-m", "p2plab.cli"]


def _node_processes() -> list[str]:
    out = subprocess.run(["pgrep", "-af", "python.* -m node --name"], capture_output=True,
                         text=True)
    return out.stdout.splitlines()


@pytest.fixture(autouse=True)
def no_leftovers():
    assert lab_namespaces() == [], "a lab namespace existed before the test"
    yield
    left = lab_namespaces()
    procs = _node_processes()
    subprocess.run([*P2PLAB, "clean"], capture_output=True)
    assert left == [] and procs == [], f"left behind: {left} {procs}"


def _run(name: str, results: Path) -> tuple[subprocess.CompletedProcess[str], Path]:
    result = subprocess.run([*P2PLAB, "run", name, "--results", str(results)],
                            capture_output=True, text=True, timeout=240, cwd=ROOT)
    runs = sorted(results.iterdir())
    assert len(runs) == 1, result.stderr
    return result, runs[0]


def _events(run_dir: Path, node: str) -> list[dict]:
    return [json.loads(l) for l in (run_dir / "events" / f"{node}.jsonl").read_text().splitlines()]


def test_lan_five_nodes_find_each_other_with_mdns(tmp_path: Path) -> None:
    result, run_dir = _run("lan", tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["delivery"]["delivery_ratio"] == 1.0
    assert summary["delivery"]["deliveries"] == 5 * 10 * 4
    for node in ("n1", "n2", "n3", "n4", "n5"):
        events = _events(run_dir, node)
        found = {e["peer"] for e in events if e["type"] == "peer_discovered" and e["via"] == "mdns"}
        assert len(found) == 4, f"{node} discovered {found} by mDNS"
        assert not any(e["type"] == "dial" and e.get("via") != "mdns" for e in events)
        assert sum(e["type"] == "message_received" for e in events) == 40


def test_nat_relay_delivers_everything_over_the_relay(tmp_path: Path) -> None:
    result, run_dir = _run("nat-relay", tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["connections"]["alice<->bob"]["final"] == "relayed"
    assert summary["connections"]["alice<->bob"]["ever"] == ["relayed"]
    assert summary["delivery"]["deliveries"] == 40
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["libp2p_version"] == "0.8.1" and manifest["backend"] == "netns"
    assert manifest["seed"] == 7 and (run_dir / "scenario.yaml").exists()
    # From the logs themselves: the relay saw both peers arrive from their NAT's address.
    relay_conns = [e for e in _events(run_dir, "relay") if e["type"] == "connection_opened"]
    wan = {r["wan_ip"] for r in manifest["routers"].values()}
    assert {e["remote_addr"].split("/")[2] for e in relay_conns} == wan
    bob = _events(run_dir, "bob")
    assert all(e["kind"] == "relayed" for e in bob
               if e["type"] == "connection_opened" and e["peer"] == manifest["nodes"]["alice"]["peer_id"])
    assert "PASS" in (run_dir / "report.md").read_text()


def test_nat_holepunch_ends_direct(tmp_path: Path) -> None:
    result, run_dir = _run("nat-holepunch", tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["connections"]["alice<->bob"]["final"] == "direct"
    punch = summary["hole_punch"]["alice<->bob"]
    assert punch["successes"] >= 1 and punch["time_to_direct_ms"] > 0
    alice_id = json.loads((run_dir / "manifest.json").read_text())["nodes"]["alice"]["peer_id"]
    direct = [e for e in _events(run_dir, "bob") if e["type"] == "connection_opened"
              and e["peer"] == alice_id and e["kind"] == "direct"]
    # bob reached alice at her router's public address: the hole was punched through NAT.
    assert direct and direct[0]["remote_addr"].startswith("/ip4/203.0.113.")


def test_failed_expectation_exits_1(tmp_path: Path) -> None:
    text = (ROOT / "scenarios" / "nat-relay.yaml").read_text()
    text = text.replace("final: relayed", "final: direct")
    path = tmp_path / "wrong.yaml"
    path.write_text(text)
    result = subprocess.run([*P2PLAB, "run", str(path), "--results", str(tmp_path / "r")],
                            capture_output=True, text=True, timeout=240)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAIL  connection alice<->bob: expected ends direct, observed ends relayed" in result.stdout


def test_bad_scenario_exits_2_and_creates_nothing(tmp_path: Path) -> None:
    result = subprocess.run([*P2PLAB, "run", str(ROOT / "tests/broken/missing-lan.yaml"),
                             "--results", str(tmp_path / "r")], capture_output=True, text=True)
    assert result.returncode == 2 and "LAN 'office' does not exist" in result.stderr
    assert not (tmp_path / "r").exists()


def test_routers_drop_unsolicited_inbound_and_the_lab_is_sealed(tmp_path: Path) -> None:
    plan = build_plan(load_scenario(ROOT / "scenarios" / "nat-relay.yaml"))
    backend = NetnsBackend("t" + os.urandom(2).hex())
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
    assert lab_namespaces() == []


def _start_run(tmp_path: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen([*P2PLAB, "run", "nat-holepunch", "--results", str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    deadline = time.monotonic() + 60
    while not _node_processes():
        assert time.monotonic() < deadline and proc.poll() is None, "the run never started nodes"
        time.sleep(0.2)
    time.sleep(2)
    return proc


def test_ctrl_c_tears_the_lab_down(tmp_path: Path) -> None:
    proc = _start_run(tmp_path)
    assert lab_namespaces()
    proc.send_signal(signal.SIGINT)
    proc.wait(30)
    assert proc.returncode == 130
    assert lab_namespaces() == [] and _node_processes() == []


def test_crash_then_clean_removes_everything(tmp_path: Path) -> None:
    proc = _start_run(tmp_path)
    proc.kill()  # no chance to clean up
    proc.wait()
    assert lab_namespaces() and _node_processes()
    result = subprocess.run([*P2PLAB, "clean"], capture_output=True, text=True)
    assert result.returncode == 0 and "removed" in result.stdout
    assert lab_namespaces() == [] and _node_processes() == []
