"""The swarm backend's parts that need no cluster: placement, address ranges, clocks,
certificates, the agent's relay and the report's engines section."""

from __future__ import annotations

import ipaddress
import socket
import ssl
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from p2plab.compose.backends.base import BackendError
from p2plab.compose.backends.swarm import clocks, placement, settings
from p2plab.compose.backends.swarm.tls import issue
from p2plab.topology.loading import ScenarioError, load_scenario, parse_scenario
from p2plab.topology.placement import engine_attributes, parse_constraint
from p2plab.topology.plan import build_plan

pytestmark = pytest.mark.quick
SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"


@dataclass
class FakeEngine:
    hostname: str
    attributes: dict[str, str] = field(default_factory=dict)


def engines(*names: str, **labels: dict[str, str]) -> list[FakeEngine]:
    return [FakeEngine(n, {"node.hostname": n, "node.role": "worker",
                           **{f"node.labels.{k}": v for k, v in labels.get(n, {}).items()}})
            for n in names]


def test_spread_puts_every_router_away_from_its_lans_first_node() -> None:
    plan = build_plan(load_scenario(SCENARIOS / "gossip-50.yaml"))
    where = placement.place(plan, engines("e1", "e2", "e3"))
    assert set(where) == {*plan.routers, *(h.name for h in plan.hosts())}
    assert {e.hostname for e in where.values()} == {"e1", "e2", "e3"}
    for name, router in plan.routers.items():
        lan_hosts = [h.name for h in plan.hosts() if h.segment == router.lan]
        assert where[name] is not where[lan_hosts[0]], name
    counts = placement.counts(where)
    assert max(counts.values()) - min(counts.values()) <= 2
    # Without constraints, spread is round-robin in the plan's order.
    hosts = [h.name for h in plan.hosts()]
    assert [where[h].hostname for h in hosts[:6]] == ["e1", "e2", "e3"] * 2


def test_pack_and_unknown_strategies(monkeypatch: pytest.MonkeyPatch) -> None:
    plan = build_plan(load_scenario(SCENARIOS / "nat-relay.yaml"))
    monkeypatch.setenv("P2PLAB_PLACEMENT", "pack")
    assert {e.hostname for e in placement.place(plan, engines("e1", "e2")).values()} == {"e1"}
    monkeypatch.setenv("P2PLAB_PLACEMENT", "random")
    with pytest.raises(BackendError, match="spread, pack"):
        placement.place(plan, engines("e1", "e2"))


PLACED = """\
name: placed
lans:
  - {name: home, count: 2, subnet: 10.30.0.0/16, nat: port-restricted,
     placement: {constraints: ["node.labels.zone==edge"]}}
nodes:
  - {name: relay, lan: public, role: relay, placement: {constraints: ["node.hostname==e3"]}}
  - {name: core, count: 4, lan: public, placement: {constraints: ["node.labels.zone!=edge"]}}
  - {name: peer, count: 4, lan: [home-*], placement: {strategy: pack}}
"""


def test_group_placement_follows_constraints_and_strategy() -> None:
    plan = build_plan(parse_scenario(PLACED, "placed.yaml"))
    cluster = engines("e1", "e2", "e3", "e4", e1={"zone": "edge"}, e4={"zone": "edge"})
    where = {name: e.hostname for name, e in placement.place(plan, cluster).items()}
    assert where["relay"] == "e3"
    assert {where[f"core-{i}"] for i in range(1, 5)} == {"e2", "e3"}  # not the edge
    assert {where[f"peer-{i}"] for i in range(1, 5)} == {"e1"}  # packed, first engine
    # Routers on the edge engines, the next after their LAN's first node's (e1).
    assert {where[r] for r in plan.routers} == {"e4"}
    used = placement.rules_used(plan, placement.place(plan, cluster))
    assert used["nodes group 'relay'"] == {"constraints": ["node.hostname==e3"],
                                           "strategy": None, "engines": ["e3"]}
    assert used["routers of lans 'home'"]["engines"] == ["e4"]
    assert used["nodes group 'peer'"]["strategy"] == "pack"


