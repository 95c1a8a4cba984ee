"""A sweep: one scenario run over the product of parameter values, repeated, each run
seeded on its own, into one table and one page.

``p2plab sweep gossip-10k --set connect.degree=4,6,8 --set nodes.peer.count=2000,8000
--repeat 3 --backend sim`` makes ``RESULTS/sweep-gossip-10k-HASH/`` with ``runs/`` (a
results folder per run), ``sweep.csv`` (a row per run: its parameters, repeat, seed,
status and every headline figure), ``sweep.json`` and ``sweep.html``.

The folder's name is a hash of what was asked (scenario, axes, repeats, seed, backend):
the same command again resumes an interrupted sweep, running only the points without a
finished run. Simulator runs go side by side on every core; emulated runs one after
another (two labs at once would measure each other's CPU).
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import signal
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml
from p2plab.analysis.headline import FIGURES, headline
from p2plab.analysis.sweep_page import write_sweep_outputs
from p2plab.compose.backends.registry import is_simulator
from p2plab.orchestrate.session import run_scenario
from p2plab.topology.loading import ScenarioError, load_scenario
from p2plab.topology.overrides import Override, OverrideError, parse_override, seed_override

from p2plab.files import write_atomic

# Columns of sweep.csv besides the parameters: no axis may take their names.
RESERVED = {"point", "repeat", "seed", "status", "run_dir", *(f.key for f in FIGURES)}


@dataclass(frozen=True)
class Axis:
    """One swept field and its values, as written (``connect.degree=4,6,8``)."""

    path: str
    values: tuple[str, ...]  # each a YAML value, as text


def _split_values(text: str) -> list[str]:
    """Top-level commas separate values; those inside [..] or {..} do not."""
    parts, depth, current = [], 0, ""
    for char in text:
        if char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += char
    parts.append(current.strip())
    return parts


def parse_axis(text: str) -> Axis:
    path, sep, values_text = text.partition("=")
    if not sep or not path.strip() or not values_text.strip():
        raise OverrideError(f"--set {text}: write PATH=V1,V2,..., e.g. --set "
                            "connect.degree=4,6,8")
    if path.strip() in RESERVED:
        raise OverrideError(f"--set {text}: {path.strip()!r} is a column of the sweep's own "
                            "table" + (": each run gets its own seed, drawn from --seed; "
                                       "use --repeat N for more seeds per point"
                                       if path.strip() == "seed" else "; sweep a scenario "
                                       "field"))
    values = _split_values(values_text)
    if any(not v for v in values):
        raise OverrideError(f"--set {text}: an empty value between commas")
    if len(set(values)) != len(values):
        raise OverrideError(f"--set {text}: a value is listed twice")
    for value in values:
        parse_override(f"{path.strip()}={value}")  # each must parse as an override
    return Axis(path.strip(), tuple(values))


@dataclass(frozen=True)
class Point:
    """One run of the sweep: a value per axis, a repeat index and its own seed."""

    index: int
    params: dict[str, str]
    repeat: int
    seed: int

    @property
    def key(self) -> str:
        return f"p{self.index:03d}-r{self.repeat}"

    def overrides(self) -> list[Override]:
        return [parse_override(f"{path}={value}") for path, value in self.params.items()] \
            + [seed_override(self.seed)]


def points(axes: list[Axis], repeat: int, base_seed: int) -> list[Point]:
    """The product of the axes' values (first axis slowest), each repeated; a run's seed
    is drawn from the base seed, its values and its repeat, so adding an axis value
    leaves the other points' seeds as they were."""
    combos: list[dict[str, str]] = [{}]
    for axis in axes:
        combos = [{**combo, axis.path: value} for combo in combos for value in axis.values]
    out = []
    for index, params in enumerate(combos):
        for r in range(repeat):
            digest = hashlib.sha256(json.dumps([base_seed, params, r], sort_keys=True)
                                    .encode()).digest()
            out.append(Point(index, params, r, int.from_bytes(digest[:4], "big") % 2**31))
    return out


@dataclass
class SweepSpec:
    scenario: str  # the file
    axes: list[Axis]
    repeat: int
    base_seed: int
    backend: str
    extra: list[str] = field(default_factory=list)  # --set overrides applied to every run
    # The scenario file's content: an edited file is another sweep, not a resumed one.
    scenario_sha256: str = ""

    def digest(self) -> str:
        text = json.dumps(asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:10]


