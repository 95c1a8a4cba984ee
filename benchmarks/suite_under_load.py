"""Do the shipped suite's verdicts hold on a busy machine? (not a test: it prints figures)

    python benchmarks/suite_under_load.py [--runs 3] [--quiet-runs 1] [--busy-cores 1]
                                          [--backend docker] [SCENARIO ...]

Runs the shipped suite ``--quiet-runs`` times on the machine as it is, then ``--runs``
times in a row while ``stress-ng --cpu N`` (started and stopped here) keeps N cores busy
with unrelated work. For every numeric expectation it prints the bound next to the
spread of the measured figure in each condition and the headroom left (how far the worst
run stayed from the bound), so a bound can be set from measured spread rather than from
one lucky run. The last line says how many loaded suites passed in a row.

Everything lands in ``build/suite-under-load/<timestamp>/`` (each suite's own results
folder, ``spread.json`` and ``spread.md``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Spread:
    """One expectation's measured values across runs, per condition."""

    scenario: str
    name: str
    bound: float
    upper: bool  # True: the figure must stay at or below the bound
    values: dict[str, list[float | None]] = field(default_factory=dict)

    def worst(self, condition: str) -> float | None:
        seen = self.values.get(condition, [])
        if not seen:
            return None
        if any(v is None for v in seen):
            return None  # never reached: as bad as it gets
        return max(seen) if self.upper else min(seen)  # type: ignore[type-var]  # None is out

    def headroom(self, condition: str) -> str:
        """bound / worst for upper bounds (x1.5 = 50 % to spare), worst - bound for
        ratios that must stay above a minimum."""
        seen = self.values.get(condition, [])
        if not seen:
            return "-"
        worst = self.worst(condition)
        if worst is None:
            return "never reached"
        if self.upper:
            return "n/a" if worst <= 0 else f"x{self.bound / worst:.2f}"
        return f"{worst - self.bound:+.4f}"


def ensure_stress_ng() -> str:
    found = shutil.which("stress-ng")
    if found:
        return found
    print("installing stress-ng from Debian (apt-get)", file=sys.stderr)
    subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "stress-ng"],
                   check=True, env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
    return shutil.which("stress-ng") or "stress-ng"


def run_suite(backend: str, results: Path, scenarios: list[str]) -> tuple[int, dict[str, Any]]:
    argv = [sys.executable, "-m", "p2plab.cli", "suite", "--backend", backend,
            "--results", str(results), *scenarios]
    code = subprocess.run(argv, cwd=ROOT).returncode
    suite_json = results / "suite.json"
    return code, json.loads(suite_json.read_text()) if suite_json.exists() else {"runs": []}


def host_busy(run_dir: str | None) -> float | None:
    if not run_dir:
        return None
    summary = Path(run_dir) / "summary.json"
    if not summary.exists():
        return None
    cpu = json.loads(summary.read_text()).get("cpu") or {}
    return cpu.get("host_busy_pct_mean")


def collect(suite: dict[str, Any], condition: str, spreads: dict[tuple[str, str], Spread],
            busy: dict[str, list[float]]) -> None:
    for run in suite["runs"]:
        value = host_busy(run.get("run_dir"))
        if value is not None:
            busy.setdefault(condition, []).append(value)
        for v in run["verdicts"]:
            if v.get("bound") is None:
                continue
            key = (run["scenario"], v["name"])
            spread = spreads.setdefault(key, Spread(run["scenario"], v["name"], v["bound"],
                                                    upper=v["expected"].startswith(
                                                        ("<=", "within"))))
            spread.values.setdefault(condition, []).append(v.get("value"))


def fmt_values(values: list[float | None]) -> str:
    if not values:
        return "-"
    shown = ["never" if v is None else (f"{v:.4f}" if v < 2 else f"{v:.0f}") for v in values]
    return ", ".join(shown)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("scenarios", nargs="*", help="default: the shipped suite")
    parser.add_argument("--runs", type=int, default=3, help="suites in a row under load")
    parser.add_argument("--quiet-runs", type=int, default=1, help="suites without added load")
    parser.add_argument("--busy-cores", type=int, default=1, help="stress-ng --cpu N")
    parser.add_argument("--backend", default="docker")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "suite-under-load")
    args = parser.parse_args()

    out = args.out / time.strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True)
    spreads: dict[tuple[str, str], Spread] = {}
    busy: dict[str, list[float]] = {}
    outcomes: dict[str, list[bool]] = {"quiet": [], "loaded": []}

    for k in range(args.quiet_runs):
        print(f"== quiet suite {k + 1}/{args.quiet_runs}", file=sys.stderr, flush=True)
        code, suite = run_suite(args.backend, out / f"quiet-{k + 1}", args.scenarios)
        outcomes["quiet"].append(code == 0)
        collect(suite, "quiet", spreads, busy)

    stress = subprocess.Popen([ensure_stress_ng(), "--cpu", str(args.busy_cores), "--quiet"],
                              start_new_session=True)
    try:
        time.sleep(1.0)
        for k in range(args.runs):
            print(f"== suite {k + 1}/{args.runs} with {args.busy_cores} core(s) kept busy by "
                  "stress-ng", file=sys.stderr, flush=True)
            code, suite = run_suite(args.backend, out / f"loaded-{k + 1}", args.scenarios)
            outcomes["loaded"].append(code == 0)
            collect(suite, "loaded", spreads, busy)
    finally:
        os.killpg(stress.pid, signal.SIGTERM)
        stress.wait(timeout=10)

    lines = [f"backend {args.backend}; cores {os.cpu_count()}; stress-ng --cpu "
             f"{args.busy_cores} during the loaded runs",
             "host CPU busy (mean over each scenario run): " + "; ".join(
                 f"{c} {min(v):.0f}-{max(v):.0f} %" for c, v in busy.items() if v), "",
             "| scenario | expectation | bound | quiet | headroom | loaded | headroom |",
             "|---|---|---|---|---|---|---|"]
    for s in sorted(spreads.values(), key=lambda s: (s.scenario, s.name)):
        lines.append(f"| {s.scenario} | {s.name} | {'<=' if s.upper else '>='} {s.bound:g} | "
                     f"{fmt_values(s.values.get('quiet', []))} | {s.headroom('quiet')} | "
                     f"{fmt_values(s.values.get('loaded', []))} | {s.headroom('loaded')} |")
    in_a_row = 0
    for ok in outcomes["loaded"]:
        in_a_row = in_a_row + 1 if ok else 0
    lines += ["", f"quiet suites passed: {sum(outcomes['quiet'])}/{len(outcomes['quiet'])}",
              f"loaded suites passed: {sum(outcomes['loaded'])}/{len(outcomes['loaded'])} "
              f"({in_a_row} in a row at the end)"]
    (out / "spread.md").write_text("\n".join(lines) + "\n")
    (out / "spread.json").write_text(json.dumps({
        "backend": args.backend, "busy_cores": args.busy_cores, "outcomes": outcomes,
        "host_busy_pct_mean": busy,
        "expectations": [s.__dict__ for s in spreads.values()]}, indent=2) + "\n")
    print("\n".join(lines))
    return 0 if all(outcomes["loaded"]) else 1


if __name__ == "__main__":
    sys.exit(main())
