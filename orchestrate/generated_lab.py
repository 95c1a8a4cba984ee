"""Run a scenario the orchestrator generated (a matrix's lab, a conform run's NAT lab):
its file written where its results go, one ``Lab`` run, and its events summarised up
to the timeline's end."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from p2plab.analysis.metrics import summarize
from p2plab.compose.impls.registry import Registry
from p2plab.compose.lab.lifecycle import Lab
from p2plab.topology.scenario import Scenario


@dataclass(frozen=True)
class GeneratedRun:
    run_dir: Path
    summary: dict[str, Any]


def run_generated_lab(scenario: Scenario, data: dict[str, Any], scenario_file: Path,
                      backend: str, results: Path, registry: Registry,
                      progress: Callable[[str], None]) -> GeneratedRun:
    """Write ``data`` (the scenario as generated) to ``scenario_file`` so the run can be
    read and rerun by hand, run ``scenario`` from it, and summarise what it recorded."""
    scenario_file.parent.mkdir(parents=True, exist_ok=True)
    scenario_file.write_text(json.dumps(data, indent=1))
    lab = Lab(scenario_file, backend, results, scenario=scenario, progress=progress,
              implementations=registry)
    with lab:
        lab.run()
    assert lab.run_dir is not None
    return GeneratedRun(lab.run_dir, summarize(lab.run_dir / "events", until=lab.timeline_end))
