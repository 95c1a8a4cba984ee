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
from collections.abc import Container
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from p2plab.compose import containers
from p2plab.compose.backend import PREFIX, BackendError, LocalHosts, rss_mb_of_pid
from p2plab.compose.containers import LAB_MOUNT
from p2plab.compose.images import IMAGE_PROGRAMS, ensure_image
from p2plab.compose.ownership import run_id_of
from p2plab.topology.plan import LabPlan, Programs

PARALLEL = 6  # concurrent Docker API calls while building a lab
LABEL = "p2plab"
RUN_LABEL = "p2plab.run"  # the run id: what `p2plab clean` decides ownership by
ROLE_LABEL = "p2plab.role"  # node or router: a node's log is kept when its run is cleaned


class DockerBackend(LocalHosts):
    name = "docker"
    python = "python"

    def __init__(self, run_id: str, log=lambda message: None) -> None:  # type: ignore[no-untyped-def]
        self.run_id = run_id
        self.prefix = f"{PREFIX}{run_id}-"
        self.log = log
        self.client: Any = None
        self.image: str | None = None
        self.plan: LabPlan | None = None
        self.run_dir: Path | None = None
        self.networks: dict[str, Any] = {}
        self.containers: dict[str, Any] = {}
        self._status: dict[str, str] = {}
        self._status_at = 0.0

    # -- environment ----------------------------------------------------------------
    def check_environment(self) -> None:
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
        self.image = ensure_image(self.log)

    def programs(self) -> Programs:
        return IMAGE_PROGRAMS

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

    def _labels(self, role: str | None = None) -> dict[str, str]:
        return {LABEL: "1", RUN_LABEL: self.run_id, **({ROLE_LABEL: role} if role else {})}

    # -- networks -------------------------------------------------------------------
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

    # -- lifecycle ------------------------------------------------------------------
    def create(self, plan: LabPlan, run_dir: Path) -> None:
        import docker

        try:
            self._create(plan, run_dir)
        except docker.errors.DockerException as exc:
            # An engine error (no space, a name in use, a daemon restart) is the
            # environment's, not a bug: one line, and the run's folder keeps its logs.
            detail = getattr(exc, "explanation", None) or str(exc)
            raise BackendError(f"the Docker engine refused part of the lab: {detail}") from None

    def _create(self, plan: LabPlan, run_dir: Path) -> None:
        self.plan = plan
        self.run_dir = run_dir
        for sub in ("events", "logs", "control", "routers", "probe"):
            (run_dir / sub).mkdir(parents=True, exist_ok=True)
        for segment in plan.segments:
            self._create_network(segment)
        # Containers are created in parallel: on slow storage drivers each takes a while.
        with ThreadPoolExecutor(PARALLEL) as pool:
            list(pool.map(self._create_router, plan.routers.values()))
            list(pool.map(self._wait_router, plan.routers))
            list(pool.map(lambda h: self._create_container(
                h.name, h.segment, str(h.ip), command=h.command(LAB_MOUNT, IMAGE_PROGRAMS)),
                list(plan.hosts())))

    def _create_router(self, router: Any) -> None:
        assert self.run_dir is not None
        rules = self.run_dir / "routers" / f"{router.name}.nft"
        rules.write_text(router.nft_ruleset)
        container = self._create_container(
            router.name, router.lan, str(router.lan_ip),
            command=["p2plab-router", str(router.lan_ip), str(router.wan_ip),
                     str(LAB_MOUNT / "routers" / rules.name)],
            cap_add=["NET_ADMIN"], environment=router_environment(router),
            sysctls={"net.ipv4.ip_forward": "1", **router.sysctls},
        )
        self.networks[router.upstream].connect(container, ipv4_address=str(router.wan_ip))
        container.start()

    def _create_container(self, name: str, segment: str, ip: str, command: list[str],
                          **kwargs: Any) -> Any:
        assert self.run_dir is not None and self.plan is not None and self.image is not None
        role = "router" if name in self.plan.routers else "node"
        container = containers.create_host(
            self.client, self.image, f"{self.prefix}{name}", name, self._labels(role),
            self.networks[segment].name, ip, str(self.run_dir.resolve()), command, **kwargs)
        self.containers[name] = container
        return container

    def _wait_router(self, name: str) -> None:
        containers.wait_router_ready(self.containers[name], name, timeout=20)

    def _pid(self, name: str) -> int:
        container = self.containers[name]
        container.reload()
        return int(container.attrs["State"]["Pid"])

    def start_node(self, name: str) -> None:
        assert self.plan is not None
        self._forget_status()
        container = self.containers[name]
        container.start()
        # The node has no NET_ADMIN; the host sets its routes inside its namespace: via
        # its NAT router, or none at all (Docker adds one even on internal networks).
        host = self.plan.host(name)
        for command in route_commands(host.gateway, host.routes):
            _run(["nsenter", "-t", str(self._pid(name)), "-n", *command])

    def reconfigure_router(self, name: str, ruleset: str, sysctls: dict[str, str]) -> None:
        """Load a NAT ruleset (replacing any) and flush connection tracking."""
        assert self.run_dir is not None
        (self.run_dir / "routers" / f"{name}.nft").write_text(ruleset)
        pid = str(self._pid(name))
        for key, value in sysctls.items():
            _run(["nsenter", "-t", pid, "-n", "sysctl", "-qw", f"{key}={value}"])
        result = self.exec(name, ["nft", "-f", str(LAB_MOUNT / "routers" / f"{name}.nft")])
        if result.returncode != 0:
            raise BackendError(f"router {name} refused its new rules: {result.stderr.strip()}")
        self.exec(name, ["conntrack", "-F"])

    def kill_node(self, name: str) -> None:
        self._forget_status()
        containers.kill(self.containers[name])

    def host_pid(self, host: str) -> int | None:
        """The container's first process (a node, or a router's script)."""
        if host not in self.containers:
            return None
        try:
            pid = self._pid(host)
        except Exception:  # the container is gone (a crash being restarted)
            return None
        return pid or None

    def node_running(self, name: str) -> bool:
        """From one listing of the run's containers, at most a second old: the runner
        asks about every node many times a second, and 50 inspections a poll load the
        engine more than the lab does."""
        import time

        if name not in self.containers:
            return False
        now = time.monotonic()
        if now - self._status_at > 1.0 or name not in self._status:
            self._status = containers.states([self.client], f"{RUN_LABEL}={self.run_id}",
                                             self.prefix)
            self._status_at = now
        return self._status.get(name) == "running"

    def _forget_status(self) -> None:
        self._status_at = 0.0

    def node_rss_mb(self, name: str) -> float | None:
        if not self.node_running(name):
            return None
        return rss_mb_of_pid(self._pid(name))

    def stop_node(self, name: str, timeout: float) -> int | None:
        container = self.containers.get(name)
        if container is None:
            return None
        assert self.run_dir is not None
        return containers.stop_saving_log(container, timeout, self.run_dir / "logs" / f"{name}.log")

    def netns_command(self, host: str) -> list[str]:
        return ["nsenter", "-t", str(self._pid(host)), "-n"]

    def exec(self, host: str, argv: list[str]) -> subprocess.CompletedProcess[str]:
        return containers.exec_in(self.containers[host], argv)

    def destroy(self) -> None:
        """Remove the run's objects, keeping each node's log if the node was never
        stopped cleanly (an interrupted run)."""
        logs = {self.run_id: self.run_dir / "logs"} if self.run_dir is not None else {}
        remove_docker_objects(self.client, run_id=self.run_id, logs_dirs=logs)


