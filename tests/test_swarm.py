"""The swarm backend for real: a cluster of Docker Engines on this machine (each in its
own network namespace, joined into one swarm, with a local registry), made and removed
by these tests; shipped scenarios across its engines, and nothing left behind on any
engine afterwards, after an interrupted run, and after a killed one with p2plab clean."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from p2plab.compose.backends.swarm import cluster as local_cluster
from p2plab.compose.lab.kept import kept_labs
from p2plab.compose.lab.lifecycle import Lab

from p2plab.resources import cache_dir

pytestmark = pytest.mark.swarm
P2PLAB = [sys.executable, "-m", "p2plab.cli"]


@pytest.fixture(scope="module")
def cluster() -> Iterator[local_cluster.Cluster]:
    """The local cluster: made here and removed at the end, unless one was up already
    (a developer's make cluster), which is used and left up."""
    from tests.conftest import require

    require(shutil.which("docker-registry") is not None and shutil.which("dockerd") is not None,
            "the swarm tests need dockerd and docker-registry (make setup installs them)")
    existing = local_cluster.load()
    made = local_cluster.up(engines=2, log=lambda m: None)
    yield made
    if existing is None:
        local_cluster.down(log=lambda m: None)
        left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        assert "p2plab-e" not in left
        assert subprocess.run(["ip", "link", "show", local_cluster.BRIDGE],
                              capture_output=True).returncode != 0
        assert not local_cluster.STATE_DIR.exists()


def swarm_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("DOCKER_HOST", "P2PLAB_REGISTRY", "P2PLAB_ENGINE_SOCKET")}
    return env


def engines_of(cluster: local_cluster.Cluster) -> list[Any]:
    import docker

    return [docker.DockerClient(base_url=e.docker_host) for e in cluster.engines]


def leftovers(cluster: local_cluster.Cluster, run_id: str | None = None) -> list[str]:
    """Everything of p2plab's (of one run, if given) on any engine of the cluster."""
    selector = f"p2plab.run={run_id}" if run_id else "p2plab.run"
    found = []
    clients = engines_of(cluster)
    manager = clients[0]
    found += [f"service {s.name}" for s in manager.services.list(filters={"label": selector})]
    found += [f"service {s.name}" for s in manager.services.list()
              if s.name.startswith("p2pl-") and s.name.endswith("-sweep")]
    found += [f"secret {s.name}" for s in manager.secrets.list(filters={"label": selector})]
    for client in clients:
        found += [f"network {n.name}" for n in client.networks.list(filters={"label": selector})]
        found += [f"container {c.name}" for c in client.containers.list(
            all=True, filters={"label": selector})]
        found += [f"volume {v.name}" for v in client.volumes.list(filters={"label": selector})]
    return found


def run_on_swarm(scenario: str, results: Path, timeout: float = 400,
                 extra: tuple[str, ...] = ()) -> tuple[Path, dict]:
    done = subprocess.run([*P2PLAB, "run", scenario, "--backend", "swarm", "--results",
                           str(results), *extra], capture_output=True, text=True,
                          timeout=timeout, env=swarm_env())
    folders = sorted(results.glob(f"{scenario}-*"))
    assert folders, done.stderr[-2000:]
    run_dir = folders[-1]
    report = run_dir / "report.md"
    assert done.returncode == 0, (done.stderr[-3000:] + "\n"
                                  + (report.read_text()[:3000] if report.exists() else "")
                                  + engine_errors())
    return run_dir, json.loads((run_dir / "manifest.json").read_text())


def engine_errors() -> str:
    """The engines' own error lines, for a failure's message."""
    out = []
    for log in sorted(local_cluster.STATE_DIR.glob("*/dockerd.log")):
        lines = [line for line in log.read_text(errors="replace").splitlines()
                 if "level=error" in line and "ipv4.vs" not in line and "vlan" not in line]
        out += [f"-- {log.parent.name}:", *lines[-15:]]
    return "\n".join(out)


