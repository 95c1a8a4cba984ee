"""One scenario from file to verdict: the path shared by `p2plab run` and `p2plab suite`."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from analysis.expectations import Verdict
from analysis.report import build_report
from compose.backend import BackendError, make_backend
from compose.runner import execute, new_run_dir, new_run_id
from topology.plan import build_plan
from topology.scenario import load_scenario


@dataclass
class RunResult:
    scenario: str
    run_dir: Path
    summary: dict[str, Any]
    verdicts: list[Verdict]

    @property
    def passed(self) -> bool:
        return bool(self.summary["passed"])


def run_scenario(path: Path, backend_name: str, results: Path,
                 progress: Callable[[str], None], probe: bool | None = None,
                 keep: bool = False, capture: bool = False) -> RunResult:
    """Validate, check the environment, run, report. Raises ScenarioError (bad input),
    BackendError (unusable environment) or KeyboardInterrupt, after tearing down."""
    scenario = load_scenario(path)
    if backend_name == "sim":
        return _simulate(path, scenario, results, progress)
    check_emulation_size(scenario, backend_name)
    build_plan(scenario)  # address-plan errors surface before anything is made
    run_id = new_run_id()
    backend = make_backend(backend_name, run_id, log=progress)
    backend.check_environment()
    run_dir = new_run_dir(results, scenario, run_id)
    progress(f"running {scenario.name} on {backend.name}; results in {run_dir}")
    try:
        execute(path, scenario, backend, run_id, run_dir, progress, probe=probe, keep=keep,
                capture=capture)
    except BackendError:
        # The lab could not be built: no node ever ran, so there are no results to keep.
        if not any((run_dir / "events").glob("*.jsonl")):
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    summary, verdicts = build_report(run_dir)
    return RunResult(scenario.name, run_dir, summary, verdicts)


# About 87 MB and 1 s of CPU per py-libp2p node: beyond this an emulated lab does not
# fit a workstation, and the simulator is the tool.
MAX_EMULATED_NODES = 300


def check_emulation_size(scenario: Any, backend_name: str) -> None:
    n = len(scenario.nodes)
    if n > MAX_EMULATED_NODES:
        raise BackendError(
            f"{scenario.name} has {n} nodes: the {backend_name} backend runs a real py-libp2p "
            f"process per node (about 87 MB and 1 s of CPU to start each, {n * 87 / 1024:.0f} "
            f"GB here), and stops at {MAX_EMULATED_NODES}; run it with --backend sim")


def _simulate(path: Path, scenario: Any, results: Path,
              progress: Callable[[str], None]) -> RunResult:
    from compose.sim.run import simulate

    run_id = new_run_id()
    run_dir = new_run_dir(results, scenario, run_id)
    progress(f"simulating {scenario.name}; results in {run_dir}")
    simulate(path, scenario, run_id, run_dir, progress)
    summary, verdicts = build_report(run_dir)
    return RunResult(scenario.name, run_dir, summary, verdicts)