def test_a_group_no_engine_qualifies_for_is_refused_with_what_engines_offer() -> None:
    plan = build_plan(parse_scenario(PLACED, "placed.yaml"))
    with pytest.raises(BackendError) as refused:
        placement.place(plan, engines("e1", "e2", "e3"))
    message = str(refused.value)
    assert "routers of lans 'home'" in message and "node.labels.zone==edge" in message
    assert "e1 (node.hostname=e1, node.role=worker)" in message
    assert "docker node update --label-add" in message


@pytest.mark.parametrize("constraint, error", [
    ("node.zone==eu", "'node.zone' is not something a constraint can name"),
    ("node.labels.zone=eu", "write KEY==VALUE or KEY!=VALUE"),
    ("node.role==boss", "node.role is manager or worker"),
    ("node.labels.==x", "is not something a constraint can name"),
])
def test_bad_constraints_name_the_file_line_and_fix(constraint: str, error: str) -> None:
    text = PLACED.replace("node.hostname==e3", constraint)
    with pytest.raises(ScenarioError) as bad:
        parse_scenario(text, "placed.yaml")
    assert "placed.yaml:6: nodes[0].placement.constraints" in str(bad.value)
    assert error in str(bad.value)


def test_constraints_compare_like_swarm() -> None:
    eu = {"node.hostname": "Edge-1", "node.labels.zone": "eu", "node.role": "manager"}
    assert parse_constraint("node.hostname==edge-1").holds_for(eu)  # names: any case
    assert not parse_constraint("node.labels.zone==EU").holds_for(eu)  # labels: exact
    assert parse_constraint("node.labels.rack!=r1").holds_for(eu)  # missing label: !=
    assert not parse_constraint("node.labels.rack==r1").holds_for(eu)
    assert parse_constraint(" node.role == manager ").holds_for(eu)
    node = {"ID": "abc", "Spec": {"Role": "worker", "Labels": {"zone": "eu"}},
            "Description": {"Hostname": "h", "Platform": {"OS": "linux",
                                                          "Architecture": "x86_64"},
                            "Engine": {"Labels": {"disk": "ssd"}}}}
    assert engine_attributes(node) == {
        "node.id": "abc", "node.hostname": "h", "node.role": "worker",
        "node.platform.os": "linux", "node.platform.arch": "x86_64",
        "node.labels.zone": "eu", "engine.labels.disk": "ssd"}


def test_dynamic_range_avoids_the_plans_addresses() -> None:
    subnet = ipaddress.IPv4Network("10.1.0.0/24")
    used = {"10.1.0.1", "10.1.0.2", "10.1.0.250"}
    block = placement.dynamic_range(subnet, used, engines=3)
    assert block.subnet_of(subnet)
    assert not any(ipaddress.IPv4Address(a) in block for a in used)
    assert block.num_addresses - 3 >= 3
    with pytest.raises(BackendError, match="bigger subnet"):
        placement.dynamic_range(ipaddress.IPv4Network("10.1.0.0/29"),
                                {f"10.1.0.{i}" for i in range(1, 7)}, engines=2)


def test_clock_offset_is_the_best_round_trips() -> None:
    """An engine 250 ms ahead, with round trips of 10 ms and one of 2 ms: the 2 ms one
    is used and bounds the error."""
    now = [1000.0]
    trips = iter([0.010, 0.002, 0.010, 0.010])

    def sample() -> tuple[float, float, float]:
        rtt = next(trips)
        sent = now[0]
        now[0] += rtt
        return sent, sent + rtt / 2 + 0.250, now[0]

    offset = clocks.measure(sample, n=4)
    assert offset.offset_s == pytest.approx(0.250)
    assert offset.uncertainty_s == pytest.approx(0.001)
    assert offset.as_dict()["offset_ms"] == 250.0


def test_corrected_moves_event_times_and_keeps_fragments() -> None:
    lines = ('{"v":1,"t":100.5,"node":"a","type":"node_started"}\n'
             '{"v":1,"t":1\n')
    out = clocks.corrected(lines, 0.25).splitlines()
    assert out[0] == '{"v":1,"t":100.25,"node":"a","type":"node_started"}'
    assert out[1] == '{"v":1,"t":1'


def test_agent_ports_are_a_pair_in_range() -> None:
    ports = {settings.agent_port(f"{i:06x}") for i in range(200)}
    low, high = settings.AGENT_PORTS
    assert all(low <= p < high - 1 and p % 2 == 0 for p in ports)
    assert len(ports) > 150