def check_placement(manifest: dict) -> None:
    """Nodes on 2+ engines; each NAT router on another engine than some of its LAN's
    nodes (lab traffic crosses hosts); engine and clock offsets recorded."""
    engines = {n["engine"] for n in manifest["nodes"].values()}
    assert len(engines) >= 2, engines
    for name, router in manifest["routers"].items():
        lan_engines = {n["engine"] for n in manifest["nodes"].values()
                       if n["segment"] == router["lan"]}
        assert lan_engines - {router["engine"]}, (name, router["engine"], lan_engines)
    swarm = manifest["cluster"]
    assert set(swarm["clock_offsets"]) == {e["hostname"] for e in swarm["engines"]}
    for offset in [*swarm["clock_offsets"].values(), *swarm["clock_offsets_end"].values()]:
        # One kernel, one clock: the offset is within what the measurement can tell.
        assert abs(offset["offset_ms"]) <= offset["uncertainty_ms"] + 1.0, offset
        assert 0 <= offset["uncertainty_ms"] < 50


@pytest.mark.parametrize("scenario", ["nat-relay", "nat-holepunch"])
def test_nat_scenarios_pass_across_engines(cluster: local_cluster.Cluster, tmp_path: Path,
                                           scenario: str) -> None:
    """nat-relay also records packets (--capture): tcpdump in a helper container on
    each host's engine, the pcap streamed back by the agent."""
    capture = scenario == "nat-relay"
    run_dir, manifest = run_on_swarm(scenario, tmp_path,
                                     extra=("--capture",) if capture else ())
    check_placement(manifest)
    if capture:
        # The router saw alice's flows leave with its public address; alice's own
        # capture (another engine than the router's) holds her side.
        assert manifest["routers"]["home-a-gw"]["engine"] != manifest["nodes"]["alice"]["engine"]
        read = subprocess.run(["tcpdump", "-nr", str(run_dir / "pcap" / "home-a-gw.pcap")],
                              capture_output=True, text=True)
        assert read.returncode == 0, read.stderr
        assert "203.0.113.2" in read.stdout and "10.1.0.10" in read.stdout
        alice = subprocess.run(["tcpdump", "-nr", str(run_dir / "pcap" / "alice.pcap")],
                               capture_output=True, text=True)
        assert alice.returncode == 0 and alice.stdout.count("\n") > 20, alice.stderr
    assert manifest["backend"] == "swarm"
    report = (run_dir / "report.md").read_text()
    assert "## Engines and clocks" in report and "p2plab-e2" in report
    assert leftovers(cluster, manifest["run_id"]) == []


def test_gossip_50_passes_across_engines(cluster: local_cluster.Cluster,
                                         tmp_path: Path) -> None:
    run_dir, manifest = run_on_swarm("gossip-50", tmp_path, timeout=600)
    check_placement(manifest)
    per_engine = manifest["cluster"]["hosts_per_engine"]
    assert len(per_engine) == 2 and min(per_engine.values()) >= 25, per_engine
    # The link stages ran inside the containers, on both engines, and were measured.
    rtt = json.loads((run_dir / "link_rtt.json").read_text())
    assert rtt["mechanism"] == "nfqueue" and all(p["measured_ms"] for p in rtt["pairs"])
    assert leftovers(cluster, manifest["run_id"]) == []


