"""The simulator backend: the same scenarios, the same event format and reports,
deterministic per seed, and refused-by-size on the emulation backends."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from p2plab.orchestrate.session import run_scenario
from p2plab.topology.loading import load_scenario
from p2plab.topology.matrix import is_matrix_file

from tests.conftest import P2PLAB, ROOT

SCENARIOS = ROOT / "scenarios"
SIMULATED = sorted(p for p in SCENARIOS.glob("*.yaml")
                   if not is_matrix_file(p) and p.stem not in ("nat-presets", "gossip-10k"))


def quiet(message: str) -> None:
    pass


def event_bytes(run_dir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((run_dir / "events").glob("*.jsonl"))}


@pytest.mark.quick
def test_same_seed_gives_byte_identical_event_logs(tmp_path: Path) -> None:
    path = SCENARIOS / "churn.yaml"
    a = run_scenario(path, "sim", tmp_path / "a", quiet)
    b = run_scenario(path, "sim", tmp_path / "b", quiet)
    logs = event_bytes(a.run_dir)
    assert logs == event_bytes(b.run_dir)
    assert sum(len(v) for v in logs.values()) > 10_000
    other = tmp_path / "other.yaml"
    other.write_text(path.read_text().replace("seed: 33", "seed: 34"))
    c = run_scenario(other, "sim", tmp_path / "c", quiet)
    assert event_bytes(c.run_dir) != logs


@pytest.mark.quick
@pytest.mark.parametrize("path", SIMULATED, ids=lambda p: p.stem)
def test_shipped_scenarios_hold_their_expectations_in_the_simulator(path: Path,
                                                                     tmp_path: Path) -> None:
    result = run_scenario(path, "sim", tmp_path, quiet)
    failed = [v for v in result.verdicts if not v.passed]
    assert not failed, failed
    manifest = json.loads((result.run_dir / "manifest.json").read_text())
    assert manifest["backend"] == "sim" and manifest["sim"]["events_processed"] > 0
    for name in ("summary.json", "report.md", "report.html", "plots/topology.png"):
        assert (result.run_dir / name).exists(), name


@pytest.mark.quick
def test_faults_in_the_simulator_do_what_they_say(tmp_path: Path) -> None:
    result = run_scenario(SCENARIOS / "relay-failure.yaml", "sim", tmp_path, quiet)
    flows = result.summary["delivery"]["per_flow"]
    assert flows["direct-relay-down"]["delivery_ratio"] == 1.0  # the punched pair survives
    assert flows["relayed-relay-down"]["delivery_ratio"] == 0.0  # the relayed pair goes dark
    assert flows["relayed-back"]["delivery_ratio"] == 1.0
    part = run_scenario(SCENARIOS / "partition-heal.yaml", "sim", tmp_path / "p", quiet)
    during = part.summary["delivery"]["per_flow"]["during"]
    assert during["reachable_delivery_ratio"] == 1.0
    assert during["reachable_expected"] < during["deliveries_expected"]


@pytest.mark.quick
def test_a_thousand_node_run_reports_like_any_other(tmp_path: Path) -> None:
    text = (SCENARIOS / "gossip-10k.yaml").read_text()
    text = (text.replace("count: 2000, subnet", "count: 200, subnet")
            .replace("name: server, count: 2000", "name: server, count: 200")
            .replace("count: 8000", "count: 800").replace("name: gossip-10k", "name: gossip-1k")
            .replace("server-001?", "server-01?"))
    path = tmp_path / "gossip-1k.yaml"
    path.write_text(text)
    assert len(load_scenario(path).nodes) == 1000
    result = run_scenario(path, "sim", tmp_path / "r", quiet)
    assert result.passed, [v for v in result.verdicts if not v.passed]
    assert result.summary["delivery"]["deliveries_expected"] == 999 * 100
    assert (result.run_dir / "plots" / "topology.png").stat().st_size > 10_000


@pytest.mark.quick
def test_emulation_refuses_a_scenario_too_big_to_emulate(tmp_path: Path) -> None:
    done = subprocess.run([*P2PLAB, "run", "gossip-10k", "--backend", "netns", "--results",
                           str(tmp_path / "results")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "10000 nodes" in done.stderr and "--backend sim" in done.stderr
    assert not (tmp_path / "results").exists()


@pytest.mark.netns
@pytest.mark.usefixtures("no_leftovers")
def test_crosscheck_against_emulation(tmp_path: Path) -> None:
    done = subprocess.run([*P2PLAB, "crosscheck", "sim-check-30", "--backend", "netns",
                           "--results", str(tmp_path)], capture_output=True, text=True,
                          timeout=400, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    out = next(tmp_path.glob("crosscheck-sim-check-30-*"))
    result = json.loads((out / "crosscheck.json").read_text())
    rows = {r["figure"]: r for r in result["rows"]}
    assert rows["delivery ratio"]["emulated"] >= 0.98 <= rows["delivery ratio"]["simulated"]
    assert rows["messages published"]["emulated"] == rows["messages published"]["simulated"]
    # How fast the emulation propagates depends on how busy the machine is (CPU per
    # message), so the bounds are the ones that hold whatever the load: the network
    # alone (the model without CPU) is no slower than the emulation, and the emulation
    # is no slower than three times the model calibrated with py-libp2p's CPU costs.
    key = "time to 50 % (ms, median message)"
    emu, sim = rows[key]["emulated"], rows[key]["simulated"]
    assert emu <= sim * 3, (emu, sim)
    emulated_run = Path(result["emulated_run"])
    network = subprocess.run([*P2PLAB, "crosscheck", "--run", str(emulated_run),
                              "--network-only", "--results", str(tmp_path / "network")],
                             capture_output=True, text=True, timeout=200, cwd=ROOT)
    assert network.returncode == 0, network.stderr[-2000:]
    only = json.loads(next((tmp_path / "network").glob("crosscheck-*/crosscheck.json"))
                      .read_text())
    network_ms = {r["figure"]: r for r in only["rows"]}[key]["simulated"]
    assert network_ms <= emu * 1.2 and network_ms < sim, (network_ms, emu, sim)
    assert (out / "crosscheck.png").stat().st_size > 10_000
    assert "| delivery ratio |" in (out / "crosscheck.md").read_text()


@pytest.mark.quick
def test_a_simulated_run_killed_while_writing_leaves_no_half_file(tmp_path: Path,
                                                                  monkeypatch) -> None:
    """Results files are whole or absent for the simulator too: a write that dies half
    way (disk full, a kill) leaves no half event log or manifest behind."""
    import os

    from p2plab.compose.run_folder import new_run_dir
    from p2plab.compose.sim.run import simulate

    def half_then_fail(self: Path, data: str, *args: object, **kwargs: object) -> int:
        with open(self, "w") as fh:
            fh.write(data[: len(data) // 2])
        raise OSError(28, "No space left on device")

    def fail(*args: object) -> None:
        raise OSError(28, "No space left on device")

    path = SCENARIOS / "lan.yaml"
    scenario = load_scenario(path)
    run_dir = new_run_dir(tmp_path, scenario, "abcdef")
    monkeypatch.setattr(Path, "write_text", half_then_fail)
    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError):
        simulate(path, scenario, "abcdef", run_dir, quiet)
    monkeypatch.undo()
    half = []
    for p in run_dir.rglob("*"):
        if p.is_file() and p.suffix in (".json", ".jsonl"):
            text = p.read_text()
            try:
                [json.loads(line) for line in text.splitlines()] if p.suffix == ".jsonl" \
                    else json.loads(text)
            except ValueError:
                half.append(p.name)
    assert not half, half
