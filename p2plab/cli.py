"""``p2plab``: run, validate and clean.

Exit codes: 0 every expectation held; 1 an expectation failed; 2 bad input or an
unusable environment (the message says what to do).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from datetime import UTC
from pathlib import Path
from typing import Any

from p2plab.compose.backends.base import BackendError
from p2plab.compose.backends.registry import DEFAULT, EXECUTORS, ONE_MACHINE, SIMULATOR
from p2plab.interrupts import raise_interrupted
from p2plab.resources import scenarios_dir

SCENARIOS_DIR = scenarios_dir()


def _progress(message: str, start: float = time.monotonic()) -> None:
    print(f"[{time.monotonic() - start:6.1f}s] {message}", file=sys.stderr, flush=True)


# A run that passed, failed an expectation, or was interrupted (as a shell reports SIGINT).
EXIT_CODES = {"PASS": 0, "FAIL": 1, "INTERRUPTED": 130}


def _fail(message: str, code: int = 2) -> int:
    print(f"p2plab: {message}", file=sys.stderr)
    return code


def _overrides(args: argparse.Namespace) -> list[Any]:
    """``--set PATH=VALUE`` (each) then ``--seed N``, in the order they apply."""
    from p2plab.topology.overrides import parse_override, seed_override

    found = [parse_override(text) for text in args.set or []]
    if args.seed is not None:
        found.append(seed_override(args.seed))
    return found


def _add_overrides(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--set", action="append", metavar="PATH=VALUE",
                        help="override a scenario field (YAML value), e.g. "
                             "nodes.peer.count=20 or lans.home.nat=symmetric; repeatable")
    parser.add_argument("--seed", type=int, default=None, help="override the scenario's seed")


def _refuse_matrix_overrides(path: Path, overrides: list[Any]) -> None:
    if overrides:
        raise ValueError(f"{path} is a matrix: --set and --seed apply to scenarios; edit "
                         "the matrix file (its cells are generated from it)")


def cmd_validate(args: argparse.Namespace) -> int:
    from p2plab.topology.loading import ScenarioError, find_scenario, load_scenario
    from p2plab.topology.plan import build_plan

    status = 0
    from p2plab.topology.matrix import is_matrix_file, lab_scenarios, load_matrix

    for item in args.scenarios:
        try:
            path = find_scenario(item, SCENARIOS_DIR)
            if is_matrix_file(path):
                labs = lab_scenarios(load_matrix(path))
                _resolve_matrix(path, labs)
                print(f"{path}: ok: a NAT matrix of {sum(len(c) for _, c in labs)} cells "
                      f"in {len(labs)} labs")
                continue
            scenario = load_scenario(path)
            plan = build_plan(scenario)
            from p2plab.compose.impls.registry import Registry, resolve_scenario

            impls = resolve_scenario(Registry.load(scenario=path), scenario)
        except (ScenarioError, ValueError) as exc:
            print(exc, file=sys.stderr)
            status = 2
            continue
        print(f"{path}: ok: {len(plan.nodes)} nodes, {len(plan.routers)} NAT routers, "
              f"{len(plan.segments)} segments, {len(scenario.timeline)} timeline steps; "
              f"implementations: {', '.join(d.key for d in impls.values())}")
    return status


def cmd_show(args: argparse.Namespace) -> int:
    """A text summary of the scenario as it would run, and a PNG of its topology."""
    from p2plab.analysis.plots import topology_picture
    from p2plab.topology.describe import describe, dials
    from p2plab.topology.loading import ScenarioError, find_scenario, load_scenario
    from p2plab.topology.plan import build_plan

    try:
        path = find_scenario(args.scenario, SCENARIOS_DIR)
        plan = build_plan(load_scenario(path, _overrides(args)))
        from p2plab.compose.impls.registry import Registry, resolve_scenario

        impls = resolve_scenario(Registry.load(scenario=path), plan.scenario)
    except (ScenarioError, ValueError) as exc:
        return _fail(str(exc))
    print(describe(plan))
    print("implementations: " + ", ".join(f"{spec} = {d.key} ({d.library_text()})"
                                          for spec, d in impls.items()))
    out = Path(args.png or f"{plan.scenario.name}-topology.png")
    from importlib.metadata import version

    from p2plab.topology.describe import picture_graph

    topology_picture(picture_graph(plan), {"scenario": plan.scenario.name,
                                  "seed": plan.scenario.seed,
                                  "backend": "plan (not run)",
                                  "libp2p_version": version("libp2p")}, out,
                     dials=dials(plan) if len(plan.nodes) <= 300 else None)
    print(f"\ntopology picture: {out}")
    return 0


def network_only_variant(path: Path, out: Path) -> Path:
    """The scenario with the simulator's CPU model off, saved beside the results."""
    import yaml

    spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    spec["sim"] = {**(spec.get("sim") or {}), "receive_ms": 0, "send_ms": 0}
    out.mkdir(parents=True, exist_ok=True)
    variant = out / f"{path.stem}-network-only.yaml"
    variant.write_text(yaml.safe_dump(spec, sort_keys=False))
    return variant


