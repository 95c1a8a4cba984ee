"""The one lab lifecycle (``compose/lab/lifecycle.py``) over a fake backend: what every
path that runs a lab gets (checks before anything is made, ownership, the manifest,
teardown on failure and on Ctrl-C, the pytest fixture's lab is the CLI's), without
root or containers. The fake's nodes answer the node contract by writing events."""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Callable, Container
from pathlib import Path
from typing import Any, ClassVar

import pytest
from p2plab.compose.backends.base import Backend, BackendError, LocalHosts
from p2plab.compose.lab import ownership
from p2plab.compose.lab.lifecycle import MAX_EMULATED_NODES, Lab
from p2plab.compose.lab.runner import Runner
from p2plab.topology.plan import LabPlan, Programs, build_plan

from p2plab.events import EventWriter

pytestmark = pytest.mark.quick

SCENARIO = """
name: fake-lan
seed: 5
lans:
  - {name: office, subnet: 10.9.0.0/24, nat: null}
nodes:
  - {name: n1, lan: office}
  - {name: n2, lan: office}
  - {name: n3, lan: office}
timeline:
  - {wait: topic-peers, nodes: [n1, n2, n3], min: 2, timeout: 10}
  - {publish: [n1], count: 3, size: 50, rate: 20}
expect:
  delivery_ratio_min: 1.0
"""


class FakeBackend(LocalHosts):
    """Hosts that exist only as event logs: a started node says so, is connected to
    every other started node and meshed with them; a publish command is published and
    received by every other running node at once; quit stops it."""

    name = "fake"
    python = "python"
    calls: ClassVar[list[str]] = []  # every call of every instance, for the tests to read
    fail_create = False

    def __init__(self, run_id: str, log: Callable[[str], None] = lambda message: None) -> None:
        super().__init__(run_id, log)
        self.plan: LabPlan | None = None
        self.writers: dict[str, EventWriter] = {}
        self.running: set[str] = set()

    def _call(self, what: str) -> None:
        FakeBackend.calls.append(what)

    def programs(self) -> Programs:
        return {"py": ["python"], "rust": ["p2plab-node-rs"]}

    def check_environment(self, plan: Any) -> None:
        self._call("check_environment")

    def check_address_space(self, subnets: list[str]) -> None:
        self._call(f"check_address_space {' '.join(subnets)}")

    def create(self, plan: LabPlan, run_dir: Path) -> None:
        self._call("create")
        self.plan, self.run_dir = plan, run_dir
        if self.fail_create:
            raise BackendError("the fake engine refused part of the lab")

    def _writer(self, name: str) -> EventWriter:
        assert self.run_dir is not None
        if name not in self.writers:
            self.writers[name] = EventWriter.open(name, self.run_dir / "events" / f"{name}.jsonl")
        return self.writers[name]

    def start_node(self, name: str) -> None:
        assert self.plan is not None
        self._call(f"start {name}")
        node = self.plan.nodes[name]
        self.running.add(name)
        self._writer(name).emit("node_started", peer_id=node.peer_id, listen_addrs=[],
                                announced_addrs=[], role=node.role, topic="chat")
        for other in sorted(self.running - {name}):
            for a, b, direction in ((name, other, "outbound"), (other, name, "inbound")):
                self._writer(a).emit("connection_opened", peer=self.plan.nodes[b].peer_id,
                                     remote_addr="", kind="direct", transport="tcp",
                                     direction=direction)
        for each in sorted(self.running):
            mesh = [self.plan.nodes[o].peer_id for o in sorted(self.running - {each})]
            self._writer(each).emit("topic_peers", topic="chat", peers=mesh, mesh=mesh)

    def send_command(self, host: str, command: dict[str, Any]) -> None:
        assert self.plan is not None
        self._call(f"command {host} {command['cmd']}")
        if command["cmd"] == "publish":
            for seq in range(1, command["count"] + 1):
                fields = {"msg_id": f"{host}/{seq}", "origin": self.plan.nodes[host].peer_id,
                          "seq": seq, "size": command["size"], "topic": command["topic"]}
                self._writer(host).emit("message_published", flow=command["flow"], **fields)
                for other in sorted(self.running - {host}):
                    self._writer(other).emit("message_received", **fields)
        elif command["cmd"] == "quit":
            self._writer(host).emit("node_stopped", reason="quit")
            self.running.discard(host)

    def stop_node(self, name: str, timeout: float) -> int | None:
        self._call(f"stop {name}")
        self.running.discard(name)
        return 0

    def kill_node(self, name: str) -> None:
        self.running.discard(name)

    def node_running(self, name: str) -> bool:
        return name in self.running

    def reconfigure_router(self, name: str, ruleset: str, sysctls: dict[str, str]) -> None:
        raise BackendError("the fake has no routers")

    def node_rss_mb(self, name: str) -> float | None:
        return 12.5 if name in self.running else None

    def host_pid(self, host: str) -> int | None:
        return None

    def exec(self, host: str, argv: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(argv, 0, f"{host} ran {' '.join(argv)}", "")

    def exec_argv(self, host: str, argv: list[str], interactive: bool = False) -> list[str]:
        return ["fake-exec", host, *argv]

    def netns_command(self, host: str) -> list[str]:
        return ["fake-netns", host]

    def take_down(self) -> list[str]:
        return []

    @classmethod
    def clean(cls, spare: Container[str], logs_dirs: dict[str, Path]) -> list[str]:
        return []

    def destroy(self) -> None:
        self._call("destroy")
        for writer in self.writers.values():
            writer.close()
        self.writers.clear()

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "kernel": "fake", "nat": "none"}


