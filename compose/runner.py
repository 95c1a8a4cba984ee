"""The runner: realise a plan on a backend, carry out the timeline, tear down.

scenario -> plan -> backend.create -> nodes start -> the timeline (its meaning is
``topology/timeline.py``'s; the runner supplies the primitives over the backend) ->
nodes stop -> backend.destroy. Analysis and the report come after, from the results
folder (``orchestrate/session.py``). Teardown runs in ``finally``, also on Ctrl-C,
SIGTERM and SIGHUP.
"""

from __future__ import annotations

import json
import select
import signal
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from p2plab.topology.natcheck import declared_view, mismatches
from p2plab.compose.backend import Backend
from p2plab.compose.cpu import CpuSampler
from p2plab.compose.host_limits import NeighbourLimits
from p2plab.compose.events_tail import EventTail
from p2plab.compose.fault_filters import FaultFilters
from p2plab.compose.hosts import Host, exec_argv
from p2plab.compose.kept import KeptLab
from p2plab.compose.links import LinkShaper
from p2plab.compose.run_folder import write_manifest
from p2plab.compose.ownership import RunRecord
from p2plab.control import ControlError
from p2plab.events import EventWriter
from p2plab.files import write_atomic
from p2plab.interrupts import STOP_SIGNALS, restore, signal_name, stop_on_signals
from p2plab.processes import stop_children
from p2plab.topology.plan import REFLECTORS, LabPlan, build_plan, combined_behaviour, link_checks
from p2plab.topology.scenario import Scenario
from p2plab.topology.schema import LAB_EVENTS, Publish
from p2plab.topology.timeline import (At, Condition, Connected, MeshAtLeast, Pause, Punched,
                                      Reserved, Timeline)