def cmd_crosscheck(args: argparse.Namespace) -> int:
    """Run a scenario emulated and simulated, and compare the two."""
    if bool(args.scenario) == bool(args.run):
        return _fail("crosscheck takes a scenario to run, or --run RESULTS_DIR, not both")
    from datetime import datetime

    from p2plab.orchestrate.crosscheck import crosscheck
    from p2plab.orchestrate.session import run_scenario
    from p2plab.topology.loading import ScenarioError, find_scenario

    try:
        overrides = _overrides(args)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        if args.run and overrides:
            return _fail("--set and --seed would simulate another scenario than the one "
                         f"{args.run} ran (its scenario.yaml has its overrides already)")
        if args.run:  # an emulated run already made: simulate what it ran
            emulated_dir = Path(args.run)
            if not (emulated_dir / "summary.json").exists():
                return _fail(f"{emulated_dir} has no summary.json: give an emulated results "
                             "folder (p2plab report RUN rebuilds it)")
            path = emulated_dir / "scenario.yaml"
            out = Path(args.results) / f"crosscheck-{emulated_dir.name}-{stamp}"
        else:
            path = find_scenario(args.scenario, SCENARIOS_DIR)
            out = Path(args.results) / f"crosscheck-{path.stem}-{stamp}"
            emulated_dir = run_scenario(path, args.backend, out / "emulated", _progress,
                                        overrides=overrides).run_dir
        if args.network_only:
            path = network_only_variant(path, out)
        simulated = run_scenario(path, SIMULATOR, out / "simulated", _progress,
                                 overrides=overrides)
    except (ScenarioError, ValueError) as exc:
        return _fail(str(exc))
    except BackendError as exc:
        return _fail(f"{exc}\n(nothing of the lab is left running)")
    except KeyboardInterrupt:
        return _fail("interrupted; the lab was torn down", 130)
    result = crosscheck(emulated_dir, simulated.run_dir, out, network_only=args.network_only)
    for row in result["rows"]:
        print(f"  {row['figure']:<36} emulated {row['emulated']!s:>10}  simulated "
              f"{row['simulated']!s:>10}")
    for d in result["decomposition"]:
        print(f"  {d['figure']:<36} processing {d['processing_ms']:>9} ms "
              f"({d['processing_share']:.0%} of the emulated figure)")
    print(f"crosscheck: {out}/crosscheck.md")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from p2plab.orchestrate.session import run_scenario
    from p2plab.topology.loading import ScenarioError, find_scenario
    from p2plab.topology.matrix import is_matrix_file

    if args.registry:
        os.environ["P2PLAB_REGISTRY"] = args.registry  # read by the swarm backend
    try:
        overrides = _overrides(args)
        path = find_scenario(args.scenario, SCENARIOS_DIR)
        if is_matrix_file(path):
            _refuse_matrix_overrides(path, overrides)
            return _run_matrix(path, args)
        result = run_scenario(path, args.backend, Path(args.results), _progress,
                              probe=True if args.probe else None, keep=args.keep,
                              capture=args.capture, overrides=overrides)
    except (ScenarioError, ValueError) as exc:
        return _fail(str(exc))
    except BackendError as exc:
        return _fail(f"{exc}\n(nothing of the lab is left running)")
    except KeyboardInterrupt:
        return _fail("interrupted; the lab was torn down (partial results kept, "
                     "marked INTERRUPTED)", EXIT_CODES["INTERRUPTED"])
    for v in result.verdicts:
        print(f"  {'pass' if v.passed else 'FAIL'}  {v.name}: expected {v.expected}, "
              f"observed {v.observed}")
    print(f"{result.scenario}: {'PASS' if result.passed else 'FAIL'} "
          f"({result.summary['wall_time_s']} s) -> {result.run_dir}/report.md")
    return 0 if result.passed else 1


