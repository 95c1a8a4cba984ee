"""A Docker Swarm cluster of several engines on this one machine (``make cluster``).

For trying and testing the swarm backend without several machines: each engine is its
own ``dockerd`` in its own network namespace (entered with ``nsenter --net``, which
keeps the host's cgroup mounts, unlike ``ip netns exec``) and UTS namespace (so each
swarm node has its own hostname), with a config file of its own (the host's
``daemon.json`` sets the data root and would conflict). The namespaces hang off one
bridge on the host; the first engine initialises the swarm, the others join it over
that bridge, and a registry (Debian's ``docker-registry``) listens on the bridge's host
address. The host's own Docker Engine is not touched.

Sealing: the engines' namespaces have no default route; the bridge and its addresses
(CLUSTER_NET) reach nothing but the engines and the registry. Everything the cluster
uses, overlay networks included, is carved out of CLUSTER_NET, so a scenario's subnets
never meet the cluster's own.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from p2plab.processes import stop_pids
from p2plab.resources import cache_dir

STATE_DIR = Path(os.environ.get("P2PLAB_CLUSTER_DIR", "/run/p2plab-cluster"))
STATE_FILE = STATE_DIR / "cluster.json"
CLUSTER_NET = ipaddress.IPv4Network("100.126.0.0/16")  # every address the cluster uses
LINK_NET = ipaddress.IPv4Network("100.126.250.0/24")  # host bridge + engines
BRIDGE = "p2plc0"
REGISTRY_PORT = 5000
# The agent finds its engine's socket here; {{.Node.Hostname}} is expanded by swarm.
ENGINE_SOCKET_TEMPLATE = str(STATE_DIR / "{{.Node.Hostname}}" / "docker.sock")
START_TIMEOUT_S = 60.0


class ClusterError(Exception):
    """The local cluster cannot be made or reached: the message says what to do."""


@dataclass
class Engine:
    name: str  # also the swarm node's hostname and the network namespace's name
    address: str
    socket: str
    pid: int = 0

    @property
    def docker_host(self) -> str:
        return f"unix://{self.socket}"


@dataclass
class Cluster:
    engines: list[Engine]
    registry: str
    registry_pid: int = 0
    engine_socket: str = ENGINE_SOCKET_TEMPLATE
    created: float = field(default_factory=time.time)

    @property
    def manager(self) -> Engine:
        return self.engines[0]

    def environment(self) -> dict[str, str]:
        """What `p2plab run --backend swarm` reads to use this cluster."""
        return {"DOCKER_HOST": self.manager.docker_host, "P2PLAB_REGISTRY": self.registry,
                "P2PLAB_ENGINE_SOCKET": self.engine_socket}


def load() -> Cluster | None:
    """The local cluster if one is up (its state file exists)."""
    try:
        data = json.loads(STATE_FILE.read_text())
    except (OSError, ValueError):
        return None
    return Cluster(engines=[Engine(**e) for e in data.pop("engines")], **data)


def _run(argv: list[str], check: bool = True,
         **kwargs: Any) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, capture_output=True, text=True, **kwargs)
    if check and done.returncode != 0:
        raise ClusterError(f"`{' '.join(argv)}` failed: {(done.stderr or done.stdout).strip()}")
    return done


def _docker(engine: Engine, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return _run(["docker", "-H", engine.docker_host, *args], check=check)


def _storage_driver() -> str:
    """The host engine's storage driver works on this machine's filesystem: use it."""
    done = _run(["docker", "info", "-f", "{{.Driver}}"], check=False)
    return done.stdout.strip() or "overlay2"


def _engine_config(directory: Path, registry: str) -> Path:
    """A daemon config of the cluster's own: addresses inside CLUSTER_NET, the local
    registry trusted over plain HTTP, no iptables changes outside the namespace needed."""
    config = {
        # Each engine has its own namespace: they can share these ranges.
        "bip": "100.126.64.1/24",
        "default-address-pools": [{"base": "100.126.128.0/18", "size": 24}],
        "insecure-registries": [registry],
        "log-driver": "json-file",
        "log-opts": {"max-size": "10m", "max-file": "2"},
    }
    path = directory / "daemon.json"
    path.write_text(json.dumps(config, indent=2))
    return path


def _start_engine(engine: Engine, index: int, registry: str, data_root: Path) -> None:
    """dockerd in the engine's network namespace, with its own hostname."""
    run_dir = Path(engine.socket).parent
    run_dir.mkdir(parents=True, exist_ok=True)
    netns = engine.name
    _run(["ip", "netns", "add", netns])
    host_if, ns_if = f"{engine.name[-6:]}h", f"{engine.name[-6:]}n"
    _run(["ip", "link", "add", host_if, "type", "veth", "peer", "name", ns_if])
    _run(["ip", "link", "set", host_if, "master", BRIDGE, "up"])
    _run(["ip", "link", "set", ns_if, "netns", netns])
    _run(["ip", "-n", netns, "addr", "add", f"{engine.address}/{LINK_NET.prefixlen}",
          "dev", ns_if])
    _run(["ip", "-n", netns, "link", "set", ns_if, "up"])
    _run(["ip", "-n", netns, "link", "set", "lo", "up"])
    config = _engine_config(run_dir, registry)
    data = data_root / engine.name
    data.mkdir(parents=True, exist_ok=True)
    # The image store is kept between clusters (a later `up` starts faster); swarm
    # membership never is: an engine stopped before its `swarm leave` settled would
    # otherwise come back as a member of the old swarm.
    for state in ("swarm", "network"):  # networks: the old swarm's, and endpoints
        shutil.rmtree(data / state, ignore_errors=True)
    log = open(run_dir / "dockerd.log", "ab")
    script = (f"hostname {engine.name} && exec nsenter --net=/run/netns/{netns} dockerd "
              f"--config-file {config} --data-root {data} --exec-root {run_dir / 'exec'} "
              f"--pidfile {run_dir / 'dockerd.pid'} -H {engine.docker_host} "
              f"--storage-driver {_storage_driver()} "
              f"--containerd-namespace {engine.name} "
              f"--containerd-plugins-namespace {engine.name}p")
    proc = subprocess.Popen(["unshare", "--uts", "sh", "-c", script], stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    log.close()
    engine.pid = proc.pid
    deadline = time.monotonic() + START_TIMEOUT_S
    while _docker(engine, "version", check=False).returncode != 0:
        if proc.poll() is not None or time.monotonic() > deadline:
            tail = (run_dir / "dockerd.log").read_text(errors="replace")[-1500:]
            raise ClusterError(f"engine {engine.name} did not start:\n{tail}")
        time.sleep(0.3)


def _start_registry(address: str, storage: Path) -> int:
    binary = shutil.which("docker-registry")
    if binary is None:
        raise ClusterError("docker-registry is not installed: apt-get install docker-registry")
    storage.mkdir(parents=True, exist_ok=True)
    config = STATE_DIR / "registry.yml"
    config.write_text(
        "version: 0.1\nlog: {level: warn}\n"
        f"storage: {{filesystem: {{rootdirectory: {storage}}}, delete: {{enabled: true}}}}\n"
        f"http: {{addr: '{address}'}}\n")
    log = open(STATE_DIR / "registry.log", "ab")
    proc = subprocess.Popen([binary, "serve", str(config)], stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    log.close()
    return proc.pid


def up(engines: int = 2, log: Callable[[str], None] = print) -> Cluster:
    """Make the local cluster (or return the one that is up)."""
    existing = load()
    if existing is not None:
        if all(_docker(e, "info", check=False).returncode == 0 for e in existing.engines):
            return existing
        down(log)
    if engines < 2:
        raise ClusterError(f"--engines {engines}: a cluster has at least 2 engines")
    if engines > 60:
        raise ClusterError(f"--engines {engines}: at most 60 on one machine")
    for tool, package in (("dockerd", "docker.io"), ("unshare", "util-linux"),
                          ("nsenter", "util-linux"), ("ip", "iproute2")):
        if shutil.which(tool) is None:
            raise ClusterError(f"{tool!r} is not installed: apt-get install {package}")
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    hosts = list(LINK_NET.hosts())
    registry = f"{hosts[0]}:{REGISTRY_PORT}"
    cluster = Cluster(engines=[Engine(f"p2plab-e{i + 1}", str(hosts[i + 1]),
                                      str(STATE_DIR / f"p2plab-e{i + 1}" / "docker.sock"))
                               for i in range(engines)], registry=registry)
    try:
        _run(["ip", "link", "add", BRIDGE, "type", "bridge"])
        _run(["ip", "addr", "add", f"{hosts[0]}/{LINK_NET.prefixlen}", "dev", BRIDGE])
        _run(["ip", "link", "set", BRIDGE, "up"])
        # The host engine's FORWARD policy drops bridged frames when br_netfilter is
        # loaded: let the cluster bridge's own traffic (VXLAN, swarm gossip) through.
        _run(["iptables", "-w", "-I", "DOCKER-USER", "-i", BRIDGE, "-o", BRIDGE, "-j",
              "ACCEPT", "-m", "comment", "--comment", "p2plab-cluster"], check=False)
        cluster.registry_pid = _start_registry(registry, cache_dir() / "cluster-registry")
        _save(cluster)  # from here on, `down` can undo whatever was made
        data_root = cache_dir() / "cluster-engines"
        for index, engine in enumerate(cluster.engines):
            log(f"starting engine {engine.name} ({engine.address})")
            _start_engine(engine, index, registry, data_root)
            _save(cluster)
        manager = cluster.manager
        _docker(manager, "swarm", "init", "--advertise-addr", manager.address,
                "--listen-addr", f"{manager.address}:2377",
                "--default-addr-pool", "100.126.0.0/18", "--default-addr-pool-mask-length",
                "24")
        token = _docker(manager, "swarm", "join-token", "-q", "worker").stdout.strip()
        for engine in cluster.engines[1:]:
            _docker(engine, "swarm", "join", "--token", token, "--advertise-addr",
                    engine.address, "--listen-addr", f"{engine.address}:2377",
                    f"{manager.address}:2377")
        _wait_ready(cluster)
    except BaseException:
        down(log)
        raise
    log(f"cluster up: {len(cluster.engines)} engines, manager {manager.docker_host}, "
        f"registry {registry}")
    return cluster


def _wait_ready(cluster: Cluster) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        states = _docker(cluster.manager, "node", "ls", "--format", "{{.Status}}").stdout.split()
        if states.count("Ready") == len(cluster.engines):
            return
        if time.monotonic() > deadline:
            raise ClusterError(f"swarm nodes not ready after {START_TIMEOUT_S:g} s: {states}")
        time.sleep(0.5)


def _save(cluster: Cluster) -> None:
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    tmp = STATE_FILE.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(cluster), indent=2))
    tmp.replace(STATE_FILE)


