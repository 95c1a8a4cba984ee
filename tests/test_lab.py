"""The first shipped scenarios end to end, with details beyond their expectations.

On netns here: `make test` first runs every shipped scenario on Docker (the suite),
with the same expectations, so a Docker copy of these runs would only repeat it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import P2PLAB, ROOT

BACKENDS = [pytest.param("netns", marks=pytest.mark.netns)]
pytestmark = pytest.mark.usefixtures("no_leftovers")


def run(name: str, backend: str, results: Path) -> tuple[subprocess.CompletedProcess[str], Path]:
    result = subprocess.run([*P2PLAB, "run", name, "--backend", backend, "--results", str(results)],
                            capture_output=True, text=True, timeout=600, cwd=ROOT)
    runs = sorted(results.iterdir()) if results.exists() else []
    assert len(runs) == 1, result.stdout + result.stderr
    return result, runs[0]


def events(run_dir: Path, node: str) -> list[dict]:
    return [json.loads(line)
            for line in (run_dir / "events" / f"{node}.jsonl").read_text().splitlines()]


def summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


@pytest.mark.parametrize("backend", BACKENDS)
def test_lan_five_nodes_find_each_other_with_mdns(backend: str, tmp_path: Path) -> None:
    result, run_dir = run("lan", backend, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    s = summary(run_dir)
    assert s["delivery"]["delivery_ratio"] == 1.0 and s["delivery"]["deliveries"] == 5 * 10 * 4
    ids = {n: i["peer_id"] for n, i in s["nodes"].items()}
    discovered = set()
    for node in ids:
        evs = events(run_dir, node)
        discovered |= {frozenset((ids[node], e["peer"])) for e in evs
                       if e["type"] == "peer_discovered" and e["via"] == "mdns"}
        # Nobody dialled anything but what mDNS found.
        assert not any(e["type"] == "dial" and e.get("via") != "mdns" for e in evs)
        assert sum(e["type"] == "message_received" for e in evs) == 40
    # Multicast is lossy, so each pair is found by at least one of its two sides.
    pairs = {frozenset((a, b)) for a in ids.values() for b in ids.values() if a != b}
    assert discovered == pairs, f"{len(pairs - discovered)} pairs never discovered by mDNS"


@pytest.mark.parametrize("backend", BACKENDS)
def test_nat_relay_delivers_everything_over_the_relay(backend: str, tmp_path: Path) -> None:
    result, run_dir = run("nat-relay", backend, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    s = summary(run_dir)
    assert s["connections"]["alice<->bob"]["final"] == "relayed"
    assert s["connections"]["alice<->bob"]["ever"] == ["relayed"]
    assert s["delivery"]["deliveries"] == 40
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["libp2p_version"] == "0.8.1" and manifest["backend"] == backend
    assert manifest["seed"] == 7 and (run_dir / "scenario.yaml").exists()
    # From the logs: the relay saw both peers arrive from their NAT's public address.
    relay_conns = [e for e in events(run_dir, "relay") if e["type"] == "connection_opened"]
    wan = {r["wan_ip"] for r in manifest["routers"].values()}
    assert {e["remote_addr"].split("/")[2] for e in relay_conns} == wan
    alice_id = manifest["nodes"]["alice"]["peer_id"]
    assert all(e["kind"] == "relayed" for e in events(run_dir, "bob")
               if e["type"] == "connection_opened" and e["peer"] == alice_id)
    assert "PASS" in (run_dir / "report.md").read_text()


@pytest.mark.parametrize("backend", BACKENDS)
def test_nat_holepunch_ends_direct(backend: str, tmp_path: Path) -> None:
    result, run_dir = run("nat-holepunch", backend, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    s = summary(run_dir)
    assert s["connections"]["alice<->bob"]["final"] == "direct"
    punch = s["hole_punch"]["alice<->bob"]
    assert punch["successes"] >= 1 and punch["time_to_direct_ms"] > 0
    alice_id = json.loads((run_dir / "manifest.json").read_text())["nodes"]["alice"]["peer_id"]
    direct = [e for e in events(run_dir, "bob") if e["type"] == "connection_opened"
              and e["peer"] == alice_id and e["kind"] == "direct"]
    # bob reached alice at her router's public address: the hole was punched through NAT.
    assert direct and direct[0]["remote_addr"].startswith("/ip4/203.0.113.")


@pytest.mark.parametrize("backend", BACKENDS)
def test_interop_py_and_rust_in_one_lab(backend: str, tmp_path: Path) -> None:
    """Mixed implementations: relayed through a rust and a py relay, punched across."""
    result, run_dir = run("interop", backend, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    manifest = json.loads((run_dir / "manifest.json").read_text())
    impls = {n: i["impl"] for n, i in manifest["nodes"].items()}
    assert impls == {"relay-rs": "rust", "relay-py": "py", "alice": "py", "bob": "rust",
                     "carol": "rust", "dave": "py"}
    ran = manifest["implementations"]
    assert (ran["rust"]["libp2p"] == "rust-libp2p 0.57.1"
            and ran["py"]["libp2p"] == "py-libp2p 0.8.1")
    ids = {n: i["peer_id"] for n, i in manifest["nodes"].items()}
    # Each implementation received every message of the other, by the same ids.
    for sender, receiver in (("alice", "bob"), ("bob", "alice"), ("carol", "dave"),
                             ("dave", "carol")):
        sent = {e["msg_id"] for e in events(run_dir, sender) if e["type"] == "message_published"}
        got = {e["msg_id"] for e in events(run_dir, receiver) if e["type"] == "message_received"
               and e["origin"] == ids[sender]}
        assert len(sent) == 20 and got == sent, (sender, receiver)
    # Bob (rust) reached Alice (py) at her router's public address: punched across.
    direct = [e for e in events(run_dir, "bob") if e["type"] == "connection_opened"
              and e["peer"] == ids["alice"] and e["kind"] == "direct"]
    assert direct and direct[0]["remote_addr"].startswith("/ip4/203.0.113.")
    # Carol (rust) sees Dave's connection through the py relay as relayed, inbound.
    carol = [e for e in events(run_dir, "carol") if e["type"] == "connection_opened"
             and e["peer"] == ids["dave"]]
    assert carol and all(e["kind"] == "relayed" and e["direction"] == "inbound" for e in carol)
    report = (run_dir / "report.md").read_text()
    assert "rust node 0.1.0 on rust-libp2p 0.57.1" in report and "PASS" in report


@pytest.mark.netns
def test_failed_expectation_exits_1(tmp_path: Path) -> None:
    text = (ROOT / "scenarios" / "nat-relay.yaml").read_text()
    path = tmp_path / "wrong.yaml"
    path.write_text(text.replace("final: relayed", "final: direct"))
    result = subprocess.run([*P2PLAB, "run", str(path), "--backend", "netns",
                             "--results", str(tmp_path / "r")],
                            capture_output=True, text=True, timeout=240)
    assert result.returncode == 1, result.stdout + result.stderr
    assert ("FAIL  connection alice<->bob: expected ends direct, observed ends relayed"
            in result.stdout)


def test_bad_scenario_exits_2_and_creates_nothing(tmp_path: Path) -> None:
    result = subprocess.run([*P2PLAB, "run", str(ROOT / "tests/broken/missing-lan.yaml"),
                             "--results", str(tmp_path / "r")], capture_output=True, text=True)
    assert result.returncode == 2 and "LAN 'office' does not exist" in result.stderr
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_seeds_libp2p_053_beside_today_s(backend: str, tmp_path: Path) -> None:
    """impl: rust@0.53 runs rust-libp2p 0.53.2, and the manifest says so; it relays,
    finds a py housemate by mDNS and punches to a 0.57.1 node."""
    result, run_dir = run("poc-libp2p-053", backend, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["node_implementations"] == {
        "py": "py-libp2p 0.8.1", "rust@0.53": "rust-libp2p 0.53.2",
        "rust@0.57.1": "rust-libp2p 0.57.1"}
    assert manifest["implementations"]["rust@0.53"]["libp2p"] == "rust-libp2p 0.53.2"
    assert manifest["implementations"]["rust@0.53"]["nodes"] == ["relay", "alice"]
    builds = manifest["implementation_builds"]
    assert builds["rust@0.53"]["implementation"] == "rust@0.53.2"
    assert builds["rust@0.53"]["program"] != builds["rust@0.57.1"]["program"]


@pytest.mark.netns
def test_one_scenario_across_versions_gives_a_verdict_row_per_version(tmp_path: Path) -> None:
    """suite --impls: how a user bisects a regression. Every Rust node of the scenario
    runs each version in turn, and each row's manifest says which."""
    result = subprocess.run([*P2PLAB, "suite", "poc-libp2p-053", "--impls",
                             "rust@0.53,rust@0.57.1", "--backend", "netns", "--results",
                             str(tmp_path)], capture_output=True, text=True, timeout=900,
                            cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads((tmp_path / "suite.json").read_text())
    rows = {r["scenario"]: r for r in summary["runs"]}
    assert sorted(rows) == ["poc-libp2p-053 [rust@0.53]", "poc-libp2p-053 [rust@0.57.1]"]
    libraries = {}
    for name, row in rows.items():
        assert row["passed"], row
        manifest = json.loads((Path(row["run_dir"]) / "manifest.json").read_text())
        libraries[name] = manifest["node_implementations"]
    assert libraries == {
        "poc-libp2p-053 [rust@0.53]": {"py": "py-libp2p 0.8.1",
                                       "rust@0.53": "rust-libp2p 0.53.2"},
        "poc-libp2p-053 [rust@0.57.1]": {"py": "py-libp2p 0.8.1",
                                         "rust@0.57.1": "rust-libp2p 0.57.1"}}
    assert "| poc-libp2p-053 [rust@0.53] | PASS |" in result.stdout


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_node_registered_only_by_its_file(backend: str, tmp_path: Path) -> None:
    """examples/chat-node (the contract through the kit) chats with py and rust@0.53."""
    declaration = ROOT / "examples" / "chat-node" / "p2plab-impl.yaml"
    result = subprocess.run([*P2PLAB, "run", "examples/chat-node/mixed-lab.yaml", "--backend",
                             backend, "--results", str(tmp_path), "--register",
                             str(declaration)], capture_output=True, text=True, timeout=900,
                            cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    run_dir = next(tmp_path.iterdir())
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["implementation_declarations"]["example-chat"]["declaration"] == \
        str(declaration)
    assert manifest["implementations"]["example-chat"]["libp2p"] == "rust-libp2p 0.57.1"