@pytest.fixture
def scenario(tmp_path: Path) -> Path:
    FakeBackend.calls = []
    FakeBackend.fail_create = False
    path = tmp_path / "fake-lan.yaml"
    path.write_text(SCENARIO)
    return path


def manifest_of(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "manifest.json").read_text())


def test_a_lab_runs_its_timeline_and_leaves_a_whole_results_folder(scenario: Path,
                                                                    tmp_path: Path) -> None:
    before = signal.getsignal(signal.SIGTERM)
    with Lab(scenario, FakeBackend, tmp_path / "results") as lab:
        assert lab.run_id in {r.run_id for r in ownership.records()}  # owned while it runs
        lab.run()
    assert lab.timeline_error is None
    assert lab.run_dir is not None
    manifest = manifest_of(lab.run_dir)
    assert manifest["backend"] == "fake" and manifest["interrupted"] is None
    assert manifest["timeline_error"] is None and manifest["ended"] >= manifest["started"]
    assert set(manifest["node_rss_mb"]) == {"n1", "n2", "n3"}
    assert manifest["implementations"]["py"]["nodes"] == ["n1", "n2", "n3"]
    assert (lab.run_dir / "scenario.yaml").read_text() == SCENARIO
    received = [json.loads(line) for line in
                (lab.run_dir / "events" / "n3.jsonl").read_text().splitlines()]
    assert sum(e["type"] == "message_received" for e in received) == 3
    # Checked before anything was made; stopped, then destroyed; the run released.
    calls = FakeBackend.calls
    (checked,) = [c for c in calls if c.startswith("check_address_space")]
    assert "10.9.0.0/24" in checked.split()
    assert calls.index("check_environment") < calls.index(checked) < calls.index("create") \
        < calls.index("start n1")
    assert calls.index("command n1 quit") < calls.index("stop n1") < calls.index("destroy")
    assert lab.run_id not in {r.run_id for r in ownership.records()}
    assert signal.getsignal(signal.SIGTERM) == before


def test_a_lab_that_cannot_be_built_leaves_nothing(scenario: Path, tmp_path: Path) -> None:
    FakeBackend.fail_create = True
    lab = Lab(scenario, FakeBackend, tmp_path / "results")
    with pytest.raises(BackendError, match="refused part of the lab"), lab:
        pytest.fail("a lab that failed to build is not entered")
    assert "destroy" in FakeBackend.calls
    assert lab.run_dir is not None and not lab.run_dir.exists()
    assert lab.run_id not in {r.run_id for r in ownership.records()}


