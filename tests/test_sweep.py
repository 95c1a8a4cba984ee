"""Sweeps: the product of parameter values, seeded per point, resumable, in the simulator
side by side and emulated on netns one after another; the results API reads them; the
example notebook runs on them."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from p2plab.orchestrate.sweep import parse_axis, points, run_sweep
from p2plab.topology.loading import ScenarioError
from p2plab.topology.overrides import OverrideError

import p2plab.results as results
from p2plab.cli import main
from p2plab.resources import scenarios_dir
from tests.conftest import ROOT

SIM_CHECK = scenarios_dir() / "sim-check-30.yaml"
NAT_RELAY = scenarios_dir() / "nat-relay.yaml"
NOTEBOOK = ROOT / "examples" / "notebooks" / "propagation.ipynb"
SWEPT = ["nodes.peer.count=12,20", "lans.home.link.latency_ms=5,40"]


@pytest.mark.quick
def test_axes_and_points() -> None:
    axis = parse_axis("lans.home.link={latency_ms: 5, jitter_ms: 1},{latency_ms: 9}")
    assert axis.values == ("{latency_ms: 5, jitter_ms: 1}", "{latency_ms: 9}")
    plan = points([parse_axis("a=1,2"), parse_axis("b=x,y,z")], repeat=2, base_seed=7)
    assert len(plan) == 12 and len({p.seed for p in plan}) == 12
    assert [p.params for p in plan[:4:2]] == [{"a": "1", "b": "x"}, {"a": "1", "b": "y"}]
    # A point's seed depends on its values and repeat, not on the other points.
    fewer = points([parse_axis("a=1,2"), parse_axis("b=x,z")], repeat=2, base_seed=7)
    assert {(tuple(p.params.items()), p.repeat, p.seed) for p in fewer} <= \
        {(tuple(p.params.items()), p.repeat, p.seed) for p in plan}
    for bad, message in [("a", "PATH=V1,V2"), ("a=1,,2", "empty value"),
                         ("seed=1,2", "use --repeat N"), ("t90_ms=1,2", "a column of"),
                         ("a=1,1", "listed twice"), ("a..b=1,2", "not a field path")]:
        with pytest.raises(OverrideError, match=message):
            parse_axis(bad)


@pytest.mark.quick
def test_bad_points_stop_the_sweep_before_any_run(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match=r"sweep point .*nodes.peer.count.*abc"):
        run_sweep(SIM_CHECK, [parse_axis("nodes.peer.count=12,abc")], 1, "sim", tmp_path,
                  lambda m: None)
    with pytest.raises(OverrideError, match="only with --backend sim"):
        run_sweep(SIM_CHECK, [parse_axis("settle=1,2")], 1, "netns", tmp_path, lambda m: None,
                  jobs=2)
    assert not any(tmp_path.iterdir())


@pytest.fixture(scope="module")
def sim_sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sweep")
    code = main(["sweep", "sim-check-30", "--backend", "sim", "--repeat", "2",
                 "--results", str(out), *[w for s in SWEPT for w in ("--set", s)]])
    assert code == 0
    (found,) = out.glob("sweep-sim-check-30-*")
    return found


def test_simulator_sweep_table_page_and_api(sim_sweep: Path) -> None:
    sweep = results.open_sweep(sim_sweep)
    table = sweep.table
    assert len(table) == 8 and set(table["status"]) <= {"PASS", "FAIL"}
    assert sweep.parameters == ["nodes.peer.count", "lans.home.link.latency_ms"]
    assert sorted(table["nodes.peer.count"].unique()) == [12, 20]
    assert table["seed"].nunique() == 8
    assert table["delivery_ratio"].notna().all() and table["t90_ms"].notna().all()
    # The swept latency shows in the figures: 40 ms homes are slower than 5 ms ones.
    means = sweep.mean("t90_ms").groupby("lans.home.link.latency_ms")["mean"].mean()
    assert means[40] > means[5]
    page = (sim_sweep / "sweep.html").read_text()
    assert page.count("data:image/png;base64,") >= 4 and "nodes.peer.count" in page
    first = sweep.run(0)
    assert first.manifest["seed"] == int(table.loc[0, "seed"])
    assert "--set nodes.peer.count=12" in first.scenario
    assert {"msg_id", "receiver", "latency_ms"} <= set(first.deliveries.columns)
    assert len(first.messages) == first.summary["delivery"]["messages_published"]
    assert first.propagation["share"].iloc[-1] > 0.9
    assert first.figures["delivery_ratio"] == first.summary["delivery"]["delivery_ratio"]


def test_the_same_command_resumes(sim_sweep: Path, tmp_path: Path) -> None:
    copy = tmp_path / sim_sweep.name
    shutil.copytree(sim_sweep, copy)
    record = json.loads((copy / "done" / "p001-r1.json").read_text())
    (copy / "done" / "p001-r1.json").unlink()  # as if interrupted during that run
    messages: list[str] = []
    out = run_sweep(SIM_CHECK, [parse_axis(s) for s in SWEPT], 2, "sim", tmp_path,
                    messages.append)
    assert out == copy
    assert messages[0].startswith(f"resuming {copy}: 7 of 8 runs done")
    again = json.loads((copy / "done" / "p001-r1.json").read_text())
    assert again["seed"] == record["seed"] and again["run_dir"] != record["run_dir"]
    assert again["figures"] == record["figures"]  # same seed, same simulated run
    assert len(results.open_sweep(copy).table) == 8


def test_notebook_runs_on_a_run_and_a_sweep(sim_sweep: Path) -> None:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    os.environ["P2PLAB_SWEEP"] = str(sim_sweep)
    os.environ["P2PLAB_RUN"] = str(results.open_sweep(sim_sweep).run(0).path)
    try:
        NotebookClient(notebook, timeout=300, kernel_name="python3",
                       resources={"metadata": {"path": str(sim_sweep)}}).execute()
    finally:
        del os.environ["P2PLAB_SWEEP"], os.environ["P2PLAB_RUN"]
    outputs = [o for cell in notebook.cells if cell.cell_type == "code"
               for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 2


@pytest.mark.netns
def test_emulated_sweep_on_netns(tmp_path: Path) -> None:
    out = run_sweep(NAT_RELAY, [parse_axis("lans.home-b.nat=port-restricted,symmetric")], 1,
                    "netns", tmp_path, lambda m: None)
    table = results.open_sweep(out).table
    assert list(table["lans.home-b.nat"]) == ["port-restricted", "symmetric"]
    assert list(table["status"]) == ["PASS", "PASS"]  # relayed either way
    for row in range(2):
        run = results.open_sweep(out).run(row)
        assert run.manifest["backend"] == "netns"
        nat = table.loc[row, "lans.home-b.nat"]
        assert run.manifest["overrides"][0] == f"lans.home-b.nat={nat}"


def test_an_interrupted_sweep_stops_its_workers_and_resumes(tmp_path: Path) -> None:
    import signal
    import subprocess
    import time

    import psutil

    from tests.conftest import P2PLAB

    argv = [*P2PLAB, "sweep", "sim-check-30", "--backend", "sim", "--repeat", "3",
            "--results", str(tmp_path), *[w for s in SWEPT for w in ("--set", s)]]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=ROOT)
    deadline = time.monotonic() + 120  # start-up and validation are slow on a busy machine
    workers: list[psutil.Process] = []
    while time.monotonic() < deadline and len(workers) < 2 and proc.poll() is None:
        time.sleep(0.5)
        workers = psutil.Process(proc.pid).children(recursive=True)
    assert len(workers) >= 2, "the sweep should run simulator workers side by side"
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "the same command resumes the sweep" in err
    gone = psutil.wait_procs(workers, timeout=10)[1]
    assert not gone, f"workers left running: {gone}"
    (folder,) = tmp_path.glob("sweep-sim-check-30-*")
    done_before = len(list((folder / "done").glob("*.json")))
    again = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert again.returncode == 0, again.stderr
    if done_before:
        assert f"resuming {folder}: {done_before} of 12 runs done" in again.stderr
    assert len(results.open_sweep(folder).table) == 12