def _run_one(path: str, backend: str, runs: str, overrides: list[Override]) -> str:
    """One run (in a worker process for the simulator); the results folder's path."""
    result = run_scenario(Path(path), backend, Path(runs), lambda message: None,
                          overrides=overrides)
    return str(result.run_dir)


def _worker_signals() -> None:
    """Workers leave Ctrl-C and a closed terminal to the parent, which terminates them
    (SIGTERM, left at its default so that works)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _run_indexed(task: tuple[str, str, str, list[Override], int]) -> tuple[int, str]:
    path, backend, runs, overrides, index = task
    return index, _run_one(path, backend, runs, overrides)


def run_sweep(path: Path, axes: list[Axis], repeat: int, backend: str, results: Path,
              progress: Callable[[str], None], seed: int | None = None,
              extra: list[Override] | None = None, jobs: int | None = None) -> Path:
    """Every point of the sweep that has no finished run yet, then the table and page.
    Raises ScenarioError before anything runs if any point's scenario is bad."""
    if not axes:
        raise OverrideError("a sweep needs at least one --set PATH=V1,V2,...")
    if repeat < 1:
        raise OverrideError(f"--repeat {repeat}: give 1 or more")
    if jobs is not None and (jobs < 1 or not is_simulator(backend)):
        raise OverrideError(f"--jobs {jobs}: give 1 or more, and only with --backend sim "
                            "(emulated runs go one after another: two labs at once would "
                            "measure each other's CPU)")
    extra = extra or []
    base = load_scenario(path, extra)
    spec = SweepSpec(str(path), axes, repeat, base.seed if seed is None else seed, backend,
                     [o.text for o in extra],
                     hashlib.sha256(path.read_bytes()).hexdigest())
    plan = points(axes, repeat, spec.base_seed)
    for point in plan:  # every point validates before the first one runs
        try:
            load_scenario(path, extra + point.overrides())
        except ScenarioError as exc:
            raise ScenarioError(f"sweep point {point.params}: {exc}") from None
    out = results / f"sweep-{base.name}-{spec.digest()}"
    (out / "runs").mkdir(parents=True, exist_ok=True)
    (out / "done").mkdir(exist_ok=True)
    write_atomic(out / "spec.yaml", yaml.safe_dump(asdict(spec), sort_keys=False))
    todo = [p for p in plan if not (out / "done" / f"{p.key}.json").exists()]
    if len(todo) < len(plan):
        progress(f"resuming {out}: {len(plan) - len(todo)} of {len(plan)} runs done")
    else:
        progress(f"sweep of {len(plan)} runs into {out}")
    started = time.monotonic()

    def finished(point: Point, run_dir: str) -> None:
        summary = json.loads((Path(run_dir) / "summary.json").read_text())
        record = {"point": point.index, "repeat": point.repeat, "seed": point.seed,
                  "params": point.params, "run_dir": os.path.relpath(run_dir, out),
                  "status": summary["status"], "figures": headline(summary)}
        write_atomic(out / "done" / f"{point.key}.json", json.dumps(record, indent=1) + "\n")
        done = len(list((out / "done").glob("*.json")))
        progress(f"[{done}/{len(plan)}] {point.key} {point.params} seed {point.seed}: "
                 f"{summary['status']} ({time.monotonic() - started:.0f} s)")

    try:
        if is_simulator(backend) and len(todo) > 1:
            workers = min(jobs or os.cpu_count() or 1, len(todo))
            # A fresh process per run: each run's peak memory is its own (the manifest
            # records it), and no state of one simulation reaches the next.
            pool = multiprocessing.get_context("fork").Pool(
                workers, initializer=_worker_signals, maxtasksperchild=1)
            try:
                tasks = [(str(path), backend, str(out / "runs"), extra + p.overrides(), i)
                         for i, p in enumerate(todo)]
                for index, run_dir in pool.imap_unordered(_run_indexed, tasks):
                    finished(todo[index], run_dir)
                pool.close()
            except BaseException:
                pool.terminate()  # an interrupted sweep leaves no simulator running
                raise
            finally:
                pool.join()
        else:
            for point in todo:
                finished(point, _run_one(str(path), backend, str(out / "runs"),
                                         extra + point.overrides()))
    finally:
        records = [json.loads(p.read_text()) for p in sorted((out / "done").glob("*.json"))]
        write_sweep_outputs(out, asdict(spec), records, len(plan))
    return out

