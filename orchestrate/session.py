"""One scenario from file to verdict: the path shared by `p2plab run` and `p2plab suite`."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from p2plab.analysis.expectations import Verdict
from p2plab.analysis.report import build_report
from p2plab.compose import ownership
from p2plab.compose.address_space import check_address_space
from p2plab.compose.backend import BackendError, make_backend
from p2plab.compose.ownership import RunRecord
from p2plab.compose.run_folder import new_run_dir, new_run_id
from p2plab.compose.runner import execute
from p2plab.interrupts import signals_ignored
from p2plab.topology.plan import build_plan
from p2plab.topology.loading import load_scenario


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
    plan = build_plan(scenario)  # address-plan errors surface before anything is made
    if backend_name != "swarm" and any(
            spec.placement for spec in [*scenario.file.node_specs, *scenario.file.lan_specs]):
        progress(f"note: placement rules choose engines of a cluster (--backend swarm); "
                 f"{backend_name} runs every host on this machine")
    run_id = new_run_id()
    backend = make_backend(backend_name, run_id, log=progress)
    try:
        backend.check_environment()  # may make and remove a probe namespace
    except KeyboardInterrupt:
        with signals_ignored():  # a second Ctrl-C must not leave the probe behind
            backend.destroy()
        raise
    subnets = [str(seg.subnet) for seg in plan.segments.values()]
    check_address_space(backend_name, subnets)
    run_dir = new_run_dir(results, scenario, run_id)
    claimed = False
    try:
        # Registered before anything is made: `p2plab clean` elsewhere spares this run.
        with ownership.owned(RunRecord(run_id, backend_name, scenario.name, str(run_dir),
                                       subnets=subnets)) as record:
            claimed = True
            progress(f"running {scenario.name} on {backend.name}; results in {run_dir}")
            execute(path, scenario, backend, run_id, run_dir, progress, probe=probe,
                    keep=keep, capture=capture, record=record)
    except KeyboardInterrupt:
        if claimed:
            with signals_ignored():  # part of teardown: a second Ctrl-C must not cut it
                _report_partial(run_dir, progress)
        else:
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    except BackendError:
        # The lab could not be built: with no event and no log there is nothing to
        # keep; otherwise the folder stays, since the message may point into it.
        if not any(p.is_file() for sub in ("events", "logs")
                   for p in (run_dir / sub).glob("*")):
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    summary, verdicts = build_report(run_dir)
    return RunResult(scenario.name, run_dir, summary, verdicts)


def _report_partial(run_dir: Path, progress: Callable[[str], None]) -> None:
    """An interrupted run still gets its report (status INTERRUPTED) from what it has."""
    try:
        build_report(run_dir)
        progress(f"interrupted; partial results in {run_dir}/report.md")
    except Exception as exc:  # nothing to analyse yet: the folder still has the logs
        progress(f"interrupted before there was anything to report ({exc})")


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
    from p2plab.compose.sim.run import simulate

    run_id = new_run_id()
    run_dir = new_run_dir(results, scenario, run_id)
    progress(f"simulating {scenario.name}; results in {run_dir}")
    simulate(path, scenario, run_id, run_dir, progress)
    summary, verdicts = build_report(run_dir)
    return RunResult(scenario.name, run_dir, summary, verdicts)
