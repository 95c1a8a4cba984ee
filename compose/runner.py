"""The runner: realise a plan on a backend, drive the timeline, collect, tear down.

One direction of flow: scenario file -> model -> plan -> backend.create -> nodes start
-> timeline steps -> nodes stop -> backend.destroy -> analysis -> report. Teardown runs
in ``finally``, also on Ctrl-C and SIGTERM.
"""

from __future__ import annotations

import errno
import json
import os
import platform
import secrets
import signal
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path
from typing import Any, Callable

import p2plab
from analysis.natcheck import declared_view, mismatches
from compose.backend import Backend
from compose.events_tail import EventTail
from compose.kept import KeptLab
from topology.plan import REFLECTORS, LabPlan, build_plan, combined_behaviour
from topology.scenario import (
    Publish,
    Scenario,
    SetNat,
    Sleep,
    WaitConnection,
    WaitReservation,
    WaitTopicPeers,
)

READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 3.0
POLL_S = 0.1


class StepFailed(Exception):
    """A step could not complete: the run goes on to teardown and is reported as failed."""


class StepTimeout(StepFailed):
    """A wait step's condition did not come true in time."""


@dataclass
class RunOutcome:
    run_dir: Path
    timeline_error: str | None
    timeline_end: float


def new_run_id() -> str:
    """Six hex digits: short enough for interface names, in every name a run creates."""
    return secrets.token_hex(3)


def new_run_dir(results_root: Path, scenario: Scenario, run_id: str) -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    run_dir = results_root / f"{scenario.name}-{stamp}-{run_id}"
    run_dir.mkdir(parents=True)
    return run_dir


def write_manifest(run_dir: Path, scenario_text: str, plan: LabPlan, backend: Backend,
                   run_id: str, **extra: Any) -> None:
    """Record everything that produced this result, so it can be reproduced."""
    (run_dir / "scenario.yaml").write_text(scenario_text)
    manifest = {
        "scenario": plan.scenario.name,
        "seed": plan.scenario.seed,
        "run_id": run_id,
        "p2plab_version": p2plab.__version__,
        "libp2p_version": version("libp2p"),
        "python": platform.python_version(),
        "host": platform.node(),
        **backend.describe(),
        "nodes": {
            name: {"peer_id": n.peer_id, "ip": str(n.ip), "segment": n.segment, "role": n.role}
            for name, n in plan.nodes.items()
        },
        "routers": {
            name: {"lan": r.lan, "upstream": r.upstream, "lan_ip": str(r.lan_ip),
                   "wan_ip": str(r.wan_ip), "nat": r.nat,
                   "behaviour": r.behaviour.short() if r.behaviour else "no NAT"}
            for name, r in plan.routers.items()
        },
        **extra,
    }
    path = run_dir / "manifest.json"
    if path.exists():
        manifest = {**json.loads(path.read_text()), **manifest}
    path.write_text(json.dumps(manifest, indent=2) + "\n")


