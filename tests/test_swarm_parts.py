"""The swarm backend's parts that need no cluster: placement, address ranges, clocks,
certificates, the agent's relay and the report's engines section."""

from __future__ import annotations

import ipaddress
import socket
import ssl
import threading
from pathlib import Path

import pytest

from p2plab.compose.backend import BackendError
from p2plab.compose.swarm import clocks, placement, settings
from p2plab.compose.swarm.tls import issue
from p2plab.topology.loading import load_scenario
from p2plab.topology.plan import build_plan

pytestmark = pytest.mark.quick
SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"


def test_spread_puts_every_router_away_from_its_lans_first_node() -> None:
    plan = build_plan(load_scenario(SCENARIOS / "gossip-50.yaml"))
    where = placement.spread(plan, ["e1", "e2", "e3"])
    assert set(where) == {*plan.routers, *(h.name for h in plan.hosts())}
    assert set(where.values()) == {"e1", "e2", "e3"}
    for name, router in plan.routers.items():
        lan_hosts = [h.name for h in plan.hosts() if h.segment == router.lan]
        assert where[name] != where[lan_hosts[0]], name
    counts = placement.counts(where)
    assert max(counts.values()) - min(counts.values()) <= 2


def test_pack_and_unknown_strategies(monkeypatch: pytest.MonkeyPatch) -> None:
    plan = build_plan(load_scenario(SCENARIOS / "nat-relay.yaml"))
    monkeypatch.setenv("P2PLAB_PLACEMENT", "pack")
    assert set(placement.spread(plan, ["e1", "e2"]).values()) == {"e1"}
    monkeypatch.setenv("P2PLAB_PLACEMENT", "random")
    with pytest.raises(BackendError, match="spread, pack"):
        placement.spread(plan, ["e1", "e2"])


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
    from p2plab.compose.swarm import cluster

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
    """A TLS server set up as the agent's: the run's runner certificate passes, another
    run's is refused."""
    ours = issue(tmp_path / "ours", "aaaaaa", ["127.0.0.1"])
    theirs = issue(tmp_path / "theirs", "bbbbbb", ["127.0.0.1"])
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(ours.agent_cert, ours.agent_key)
    server.load_verify_locations(ours.ca)
    server.verify_mode = ssl.CERT_REQUIRED
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
    from p2plab.analysis.report import cluster_lines

    assert cluster_lines({"backend": "docker"}) == []
    offset = {"offset_ms": 0.5, "uncertainty_ms": 0.02, "samples": 15, "measured_at": 1.0}
    lines = "\n".join(cluster_lines({"swarm": {
        "manager": "unix:///m.sock", "registry": "r:5000",
        "engines": [{"hostname": "e1", "address": "10.0.0.2"},
                    {"hostname": "e2", "address": "10.0.0.3"}],
        "hosts_per_engine": {"e1": 3, "e2": 2},
        "clock_offsets": {"e1": offset, "e2": offset}, "clock_offsets_end": {"e1": offset}}}))
    assert "| e1 | 10.0.0.2 | 3 | +0.500 ± 0.020 | +0.500 ± 0.020 |" in lines
    assert "| e2 | 10.0.0.3 | 2 | +0.500 ± 0.020 | not measured |" in lines
