"""The Docker backend: nodes and NAT routers as containers on internal Docker networks.

It applies the plan as computed once in ``topology/``: every segment becomes an internal
network with the plan's subnet; a router is a container on two networks whose start-up
script names its interfaces by address and loads the plan's nftables ruleset; a node
container runs ``python -m p2plab.node`` with the plan's flags, gets its default route set
from the host (it holds no NET_ADMIN itself), and writes its events into the run
directory, which is mounted at /lab.

Sealing: Docker gives each network's host bridge an address; p2plab parks it on the
segment's last address and then removes it, so the host is not on any lab network.
Docker's isolation rules drop traffic between a bridge and other subnets, which is
exactly what NAT'd traffic looks like; one DOCKER-USER rule per lab bridge, tagged with
the run's prefix, lets a bridge's own traffic through.
"""

from __future__ import annotations

import platform
import shutil
import subprocess
import time
from collections.abc import Callable, Container
from pathlib import Path
from typing import Any

from p2plab.compose.backends.address_space import host_route_overlaps
from p2plab.compose.backends.base import PREFIX, BackendError, LocalHosts
from p2plab.compose.backends.containers import ROLE_LABEL, RUN_LABEL, ContainerBackend
from p2plab.compose.images import ensure_image
from p2plab.compose.lab.ownership import run_id_of
from p2plab.topology.plan import LabPlan