class Runner:
    def __init__(self, plan: LabPlan, backend: Backend, run_dir: Path,
                 progress: Callable[[str], None] = lambda message: None,
                 capture: bool = False) -> None:
        self.capture = capture
        self.captures: dict[str, subprocess.Popen[bytes]] = {}
        self.plan = plan
        self.backend = backend
        self.run_dir = run_dir
        self.tail = EventTail(run_dir / "events")
        self.progress = progress
        self.expected_publishes: dict[str, int] = {}
        self.spawned: dict[str, float] = {}
        self.rss_mb: dict[str, float | None] = {}
        self.steps: list[dict[str, Any]] = []  # what the timeline did, and when
        self.publish_deadline = 0.0

    # -- commands ------------------------------------------------------------------
    def send(self, node: str, command: dict[str, Any]) -> None:
        """Write one command line into the node's FIFO (the node holds it open)."""
        path = self.run_dir / "control" / f"{node}.fifo"
        deadline = time.monotonic() + 5
        while True:
            try:
                fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
                break
            except OSError as exc:
                if exc.errno not in (errno.ENXIO, errno.ENOENT) or time.monotonic() > deadline:
                    raise StepFailed(f"cannot reach {node}'s control FIFO: {exc}") from None
                time.sleep(POLL_S)
        try:
            os.write(fd, (json.dumps(command) + "\n").encode())
        finally:
            os.close(fd)

    # -- waiting -------------------------------------------------------------------
    def wait_until(self, what: str, condition: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            self.tail.poll()
            if condition():
                return
            for name in self.plan.nodes:  # probe hosts may come and go
                if not self.backend.node_running(name):
                    raise StepFailed(f"node {name} exited while waiting for {what}; "
                                     f"see logs/{name}.log")
            if time.monotonic() > deadline:
                raise StepTimeout(f"timed out after {timeout:g} s waiting for {what}")
            time.sleep(POLL_S)

    def _reserved(self, node: str) -> bool:
        return any(e["outcome"] == "ok" for e in self.tail.of(node, "relay_reservation"))

    def _mesh_size(self, node: str) -> int:
        last = self.tail.last(node, "topic_peers")
        return len(last.get("mesh", last["peers"])) if last else 0

    def _connected(self, a: str, b: str, kind: str) -> bool:
        conns = self.tail.open_connections(a, self.plan.nodes[b].peer_id)
        return any(kind == "any" or c["kind"] == kind for c in conns)

    # -- packet capture ----------------------------------------------------------------
    def start_captures(self, hosts: list[str]) -> None:
        """tcpdump on every interface of each host, into pcap/HOST.pcap (for Wireshark)."""
        if not self.capture:
            return
        out = self.run_dir / "pcap"
        out.mkdir(exist_ok=True)
        for host in hosts:
            if host in self.captures:
                continue
            argv = [*self.backend.netns_command(host), "tcpdump", "-i", "any", "-U", "-q",
                    "-w", str(out / f"{host}.pcap")]
            self.captures[host] = subprocess.Popen(argv, stdout=subprocess.DEVNULL,
                                                   stderr=subprocess.DEVNULL,
                                                   start_new_session=True)
        time.sleep(0.5)  # tcpdump needs a moment before the first packet it should see

    def stop_captures(self) -> None:
        for proc in self.captures.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.captures.values():
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()

    # -- the timeline ----------------------------------------------------------------
    def start_nodes(self) -> None:
        # Relays first (peers reserve on them as soon as they start), then the rest at
        # once: starting a container takes a while on some storage drivers.
        def start(name: str) -> None:
            self.spawned[name] = time.time()
            self.backend.start_node(name)

        relays = [n.name for n in self.plan.nodes.values() if n.role == "relay"]
        others = [n for n in self.plan.nodes if n not in relays]
        for name in relays:
            start(name)
        with ThreadPoolExecutor(6) as pool:
            list(pool.map(start, others))
        self.start_captures(list(self.plan.nodes))
        self.progress(f"started {len(self.plan.nodes)} nodes, waiting until they are ready")
        self.wait_until(
            "every node to start",
            lambda: all(self.tail.last(n, "node_started") for n in self.plan.nodes),
            READY_TIMEOUT_S,
        )

    def run_step(self, step: Any) -> None:
        if isinstance(step, WaitReservation):
            self.progress(f"waiting for relay reservations of {', '.join(step.nodes)}")
            self.wait_until(f"relay reservations of {step.nodes}",
                            lambda: all(self._reserved(n) for n in step.nodes), step.timeout)
        elif isinstance(step, WaitTopicPeers):
            self.progress(f"waiting until {', '.join(step.nodes)} have {step.min}+ mesh peers")
            self.wait_until(f"{step.min}+ gossipsub mesh peers at {step.nodes}",
                            lambda: all(self._mesh_size(n) >= step.min for n in step.nodes),
                            step.timeout)
        elif isinstance(step, WaitConnection):
            pairs = step.all_pairs()
            what = f"a {step.kind} connection " + ", ".join(f"{a} <-> {b}" for a, b in pairs)
            self.progress(f"waiting for {what}")
            try:
                self.wait_until(what, lambda: all(
                    self._connected(a, b, step.kind) or self._connected(b, a, step.kind)
                    for a, b in pairs), step.timeout)
            except StepTimeout:
                if step.required:
                    raise
                self.progress(f"not every pair got {step.kind}; going on")
        elif isinstance(step, Publish):
            publishers = ([n.name for n in self.plan.scenario.peers()]
                          if step.publish == "all" else step.publish)
            for name in publishers:
                self.send(name, {"cmd": "publish", "count": step.count,
                                 "size": step.size, "rate": step.rate})
                self.expected_publishes[name] = self.expected_publishes.get(name, 0) + step.count
            self.publish_deadline = max(self.publish_deadline,
                                        time.monotonic() + step.count / step.rate)
            self.progress(f"{', '.join(publishers)} publishing {step.count} x "
                          f"{step.size} B at {step.rate:g}/s")
        elif isinstance(step, Sleep):
            time.sleep(step.sleep)
        elif isinstance(step, SetNat):
            router = self.plan.router_for(step.set_nat).name
            behaviour, ruleset, sysctls = self.plan.ruleset_for(router, step.nat)
            self.progress(f"switching {router} to {behaviour.short() if behaviour else 'no NAT'}")
            self.backend.reconfigure_router(router, ruleset, sysctls)
        self.steps.append({"t": time.time(), "step": step.model_dump(by_alias=True)})

    def probe_nats(self) -> dict[str, Any]:
        """Classify every LAN's NAT with the probe and compare with what was declared."""
        for name in self.plan.probes:
            if not self.backend.node_running(name):
                self.backend.start_node(name)
        self.start_captures(list(self.plan.probes))
        ready = self.run_dir / "probe"
        self.wait_until("the NAT probe's reflectors",
                        lambda: all((ready / f"{r}.ready").exists() for r in REFLECTORS), 20)
        stuns = [str(self.plan.probes[r].ip) for r in REFLECTORS]
        lans = [h.segment for h in self.plan.probes.values() if h.role == "probe"]
        results: dict[str, Any] = {}

        def classify(lan: str) -> None:
            argv = [self.backend.python, "-m", "p2plab.natprobe", "classify",
                    "--stun", stuns[0], "--stun", stuns[1]]
            done = self.backend.exec(f"probe.{lan}", argv)
            behaviour = combined_behaviour(self.plan, lan)
            try:
                observed = json.loads(done.stdout)
            except ValueError:
                observed = {"error": (done.stderr or done.stdout).strip()[-500:]}
            problems = (mismatches(behaviour, observed) if "error" not in observed
                        else [f"probe failed: {observed['error']}"])
            router = self.plan.router_for(lan)
            results[lan] = {"router": router.name,
                            "nat": f"{router.nat} ({behaviour.short() if behaviour else 'no NAT'})",
                            "declared": declared_view(behaviour), "observed": observed,
                            "matches": not problems, "mismatches": problems}

        self.progress(f"probing the NAT of {', '.join(lans)}")
        threads = [threading.Thread(target=classify, args=(lan,)) for lan in lans]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        (self.run_dir / "nat_probe.json").write_text(json.dumps(results, indent=2) + "\n")
        for lan, r in results.items():
            if not r["matches"]:
                self.progress(f"NAT of {lan} does not behave as declared: "
                              + "; ".join(r["mismatches"]))
        return results

    def finish_publishing(self) -> None:
        """Wait for every publish plan to have gone out (with slack for a slow host)."""
        timeout = max(0.0, self.publish_deadline - time.monotonic()) + 10.0
        self.wait_until(
            "publishers to finish",
            lambda: all(len(self.tail.of(n, "message_published")) >= count
                        for n, count in self.expected_publishes.items()),
            timeout,
        )

    def stop_nodes(self) -> None:
        for name in self.plan.nodes:
            if self.backend.node_running(name):
                try:
                    self.send(name, {"cmd": "quit"})
                except StepFailed:
                    pass
        for name in self.plan.nodes:
            self.backend.stop_node(name, STOP_TIMEOUT_S)
        self.tail.poll()

    def run(self) -> RunOutcome:
        error: str | None = None
        try:
            self.start_captures(list(self.plan.routers))
            if self.plan.probing:
                self.probe_nats()
            self.start_nodes()
            for step in self.plan.scenario.timeline:
                self.run_step(step)
            self.finish_publishing()
            time.sleep(self.plan.scenario.settle)
        except StepFailed as exc:
            error = str(exc)
            self.progress(f"timeline failed: {error}")
        timeline_end = time.time()
        self.rss_mb = {name: self.backend.node_rss_mb(name) for name in self.plan.nodes}
        return RunOutcome(self.run_dir, error, timeline_end)


def execute(scenario_path: Path, scenario: Scenario, backend: Backend,
            run_id: str, run_dir: Path, progress: Callable[[str], None],
            probe: bool | None = None, keep: bool = False,
            capture: bool = False) -> RunOutcome:
    """Create the lab, run the timeline, and tear down: always, except that ``keep``
    leaves a lab whose timeline ended up and running (recorded for exec and down)."""
    plan = build_plan(scenario, probing=probe)
    write_manifest(run_dir, scenario_path.read_text(), plan, backend, run_id,
                   scenario_file=str(scenario_path))
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    runner = Runner(plan, backend, run_dir, progress, capture=capture)
    started = time.time()
    kept = False
    try:
        progress(f"creating the lab on {backend.name}")
        backend.create(plan, run_dir)
        outcome = runner.run()
        if keep:
            hosts = [*plan.routers, *(h.name for h in plan.hosts())]
            KeptLab(run_id, backend.name, str(run_dir), hosts,
                    [p.pid for p in runner.captures.values()]).save()
            kept = True
            progress(f"lab kept up (run id {run_id}): p2plab exec HOST -- sh; p2plab down")
    finally:
        if not kept:
            # A second Ctrl-C must not cut teardown short.
            sigint = signal.signal(signal.SIGINT, signal.SIG_IGN)
            try:
                runner.stop_captures()
                runner.stop_nodes()
            finally:
                backend.destroy()
                signal.signal(signal.SIGINT, sigint)
        signal.signal(signal.SIGTERM, previous)
    write_manifest(run_dir, scenario_path.read_text(), plan, backend, run_id,
                   started=started, timeline_end=outcome.timeline_end,
                   ended=time.time(), timeline_error=outcome.timeline_error,
                   node_spawned=runner.spawned, node_rss_mb=runner.rss_mb, steps=runner.steps)
    return outcome


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")
