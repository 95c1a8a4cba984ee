"""The Docker backend beyond the shared scenario tests: sealing, NAT strays, no
NET_ADMIN on nodes, the reusable lab fixture, the compose
export under a real compose v2 binary, and the image itself (via testcontainers)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import P2PLAB, ROOT, leftovers, require

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("no_leftovers")]
COMPOSE_V2 = ROOT / "build" / "tools" / "docker-compose"
PROBE = ("import socket,sys\ns=socket.socket();s.settimeout(2)\n"
         "try:\n s.connect((sys.argv[1],int(sys.argv[2])));print('open')\n"
         "except socket.timeout: print('timeout')\n"
         "except ConnectionRefusedError: print('refused')\n")


def test_docker_lab_is_sealed_and_nodes_hold_no_net_admin(p2plab_lab) -> None:
    lab = p2plab_lab("nat-relay", backend="docker")
    backend = lab.backend
    for segment, network in backend.networks.items():
        network.reload()
        bridge = network.attrs["Options"]["com.docker.network.bridge.name"]
        addrs = subprocess.run(["ip", "-4", "-o", "addr", "show", "dev", bridge],
                               capture_output=True, text=True)
        assert addrs.returncode == 0 and addrs.stdout.strip() == "", (segment, addrs.stdout)
    for name in lab.plan.nodes:
        attrs = backend.containers[name].attrs
        assert not attrs["HostConfig"]["CapAdd"], f"{name} holds {attrs['HostConfig']['CapAdd']}"
    wan = str(lab.plan.routers["home-a-gw"].wan_ip)
    relay_ip = str(lab.plan.nodes["relay"].ip)
    assert lab["relay"].exec(["python", "-c", PROBE, relay_ip, "4999"]).stdout.strip() == "refused"
    assert lab["relay"].exec(["python", "-c", PROBE, wan, "4001"]).stdout.strip() == "timeout"
    for host in ("home-a-gw", "relay"):
        route = lab[host].exec(["ip", "route", "get", "192.0.2.1"])
        assert route.returncode != 0 and "unreachable" in route.stderr, (host, route)
    # The fixture's lab is driven like any run: the timeline, then the logs.
    lab.play()
    lab.wait_for("bob's 20 messages", lambda: len(lab["bob"].events("message_received")) >= 20)


def test_compose_export_runs_under_compose_v2(tmp_path: Path) -> None:
    require(COMPOSE_V2.exists(), "compose v2 binary missing: run `make compose-v2` "
            "(make test does)")
    out = tmp_path / "export"
    result = subprocess.run([*P2PLAB, "export", "nat-relay", "-o", str(out)],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    compose = [str(COMPOSE_V2), "--project-directory", str(out), "-f", str(out / "compose.yaml")]
    try:
        up = subprocess.run([*compose, "up", "-d"], capture_output=True, text=True, timeout=300)
        assert up.returncode == 0, up.stderr
        events = out / "lab" / "events"
        deadline = time.monotonic() + 60
        fifo = out / "lab" / "control" / "alice.fifo"
        while True:
            bob = (events / "bob.jsonl").read_text() if (events / "bob.jsonl").exists() else ""
            if '"relay_reservation"' in bob and '"kind":"relayed"' in bob and fifo.exists():
                break
            assert time.monotonic() < deadline, "the exported lab never connected bob to alice"
            time.sleep(0.5)
        time.sleep(2)  # let the gossipsub mesh form over the relayed connection
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        os.write(fd, b'{"cmd": "publish", "count": 5, "size": 100, "rate": 10}\n')
        os.close(fd)
        deadline = time.monotonic() + 30
        while (events / "bob.jsonl").read_text().count('"message_received"') < 5:
            assert time.monotonic() < deadline, "bob did not receive alice's messages"
            time.sleep(0.5)
    finally:
        down = subprocess.run([*compose, "down", "-t", "5"], capture_output=True, text=True,
                              timeout=120)
        assert down.returncode == 0, down.stderr


def test_node_image_starts_a_node(tmp_path: Path) -> None:
    """The image on its own, through testcontainers (no reaper; cleaned by label)."""
    os.environ["TESTCONTAINERS_RYUK_DISABLED"] = "true"
    from p2plab.compose.images import ensure_image
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.wait_strategies import LogMessageWaitStrategy

    tag = ensure_image(log=lambda m: None)
    container = (DockerContainer(tag)
                 .with_command("python -m p2plab.node --name solo --listen-ip 127.0.0.1 --no-stdin "
                               "--key-seed solo --ping-interval 0")
                 .with_kwargs(network_mode="none", labels={"p2plab": "1"})
                 .waiting_for(LogMessageWaitStrategy("peer id:").with_startup_timeout(60)))
    with container:
        out, _ = container.get_logs()
        from p2plab.node.identity import peer_id_for_seed

        assert f"peer id: {peer_id_for_seed('solo')}" in out.decode()


def test_subnet_in_use_is_a_clear_error_and_leaves_nothing(tmp_path: Path) -> None:
    import docker

    client = docker.from_env()
    ipam = docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet="10.2.0.0/24")])
    blocker = client.networks.create("p2plab-test-blocker", internal=True, ipam=ipam)
    try:
        result = subprocess.run([*P2PLAB, "run", "nat-relay", "--backend", "docker",
                                 "--results", str(tmp_path)], capture_output=True, text=True,
                                timeout=300, cwd=ROOT)
    finally:
        blocker.remove()
    assert result.returncode == 2, result.stdout + result.stderr
    # Found before anything is made, and named: a network that is not p2plab's.
    assert "overlaps Docker network 'p2plab-test-blocker' (10.2.0.0/24)" in result.stderr, \
        result.stderr
    assert leftovers() == [] and list(tmp_path.iterdir()) == []


def test_the_layer_carries_each_rust_release() -> None:
    """The image of a lab running rust@0.53 and rust@0.57.1 holds both programs, each
    at the path its nodes are started with, each naming its own libp2p."""
    import docker
    from p2plab.compose.images import ensure_image, image_programs
    from p2plab.compose.impls.builds import ensure_built
    from p2plab.compose.impls.registry import Registry

    registry = Registry.load()
    builds = {spec: ensure_built(registry.resolve(spec), lambda m: None)
              for spec in ("rust@0.53", "rust")}
    tag = ensure_image(list(builds.values()), log=lambda m: None)
    client = docker.from_env()
    for spec, library in (("rust@0.53", "0.53.2"), ("rust", "0.57.1")):
        argv = image_programs(builds)[spec]
        out = client.containers.run(tag, [*argv, "--version"], remove=True, network_mode="none",
                                    labels={"p2plab": "1"}).decode()
        assert out.split()[2:] == ["rust-libp2p", library], out