class DockerBackend(LocalHosts, ContainerBackend):
    name = "docker"
    shares_address_space = True  # bridges in the host's own network namespace
    run_folders = ("events", "logs", "control", "routers", "probe")

    def __init__(self, run_id: str, log: Callable[[str], None] = lambda message: None) -> None:
        super().__init__(run_id, log)
        self.client: Any = None

    # -- environment ----------------------------------------------------------------
    def check_environment(self, plan: LabPlan) -> None:
        import docker

        for tool, package in (("iptables", "iptables"), ("nsenter", "util-linux"),
                              ("ip", "iproute2")):
            if shutil.which(tool) is None:
                raise BackendError(f"{tool!r} is not installed: apt-get install {package}")
        try:
            self.client = docker.from_env()
            self.client.ping()
        except Exception as exc:
            raise BackendError(
                f"no Docker engine reachable ({exc}): start it (systemctl start docker) "
                "or use --backend netns"
            ) from None
        self.build_implementations()
        self.image = ensure_image(list(self.builds.values()), self.log)

    def check_address_space(self, subnets: list[str]) -> None:
        """Bridges live in the host's own network namespace: a lab subnet that overlaps
        a Docker network not p2plab's, or one of the host's routes (its LAN, a VPN,
        another bridge), would capture the host's traffic to it."""
        # A Docker network first: its bridge is also a host route, but its name says more.
        taken = foreign_network_overlap(subnets)
        if taken:
            subnet, name, theirs = taken
            raise BackendError(f"subnet {subnet} overlaps Docker network {name!r} ({theirs}), "
                               "which is not p2plab's: give the scenario another subnet, "
                               "remove that network, or run with --backend netns")
        clash = host_route_overlaps(subnets)
        if clash:
            subnet, route, dev = clash
            raise BackendError(f"subnet {subnet} overlaps the host's route {route} (dev "
                               f"{dev}): give the scenario a subnet this machine does not "
                               "use, or run it with --backend netns")

    def describe(self) -> dict[str, str]:
        version = self.client.version() if self.client else {}
        return {
            "backend": self.name,
            "kernel": platform.release(),
            "docker_engine": str(version.get("Version", "unknown")),
            "image": str(self.image),
            "nat": "nftables ruleset loaded with `nft -f` by each router container",
            "link_impairment": "none requested (no link shaping in this scenario)",
        }

    # -- ContainerBackend's hooks: one engine, this machine's ------------------------------
    def _client_for(self, host: str) -> Any:
        return self.client

    def _clients(self) -> list[Any]:
        return [self.client]

    def _lab_source(self) -> str:
        assert self.run_dir is not None
        return str(self.run_dir.resolve())

    def _create_network(self, segment: str) -> None:
        import docker

        assert self.plan is not None
        seg = self.plan.segments[segment]
        name = f"{self.prefix}{segment}"
        ipam = docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(
            subnet=str(seg.subnet), gateway=str(seg.engine_address))])
        try:
            network = self.client.networks.create(
                name, driver="bridge", internal=True, ipam=ipam, labels=self._labels(),
                options={"com.docker.network.bridge.name": self._bridge_name(segment)},
            )
        except docker.errors.APIError as exc:
            if "overlap" in str(exc).lower():
                raise BackendError(
                    f"subnet {seg.subnet} of segment {segment!r} is already used by another "
                    "Docker network: change the subnet in the scenario, or remove the other "
                    "network (docker network ls; p2plab clean for old p2plab runs)"
                ) from None
            raise BackendError(f"cannot create Docker network {name}: {exc}") from None
        self.networks[segment] = network
        bridge = network.attrs["Options"]["com.docker.network.bridge.name"]
        unhost, allow = seal_bridge_commands(bridge, self.prefix + segment)
        _run(unhost, check=False)
        _run(allow)

    def _bridge_name(self, segment: str) -> str:
        """Host bridge names are limited to 15 characters: p2 + run id + segment index."""
        assert self.plan is not None
        return f"p2{self.run_id}{list(self.plan.segments).index(segment)}"[:15]

    def _connect_upstream(self, container: Any, router: Any) -> None:
        self.networks[router.upstream].connect(container, ipv4_address=str(router.wan_ip))

    def _apply_routes(self, host: str, commands: list[list[str]]) -> None:
        for command in commands:
            _run(["nsenter", "-t", str(self._pid(host)), "-n", *command])

    def _set_sysctls(self, router: str, sysctls: dict[str, str]) -> None:
        pid = str(self._pid(router))
        for key, value in sysctls.items():
            _run(["nsenter", "-t", pid, "-n", "sysctl", "-qw", f"{key}={value}"])

    def _docker_cli(self, host: str) -> list[str]:
        return ["docker"]

    def _pid(self, name: str) -> int:
        container = self.containers[name]
        container.reload()
        return int(container.attrs["State"]["Pid"])

    # -- the rest ---------------------------------------------------------------------
    def host_pid(self, host: str) -> int | None:
        """The container's first process (a node, or a router's script)."""
        if host not in self.containers:
            return None
        try:
            pid = self._pid(host)
        except Exception:  # the container is gone (a crash being restarted)
            return None
        return pid or None

    def netns_command(self, host: str) -> list[str]:
        return ["nsenter", "-t", str(self._pid(host)), "-n"]

    def destroy(self) -> None:
        """Remove the run's objects, keeping each node's log if the node was never
        stopped cleanly (an interrupted run)."""
        logs = {self.run_id: self.run_dir / "logs"} if self.run_dir is not None else {}
        remove_docker_objects(self.client, run_id=self.run_id, logs_dirs=logs)

    def take_down(self) -> list[str]:
        logs = {self.run_id: self.run_dir / "logs"} if self.run_dir is not None else {}
        return remove_docker_objects(run_id=self.run_id, logs_dirs=logs)

    @classmethod
    def clean(cls, spare: Container[str], logs_dirs: dict[str, Path]) -> list[str]:
        return remove_docker_objects(spare=spare, logs_dirs=logs_dirs)


def bridge_rule(bridge: str, comment: str) -> list[str]:
    """The DOCKER-USER rule (after -I or -D) that lets a lab bridge's own traffic pass."""
    return ["DOCKER-USER", "-i", bridge, "-o", bridge, "-j", "ACCEPT",
            "-m", "comment", "--comment", comment]


def seal_bridge_commands(bridge: str, comment: str) -> tuple[list[str], list[str]]:
    """Take the host's address off a lab bridge; let NAT'd traffic past Docker's
    isolation rules (which drop it when br_netfilter is loaded)."""
    return (["ip", "addr", "flush", "dev", bridge],
            ["iptables", "-w", "-I", *bridge_rule(bridge, comment)])