def _resolve_matrix(path: Path, labs: list[Any]) -> None:
    from p2plab.compose.impls.registry import Registry, resolve_scenario

    registry = Registry.load(scenario=path)
    for scenario, _cells in labs:
        resolve_scenario(registry, scenario)


def _run_matrix(path: Path, args: argparse.Namespace) -> int:
    from p2plab.orchestrate.matrix import run_matrix
    from p2plab.topology.matrix import lab_scenarios, load_matrix

    matrix = load_matrix(path)
    # Every generated scenario validates, and names registered implementations, before
    # anything is made.
    try:
        _resolve_matrix(path, lab_scenarios(matrix))
    except ValueError as exc:
        return _fail(str(exc))
    try:
        out, _rows = run_matrix(matrix, path, args.backend, Path(args.results), _progress)
    except BackendError as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        return _fail("interrupted; the labs were torn down", 130)
    summary = json.loads((out / "matrix.json").read_text())["summary"]
    for transport, figures in summary["figures"].items():
        print(f"  {transport}: {figures}")
    for row in summary["unexplained_disagreements"]:
        print(f"  FAIL  {row['a']} <-> {row['b']} over {row['transport']}: observed "
              f"{row['outcome']}, theory says {row['theory']}")
    print(f"{matrix.name}: {'PASS' if summary['passed'] else 'FAIL'} "
          f"({summary['wall_time_s']} s) -> {out}/matrix.html")
    return 0 if summary["passed"] else 1


def cmd_list(args: argparse.Namespace) -> int:
    """The shipped scenarios, one line each."""
    from p2plab.compose.lab.lifecycle import MAX_EMULATED_NODES
    from p2plab.topology.catalogue import catalogue
    from p2plab.topology.loading import ScenarioError

    try:
        entries = catalogue(SCENARIOS_DIR, MAX_EMULATED_NODES)
    except (ScenarioError, ValueError) as exc:
        return _fail(str(exc))
    print(f"{'name':<15} {'kind':<8} {'size':>12}  {'runs on':<20} {'duration':>8}  about")
    for entry in entries:
        print(entry.line())
    print(f"\n{SCENARIOS_DIR}: durations are rough estimates from each timeline (for a "
          "sim-only scenario, the simulated time); run one with p2plab run NAME "
          "(--backend sim for the simulator)")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from p2plab.analysis.report import build_report

    run_dir = Path(args.run_dir)
    if not (run_dir / "manifest.json").exists():
        return _fail(f"{run_dir} is not a results folder (no manifest.json)")
    summary, _ = build_report(run_dir)
    print(f"{run_dir}/report.md: {summary['status']}")
    return EXIT_CODES[summary["status"]]


def cmd_export(args: argparse.Namespace) -> int:
    from p2plab.compose.backends.base import BackendError as _BackendError
    from p2plab.compose.export import export_compose
    from p2plab.compose.impls.builds import ensure_built
    from p2plab.compose.impls.registry import Registry, resolve_scenario
    from p2plab.topology.loading import ScenarioError, find_scenario, load_scenario
    from p2plab.topology.plan import build_plan

    try:
        path = find_scenario(args.scenario, SCENARIOS_DIR)
        scenario = load_scenario(path)
        plan = build_plan(scenario)
        out = Path(args.output or f"export-{plan.scenario.name}")
        declarations = resolve_scenario(Registry.load(scenario=path), scenario)
        builds = {spec: ensure_built(d, _progress) for spec, d in declarations.items()}
        compose_file = export_compose(plan, path.read_text(), out, builds)
    except (ScenarioError, ValueError, FileExistsError, _BackendError) as exc:
        return _fail(str(exc))
    print(f"wrote {compose_file}; run it with: cd {out} && docker compose up --build -d")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from p2plab.analysis.compare import compare, render, write_page

    runs = [Path(args.run_a), Path(args.run_b)]
    for run in runs:
        if not (run / "summary.json").exists():
            return _fail(f"{run} has no summary.json: is it a results folder? "
                         "(p2plab report RUN rebuilds it from events)")
    rows = compare(runs[0], runs[1], tolerance=args.tolerance)
    print(render(rows, runs[0], runs[1], args.tolerance))
    if args.html:
        write_page(rows, runs[0], runs[1], args.tolerance, Path(args.html))
        print(f"\npage: {args.html} (both runs' propagation and latency curves overlaid)")
    return 1 if any(r.regression for r in rows) else 0


