"""A suite: several scenarios in a row, with a progress display, JUnit XML and a summary.

Its last line is ``suite: N passed, N failed`` (expectations), and it exits non-zero if
any expectation failed or any scenario could not run.

A scenario whose only failed expectations are timing figures measured while the host was
saturated (each such verdict carries a caveat, ``analysis/cpu.py``) is run once more: on
a shared CI machine such a figure is the machine's as much as the network's. The second
attempt's verdicts count; both attempts are in the results, the table and the JUnit XML
say so. A failure that is not timing, or timing on a host that was not saturated, is
never retried.

With ``impls`` (``--impls rust@0.53,rust@0.57.1``) every scenario runs once per listed
implementation, each in place of the nodes that run the same implementation (of any
version): one verdict row per version, the way a regression is bisected.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from p2plab.analysis.junit import write_junit
from p2plab.compose.backends.base import BackendError
from p2plab.compose.run_folder import ResultsFolderError
from p2plab.orchestrate.session import run_scenario
from p2plab.topology.loading import ScenarioError, find_scenario, parse_scenario_file
from p2plab.topology.matrix import is_matrix_file
from p2plab.topology.overrides import Override, OverrideError, implementation_overrides
from p2plab.topology.yaml_source import read_text
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from p2plab.files import write_atomic


def default_suite(scenarios_dir: Path, items: list[str]) -> list[Path]:
    """Scenario files from names, files or folders; by default every shipped scenario
    (the bug gallery's too) except matrix files (a matrix is its own long run: p2plab
    run nat-matrix) and those marked ``in_suite: false``."""
    if not items:
        from p2plab.topology.loading import load_scenario, shipped_files

        return [p for p in shipped_files(scenarios_dir)
                if not is_matrix_file(p) and load_scenario(p).in_suite]
    paths: list[Path] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            paths += sorted(p for p in path.glob("*.yaml") if not is_matrix_file(p))
        else:
            found = find_scenario(item, scenarios_dir)
            if is_matrix_file(found):
                raise ScenarioError(f"{found} is a matrix: run it with p2plab run, not in a suite")
            paths.append(found)
    return paths


def _note(progress: Progress, scenario: str, message: str) -> None:
    progress.console.print(f"[dim]{scenario}: {message}")


def impl_fields(path: Path, overrides: Sequence[Override] = ()
                ) -> dict[tuple[str | int, ...], str]:
    """Each field of the scenario (with ``overrides``) that names an implementation, and
    what it names."""
    file = parse_scenario_file(read_text(path), str(path), overrides)[0]
    fields: dict[tuple[str | int, ...], str] = {("impl",): file.impl}
    fields.update({("nodes", i, "impl"): spec.impl for i, spec in enumerate(file.node_specs)
                   if spec.impl is not None})
    return fields


def _attempt(path: Path, backend: str, results: Path, note: Any,
             overrides: Sequence[Override], impl: str | None = None) -> dict[str, Any]:
    """One run of one scenario (with ``impl`` in place of its nodes' implementation of the
    same name) as a suite entry; errors become the entry's ``error``."""
    entry: dict[str, Any] = {"scenario": path.stem if impl is None else f"{path.stem} [{impl}]",
                             "file": str(path), "impl": impl}
    try:
        swapped = ([] if impl is None
                   else implementation_overrides(impl_fields(path, overrides), impl))
        result = run_scenario(path, backend, results, note,
                              overrides=[*overrides, *swapped])
        entry.update(run_dir=str(result.run_dir), passed=result.passed,
                     wall_time_s=result.summary["wall_time_s"],
                     verdicts=[v.as_dict() for v in result.verdicts], error=None)
    except (ScenarioError, BackendError, OverrideError, ValueError) as exc:
        entry.update(passed=False, verdicts=[], error=str(exc), wall_time_s=0)
    except KeyboardInterrupt:  # the scenario tore its lab down; stop the suite
        entry.update(passed=False, verdicts=[], wall_time_s=0, interrupted=True,
                     error="interrupted (SIGINT, SIGTERM or SIGHUP)")
    except Exception as exc:  # a bug in p2plab: report it and go on with the suite
        entry.update(passed=False, verdicts=[], wall_time_s=0,
                     error=f"internal error: {type(exc).__name__}: {exc}")
    return entry