def _start(tmp_path: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([*P2PLAB, "run", "nat-relay", "--backend", "swarm", "--results",
                             str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=swarm_env(), start_new_session=True)


def _wait_for_nodes(cluster: local_cluster.Cluster, proc: subprocess.Popen[str]) -> None:
    """Until the run's node containers exist on the engines (the lab is half up). A CI
    machine running the Docker lane beside this one can take minutes; a run that never
    gets there is stopped, so it cannot hold its subnets against the next test."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        names = [c.name for client in engines_of(cluster)
                 for c in client.containers.list(filters={"label": "p2plab.role=node"})]
        if len(names) >= 3:
            return
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGINT)  # the run tears its lab down
    proc.wait(timeout=120)
    pytest.fail("the lab's nodes did not appear within 300 s")


def count_events(path: Path, type_: str) -> int:
    return sum(1 for line in path.read_text().splitlines()
               if line.strip() and json.loads(line)["type"] == type_)


def test_keep_exec_command_and_down(cluster: local_cluster.Cluster, tmp_path: Path) -> None:
    """A kept lab on the swarm: commands in a node and in its router through their
    engines' agents, a chat line sent after the runner left, then `p2plab down`: the
    results folder gets what happened meanwhile, and nothing of the run is left on any
    engine, its certificates included. (No --capture: the Docker tests beside these
    count a kept lab's helpers on this machine as leftovers.)"""
    done = subprocess.run([*P2PLAB, "run", "nat-relay", "--backend", "swarm", "--keep",
                           "--results", str(tmp_path)], capture_output=True,
                          text=True, timeout=400, env=swarm_env())
    assert done.returncode == 0, done.stderr[-3000:] + engine_errors()
    (lab,) = [k for k in kept_labs() if k.backend == "swarm"]
    run_dir = Path(lab.run_dir)
    run = ["--run", lab.run_id]
    try:
        assert leftovers(cluster, lab.run_id), "the kept lab should still be up"
        addr = subprocess.run([*P2PLAB, "exec", *run, "alice", "--", "ip", "-4", "-o",
                               "addr"], capture_output=True, text=True, timeout=60,
                              env=swarm_env())
        assert addr.returncode == 0 and "10.1.0.10" in addr.stdout, addr.stderr
        rules = subprocess.run([*P2PLAB, "exec", *run, "home-a-gw", "--", "nft",
                                "list", "ruleset"], capture_output=True, text=True, timeout=60,
                               env=swarm_env())
        assert rules.returncode == 0 and "203.0.113." in rules.stdout, rules.stderr
        published = count_events(run_dir / "events" / "alice.jsonl", "message_published")
        received = count_events(run_dir / "events" / "bob.jsonl", "message_received")
        Lab.reattach(lab.run_id)["alice"].send({"cmd": "say", "text": "after the runner left"})
        time.sleep(3)
    finally:
        down = subprocess.run([*P2PLAB, "down", *run], capture_output=True, text=True,
                              timeout=300, env=swarm_env())
    assert down.returncode == 0, down.stderr
    assert count_events(run_dir / "events" / "alice.jsonl", "message_published") == published + 1
    assert count_events(run_dir / "events" / "bob.jsonl", "message_received") == received + 1
    assert (run_dir / "logs" / "alice.log").exists()
    assert lab.run_id not in {k.run_id for k in kept_labs()}
    assert leftovers(cluster, lab.run_id) == []
    assert not Path(lab.details["certs"]).exists()


def test_interrupted_run_removes_its_stack_everywhere(cluster: local_cluster.Cluster,
                                                      tmp_path: Path) -> None:
    proc = _start(tmp_path)
    _wait_for_nodes(cluster, proc)
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, output[-1500:]
    assert leftovers(cluster) == [], output[-1500:]


def test_clean_finds_a_run_that_left_only_a_volume(cluster: local_cluster.Cluster) -> None:
    """A teardown cut short can leave just the run's volume on an engine, with no
    service or network naming the run: `clean` still finds it and sweeps it."""
    run_id = os.urandom(3).hex()
    manager = engines_of(cluster)[0]
    manager.volumes.create(f"p2pl-{run_id}-lab", labels={"p2plab.run": run_id})
    assert leftovers(cluster, run_id) == [f"volume p2pl-{run_id}-lab"]
    done = subprocess.run([*P2PLAB, "clean"], capture_output=True, text=True, timeout=180,
                          env=swarm_env())
    assert done.returncode == 0, done.stderr
    assert leftovers(cluster, run_id) == [], done.stdout + done.stderr
    assert f"containers and volumes of run {run_id} on every engine" in done.stdout


def test_clean_removes_what_a_killed_run_left(cluster: local_cluster.Cluster,
                                              tmp_path: Path) -> None:
    proc = _start(tmp_path)
    _wait_for_nodes(cluster, proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert leftovers(cluster), "the killed run should have left its stack"
    run_id = next(tmp_path.glob("nat-relay-*")).name.rsplit("-", 1)[-1]
    certificates = cache_dir() / "swarm-runs" / run_id
    assert certificates.is_dir()
    done = subprocess.run([*P2PLAB, "clean"], capture_output=True, text=True, timeout=180,
                          env=swarm_env())
    assert done.returncode == 0, done.stderr
    assert leftovers(cluster) == [], done.stdout + done.stderr
    assert not certificates.exists()


FAULTS = """\
name: swarm-faults
seed: 9
lans:
  - {name: home, subnet: 10.1.0.0/24, nat: port-restricted,
     placement: {constraints: ["node.role==manager"]}}
nodes:
  - {name: n, count: 5, lan: public}
  - {name: h, lan: home, dial: [n-1], placement: {constraints: ["node.labels.zone==edge"]}}
connect: {graph: full-mesh, among: ["n-*"]}
timeline:
  - {wait: topic-peers, nodes: ["*"], min: 1, timeout: 40}
  - {publish: [n-1], count: 200, rate: 4, name: long}
  - {sleep: 1}
  - {partition: [[n-1, n-2, h], [n-3, n-4, n-5]]}
  - {sleep: 3}
  - {heal: true}
  - {set-nat: home, nat: symmetric}
  - {link-down: [n-5]}
  - {sleep: 3}
  - {link-up: [n-5]}
  - {kill: [n-4]}
  - {sleep: 2}
  - {restart: [n-4]}
  - {sleep: 4}
  - {stop-traffic: long}
  - {publish: [n-2], count: 4, rate: 4, name: after}
  - {sleep: 3}
"""


def test_faults_work_on_any_engine(cluster: local_cluster.Cluster, tmp_path: Path) -> None:
    """Partition, heal, set-nat, link-down/up, kill and restart, on hosts spread over
    both engines; stop-traffic and publish commands through the agents. Placement
    rules put h on the engine labelled zone=edge, its router on the manager."""
    path = tmp_path / "swarm-faults.yaml"
    path.write_text(FAULTS)
    manager = engines_of(cluster)[0]
    worker = next(n for n in manager.nodes.list()
                  if n.attrs["Description"]["Hostname"] == cluster.engines[-1].name)
    spec = worker.attrs["Spec"]
    worker.update({**spec, "Labels": {**(spec.get("Labels") or {}), "zone": "edge"}})
    done = subprocess.run([*P2PLAB, "run", str(path), "--backend", "swarm", "--results",
                           str(tmp_path / "results")], capture_output=True, text=True,
                          timeout=300, env=swarm_env())
    runs = sorted((tmp_path / "results").iterdir()) if (tmp_path / "results").exists() else []
    assert runs, done.stdout + done.stderr[-3000:]
    run_dir = runs[0]
    assert (run_dir / "summary.json").exists(), done.stderr[-3000:] + engine_errors()
    summary = json.loads((run_dir / "summary.json").read_text())
    timeline = next(v for v in summary["verdicts"] if v["name"] == "timeline completed")
    assert timeline["passed"], (timeline, done.stderr[-2000:])
    manifest = json.loads((run_dir / "manifest.json").read_text())
    engines = {n: i["engine"] for n, i in manifest["nodes"].items()}
    assert len(set(engines.values())) == 2, engines
    assert engines["h"] == cluster.engines[-1].name
    assert manifest["routers"]["home-gw"]["engine"] == cluster.engines[0].name
    groups = manifest["cluster"]["placement"]["groups"]
    assert groups["nodes group 'h'"]["engines"] == [cluster.engines[-1].name]
    assert groups["routers of lans 'home'"]["constraints"] == ["node.role==manager"]
    faults = [r["action"] for r in summary["recovery"]]
    assert faults == ["partition", "heal", "set-nat", "link-down", "link-up", "kill",
                      "restart"], faults
    events = [json.loads(line) for line in
              (run_dir / "events" / "n-4.jsonl").read_text().splitlines()]
    starts = [e for e in events if e["type"] == "node_started"]
    assert len(starts) == 2 and starts[0]["peer_id"] == starts[1]["peer_id"]
    flows = summary["delivery"]["per_flow"]
    assert 20 < flows["long"]["messages_published"] < 200
    # Every public node gets the last flow; h's connection died with its NAT's change
    # (tracking flushed, a new mapping per destination) and h does not dial again.
    assert flows["after"]["delivery_ratio"] >= 0.8, flows["after"]
    rules = (run_dir / "routers" / "home-gw.nft").read_text()
    assert "random" in rules, rules  # symmetric: a fresh port per destination
    assert leftovers(cluster, manifest["run_id"]) == []
