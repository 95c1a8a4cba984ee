"""One scenario from file to verdict: the path shared by `p2plab run`, `p2plab suite` and
crosscheck (a lab through ``Lab``, or the simulator), then the report."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from p2plab.analysis.expectations import Verdict
from p2plab.analysis.report import build_report
from p2plab.compose.backends.registry import is_simulator
from p2plab.compose.lab.lifecycle import Lab
from p2plab.compose.run_folder import new_run_dir, new_run_id
from p2plab.topology.loading import load_scenario
from p2plab.topology.overrides import Override

from p2plab.interrupts import signals_ignored


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
                 keep: bool = False, capture: bool = False,
                 overrides: Sequence[Override] = ()) -> RunResult:
    """Validate (the file with ``overrides`` applied), check the environment, run, report.
    Raises ScenarioError (bad input), BackendError (unusable environment) or
    KeyboardInterrupt, after tearing down."""
    scenario = load_scenario(path, overrides)
    if is_simulator(backend_name):
        return _simulate(path, scenario, results, progress)
    lab = Lab(path, backend_name, results, progress=progress, scenario=scenario,
              probe=probe, keep=keep, capture=capture)
    try:
        with lab:
            lab.run()
    except KeyboardInterrupt:
        if lab.runner is not None and lab.run_dir is not None:
            with signals_ignored():  # part of teardown: a second Ctrl-C must not cut it
                _report_partial(lab.run_dir, progress)
        raise
    assert lab.run_dir is not None
    summary, verdicts = build_report(lab.run_dir)
    return RunResult(scenario.name, lab.run_dir, summary, verdicts)


def _report_partial(run_dir: Path, progress: Callable[[str], None]) -> None:
    """An interrupted run still gets its report (status INTERRUPTED) from what it has."""
    try:
        build_report(run_dir)
        progress(f"interrupted; partial results in {run_dir}/report.md")
    except Exception as exc:  # nothing to analyse yet: the folder still has the logs
        progress(f"interrupted before there was anything to report ({exc})")


def _simulate(path: Path, scenario: Any, results: Path,
              progress: Callable[[str], None]) -> RunResult:
    from p2plab.compose.sim.run import simulate

    run_id = new_run_id()
    run_dir = new_run_dir(results, scenario, run_id)
    progress(f"simulating {scenario.name}; results in {run_dir}")
    simulate(path, scenario, run_id, run_dir, progress)
    summary, verdicts = build_report(run_dir)
    return RunResult(scenario.name, run_dir, summary, verdicts)