def test_settings_need_a_swarm_and_a_registry(monkeypatch: pytest.MonkeyPatch,
                                              tmp_path: Path) -> None:
    from p2plab.compose.backends.swarm import cluster

    monkeypatch.setattr(cluster, "STATE_FILE", tmp_path / "none.json")
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    with pytest.raises(BackendError, match="make cluster"):
        settings.resolve()
    monkeypatch.setenv("DOCKER_HOST", "tcp://manager.example:2376")
    monkeypatch.delenv("P2PLAB_REGISTRY", raising=False)
    with pytest.raises(BackendError, match="--registry"):
        settings.resolve()
    monkeypatch.setenv("P2PLAB_REGISTRY", "registry.example:5000")
    chosen = settings.resolve()
    assert (chosen.manager, chosen.registry, chosen.engine_socket) == (
        "tcp://manager.example:2376", "registry.example:5000", "/var/run/docker.sock")


def test_agent_accepts_only_the_runs_certificates(tmp_path: Path) -> None:
    """The agent's TLS server: the run's runner certificate passes, another run's is
    refused."""
    from p2plab.compose.backends.swarm import agent

    ours = issue(tmp_path / "ours", "aaaaaa", ["127.0.0.1"])
    theirs = issue(tmp_path / "theirs", "bbbbbb", ["127.0.0.1"])
    server = agent.tls_context(ours.agent_cert, ours.agent_key, ours.ca)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    results: list[str] = []

    def accept(n: int) -> None:
        for _ in range(n):
            raw, _ = listener.accept()
            try:
                conn = server.wrap_socket(raw, server_side=True)
                conn.sendall(b"hello\n")
                results.append("served")
                conn.close()
            except ssl.SSLError:
                results.append("refused")
                raw.close()

    thread = threading.Thread(target=accept, args=(2,), daemon=True)
    thread.start()
    for certs in (ours, theirs):
        client = ssl.create_default_context(cafile=str(ours.ca))
        client.check_hostname = False
        client.load_cert_chain(certs.client_cert, certs.client_key)
        try:
            with client.wrap_socket(socket.create_connection(("127.0.0.1", port))) as conn:
                conn.recv(10)
        except (ssl.SSLError, OSError):
            pass
    thread.join(10)
    assert results == ["served", "refused"]


def test_report_lists_engines_and_clock_offsets() -> None:
    from p2plab.analysis.report_model import cluster_section

    assert cluster_section({"backend": "docker"}) is None
    offset = {"offset_ms": 0.5, "uncertainty_ms": 0.02, "samples": 15, "measured_at": 1.0}
    section = cluster_section({"cluster": {
        "manager": "unix:///m.sock", "registry": "r:5000",
        "engines": [{"hostname": "e1", "address": "10.0.0.2"},
                    {"hostname": "e2", "address": "10.0.0.3"}],
        "hosts_per_engine": {"e1": 3, "e2": 2},
        "clock_offsets": {"e1": offset, "e2": offset}, "clock_offsets_end": {"e1": offset}}})
    assert section is not None and "best of 15 round trips" in section.blocks[0].text
    table = section.blocks[1].table
    assert table is not None
    assert ["e1", "10.0.0.2", 3, "+0.500 ± 0.020", "+0.500 ± 0.020"] in table.rows
    assert ["e2", "10.0.0.3", 2, "+0.500 ± 0.020", "not measured"] in table.rows