def cmd_suite(args: argparse.Namespace) -> int:
    from p2plab.orchestrate.suite import default_suite, run_suite
    from p2plab.topology.loading import ScenarioError

    try:
        overrides = _overrides(args)
        paths = default_suite(SCENARIOS_DIR, args.scenarios)
        impls = [s.strip() for s in (args.impls or "").split(",") if s.strip()]
        if args.impls is not None and not impls:
            return _fail("--impls: give implementations separated by commas, e.g. "
                         "--impls rust@0.53,rust@0.57.1")
        if impls and not args.scenarios:
            paths = _running_any(paths, overrides, impls)
        if overrides or impls:  # every run must be possible before the first one runs
            _check_suite_runs(paths, overrides, impls)
        return run_suite(paths, args.backend, Path(args.results),
                         Path(args.junit) if args.junit else None, overrides, impls)
    except (ScenarioError, ValueError) as exc:
        return _fail(str(exc))


def _running_any(paths: list[Path], overrides: list[Any], impls: list[str]) -> list[Path]:
    """Of the default suite, the scenarios whose nodes run the implementations listed
    (by name): the others would run unchanged; say which are left out."""
    from p2plab.orchestrate.suite import impl_fields

    names = {impl.partition("@")[0] for impl in impls}
    keep = [p for p in paths if names <= {s.partition("@")[0]
                                         for s in impl_fields(p, overrides).values()}]
    left = sorted(p.stem for p in paths if p not in keep)
    if left:
        print(f"suite --impls: {', '.join(left)} run no {'/'.join(sorted(names))} node: "
              "left out", file=sys.stderr)
    if not keep:
        raise ValueError(f"--impls: no scenario of the suite runs {'/'.join(sorted(names))}")
    return keep


def _check_suite_runs(paths: list[Path], overrides: list[Any], impls: list[str]) -> None:
    """Each scenario takes the overrides, and each listed implementation is registered
    and replaces some of its nodes: an --impls entry that would change nothing is an
    error, not a run that repeats the scenario as it is."""
    from p2plab.compose.impls.registry import Registry, resolve_scenario
    from p2plab.orchestrate.suite import impl_fields
    from p2plab.topology.loading import load_scenario
    from p2plab.topology.overrides import implementation_overrides

    for path in paths:
        registry = Registry.load(scenario=path)
        variants: list[str | None] = list(impls) or [None]
        for impl in variants:
            swapped = ([] if impl is None
                       else implementation_overrides(impl_fields(path, overrides), impl))
            resolve_scenario(registry, load_scenario(path, [*overrides, *swapped]))


def cmd_impls(args: argparse.Namespace) -> int:
    """The registered implementations: what impl: may name, and where each is declared."""
    from p2plab.compose.impls.builds import is_built
    from p2plab.compose.impls.declaration import CAPABILITIES
    from p2plab.compose.impls.registry import Registry
    from p2plab.topology.loading import ScenarioError, find_scenario

    try:
        scenario = find_scenario(args.scenario, SCENARIOS_DIR) if args.scenario else None
        registry = Registry.load(scenario=scenario)
    except (ScenarioError, ValueError) as exc:
        return _fail(str(exc))
    for declaration in sorted(registry.declarations.values(), key=lambda d: d.key):
        file = declaration.file
        names = [declaration.key] + ([declaration.name] if file.default or
                                     len(registry.of(declaration.name)) == 1 else [])
        if file.build.cargo is None:
            state = "runs in the lab's Python"
        elif is_built(declaration):
            state = "built"
        else:
            state = "not built yet (built by the first lab that runs it)"
        lacks = declaration.lacks(set(CAPABILITIES))
        if lacks:
            state += f"; leaves out {', '.join(lacks)}"
        print(f"{' | '.join(names):24} {declaration.library_text():22} {state}\n"
              f"{'':24} {declaration.path}")
    return 0