def failed_names(entry: dict[str, Any]) -> list[str]:
    return [v["name"] for v in entry.get("verdicts", []) if not v["passed"]]


def saturated_timing_only(entry: dict[str, Any]) -> bool:
    """True for a failed run whose every failed verdict is a timing figure measured while
    the host was saturated (it carries a caveat); never for an error or an interruption."""
    failed = [v for v in entry.get("verdicts", []) if not v["passed"]]
    return (not entry["passed"] and not entry.get("error") and bool(failed)
            and all(v.get("caveat") for v in failed))


def run_suite(paths: list[Path], backend: str, results: Path, junit: Path | None,
              overrides: Sequence[Override] = (), impls: Sequence[str] = ()) -> int:
    console = Console(stderr=True)
    try:
        results.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ResultsFolderError(f"cannot write results into {results} ({exc.strerror}): "
                                 "choose a folder you can write with --results") from None
    runs: list[dict[str, Any]] = []
    started = time.time()
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/"
                  "{task.total}"), TimeElapsedColumn(), console=console) as progress:
        variants: list[str | None] = list(impls) or [None]
        plan = [(path, impl) for path in paths for impl in variants]
        task = progress.add_task("suite", total=len(plan))
        for path, impl in plan:
            label = path.stem if impl is None else f"{path.stem} [{impl}]"
            progress.update(task, description=f"{label} on {backend}")
            note = functools.partial(_note, progress, label)
            entry = _attempt(path, backend, results, note, overrides, impl)
            if saturated_timing_only(entry):
                first = entry
                note(f"only timing figures measured on a saturated host failed "
                     f"({'; '.join(failed_names(first))}): once more")
                entry = _attempt(path, backend, results, note, overrides, impl)
                entry["first_attempt"] = {k: first[k] for k in ("run_dir", "verdicts")
                                          if k in first}
            interrupted = entry.pop("interrupted", False)
            runs.append(entry)
            mark = "[green]PASS" if entry["passed"] else "[red]FAIL"
            again = " on a second attempt" if "first_attempt" in entry else ""
            progress.console.print(f"{mark}[/] {label} ({entry['wall_time_s']} s{again})"
                                   + (f": {entry['error']}" if entry["error"] else ""))
            progress.advance(task)
            if interrupted:
                break
    passed = sum(v["passed"] for r in runs for v in r["verdicts"])
    failed = sum(not v["passed"] for r in runs for v in r["verdicts"]) + sum(
        1 for r in runs if r["error"])
    write_junit(junit or results / "junit.xml", runs)
    summary = {"backend": backend, "overrides": [o.text for o in overrides],
               "impls": list(impls),
               "wall_time_s": round(time.time() - started, 1),
               "scenarios": len(runs), "expectations_passed": passed,
               "expectations_failed": failed, "runs": runs}
    write_atomic(results / "suite.json", json.dumps(summary, indent=2) + "\n")
    lines = ["| scenario | verdict | wall time (s) | failed expectations |", "|---|---|---|---|"]
    for r in runs:
        bad = "; ".join(failed_names(r)) or r["error"] or ("none" if "first_attempt" in r else "-")
        if "first_attempt" in r:
            bad += (" (second attempt; the first failed "
                    f"{'; '.join(failed_names(r['first_attempt']))} on a saturated host: "
                    f"{r['first_attempt'].get('run_dir')})")
        lines.append(f"| {r['scenario']} | {'PASS' if r['passed'] else 'FAIL'} | "
                     f"{r['wall_time_s']} | {bad} |")
    write_atomic(results / "suite.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    stopped = any(r["error"] and r["error"].startswith("interrupted") for r in runs)
    scenarios_passed = sum(1 for r in runs if r["passed"])
    print(f"suite: {scenarios_passed} of {len(runs)} runs passed; expectations: {passed} "
          f"passed, {failed} failed"
          + (f", interrupted after {len(runs)} of {len(plan)} runs" if stopped else ""))
    if stopped:
        return 130
    return 0 if failed == 0 else 1