READY_TIMEOUT_S = 30.0
# Each node imports py-libp2p (about 1 s of CPU): a big lab on a small machine needs time.
READY_S_PER_NODE = 1.5
STOP_TIMEOUT_S = 5.0  # the node contract: exit within 5 s of SIGTERM
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
        self.spawned: dict[str, float] = {}
        self.rss_mb: dict[str, float | None] = {}
        self.timeline = Timeline(plan.scenario, self)
        self.starts_before: dict[str, int] = {}  # node_started events before a restart
        self.publish_deadline = 0.0
        # (publisher, flow) -> messages still to be seen published
        self.expected_flows: dict[tuple[str, str], int] = {}
        self.down: set[str] = set()  # killed and not restarted
        self.links = LinkShaper(plan, backend, run_dir, progress)
        self.faults = FaultFilters(plan, backend)
        self.lab_events: EventWriter | None = None
        self._lab_lock = threading.Lock()
        self.cpu = CpuSampler(self.cpu_keys, self.cpu_pid, self.lab_event)
        self.timeline_start = 0.0
        self.first_topic = {n.name: plan.scenario.topics_of(n)[0] for n in plan.scenario.nodes}

    # -- hosts -----------------------------------------------------------------------
    def __getitem__(self, host: str) -> Host:
        """A handle on one of the lab's hosts: ``runner["alice"].exec([...])``."""
        if host not in self.plan.nodes and host not in self.plan.routers \
                and host not in {h.name for h in self.plan.hosts()}:
            raise KeyError(f"no host {host!r} in this lab")
        return Host(host, self)

    def send(self, node: str, command: dict[str, Any]) -> None:
        """One command to a node; a node that cannot be reached fails the step."""
        try:
            self[node].send(command)
        except ControlError as exc:
            raise StepFailed(f"cannot reach {node}: {exc}") from None

    # HostOwner: what the host handles do here.
    def exec_in(self, host: str, argv: list[str]) -> subprocess.CompletedProcess[str]:
        return self.backend.exec(host, argv)

    def argv_in(self, host: str, argv: list[str]) -> list[str]:
        return exec_argv(self.backend.name, self.backend.run_id, host, argv)

    def events_of(self, host: str, type_: str | None) -> list[dict[str, Any]]:
        self.tail.poll()
        return self.tail.of(host, type_)

    def send_to(self, host: str, command: dict[str, Any]) -> None:
        self.backend.send_command(host, command)

    def kill_host(self, host: str) -> None:
        """A kill outside the timeline, recorded like the timeline's own."""
        self.kill([host])
        self.lab_event("fault", action="kill", targets=[host])

    # -- waiting -------------------------------------------------------------------
    def wait_until(self, what: str, condition: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            self.tail.poll()
            if condition():
                return
            for name in self.plan.nodes:  # probe hosts may come and go
                if name not in self.down and not self.backend.node_running(name):
                    raise StepFailed(f"node {name} exited while waiting for {what}; "
                                     f"see logs/{name}.log")
            if time.monotonic() > deadline:
                raise StepTimeout(f"timed out after {timeout:g} s waiting for {what}")
            time.sleep(POLL_S)

    def _reserved(self, node: str) -> bool:
        return any(e["outcome"] == "ok" for e in self.tail.of(node, "relay_reservation"))

    def _mesh_size(self, node: str) -> int:
        """Mesh peers on the node's first topic, as it last reported them."""
        topic = self.first_topic[node]
        for event in reversed(self.tail.of(node, "topic_peers")):
            if event["topic"] == topic:
                return len(event.get("mesh", event["peers"]))
        return 0

    def _punched(self, a: str, b: str) -> bool:
        ids = {a: self.plan.nodes[a].peer_id, b: self.plan.nodes[b].peer_id}
        return any(e["peer"] == ids[y] for x, y in ((a, b), (b, a))
                   for e in self.tail.of(x, "hole_punch"))

    def lab_event(self, type_: str, **fields: Any) -> None:
        """The lab's own event log (faults, traffic, CPU), in the nodes' format; the CPU
        sampler writes from its own thread."""
        with self._lab_lock:
            if self.lab_events is None:
                self.lab_events = EventWriter.open(
                    LAB_EVENTS, self.run_dir / "events" / f"{LAB_EVENTS}.jsonl")
            self.lab_events.emit(type_, **fields)

    def cpu_keys(self) -> list[str]:
        """The processes the CPU sampler accounts: nodes, routers, link stages."""
        return ([f"node:{n}" for n in self.plan.nodes]
                + [f"router:{r}" for r in self.plan.routers]
                + [f"link:{n}" for n in list(self.links.stages)])

    def cpu_pid(self, key: str) -> int | None:
        kind, name = key.split(":", 1)
        if kind == "link":
            stage = self.links.stages.get(name)
            return stage.pid if stage is not None and stage.poll() is None else None
        return self.backend.host_pid(name)

    def implementations(self) -> dict[str, dict[str, Any]]:
        """Each node implementation that ran, with its versions as its nodes announced
        them (node_started) and the nodes that ran it."""
        found: dict[str, dict[str, Any]] = {}
        for name, node in self.plan.nodes.items():
            entry = found.setdefault(node.impl, {"nodes": []})
            entry["nodes"].append(name)
            started = self.tail.last(name, "node_started")
            if started is not None and "version" not in entry:
                entry["version"] = started.get("impl_version")
                entry["libp2p"] = started.get("libp2p")
                entry["msg_id_fn"] = started.get("msg_id_fn")
        return found

    def running(self) -> set[str]:
        return {n for n in self.plan.nodes if n not in self.down}

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
            # -Z root: Debian's tcpdump otherwise writes as user tcpdump, which may not
            # write into the run's folder (a volume, on swarm engines).
            argv = [*self.backend.netns_command(host), "tcpdump", "-i", "any", "-U", "-q",
                    "-Z", "root", "-w", self.backend.lab_path(out / f"{host}.pcap")]
            self.captures[host] = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                                   stdout=subprocess.DEVNULL,
                                                   stderr=subprocess.DEVNULL,
                                                   start_new_session=True)
        time.sleep(0.5)  # tcpdump needs a moment before the first packet it should see

    def stop_captures(self) -> None:
        stop_children(self.captures.values())

    # -- the timeline ----------------------------------------------------------------
    def start_nodes(self) -> None:
        # Relays first (peers reserve on them as soon as they start), then the rest at
        # once: starting a container takes a while on some storage drivers.
        def start(name: str) -> None:
            self.spawned[name] = time.time()
            self.backend.start_node(name)
            self.links.apply(name)

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
            READY_TIMEOUT_S + READY_S_PER_NODE * len(self.plan.nodes),
        )

    # -- the timeline's primitives (topology/timeline.py says what each step means) -----
    def clock(self) -> float:
        return time.time()

    def publish(self, node: str, flow: str, topic: str, step: Publish,
                offsets: list[float]) -> None:
        self.send(node, {"cmd": "publish", "count": step.count, "size": step.size,
                         "rate": step.rate, "topic": topic, "flow": flow, "offsets": offsets})
        self.expected_flows[(node, flow)] = step.count
        self.publish_deadline = max(self.publish_deadline, time.monotonic() + offsets[-1])

    def stop_traffic(self, flow: str, nodes: list[str]) -> None:
        for (node, key) in list(self.expected_flows):
            if flow in ("all", key):
                del self.expected_flows[(node, key)]
        for name in nodes:
            self.send(name, {"cmd": "stop-traffic", "flow": flow})

    def kill(self, nodes: list[str]) -> None:
        for name in nodes:
            self.links.release(name)
            self.backend.kill_node(name)
            self.down.add(name)
            for key in [k for k in self.expected_flows if k[0] == name]:
                del self.expected_flows[key]

    def restart(self, nodes: list[str]) -> None:
        self.starts_before = {n: len(self.tail.of(n, "node_started")) for n in nodes}
        for name in nodes:
            self.backend.start_node(name)
            self.links.apply(name)
            self.faults.restore(name)
            self.down.discard(name)

    def set_links(self, nodes: list[str], up: bool) -> None:
        self.faults.set_link(nodes, up, self.running())

    def partition(self, groups: list[list[str]]) -> None:
        self.faults.partition(groups, self.running())

    def heal(self) -> None:
        self.faults.heal(self.running())

    def set_nat(self, lan: str, nat: Any) -> str:
        router = self.plan.router_for(lan).name
        behaviour, ruleset, sysctls = self.plan.ruleset_for(router, nat)
        self.backend.reconfigure_router(router, ruleset, sysctls)
        return behaviour.short() if behaviour else "no NAT"

    def holds(self, condition: Condition) -> bool:
        """Whether a wait step's condition is true, from the nodes' events so far."""
        if isinstance(condition, Reserved):
            return all(self._reserved(n) for n in condition.nodes)
        if isinstance(condition, MeshAtLeast):
            return all(self._mesh_size(n) >= condition.peers for n in condition.nodes)
        if isinstance(condition, Connected):
            kind = condition.kind
            return all(self._connected(a, b, kind) or self._connected(b, a, kind)
                       for a, b in condition.pairs)
        if isinstance(condition, Punched):
            return all(self._punched(a, b) for a, b in condition.pairs)
        return all(len(self.tail.of(n, "node_started")) > self.starts_before.get(n, 0)
                   for n in condition.nodes)

    def run_timeline(self, steps: list[Any] | None = None) -> None:
        """Carry out the timeline's time actions with the wall clock (the scenario's
        timeline, or ``steps``)."""
        for action in self.timeline.run(steps):
            if isinstance(action, At):
                delay = self.timeline_start + action.offset - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            elif isinstance(action, Pause):
                time.sleep(action.seconds)
            else:
                condition = action.condition
                try:
                    self.wait_until(action.what, lambda: self.holds(condition), action.timeout)
                except StepTimeout:
                    if action.required:
                        raise
                    self.progress(f"not every pair got there ({action.what}); going on")

    def measure_links(self) -> None:
        """UDP round trips over the impaired links, against their configuration, into
        link_rtt.json (one check per distinct link, run side by side)."""
        checks = link_checks(self.plan)
        if not checks:
            return
        self.progress(f"measuring {len(checks)} impaired link(s) with UDP echoes")
        rows: list[dict[str, Any]] = []

        def check(c: Any) -> None:
            target_ip = str(self.plan.nodes[c.target].ip)
            server = subprocess.Popen(
                [*self.backend.netns_command(c.target), self.backend.netns_python, "-m",
                 "p2plab.linkcheck", "serve", "--ip", target_ip, "--port", str(c.port),
                 "--seconds", "90"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                text=True, start_new_session=True)
            try:
                # On a loaded host the echo server can take seconds to start: wait for it.
                assert server.stdout is not None
                ready = select.select([server.stdout], [], [], 20)[0]
                if not ready or server.stdout.readline().strip() != "listening":
                    result: dict[str, Any] = {"error": "the echo server did not start in 20 s"}
                else:
                    done = subprocess.run(
                        [*self.backend.netns_command(c.source), self.backend.netns_python, "-m",
                         "p2plab.linkcheck", "ping", "--ip", target_ip, "--port", str(c.port)],
                        capture_output=True, text=True, timeout=60)
                    result = json.loads(done.stdout) if done.returncode == 0 else {
                        "error": done.stderr.strip()[-300:]}
            except subprocess.TimeoutExpired:
                result = {"error": "no answer within 60 s"}
            finally:
                stop_children([server])
            measured = result.get("median_ms")
            rows.append({"pair": f"{c.source}->{c.target}", "configured_ms": c.configured_rtt_ms,
                         "measured_ms": measured, **result,
                         "error_pct": (round(100 * (measured - c.configured_rtt_ms)
                                             / c.configured_rtt_ms, 1)
                                       if measured is not None and c.configured_rtt_ms else None)})

        with ThreadPoolExecutor(4) as pool:
            list(pool.map(check, checks))
        rows.sort(key=lambda r: r["pair"])
        write_atomic(self.run_dir / "link_rtt.json", json.dumps(
            {"mechanism": self.links.mechanism, "pairs": rows}, indent=2) + "\n")

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
            done = self[f"probe.{lan}"].exec(argv)
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
        write_atomic(self.run_dir / "nat_probe.json", json.dumps(results, indent=2) + "\n")
        for lan, r in results.items():
            if not r["matches"]:
                self.progress(f"NAT of {lan} does not behave as declared: "
                              + "; ".join(r["mismatches"]))
        return results

    def finish_publishing(self) -> None:
        """Wait for every publish plan to have gone out (with slack for a slow host)."""
        timeout = max(0.0, self.publish_deadline - time.monotonic()) + 10.0
        def published(node: str, flow: str) -> int:
            return sum(1 for e in self.tail.of(node, "message_published") if e.get("flow") == flow)

        self.wait_until(
            "publishers to finish",
            lambda: all(published(n, flow) >= count
                        for (n, flow), count in list(self.expected_flows.items())
                        if n not in self.down),
            timeout,
        )

    def stop_nodes(self) -> None:
        self.cpu.stop()
        self.links.stop_all()
        if self.lab_events is not None:
            self.lab_events.close()
            self.lab_events = None
        for name in self.plan.nodes:
            if self.backend.node_running(name):
                try:
                    self.send(name, {"cmd": "quit"})
                except StepFailed:
                    pass
        for name in self.plan.nodes:
            self.backend.stop_node(name, STOP_TIMEOUT_S)
        self.tail.poll()
        self.tail.close()

    def run(self) -> RunOutcome:
        error: str | None = None
        try:
            self.start_captures(list(self.plan.routers))
            self.cpu.start()
            if self.plan.probing:
                self.probe_nats()
            self.start_nodes()
            self.measure_links()
            self.timeline_start = time.monotonic()
            self.run_timeline()
            self.finish_publishing()
            time.sleep(self.plan.scenario.settle)
        except StepFailed as exc:
            error = str(exc)
            self.progress(f"timeline failed: {error}")
        timeline_end = time.time()
        self.cpu.stop()
        self.rss_mb = {name: self.backend.node_rss_mb(name) for name in self.plan.nodes}
        return RunOutcome(self.run_dir, error, timeline_end)


def execute(scenario_path: Path, scenario: Scenario, backend: Backend,
            run_id: str, run_dir: Path, progress: Callable[[str], None],
            probe: bool | None = None, keep: bool = False,
            capture: bool = False, record: RunRecord | None = None) -> RunOutcome:
    """Create the lab, run the timeline, and tear down: always, except that ``keep``
    leaves a lab whose timeline ended up and running (recorded for exec and down).

    The first SIGINT, SIGTERM or SIGHUP stops the run; from then on until teardown is
    complete every further one is ignored, so a second Ctrl-C cannot cut teardown short.
    The manifest records the end either way: ``ended`` and, if stopped, ``interrupted``
    (the report then says INTERRUPTED, never PASS)."""
    plan = build_plan(scenario, probing=probe)
    write_manifest(run_dir, scenario_path.read_text(), plan, backend, run_id,
                   scenario_file=str(scenario_path))
    previous = stop_on_signals()
    runner = Runner(plan, backend, run_dir, progress, capture=capture)
    started = time.time()
    kept = False
    interrupted: str | None = None
    outcome = RunOutcome(run_dir, "the run stopped before its timeline ended", started)
    # The host's ARP table is shared by every namespace: a big lab needs it bigger.
    limits = NeighbourLimits(plan.neighbour_entries())
    try:
        limits.apply()
        progress(f"creating the lab on {backend.name}")
        backend.create(plan, run_dir)
        outcome = runner.run()
        if keep:
            hosts = [*plan.routers, *(h.name for h in plan.hosts())]
            KeptLab(run_id, backend.name, str(run_dir), hosts,
                    [p.pid for p in [*runner.captures.values(),
                                     *runner.links.stages.values()]],
                    host_limits=limits.state(), details=backend.kept_details()).save()
            if record is not None:
                record.kept = True
                record.save()
            kept = True
            progress(f"lab kept up (run id {run_id}): p2plab exec HOST -- sh; p2plab down")
    except KeyboardInterrupt as exc:
        interrupted = signal_name(exc)
        raise
    finally:
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
        try:
            if not kept:
                try:
                    runner.stop_captures()
                    runner.stop_nodes()
                finally:
                    backend.destroy()
                    limits.restore()
            write_manifest(run_dir, scenario_path.read_text(), plan, backend, run_id,
                           started=started, timeline_end=outcome.timeline_end,
                           ended=time.time(), timeline_error=outcome.timeline_error,
                           interrupted=interrupted,
                           node_spawned=runner.spawned, node_rss_mb=runner.rss_mb,
                           steps=runner.timeline.steps, link_shaping=runner.links.describe(),
                           implementations=runner.implementations(),
                           host_limits=limits.describe())
        finally:
            restore(previous)
    return outcome