def cmd_conform(args: argparse.Namespace) -> int:
    """Every clause of the node contract against one implementation; exit 1 on a failure."""
    import json

    from p2plab.compose.impls.registry import Registry
    from p2plab.orchestrate.conformance.checker import CLAUSE_NAMES, as_json, conform, table

    only = [c.strip() for c in (args.clauses or "").split(",") if c.strip()]
    unknown = sorted(set(only) - set(CLAUSE_NAMES))
    if unknown:
        return _fail(f"--clauses: no clause {', '.join(unknown)} (clauses: "
                     f"{', '.join(CLAUSE_NAMES)})")
    try:
        registry = Registry.load()
        registry.resolve(args.impl)
        for partner in ("py", "rust"):
            registry.resolve(partner)
        print(f"conform {registry.resolve(args.impl).key}: building what it needs",
              file=sys.stderr)
        outcomes = conform(args.impl, registry, only, progress=lambda o: print(
            f"  {o.result}  {o.clause} [{' / '.join(o.impls)}] ({o.seconds} s)",
            file=sys.stderr), log=lambda m: print(f"  lab: {m}", file=sys.stderr))
    except (ValueError, BackendError) as exc:
        return _fail(str(exc))
    print("\n".join(table(outcomes)))
    failed = [o for o in outcomes if o.failed]
    for o in failed:
        print(f"\n{o.clause} [{' / '.join(o.impls)}]:\n{o.detail}")
    if args.json:
        Path(args.json).write_text(json.dumps(as_json(args.impl, registry, outcomes),
                                              indent=2) + "\n")
    passed = sum(o.passed for o in outcomes)
    print(f"conform {args.impl}: {passed} passed, {len(failed)} failed, "
          f"{len(outcomes) - passed - len(failed)} not claimed")
    return 1 if failed else 0


def cmd_sweep(args: argparse.Namespace) -> int:
    """A scenario over the product of parameter values, into one table and page."""
    from p2plab.orchestrate.sweep import parse_axis, run_sweep
    from p2plab.topology.loading import ScenarioError, find_scenario
    from p2plab.topology.matrix import is_matrix_file
    from p2plab.topology.overrides import parse_override

    try:
        path = find_scenario(args.scenario, SCENARIOS_DIR)
        if is_matrix_file(path):
            raise ValueError(f"{path} is a matrix: sweep a scenario")
        axes = [parse_axis(text) for text in args.set or []]
        extra = [parse_override(text) for text in args.fixed or []]
        out = run_sweep(path, axes, args.repeat, args.backend, Path(args.results), _progress,
                        seed=args.seed, extra=extra, jobs=args.jobs)
    except (ScenarioError, ValueError) as exc:
        return _fail(str(exc))
    except BackendError as exc:
        return _fail(f"{exc}\n(nothing of the lab is left running; the same command "
                     "resumes the sweep)")
    except KeyboardInterrupt:
        return _fail("interrupted; the same command resumes the sweep", 130)
    print(f"sweep: {out}/sweep.html (table: {out}/sweep.csv)")
    return 0


def cmd_exec(args: argparse.Namespace) -> int:
    import os

    from p2plab.compose.lab.lifecycle import Lab

    argv = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
    try:
        full = Lab.reattach(args.run)[args.host].argv(argv or ["sh"])
    except BackendError as exc:
        return _fail(str(exc))
    os.execvp(full[0], full)  # the command takes over this terminal
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    from p2plab.compose.lab.lifecycle import Lab

    try:
        lab = Lab.reattach(args.run)
    except BackendError as exc:
        return _fail(str(exc))
    removed = lab.down()
    print(f"lab {lab.run_id} is down ({len(removed)} objects removed); results in {lab.run_dir}")
    return 0


def cmd_clean(args: argparse.Namespace) -> int:
    from p2plab.compose.lab.cleanup import clean

    removed = clean(kept=args.kept or args.all, everything=args.all)
    print(f"removed {len(removed)} lab objects" + (f": {' '.join(removed)}" if removed else ""))
    if not args.all:
        from p2plab.compose.lab import ownership

        live = [r for r in ownership.records() if r.live]
        for r in live:
            print(f"left alone: {r.describe()}")
    return 0


def _version_text() -> str:
    """p2plab's version and the libp2p each built-in node is pinned to."""

    import p2plab
    from p2plab.compose.impls.declaration import load_declaration
    from p2plab.compose.impls.registry import built_in_files

    built_in = [load_declaration(path) for path in built_in_files()]
    return (f"p2plab {p2plab.__version__} (built-in nodes: "
            + ", ".join(f"{d.key} on {d.library_text()}" for d in built_in) + ")")


