"""The runner: the timeline's primitives over a backend, for a lab that ``Lab`` has
created (``lifecycle.py`` owns creation and teardown).

The timeline's meaning is ``topology/timeline.py``'s; the runner supplies what each step
does to the lab (publish, kill, restart, partition, set-nat, ...), starts and stops the
nodes, and composes the lab's services: the live event tail and the wait conditions over
it (``waits``), packet capture (``capture``), the NAT probe (``probes``), the link RTT
check (``link_rtt``), link shaping and fault filters, CPU sampling and the lab's own
event log.
"""

from __future__ import annotations

import functools
import subprocess
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from p2plab.compose.backends.base import Backend
from p2plab.compose.lab.capture import Captures
from p2plab.compose.lab.conntrack_log import ConntrackLogs
from p2plab.compose.lab.cpu import CpuSampler
from p2plab.compose.lab.events_tail import EventTail
from p2plab.compose.lab.fault_filters import FaultFilters
from p2plab.compose.lab.hosts import Host
from p2plab.compose.lab.link_rtt import measure_links
from p2plab.compose.lab.links import LinkShaper
from p2plab.compose.lab.probes import probe_nats
from p2plab.compose.lab.waits import StepFailed, StepTimeout, Waits
from p2plab.topology.plan import LabPlan
from p2plab.topology.schema import LAB_EVENTS, Publish
from p2plab.topology.timeline import At, Pause, Timeline, names

from p2plab.control import ControlError
from p2plab.events import EventWriter

READY_TIMEOUT_S = 30.0
# Each node imports py-libp2p (about 1 s of CPU): a big lab on a small machine needs time.
READY_S_PER_NODE = 1.5
STOP_TIMEOUT_S = 5.0  # the node contract: exit within 5 s of SIGTERM
# How much longer than its settle time a run waits while messages are still arriving.
SETTLE_STRETCH_S = 20.0

__all__ = ["Runner", "StepFailed", "StepTimeout"]


class Runner:
    def __init__(self, plan: LabPlan, backend: Backend, run_dir: Path,
                 progress: Callable[[str], None] = lambda message: None,
                 capture: bool = False) -> None:
        self.plan = plan
        self.backend = backend
        self.run_dir = run_dir
        self.tail = EventTail(run_dir / "events")
        self.progress = progress
        self.spawned: dict[str, float] = {}
        self.rss_mb: dict[str, float | None] = {}
        self.timeline = Timeline(plan.scenario, self)
        self.publish_deadline = 0.0
        # (publisher, flow) -> messages still to be seen published
        self.expected_flows: dict[tuple[str, str], int] = {}
        self.down: set[str] = set()  # killed and not restarted
        self.waits = Waits(plan, backend, self.tail, self.down, self.spawned)
        self.captures = Captures(backend, run_dir, capture)
        self.conntrack = ConntrackLogs(backend, run_dir, plan.scenario.file.forensics)
        self.links = LinkShaper(plan, backend, run_dir, progress)
        self.faults = FaultFilters(plan, backend)
        self.lab_events: EventWriter | None = None
        self._lab_lock = threading.Lock()
        self.cpu = CpuSampler(self.cpu_keys, self.cpu_pid, self.lab_event)
        self.timeline_start = 0.0
        self.settled_s: float | None = None  # how long the run settled (see settle())

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
        return self.backend.exec_argv(host, argv)

    def events_of(self, host: str, type_: str | None) -> list[dict[str, Any]]:
        self.tail.poll()
        return self.tail.of(host, type_)

    def send_to(self, host: str, command: dict[str, Any]) -> None:
        self.backend.send_command(host, command)

    def kill_host(self, host: str) -> None:
        """A kill outside the timeline, recorded like the timeline's own."""
        self.kill([host])
        self.lab_event("fault", action="kill", targets=[host])

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
        self.captures.start(list(self.plan.nodes))
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
        self.waits.restarting(nodes)
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
                    self.wait_until(action.what, functools.partial(self.waits.holds, condition),
                                    action.timeout)
                except StepTimeout as exc:
                    if action.required:  # say who is missing, not only who was waited for
                        raise StepTimeout(f"{exc}; not there: "
                                          f"{names(list(self.waits.unmet(condition)))}") from None
                    self.progress(f"not all there in time ({action.what}); going on")

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

    def start(self) -> None:
        """Captures, CPU sampling, the NAT probe (if planned), every node started and
        ready, the impaired links measured."""
        self.captures.start(list(self.plan.routers))
        self.conntrack.start(list(self.plan.routers))
        self.cpu.start()
        if self.plan.probing:
            self.probe_nats()
        self.start_nodes()
        measure_links(self.plan, self.backend, self.run_dir, self.links.mechanism or "none",
                      self.progress)

    def play(self, steps: list[Any] | None = None) -> None:
        """The timeline (the scenario's, or ``steps``) from now, until every publish has
        gone out, and the scenario's settle time; then the nodes' memory is read."""
        self.timeline_start = time.monotonic()
        try:
            self.run_timeline(steps)
            self.finish_publishing()
            self.settle()
        except StepFailed:
            self.read_memory()
            raise
        self.read_memory()

    def settle(self) -> None:
        """The scenario's settle time, stretched while messages still arrive: the run ends
        after ``settle`` seconds with no new delivery (at most SETTLE_STRETCH_S more). A
        busy host delivers late, and lateness is the latency bounds' to judge; a lost
        message never arrives, so delivery still fails when messages are lost."""
        quiet_s = self.plan.scenario.settle
        started = last_news = time.monotonic()
        self.tail.poll()
        seen = self.tail.received
        while True:
            now = time.monotonic()
            if now - last_news >= quiet_s or now - started >= quiet_s + SETTLE_STRETCH_S:
                break
            time.sleep(min(0.2, max(0.0, quiet_s - (now - last_news))))
            self.tail.poll()
            if self.tail.received != seen:
                seen, last_news = self.tail.received, time.monotonic()
        self.settled_s = round(time.monotonic() - started, 2)

    def read_memory(self) -> None:
        """Each node's resident memory, for the manifest (a courtesy: never fails a run)."""
        for name in self.plan.nodes:
            try:
                self.rss_mb[name] = self.backend.node_rss_mb(name)
            except Exception:  # an engine gone: no figure for that node
                self.rss_mb[name] = None

    def probe_nats(self) -> dict[str, Any]:
        """Classify every LAN's NAT with the probe and compare with what was declared."""
        return probe_nats(self)

    def wait_until(self, what: str, condition: Callable[[], bool], timeout: float) -> None:
        self.waits.wait_until(what, condition, timeout)

    def stop_captures(self) -> None:
        self.captures.stop()
        self.conntrack.stop()