def test_an_interrupted_lab_is_torn_down_and_says_so(scenario: Path, tmp_path: Path) -> None:
    lab = Lab(scenario, FakeBackend, tmp_path / "results")
    with pytest.raises(KeyboardInterrupt), lab:
        lab.start()
        raise KeyboardInterrupt
    assert FakeBackend.calls[-1] == "destroy"
    assert lab.run_dir is not None and manifest_of(lab.run_dir)["interrupted"] == "SIGINT"
    assert lab.run_id not in {r.run_id for r in ownership.records()}


def test_every_path_refuses_a_lab_too_big_to_emulate_before_making_anything(
        tmp_path: Path) -> None:
    """The pytest fixture used to skip the CLI's checks: the one Lab has them all."""
    FakeBackend.calls = []
    path = tmp_path / "big.yaml"
    path.write_text(f"""
name: big
lans: [{{name: office, subnet: 10.8.0.0/16, nat: null}}]
nodes: [{{name: n, lan: office, count: {MAX_EMULATED_NODES + 1}}}]
""")
    with pytest.raises(BackendError, match="--backend sim"):
        Lab(path, FakeBackend, tmp_path / "results").open()
    assert FakeBackend.calls == [] and not (tmp_path / "results").exists()


def test_host_handles_reach_the_backend(scenario: Path, tmp_path: Path) -> None:
    with Lab(scenario, FakeBackend, tmp_path / "results") as lab:
        lab.start()
        assert lab["n2"].argv(["ip", "addr"]) == ["fake-exec", "n2", "ip", "addr"]
        assert lab["n2"].exec(["true"]).stdout == "n2 ran true"
        assert [e["type"] for e in lab["n1"].events("node_started")] == ["node_started"]
        lab.step({"publish": ["n2"], "count": 2, "size": 10, "rate": 10})
        lab.wait_for("n1 got n2's messages",
                     lambda: len(lab["n1"].events("message_received")) >= 2, timeout=5)
        with pytest.raises(KeyError):
            lab["nobody"]


def test_a_runner_asks_its_backend_for_a_host_command_line(tmp_path: Path,
                                                            scenario: Path) -> None:
    """On swarm, a host's command line goes to the host's engine through its agent,
    not to a local docker (the runner used to build `docker exec` for every
    container backend)."""
    from p2plab.compose.backends.swarm.backend import SwarmBackend
    from p2plab.compose.backends.swarm.engines import EngineHandle
    from p2plab.compose.backends.swarm.settings import SwarmSettings
    from p2plab.compose.backends.swarm.tls import RunCertificates
    from p2plab.topology.loading import load_scenario

    plan = build_plan(load_scenario(scenario))
    backend = SwarmBackend("abcdef")
    backend.settings = SwarmSettings("tcp://100.126.0.11:2375", "100.126.0.1:5000",
                                     "/var/run/docker.sock")
    backend.certs = RunCertificates(tmp_path / "certs")
    backend.image = "p2plab-node:test"
    engine = EngineHandle("id1", "p2plab-e2", "100.126.0.12")
    backend.engines = [engine]
    backend.where = {name: engine for name in plan.nodes}
    runner = Runner(plan, backend, tmp_path)
    argv = runner["n1"].argv(["ip", "addr"])
    assert argv[:3] == ["docker", "--host", f"tcp://100.126.0.12:{backend.port}"]
    assert argv[-4:] == ["-i", "p2pl-abcdef-n1", "ip", "addr"]


def test_a_backend_is_an_object_chosen_by_name_in_one_place() -> None:
    from p2plab.compose.backends import registry

    for name in registry.EXECUTORS:
        if registry.is_simulator(name):
            with pytest.raises(BackendError, match="--backend sim"):
                registry.backend_class(name)
        else:
            kind = registry.backend_class(name)
            assert issubclass(kind, Backend) and kind.name == name
    with pytest.raises(BackendError, match="available: docker, netns, swarm"):
        registry.make_backend("vm", "abcdef")


