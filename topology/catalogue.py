"""The shipped scenarios at a glance: what ``p2plab list`` prints, one line each.

The duration is a rough estimate from the scenario itself (lab start-up per node, the
timeline's sleeps, waits and publish schedules, the settle time), not a measurement: it
tells a two-second LAN from a ten-minute matrix.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from p2plab.topology.loading import ScenarioError, load_scenario, shipped_files
from p2plab.topology.matrix import is_matrix_file, lab_scenarios, load_matrix
from p2plab.topology.scenario import Scenario
from p2plab.topology.schema import Publish, Sleep, StopTraffic, step_kind

# Rough costs on a 2-core machine (Docker): making the lab, starting each node, a wait
# step that is met (not its timeout), any other step, and the report.
LAB_S = 5.0
NODE_START_S = 0.5
WAIT_S = 2.0
STEP_S = 0.5
REPORT_S = 3.0


@dataclass(frozen=True)
class Entry:
    name: str
    kind: str  # "scenario" or "matrix"
    nodes: int
    runs_on: str  # which executors can run it
    rough_s: float
    summary: str

    def line(self) -> str:
        rough = self.rough_s
        minutes = f"~{rough / 60:.0f} min" if rough >= 90 else f"~{rough:.0f} s"
        return (f"{self.name:<15} {self.kind:<8} {self.nodes:>6} nodes  {self.runs_on:<20} "
                f"{minutes:>8}  {self.summary}")[:160]


def timeline_s(scenario: Scenario) -> float:
    """Seconds from the first step to the end of settling, estimated."""
    cursor = 0.0
    flows: dict[str, float] = {}  # flow name -> when its last message goes out
    for index, step in enumerate(scenario.timeline):
        if step.at is not None:
            cursor = max(cursor, step.at)
        if isinstance(step, Sleep):
            cursor += step.sleep
        elif isinstance(step, Publish):
            flows[step.name or f"step-{index}"] = cursor + step.count / step.rate
        elif isinstance(step, StopTraffic):
            for flow in flows if step.stop_traffic == "all" else [step.stop_traffic]:
                flows[flow] = min(flows.get(flow, cursor), cursor)
        elif step_kind(step).startswith("wait"):
            cursor += WAIT_S
        else:
            cursor += STEP_S
    return max([cursor, *flows.values()]) + scenario.settle


def rough_duration_s(scenario: Scenario) -> float:
    return LAB_S + NODE_START_S * len(scenario.nodes) + timeline_s(scenario) + REPORT_S


def _first_sentence(text: str) -> str:
    flat = " ".join(text.split())
    return flat.split(". ")[0].rstrip(".")[:90]


def entry_for(path: Path, max_emulated: int) -> Entry:
    if is_matrix_file(path):
        matrix = load_matrix(path)
        labs = lab_scenarios(matrix)
        cells = sum(len(lab_cells) for _, lab_cells in labs)
        return Entry(path.stem, "matrix", sum(len(s.nodes) for s, _ in labs),
                     "netns, docker, swarm", sum(rough_duration_s(s) for s, _ in labs),
                     f"{cells} cells in {len(labs)} labs: "
                     + _first_sentence(matrix.description or ""))
    scenario = load_scenario(path)
    n = len(scenario.nodes)
    runs_on = "any backend" if n <= max_emulated else "sim only"
    rough = rough_duration_s(scenario) if n <= max_emulated else timeline_s(scenario)
    return Entry(scenario.name, "scenario", n, runs_on, rough,
                 _first_sentence(scenario.description or ""))


def catalogue(scenarios_dir: Path, max_emulated: int) -> list[Entry]:
    """Every shipped scenario and matrix, by name; a broken file is an error."""
    entries = []
    for path in shipped_files(scenarios_dir):
        try:
            entries.append(entry_for(path, max_emulated))
        except ScenarioError as exc:
            raise ScenarioError(f"shipped scenario {path.name} does not load: {exc}") from None
    return entries