def bridge_rule(bridge: str, comment: str) -> list[str]:
    """The DOCKER-USER rule (after -I or -D) that lets a lab bridge's own traffic pass."""
    return ["DOCKER-USER", "-i", bridge, "-o", bridge, "-j", "ACCEPT",
            "-m", "comment", "--comment", comment]


def seal_bridge_commands(bridge: str, comment: str) -> tuple[list[str], list[str]]:
    """Take the host's address off a lab bridge; let NAT'd traffic past Docker's
    isolation rules (which drop it when br_netfilter is loaded)."""
    return (["ip", "addr", "flush", "dev", bridge],
            ["iptables", "-w", "-I", *bridge_rule(bridge, comment)])


def route_commands(gateway: Any, routes: tuple[tuple[str, str], ...]) -> list[list[str]]:
    """The ``ip route`` calls that give a host exactly the routes the plan says."""
    default = (["ip", "route", "flush", "exact", "0.0.0.0/0"] if gateway is None
               else ["ip", "route", "replace", "default", "via", str(gateway)])
    return [default] + [["ip", "route", "replace", subnet, "via", via] for subnet, via in routes]


def router_environment(router: Any) -> dict[str, str]:
    """What p2plab-router needs beyond its arguments: its default route and extra routes."""
    env = {"ROUTES": ";".join(f"{subnet} via {via}" for subnet, via in router.routes)}
    if router.default_via is not None:
        env["DEFAULT_VIA"] = str(router.default_via)
    return env


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
    chosen = lambda labels: (labels or {}).get(RUN_LABEL) not in spare  # noqa: E731
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
    for attempt in range(10):
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
    through building the lab. (Other p2plab runs: compose/ownership.py.)"""
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