def _run(argv: list[str], check: bool = True) -> None:
    result = subprocess.run(argv, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise BackendError(f"`{' '.join(argv)}` failed: {result.stderr.strip()}")


def remove_docker_objects(client: Any = None, run_id: str | None = None,
                          spare: Container[str] = frozenset(),
                          logs_dirs: dict[str, Path] | None = None) -> list[str]:
    """Remove the containers, networks and DOCKER-USER rules of one run (``run_id``), or
    of every run not in ``spare``. A node container's log is saved first into
    ``logs_dirs[run]/NAME.log`` when that file does not exist yet (a killed run's
    results keep their logs). A container still being created when the run was
    interrupted can appear after the first listing and hold a network: networks are
    retried after listing the containers again."""
    import docker

    if client is None:
        try:
            client = docker.from_env()
            client.ping()
        except Exception:
            return []
    selector = f"{RUN_LABEL}={run_id}" if run_id else RUN_LABEL

    def chosen(labels: dict[str, str] | None) -> bool:
        return (labels or {}).get(RUN_LABEL) not in spare

    removed: list[str] = []

    def remove_containers() -> None:
        for c in client.containers.list(all=True, sparse=True, filters={"label": selector}):
            labels = c.attrs.get("Labels") or {}
            if not chosen(labels):
                continue
            name = c.attrs["Names"][0].lstrip("/")
            logs_dir = (logs_dirs or {}).get(labels.get(RUN_LABEL, ""))
            if logs_dir is not None and labels.get(ROLE_LABEL) == "node":
                _save_logs(c, logs_dir / f"{name.split('-', 2)[-1]}.log")
            try:
                c.remove(force=True, v=True)
                removed.append(name)
            except docker.errors.NotFound:
                pass
            except docker.errors.APIError as exc:  # already being removed
                if "in progress" not in str(exc):
                    raise

    remove_containers()
    for _attempt in range(10):
        left = [n for n in client.networks.list(filters={"label": selector})
                if chosen(n.attrs.get("Labels"))]
        for network in left:
            try:
                network.remove()
                removed.append(network.name)
            except docker.errors.NotFound:
                pass
            except docker.errors.APIError:
                pass  # a container still attached: listed again below
        if not [n for n in client.networks.list(filters={"label": selector})
                if chosen(n.attrs.get("Labels"))]:
            break
        time.sleep(0.5)
        remove_containers()
    for volume in client.volumes.list(filters={"label": selector}):
        if chosen(volume.attrs.get("Labels")):
            volume.remove(force=True)
            removed.append(volume.name)
    removed += _remove_user_rules(run_id, spare)
    return removed


def foreign_network_overlap(subnets: list[str]) -> tuple[str, str, str] | None:
    """(our subnet, Docker network, its subnet) for a Docker network that is not a
    p2plab run's and overlaps one of ``subnets``: Docker would refuse ours half-way
    through building the lab. (Other p2plab runs: compose/lab/ownership.py.)"""
    import ipaddress

    import docker

    try:
        client = docker.from_env()
        networks = client.networks.list()
    except Exception:
        return None
    ours = [ipaddress.IPv4Network(s) for s in subnets]
    for network in networks:
        if RUN_LABEL in (network.attrs.get("Labels") or {}):
            continue
        for config in (network.attrs.get("IPAM") or {}).get("Config") or []:
            try:
                theirs = ipaddress.ip_network(config.get("Subnet", ""), strict=False)
            except ValueError:
                continue
            for subnet in ours:
                if theirs.version == 4 and subnet.overlaps(theirs):
                    return str(subnet), network.name, str(theirs)
    return None


def _save_logs(container: Any, path: Path) -> None:
    if path.exists() or not path.parent.is_dir():
        return
    try:
        path.write_bytes(container.logs())
    except Exception:  # the logs are a courtesy; removal must go on
        pass


def _remove_user_rules(run_id: str | None, spare: Container[str]) -> list[str]:
    if shutil.which("iptables") is None:
        return []
    listing = subprocess.run(["iptables", "-w", "-S", "DOCKER-USER"], capture_output=True,
                             text=True)
    removed = []
    for line in listing.stdout.splitlines():
        comment = line.split("--comment", 1)[-1].strip().strip('"') if "--comment" in line else ""
        owner = run_id_of(comment, PREFIX)
        if owner is None or owner in spare or (run_id is not None and owner != run_id):
            continue
        rule = line.replace("-A DOCKER-USER", "-D DOCKER-USER", 1)
        subprocess.run(["sh", "-c", f"iptables -w {rule}"], capture_output=True)
        removed.append(f"DOCKER-USER rule {comment}")
    return removed