def _register(files: list[str]) -> None:
    """Every lab of this command (and of a suite's, sweep's or matrix's runs) sees the
    files: they go in the environment, each checked first."""
    from p2plab.compose.impls.registry import REGISTER_ENV, Registry

    paths = [str(Path(f).resolve()) for f in files]
    try:
        Registry.load(extra=[Path(p) for p in paths])
    except ValueError as exc:
        sys.exit(_fail(str(exc)))
    known = [p for p in os.environ.get(REGISTER_ENV, "").split(os.pathsep) if p]
    os.environ[REGISTER_ENV] = os.pathsep.join([*known, *paths])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="p2plab", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=_version_text())
    sub = parser.add_subparsers(dest="command", required=True)
    listing = sub.add_parser("list", help="the shipped scenarios, one line each")
    listing.set_defaults(func=cmd_list)
    run = sub.add_parser("run", help="run a scenario and write a results folder")
    run.add_argument("scenario", help="a scenario file, or the name of a shipped one")
    run.add_argument("--backend", default=DEFAULT, choices=EXECUTORS,
                     help="docker (default): containers; netns: plain network namespaces; "
                          "swarm: containers across a Docker Swarm (DOCKER_HOST: a manager, "
                          "or the local cluster of make cluster); sim: the simulator")
    run.add_argument("--registry", metavar="HOST:PORT",
                     help="swarm: the registry every engine pulls the node image from")
    run.add_argument("--results", default="results", help="folder for results (default: results)")
    run.add_argument("--keep", action="store_true",
                     help="leave the lab up after the timeline (p2plab exec, p2plab down)")
    run.add_argument("--capture", action="store_true",
                     help="record every router's and node's traffic into RESULTS/pcap/HOST.pcap")
    run.add_argument("--probe", action="store_true",
                     help="classify every NAT with the built-in probe before the timeline "
                          "(also: probe_nat: true in the scenario); a mismatch fails the run")
    _add_overrides(run)
    run.set_defaults(func=cmd_run)
    validate = sub.add_parser("validate", help="check scenario files without running them")
    validate.add_argument("scenarios", nargs="+")
    validate.set_defaults(func=cmd_validate)
    cross = sub.add_parser("crosscheck", help="run a scenario emulated and simulated; "
                           "compare delivery, latency and propagation")
    cross.add_argument("scenario", nargs="?", default=None,
                       help="a scenario to run emulated (or --run an existing run)")
    cross.add_argument("--backend", default=DEFAULT, choices=ONE_MACHINE,
                       help="the emulation backend")
    cross.add_argument("--run", default=None, help="an emulated results folder to compare "
                       "instead of running the scenario again")
    cross.add_argument("--network-only", action="store_true",
                       help="simulate without the CPU model: the gap is processing, and "
                       "crosscheck.md says how much of each timing figure it is")
    cross.add_argument("--results", default="results")
    _add_overrides(cross)
    cross.set_defaults(func=cmd_crosscheck)
    show = sub.add_parser("show", help="summarise a scenario and draw its topology (PNG)")
    show.add_argument("scenario", help="a shipped scenario name or a YAML path")
    show.add_argument("--png", default=None, help="where to write the picture "
                      "(default: NAME-topology.png here)")
    _add_overrides(show)
    show.set_defaults(func=cmd_show)
    report = sub.add_parser("report", help="rebuild summary.json and report.md from events")
    report.add_argument("run_dir")
    report.set_defaults(func=cmd_report)
    export = sub.add_parser("export", help="write a compose project that reproduces the lab")
    export.add_argument("scenario")
    export.add_argument("--format", choices=("compose",), default="compose")
    export.add_argument("--output", "-o", default=None, help="folder (default: export-NAME)")
    export.set_defaults(func=cmd_export)
    exec_ = sub.add_parser("exec", help="run a command (default: a shell) in a host of a kept lab")
    exec_.add_argument("host", help="a node or router name, e.g. alice or home-a-gw")
    exec_.add_argument("argv", nargs=argparse.REMAINDER, help="-- COMMAND ARGS...")
    exec_.add_argument("--run", default=None, help="run id, when several labs are kept")
    exec_.set_defaults(func=cmd_exec)
    down = sub.add_parser("down", help="tear down a lab kept with run --keep")
    down.add_argument("--run", default=None, help="run id, when several labs are kept")
    down.set_defaults(func=cmd_down)
    compare = sub.add_parser("compare", help="compare two results folders, flag regressions")
    compare.add_argument("run_a")
    compare.add_argument("run_b")
    compare.add_argument("--html", default=None, metavar="PATH",
                         help="also write a page with the figures and both runs' "
                              "propagation and latency curves overlaid")
    compare.add_argument("--tolerance", type=float, default=0.10,
                         help="relative change that counts as a regression (default 0.10)")
    compare.set_defaults(func=cmd_compare)
    suite = sub.add_parser("suite", help="run several scenarios; JUnit XML and a summary")
    suite.add_argument("scenarios", nargs="*",
                       help="scenario files, names or folders (default: the shipped ones, "
                            "without the long nat-matrix)")
    suite.add_argument("--backend", default=DEFAULT, choices=EXECUTORS)
    suite.add_argument("--results", default="results/suite")
    suite.add_argument("--junit", default=None, help="JUnit XML path (default: RESULTS/junit.xml)")
    suite.add_argument("--impls", default=None, metavar="IMPL,IMPL,...",
                       help="run every scenario once per implementation listed (e.g. "
                            "rust@0.53,rust@0.57.1), each in place of the nodes that run the "
                            "same implementation: one verdict row per version")
    _add_overrides(suite)
    suite.set_defaults(func=cmd_suite)
    impls = sub.add_parser("impls", help="the registered node implementations (what impl: "
                           "may name) and whether each is built")
    impls.add_argument("scenario", nargs="?", default=None,
                       help="also the *.impl.yaml files beside this scenario file")
    impls.set_defaults(func=cmd_impls)
    conform_ = sub.add_parser("conform", help="check an implementation against every clause "
                              "of the node contract, alone and with each built-in one")
    conform_.add_argument("impl", help="a registered implementation: py, rust@0.53, or "
                          "yours (with --register FILE)")
    conform_.add_argument("--json", default=None, metavar="PATH",
                          help="also write the outcomes as JSON")
    conform_.add_argument("--clauses", default=None, metavar="NAME,...",
                          help="only these clauses (default: all)")
    conform_.set_defaults(func=cmd_conform)
    sweep = sub.add_parser("sweep", help="run a scenario over the product of parameter "
                           "values; sweep.csv, sweep.json, sweep.html")
    sweep.add_argument("scenario", help="a scenario file, or the name of a shipped one")
    sweep.add_argument("--set", action="append", metavar="PATH=V1,V2,...",
                       help="a swept field and its values (YAML each), e.g. "
                            "connect.degree=4,6,8; repeatable: the runs are the product")
    sweep.add_argument("--fixed", action="append", metavar="PATH=VALUE",
                       help="an override applied to every run (as run --set)")
    sweep.add_argument("--repeat", type=int, default=1, help="runs per point, each with its "
                       "own seed (default 1)")
    sweep.add_argument("--seed", type=int, default=None,
                       help="the base seed the runs' seeds are drawn from (default: the "
                            "scenario's)")
    sweep.add_argument("--backend", default=DEFAULT, choices=EXECUTORS)
    sweep.add_argument("--jobs", type=int, default=None,
                       help="simulator runs side by side (default: one per core)")
    sweep.add_argument("--results", default="results")
    sweep.set_defaults(func=cmd_sweep)
    clean = sub.add_parser("clean", help="remove what interrupted or killed runs left "
                           "behind (never a run in progress, nor a kept lab)")
    clean.add_argument("--kept", action="store_true",
                       help="also tear down kept labs (p2plab run --keep)")
    clean.add_argument("--all", action="store_true",
                       help="remove every p2plab lab object on this machine, even of runs "
                            "in progress (exported compose labs are never touched)")
    clean.set_defaults(func=cmd_clean)
    for command in (run, validate, cross, show, export, suite, sweep, impls, conform_):
        command.add_argument("--register", action="append", metavar="FILE",
                             help="register the implementation a p2plab-impl.yaml declares "
                                  "(repeatable); *.impl.yaml beside the scenario are too")
    args = parser.parse_args(argv)
    if getattr(args, "register", None):
        _register(args.register)
    # A closed terminal (SIGHUP) or a polite kill (SIGTERM) stops p2plab as Ctrl-C does:
    # whatever it made is torn down on the way out.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, raise_interrupted)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