def test_the_mirror_writes_events_on_the_runners_clock_and_captures_byte_for_byte(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What an agent streams: event lines (moved by the engine's offset), a rewritten
    link-stage file (reset), a pcap in base64 across two messages; nothing outside the
    mirrored folders."""
    import base64
    import json

    pcap = bytes(range(256)) * 3
    messages = [
        {"path": "events/a.jsonl", "reset": False, "base64": False,
         "data": '{"v":1,"t":100.5,"node":"a","type":"node_started"}\n'},
        {"path": "pcap/a.pcap", "reset": False, "base64": True,
         "data": base64.b64encode(pcap[:300]).decode()},
        {"path": "links/a.json", "reset": False, "base64": False, "data": "old"},
        {"path": "pcap/a.pcap", "reset": False, "base64": True,
         "data": base64.b64encode(pcap[300:]).decode()},
        {"path": "links/a.json", "reset": True, "base64": False, "data": "new"},
        {"path": "../escape.txt", "reset": False, "base64": False, "data": "x"},
        {"path": "top.txt", "reset": False, "base64": False, "data": "x"},
    ]
    left, right = socket.socketpair()
    monkeypatch.setattr(clocks, "MIRROR_DRAIN_S", 0.0)
    offset = clocks.ClockOffset(0.25, 0.001, samples=15, measured_at=0.0)
    mirror = clocks.EventMirror(lambda: right, tmp_path, offset, lambda m: None)
    mirror.start()
    assert left.recv(100) == b"mirror\n"
    left.sendall("".join(json.dumps(m) + "\n" for m in messages).encode())
    left.close()
    mirror.thread.join(timeout=5)
    mirror.stop()
    assert (tmp_path / "events" / "a.jsonl").read_text() == (
        '{"v":1,"t":100.25,"node":"a","type":"node_started"}\n')
    assert (tmp_path / "pcap" / "a.pcap").read_bytes() == pcap
    assert (tmp_path / "links" / "a.json").read_text() == "new"
    assert not (tmp_path / "top.txt").exists() and not (tmp_path.parent / "escape.txt").exists()


def test_a_kept_labs_down_replaces_what_the_runner_mirrored_with_the_engines_files(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`p2plab down` of a kept swarm lab syncs from the real agent code over the run's
    TLS: files the runner had mirrored in part are replaced whole (not appended to),
    events moved by the engine's offset, captures byte for byte."""
    from p2plab.compose.backends.swarm import agent
    from p2plab.compose.backends.swarm import kept as swarm_kept

    lab = tmp_path / "lab"
    for folder in agent.MIRRORED:
        (lab / folder).mkdir(parents=True)
    (lab / "events" / "alice.jsonl").write_text(
        '{"v":1,"t":10.5,"node":"alice","type":"node_started"}\n'
        '{"v":1,"t":20.5,"node":"alice","type":"message_published"}\n')
    capture = bytes(range(256)) * 40
    (lab / "pcap" / "alice.pcap").write_bytes(capture)
    monkeypatch.setattr(agent, "LAB", lab)
    certs = issue(tmp_path / "tls", "aaaaaa", ["127.0.0.1"])
    server = agent.tls_context(certs.agent_cert, certs.agent_key, certs.ca)
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        raw, _ = listener.accept()
        conn = server.wrap_socket(raw, server_side=True)
        assert conn.makefile("rb").readline() == b"mirror\n"
        try:
            agent.mirror(conn)
        except OSError:
            pass  # the runner hung up

    threading.Thread(target=serve, daemon=True).start()
    run_dir = tmp_path / "results"
    (run_dir / "events").mkdir(parents=True)
    (run_dir / "events" / "alice.jsonl").write_text(
        '{"v":1,"t":10.25,"node":"alice","type":"node_started"}\n')  # mirrored before
    keep = swarm_kept.SwarmKeep(
        manager="unix:///nowhere", engine_socket="/var/run/docker.sock", image="x",
        port=listener.getsockname()[1] - 1, certs=str(certs.folder),
        hosts={"alice": "127.0.0.1", "alice-gw": "127.0.0.1"}, offsets={"127.0.0.1": 0.25})
    synced = swarm_kept.sync(keep, run_dir)
    assert set(synced) == {"events/alice.jsonl", "pcap/alice.pcap"}
    assert (run_dir / "events" / "alice.jsonl").read_text() == (
        '{"v":1,"t":10.25,"node":"alice","type":"node_started"}\n'
        '{"v":1,"t":20.25,"node":"alice","type":"message_published"}\n')
    assert (run_dir / "pcap" / "alice.pcap").read_bytes() == capture
    argv = swarm_kept.exec_argv(keep, "aaaaaa", "alice", ["ip", "addr"])
    assert argv[:3] == ["docker", "--host", f"tcp://127.0.0.1:{keep.port}"]
    assert argv[-5:] == ["exec", "-i", "p2pl-aaaaaa-alice", "ip", "addr"]
    with pytest.raises(BackendError, match="no host 'bob' in this kept lab; hosts: alice"):
        swarm_kept.exec_argv(keep, "aaaaaa", "bob", ["sh"])
    with pytest.raises(BackendError, match="p2plab clean --kept"):
        swarm_kept.SwarmKeep.of({"manager": "x"})


def test_show_lists_each_groups_placement() -> None:
    from p2plab.topology.describe import describe

    text = describe(build_plan(parse_scenario(PLACED, "placed.yaml")))
    assert "Placement on a cluster (--backend swarm):" in text
    assert "nodes relay              node.hostname==e3; default strategy" in text
    assert "nodes peer               any engine; pack" in text
    assert "router of lans home      node.labels.zone==edge; default strategy" in text
    assert "Placement" not in describe(build_plan(load_scenario(SCENARIOS / "nat-relay.yaml")))


class _Sweep:
    """A swarm service as remove_stack sees it: tasks, then removal."""

    def __init__(self, manager: _Manager, name: str) -> None:
        self.manager, self.name = manager, name

    def tasks(self) -> list[dict[str, dict[str, str]]]:
        return [{"Status": {"State": "complete"}}, {"Status": {"State": "complete"}}]

    def remove(self) -> None:
        self.manager.removed.append(self.name)


@dataclass
class _Services:
    manager: _Manager

    def list(self, filters: dict[str, str]) -> list[_Sweep]:
        name = filters.get("name")
        return [self.manager.existing] if name and self.manager.existing else []

    def create(self, image: str, name: str, **kwargs: object) -> _Sweep:
        import docker
        import requests

        if self.manager.existing is not None:
            response = requests.Response()
            response.status_code = 409
            raise docker.errors.APIError("conflict", response=response,
                                         explanation=f"service {name} already exists")
        self.manager.created.append(name)
        return _Sweep(self.manager, name)

    def get(self, name: str) -> _Sweep:
        assert self.manager.existing is not None
        return self.manager.existing


@dataclass
class _Node:
    attrs: dict[str, dict[str, str]] = field(
        default_factory=lambda: {"Status": {"State": "ready"}})


@dataclass
class _Networks:
    run: str

    def list(self, filters: dict[str, str]) -> list[object]:
        return []


class _Manager:
    def __init__(self, run: str, other_cleaner_sweeping: bool) -> None:
        self.created: list[str] = []
        self.removed: list[str] = []
        self.existing = _Sweep(self, f"p2pl-{run}-sweep") if other_cleaner_sweeping else None
        self.services = _Services(self)
        self.nodes = type("Nodes", (), {"list": lambda _self: [_Node(), _Node()]})()
        self.secrets = type("Secrets", (), {"list": lambda _self, filters: []})()
        self.networks = _NetworksWithOne(run)
        # The manager's engine holds nothing of the run: its network names it.
        self.containers = type("Containers", (), {"list": lambda _self, all, filters: []})()
        self.volumes = type("Volumes", (), {"list": lambda _self, filters: []})()


class _NetworksWithOne(_Networks):
    """One network of the run left once (its stack's services already gone)."""

    def __init__(self, run: str) -> None:
        super().__init__(run)
        self.calls = 0

    def list(self, filters: dict[str, str]) -> list[object]:
        self.calls += 1
        if self.calls > 1:
            return []
        return [type("Net", (), {"attrs": {"Labels": {"p2plab.run": self.run}},
                                 "name": f"p2pl-{self.run}-public"})()]


@pytest.mark.parametrize("other_cleaner_sweeping", [False, True])
def test_two_cleaners_of_one_dead_run_do_not_collide(other_cleaner_sweeping: bool) -> None:
    """Two `p2plab clean`s at once (two test lanes) met one killed swarm run: the second
    must wait for the first one's sweep, not fail on a name conflict."""
    from p2plab.compose.backends.swarm.stack import remove_stack

    manager = _Manager("abc123", other_cleaner_sweeping)
    config = settings.SwarmSettings("unix:///x.sock", "127.0.0.1:5000", "/run/docker.sock")
    removed = remove_stack(manager, None, "img", config)
    if other_cleaner_sweeping:  # waited for it, then removed it (its owner may be dead)
        assert manager.created == [] and manager.removed == ["p2pl-abc123-sweep"]
        assert not any("containers and volumes" in r for r in removed)
    else:
        assert manager.created == ["p2pl-abc123-sweep"] == manager.removed
        assert "containers and volumes of run abc123 on every engine" in removed