def down(log: Callable[[str], None] = print) -> None:
    """Remove the local cluster: engines, their namespaces, the bridge, the registry.
    Whatever a half-made cluster left is removed too; the engines' image stores stay in
    the cache (a later `up` starts faster)."""
    cluster = load()
    engines = cluster.engines if cluster else []
    for engine in engines:
        _docker(engine, "swarm", "leave", "--force", check=False)
    for engine in engines:
        # Containers of the engine stop with it (live-restore is off).
        pid_file = Path(engine.socket).parent / "dockerd.pid"
        pids = [engine.pid] if engine.pid else []
        try:
            pids.append(int(pid_file.read_text()))
        except (OSError, ValueError):
            pass
        stop_pids([p for p in set(pids) if p], grace=30)
        _run(["ip", "netns", "del", engine.name], check=False)
    if cluster and cluster.registry_pid:
        stop_pids([cluster.registry_pid], grace=10)
    # Namespaces of a cluster whose state file was lost: by name.
    for line in _run(["ip", "netns", "list"], check=False).stdout.splitlines():
        name = line.split()[0] if line.strip() else ""
        if name.startswith("p2plab-e") and name[8:].isdigit():
            _run(["ip", "netns", "del", name], check=False)
    _run(["ip", "link", "del", BRIDGE], check=False)
    while _run(["iptables", "-w", "-D", "DOCKER-USER", "-i", BRIDGE, "-o", BRIDGE, "-j",
                "ACCEPT", "-m", "comment", "--comment", "p2plab-cluster"],
               check=False).returncode == 0:
        pass
    if STATE_DIR.exists():
        for engine in engines:
            _unmount_under(Path(engine.socket).parent)
        shutil.rmtree(STATE_DIR, ignore_errors=True)
    if cluster:
        log("cluster down")


def _unmount_under(path: Path) -> None:
    """A stopped dockerd can leave mounts (netns files, shm) under its exec root."""
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    for mount in sorted((m for m in mounts if m.startswith(str(path))), reverse=True):
        _run(["umount", "-l", mount], check=False)


def main(argv: list[str] | None = None) -> int:
    """``python -m p2plab.compose.backends.swarm.cluster up|down|env``."""
    parser = argparse.ArgumentParser(prog="p2plab cluster",
                                     description="a Docker Swarm of local engines")
    parser.add_argument("action", choices=("up", "down", "env"))
    parser.add_argument("--engines", type=int, default=2)
    args = parser.parse_args(argv)

    def say(message: str) -> None:
        print(message, file=sys.stderr)

    try:
        if args.action == "up":
            cluster = up(args.engines, say)
        elif args.action == "down":
            down(say)
            return 0
        else:
            loaded = load()
            if loaded is None:
                raise ClusterError("no local cluster is up: make cluster")
            cluster = loaded
    except ClusterError as exc:
        print(f"p2plab: {exc}", file=sys.stderr)
        return 2
    for key, value in cluster.environment().items():
        print(f"export {key}='{value}'")
    return 0


if __name__ == "__main__":
    sys.exit(main())
