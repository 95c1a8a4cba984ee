"""The one lab lifecycle. Every path that runs a real lab goes through ``Lab``: the
command line and the suite (``orchestrate/session.py``), the NAT matrix, crosscheck, the
pytest fixture (``p2plab.testing``), and a kept lab brought back by ``Lab.reattach``.

    with Lab(path, DockerBackend, results) as lab:   # planned, checked, created
        lab.start()                                   # nodes up, NATs probed, links measured
        lab["alice"].send({"cmd": "say", "text": "hi"})
        lab.play()                                    # the scenario's timeline
    # stopped and destroyed, also on Ctrl-C, SIGTERM or SIGHUP; the manifest says how

Entering plans once, refuses what cannot run (too many nodes, subnets that clash with
this machine's or another live run's, a missing tool) before anything is made, owns the
run (``ownership``), and from then until teardown is complete a stop signal stops the
run once and is then ignored, so a second Ctrl-C cannot cut teardown short.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from p2plab.compose.backends.base import Backend, BackendError
from p2plab.compose.backends.registry import backend_class
from p2plab.compose.impls.registry import Registry, resolve_scenario
from p2plab.compose.lab import ownership
from p2plab.compose.lab.host_limits import NeighbourLimits
from p2plab.compose.lab.hosts import Host, LogReader
from p2plab.compose.lab.kept import KeptLab, find_kept, forget_kept, stop_captures
from p2plab.compose.lab.ownership import RunRecord
from p2plab.compose.lab.runner import Runner, StepFailed
from p2plab.compose.run_folder import (
    lab_manifest,
    new_run_dir,
    new_run_id,
    write_inputs,
    write_manifest,
)
from p2plab.topology.loading import load_scenario
from p2plab.topology.plan import LabPlan, build_plan
from p2plab.topology.scenario import Scenario

from p2plab.interrupts import (
    STOP_SIGNALS,
    restore,
    signal_name,
    signals_ignored,
    stop_on_signals,
)

# About 87 MB and 1 s of CPU per py-libp2p node: beyond this an emulated lab does not
# fit a workstation, and the simulator is the tool.
MAX_EMULATED_NODES = 300


def check_emulation_size(scenario: Scenario, backend_name: str) -> None:
    n = len(scenario.nodes)
    if n > MAX_EMULATED_NODES:
        raise BackendError(
            f"{scenario.name} has {n} nodes: the {backend_name} backend runs a real py-libp2p "
            f"process per node (about 87 MB and 1 s of CPU to start each, {n * 87 / 1024:.0f} "
            f"GB here), and stops at {MAX_EMULATED_NODES}; run it with --backend sim")


class Lab:
    """One lab's life: a context manager (``with Lab(...) as lab``) or ``open``/``close``.

    ``backend`` is a backend class (``NetnsBackend``) or its registered name;
    ``implementations`` the registry the scenario's ``impl:`` names are looked up in
    (default: the built-ins, the scenario's neighbours, ``--register``'s files)."""

    def __init__(self, scenario_path: Path, backend: type[Backend] | str, results: Path, *,
                 progress: Callable[[str], None] = lambda message: None,
                 scenario: Scenario | None = None, probe: bool | None = None,
                 keep: bool = False, capture: bool = False,
                 raise_step_failures: bool = False,
                 implementations: Registry | None = None) -> None:
        self.scenario_path = scenario_path
        self.implementations = implementations
        self.scenario = scenario if scenario is not None else load_scenario(scenario_path)
        self.backend_class = backend_class(backend) if isinstance(backend, str) else backend
        self.results = results
        self.progress = progress
        self.probe = probe
        self.keep = keep
        self.capture = capture
        # A failed step is recorded and the run goes on to its report; a test's lab
        # (p2plab.testing) raises it instead, so the test fails.
        self.raise_step_failures = raise_step_failures
        self.run_id = new_run_id()
        self.backend: Backend | None = None
        self.plan: LabPlan | None = None
        self.runner: Runner | None = None
        self.run_dir: Path | None = None
        self.kept = False
        self.timeline_error: str | None = "the run stopped before its timeline ended"
        self.timeline_end = time.time()
        self._record: RunRecord | None = None
        self._previous_run_env: str | None = None
        self._previous_signals: Mapping[int, Any] | None = None
        self._limits: NeighbourLimits | None = None
        self._started = 0.0  # when the lab is made (after the environment's checks)
        self._kept_record: KeptLab | None = None

    # -- the lifecycle -------------------------------------------------------------------
    def __enter__(self) -> Lab:
        self.open()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close(exc)

    def open(self) -> None:
        """Plan, check, claim and create; on any failure nothing of the lab is left."""
        name = self.backend_class.name
        check_emulation_size(self.scenario, name)
        self.plan = plan = build_plan(self.scenario, probing=self.probe)  # plan errors first
        registry = self.implementations or Registry.load(scenario=self.scenario_path)
        declarations = resolve_scenario(registry, self.scenario)
        specs = self.scenario.file
        if not self.backend_class.places_hosts and (
                any(spec.placement for spec in specs.node_specs)
                or any(spec.placement for spec in specs.lan_specs)):
            self.progress(f"note: placement rules choose engines of a cluster (--backend "
                          f"swarm); {name} runs every host on this machine")
        backend = self.backend = self.backend_class(self.run_id, log=self.progress)
        backend.declarations = declarations  # built by check_environment
        try:
            backend.check_environment(plan)  # may make and remove a probe namespace
        except KeyboardInterrupt:
            with signals_ignored():  # a second Ctrl-C must not leave the probe behind
                backend.destroy()
            raise
        subnets = [str(seg.subnet) for seg in plan.segments.values()]
        backend.check_address_space(subnets)
        self.run_dir = run_dir = new_run_dir(self.results, self.scenario, self.run_id)
        try:
            # Registered before anything is made: `p2plab clean` elsewhere spares this run.
            self._record = ownership.claim(RunRecord(
                self.run_id, name, self.scenario.name, str(run_dir), subnets=subnets,
                shared_address_space=self.backend_class.shares_address_space))
        except BaseException:
            shutil.rmtree(run_dir, ignore_errors=True)
            raise
        self._previous_signals = stop_on_signals()
        try:
            self._previous_run_env = ownership.enter_run(self.run_id)
            write_inputs(run_dir, self.scenario.text or self.scenario_path.read_text(), plan)
            write_manifest(run_dir, {**lab_manifest(plan, backend, self.run_id),
                                     "scenario_file": str(self.scenario_path),
                                     "overrides": list(self.scenario.overrides)})
            self.runner = Runner(plan, backend, run_dir, self.progress, capture=self.capture)
            # The host's ARP table is shared by every namespace: a big lab needs it bigger.
            self._limits = NeighbourLimits(plan.neighbour_entries())
            self._started = self.timeline_end = time.time()
            self._limits.apply()
            self.progress(f"creating the lab on {name}; results in {run_dir}")
            backend.create(plan, run_dir)
        except BaseException as exc:
            self.close(exc)
            raise

    def start(self) -> None:
        """Captures, CPU sampling, the NAT probe (if asked), every node started and
        ready, the impaired links measured: the lab as the timeline finds it."""
        self._running().start()

    def play(self, steps: list[Any] | None = None) -> None:
        """The scenario's timeline (or ``steps``), then until every publish has gone
        out and the scenario's settle time has passed; a failed step is recorded
        (``timeline_error``), not raised."""
        runner = self._running()
        try:
            runner.play(steps)
            self.timeline_error = None
        except StepFailed as exc:
            self.timeline_error = str(exc)
            self.progress(f"timeline failed: {exc}")
            if self.raise_step_failures:
                raise
        finally:
            self.timeline_end = time.time()
            runner.cpu.stop()

    def run(self) -> None:
        """``start`` and ``play``; with ``keep``, the lab is then left up (``keep_up``)."""
        try:
            self.start()
        except StepFailed as exc:
            self.timeline_error = str(exc)
            self.timeline_end = time.time()
            self.progress(f"timeline failed: {exc}")
            self._running().read_memory()
        else:
            self.play()
        if self.keep:
            self.keep_up()

    def keep_up(self) -> None:
        """Leave the lab running after ``close`` (``p2plab exec``, ``p2plab down``)."""
        runner, backend = self._running(), self.backend
        assert backend is not None and self.plan is not None and self._limits is not None
        assert self.run_dir is not None and self._record is not None
        hosts = [*self.plan.routers, *(h.name for h in self.plan.hosts())]
        KeptLab(self.run_id, backend.name, str(self.run_dir), hosts,
                [p.pid for p in [*runner.captures.processes.values(),
                                  *runner.conntrack.processes.values(),
                                  *runner.links.stages.values()]],
                host_limits=self._limits.state(), details=backend.kept_details()).save()
        self._record.kept = True
        self._record.save()
        self.kept = True
        self.progress(f"lab kept up (run id {self.run_id}): p2plab exec HOST -- sh; "
                      "p2plab down")

    def close(self, exc: BaseException | None = None) -> None:
        """Stop and destroy (unless kept), write the manifest's end, release the run.
        No stop signal cuts this short. Safe to call twice."""
        if self._previous_signals is None and self._record is None:
            return
        interrupted = signal_name(exc) if isinstance(exc, KeyboardInterrupt) else None
        ignored: dict[int, Any] = {sig: signal.signal(sig, signal.SIG_IGN) for sig in STOP_SIGNALS}
        try:
            self._teardown(interrupted)
        finally:
            if self._record is not None:
                ownership.leave_run(self._record, self._previous_run_env)
                self._record = None
            # Straight back to what the caller had (no moment with the run's handlers).
            restore(self._previous_signals if self._previous_signals is not None else ignored)
            self._previous_signals = None
        if isinstance(exc, BackendError) and self.run_dir is not None and not any(
                p.is_file() for sub in ("events", "logs") for p in (self.run_dir / sub).glob("*")):
            # The lab could not be built: with no event and no log there is nothing to
            # keep; otherwise the folder stays, since the message may point into it.
            shutil.rmtree(self.run_dir, ignore_errors=True)

    def _teardown(self, interrupted: str | None) -> None:
        runner, backend, plan = self.runner, self.backend, self.plan
        if backend is None or plan is None or self.run_dir is None:
            return
        if not self.kept:
            try:
                if runner is not None:
                    runner.stop_captures()
                    runner.stop_nodes()
            finally:
                backend.destroy()
                if self._limits is not None:
                    self._limits.restore()
        if runner is None:
            return
        write_manifest(self.run_dir, {
            **lab_manifest(plan, backend, self.run_id),
            "started": self._started, "timeline_end": self.timeline_end,
            "ended": time.time(), "timeline_error": self.timeline_error,
            "interrupted": interrupted,
            "node_spawned": runner.spawned, "node_rss_mb": runner.rss_mb,
            "steps": runner.timeline.steps, "settled_s": runner.settled_s,
            "link_shaping": runner.links.describe(),
            "implementations": runner.implementations(),
            "host_limits": self._limits.describe() if self._limits else {}})

    # -- acting inside the lab -----------------------------------------------------------
    def _running(self) -> Runner:
        if self.runner is None:
            raise BackendError("the lab is not open (use it inside `with Lab(...)`)")
        return self.runner

    def __getitem__(self, host: str) -> Host:
        """A handle on a node or router: ``.exec(argv)``, ``.argv(argv)``,
        ``.send(command)``, ``.events(type)``, ``.kill()``."""
        if self._kept_record is not None:
            if host not in self._kept_record.hosts:
                raise BackendError(f"no host {host!r} in kept lab {self.run_id}; hosts: "
                                   f"{', '.join(self._kept_record.hosts)}")
            return Host(host, _KeptHosts(self))
        return self._running()[host]

    def step(self, spec: dict[str, Any]) -> None:
        """One timeline step, written as in a scenario file (``{"kill": ["bob"]}``)."""
        from p2plab.topology.schema import Step
        from pydantic import TypeAdapter

        self._running().run_timeline([TypeAdapter(Step).validate_python(spec)])

    def wait_for(self, what: str, condition: Callable[[], Any], timeout: float = 30) -> None:
        self._running().waits.wait_until(what, lambda: bool(condition()), timeout)

    def probe_nats(self) -> dict[str, Any]:
        """Classify every LAN's NAT now (the lab must be opened with probe=True)."""
        return self._running().probe_nats()

    # -- kept labs -----------------------------------------------------------------------
    @classmethod
    def reattach(cls, run_id: str | None = None) -> Lab:
        """A lab kept up by ``--keep`` whose runner has gone (one of several: its run
        id), for ``exec``, commands and ``down``."""
        record = find_kept(run_id)
        kind = backend_class(record.backend)
        lab = cls.__new__(cls)
        lab.backend_class = kind
        lab.run_id = record.run_id
        lab.run_dir = Path(record.run_dir)
        lab.backend = kind.reattach(record.run_id, lab.run_dir, record.details)
        lab.runner = None
        lab.plan = None
        lab._record = None
        lab._previous_signals = None
        lab._kept_record = record
        return lab

    def down(self) -> list[str]:
        """Tear a kept lab down and forget it; returns what was removed."""
        from p2plab.compose.lab.cleanup import kill_helpers

        record, backend = self._kept_record, self.backend
        if record is None or backend is None:
            raise BackendError("down is for a kept lab (Lab.reattach)")
        with signals_ignored():
            stop_captures(record.capture_pids)  # first: their last packets are kept
            removed = kill_helpers(only=record.run_id)
            removed += backend.take_down()
            forget_kept(record)
        return removed


class _KeptHosts(LogReader):
    """Host handles of a kept lab: through its re-attached backend, events from files."""

    def __init__(self, lab: Lab) -> None:
        assert lab.backend is not None and lab.run_dir is not None
        self.backend = lab.backend
        self.run_dir = lab.run_dir

    def argv_in(self, host: str, argv: list[str]) -> list[str]:
        return self.backend.exec_argv(host, argv, interactive=True)

    def exec_in(self, host: str, argv: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.backend.exec_argv(host, argv), capture_output=True,
                              text=True)

    def kill_host(self, host: str) -> None:
        raise BackendError("a kept lab's timeline is over: stop its nodes with p2plab down")

    def send_to(self, host: str, command: dict[str, Any]) -> None:
        self.backend.send_command(host, command)
