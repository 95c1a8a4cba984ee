"""``p2plab``: run, validate and clean.

Exit codes: 0 every expectation held; 1 an expectation failed; 2 bad input or an
unusable environment (the message says what to do).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from compose.backend import BACKENDS, BackendError, make_backend

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SCENARIOS_DIR = PROJECT_ROOT / "scenarios"


def _progress(message: str, start: float = time.monotonic()) -> None:
    print(f"[{time.monotonic() - start:6.1f}s] {message}", file=sys.stderr, flush=True)


def _fail(message: str, code: int = 2) -> int:
    print(f"p2plab: {message}", file=sys.stderr)
    return code


def cmd_validate(args: argparse.Namespace) -> int:
    from topology.plan import build_plan
    from topology.scenario import ScenarioError, find_scenario, load_scenario

    status = 0
    for item in args.scenarios:
        try:
            path = find_scenario(item, SCENARIOS_DIR)
            scenario = load_scenario(path)
            plan = build_plan(scenario)
        except (ScenarioError, ValueError) as exc:
            print(exc, file=sys.stderr)
            status = 2
            continue
        print(f"{path}: ok: {len(plan.nodes)} nodes, {len(plan.routers)} NAT routers, "
              f"{len(plan.segments)} segments, {len(scenario.timeline)} timeline steps")
    return status


def cmd_run(args: argparse.Namespace) -> int:
    from analysis.report import build_report
    from compose.runner import execute, new_run_dir, new_run_id
    from topology.plan import build_plan
    from topology.scenario import ScenarioError, find_scenario, load_scenario

    try:
        path = find_scenario(args.scenario, SCENARIOS_DIR)
        scenario = load_scenario(path)
        build_plan(scenario)  # address-plan errors surface before anything is made
    except (ScenarioError, ValueError) as exc:
        return _fail(str(exc))
    run_id = new_run_id()
    try:
        backend = make_backend(args.backend, run_id, log=_progress)
        backend.check_environment()
    except BackendError as exc:
        return _fail(str(exc))
    run_dir = new_run_dir(Path(args.results), scenario, run_id)
    _progress(f"running {scenario.name} on {backend.name}; results in {run_dir}")
    try:
        execute(path, scenario, backend, run_id, run_dir, _progress,
                probe=True if args.probe else None)
    except BackendError as exc:
        return _fail(f"{exc}\n(the lab was torn down; results so far in {run_dir})")
    except KeyboardInterrupt:
        return _fail(f"interrupted; the lab was torn down (partial results in {run_dir})", 130)
    summary, verdicts = build_report(run_dir)
    for v in verdicts:
        print(f"  {'pass' if v.passed else 'FAIL'}  {v.name}: expected {v.expected}, "
              f"observed {v.observed}")
    print(f"{scenario.name}: {'PASS' if summary['passed'] else 'FAIL'} "
          f"({summary['wall_time_s']} s) -> {run_dir}/report.md")
    return 0 if summary["passed"] else 1


def cmd_report(args: argparse.Namespace) -> int:
    from analysis.report import build_report

    run_dir = Path(args.run_dir)
    if not (run_dir / "manifest.json").exists():
        return _fail(f"{run_dir} is not a results folder (no manifest.json)")
    summary, _ = build_report(run_dir)
    print(f"{run_dir}/report.md: {'PASS' if summary['passed'] else 'FAIL'}")
    return 0 if summary["passed"] else 1


def cmd_export(args: argparse.Namespace) -> int:
    from compose.backend import BackendError as _BackendError
    from compose.export import export_compose
    from topology.plan import build_plan
    from topology.scenario import ScenarioError, find_scenario, load_scenario

    try:
        path = find_scenario(args.scenario, SCENARIOS_DIR)
        plan = build_plan(load_scenario(path))
        out = Path(args.output or f"export-{plan.scenario.name}")
        compose_file = export_compose(plan, path.read_text(), out)
    except (ScenarioError, ValueError, FileExistsError, _BackendError) as exc:
        return _fail(str(exc))
    print(f"wrote {compose_file}; run it with: cd {out} && docker compose up --build -d")
    return 0


def cmd_clean(args: argparse.Namespace) -> int:
    from compose.cleanup import remove_namespaces

    from compose.docker_backend import remove_docker_objects

    removed = remove_namespaces() + remove_docker_objects()
    print(f"removed {len(removed)} lab objects" + (f": {' '.join(removed)}" if removed else ""))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="p2plab", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a scenario and write a results folder")
    run.add_argument("scenario", help="a scenario file, or the name of a shipped one")
    run.add_argument("--backend", default="docker", choices=BACKENDS,
                     help="docker (default): containers; netns: plain network namespaces")
    run.add_argument("--results", default="results", help="folder for results (default: results)")
    run.add_argument("--probe", action="store_true",
                     help="classify every NAT with the built-in probe before the timeline "
                          "(also: probe_nat: true in the scenario); a mismatch fails the run")
    run.set_defaults(func=cmd_run)
    validate = sub.add_parser("validate", help="check scenario files without running them")
    validate.add_argument("scenarios", nargs="+")
    validate.set_defaults(func=cmd_validate)
    report = sub.add_parser("report", help="rebuild summary.json and report.md from events")
    report.add_argument("run_dir")
    report.set_defaults(func=cmd_report)
    export = sub.add_parser("export", help="write a compose project that reproduces the lab")
    export.add_argument("scenario")
    export.add_argument("--format", choices=("compose",), default="compose")
    export.add_argument("--output", "-o", default=None, help="folder (default: export-NAME)")
    export.set_defaults(func=cmd_export)
    clean = sub.add_parser("clean", help="remove everything any lab run left behind")
    clean.set_defaults(func=cmd_clean)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