def test_a_tests_labs_close_last_first_and_leave_the_process_as_it_was(
        scenario: Path, tmp_path: Path) -> None:
    import os

    from p2plab.compose.lab.ownership import RUN_ENV

    from p2plab.testing import _close_all

    env, handler = os.environ.get(RUN_ENV), signal.getsignal(signal.SIGINT)
    labs = [Lab(scenario, FakeBackend, tmp_path / f"r{i}") for i in range(2)]
    for lab in labs:
        lab.open()
        lab.start()
    assert os.environ.get(RUN_ENV) == labs[1].run_id
    _close_all(list(reversed(labs)))
    assert os.environ.get(RUN_ENV) == env and signal.getsignal(signal.SIGINT) == handler
    assert FakeBackend.calls.count("destroy") == 2


def test_a_tests_lab_raises_a_failed_step(scenario: Path, tmp_path: Path) -> None:
    """In a user's test a step that times out fails the test; in a run it is reported."""
    from p2plab.compose.lab.runner import StepFailed

    never = [{"wait": "connection", "between": ["n1", "n2"], "kind": "relayed", "timeout": 1}]
    from p2plab.topology.schema import Step
    from pydantic import TypeAdapter

    steps = [TypeAdapter(Step).validate_python(s) for s in never]
    with Lab(scenario, FakeBackend, tmp_path / "a", raise_step_failures=True) as lab:
        lab.start()
        with pytest.raises(StepFailed, match="timed out"):
            lab.play(steps)
    with Lab(scenario, FakeBackend, tmp_path / "b") as lab:
        lab.start()
        lab.play(steps)
        assert lab.timeline_error is not None and "timed out" in lab.timeline_error
    assert lab.run_dir is not None
    assert "timed out" in manifest_of(lab.run_dir)["timeline_error"]


def test_a_wait_before_the_nodes_start_is_not_failed_by_nodes_not_yet_started(
        scenario: Path, tmp_path: Path) -> None:
    """The NAT probe waits for its reflectors before any node starts (a test's lab with
    probe=True); a node that was started and exits fails a wait at once."""
    from p2plab.compose.lab.runner import StepFailed

    with Lab(scenario, FakeBackend, tmp_path / "r") as lab:
        assert lab.runner is not None
        polls = iter([False, False, True])
        lab.runner.waits.wait_until("something", lambda: next(polls), 5)
        lab.start()
        assert isinstance(lab.backend, FakeBackend)
        lab.backend.running.discard("n2")  # it crashed
        with pytest.raises(StepFailed, match="node n2 exited"):
            lab.wait_for("n2's messages", lambda: False, timeout=5)


def test_a_timed_out_wait_names_who_is_missing(tmp_path: Path) -> None:
    """gossip-50's mesh wait once timed out "at boot-1, boot-2, ... and 44 more": every
    node waited for. The message must name the nodes that lacked the mesh."""
    from p2plab.compose.lab.events_tail import EventTail
    from p2plab.compose.lab.waits import Waits
    from p2plab.topology.loading import load_scenario
    from p2plab.topology.timeline import MeshAtLeast

    from p2plab.resources import scenarios_dir

    plan = build_plan(load_scenario(scenarios_dir() / "nat-relay.yaml"))
    events = tmp_path / "events"
    events.mkdir()
    for node, mesh in (("alice", ["x"]), ("bob", [])):
        writer = EventWriter.open(node, events / f"{node}.jsonl")
        writer.emit("topic_peers", topic="chat", peers=["x"], mesh=mesh)
        writer.close()
    tail = EventTail(events)
    tail.poll()
    waits = Waits(plan, backend=None, tail=tail, down=set(), started={})  # type: ignore[arg-type]
    condition = MeshAtLeast(("alice", "bob"), 1)
    assert not waits.holds(condition)
    assert list(waits.unmet(condition)) == ["bob"]
    assert waits.holds(MeshAtLeast(("alice",), 1))
