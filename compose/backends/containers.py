"""Lab hosts as Docker containers: ``ContainerBackend``, what the Docker and swarm
backends share, written once.

Both make a router or node the same way (the plan's address on its segment's network,
the run's folder at /lab, IPv6 off, SIGTERM to stop), wait for a router's start-up line,
start, kill, stop, reconfigure and exec the same way; they differ in which engine (a
client) holds a host, which /lab it sees (a host folder, or a volume on each engine),
how a host's network is set up from outside (nsenter here, a helper container on an
engine elsewhere) and how the user's terminal reaches it. Those are the hooks.
"""

from __future__ import annotations

import functools
import subprocess
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath
from typing import Any

from p2plab.compose.backends.base import PREFIX, Backend, BackendError, rss_mb_of_pid
from p2plab.compose.images import image_programs
from p2plab.topology.plan import LabPlan, Programs

LAB_MOUNT = PurePosixPath("/lab")
ROUTER_READY = "p2plab-router: ready"
PARALLEL = 6  # concurrent engine API calls while building a lab
LABEL = "p2plab"
RUN_LABEL = "p2plab.run"  # the run id: what `p2plab clean` decides ownership by
ROLE_LABEL = "p2plab.role"  # node or router: a node's log is kept when its run is cleaned


class ContainerBackend(Backend, ABC):
    """Hosts as containers on engines; a subclass says which engine and how."""

    python = "python"  # inside the image
    shares_address_space = True
    refused = "the Docker engine"  # who refused part of the lab, in the error
    router_timeout_s = 20.0
    run_folders: tuple[str, ...] = ("events", "logs", "control", "routers")

    def __init__(self, run_id: str, log: Callable[[str], None] = lambda message: None) -> None:
        super().__init__(run_id, log)
        self.prefix = f"{PREFIX}{run_id}-"
        self.image: str | None = None
        self.plan: LabPlan | None = None
        self.networks: dict[str, Any] = {}
        self.containers: dict[str, Any] = {}
        self.recipes: dict[str, Callable[[], Any]] = {}  # how to make each host's container
        self._status: dict[str, str] = {}
        self._status_at = 0.0

    # -- hooks ---------------------------------------------------------------------------
    @abstractmethod
    def _client_for(self, host: str) -> Any:
        """The engine client that holds ``host``."""

    @abstractmethod
    def _clients(self) -> list[Any]:
        """Every engine client of the lab."""

    @abstractmethod
    def _lab_source(self) -> str:
        """What is mounted at /lab: the run's folder, or the run's volume."""

    @abstractmethod
    def _create_network(self, segment: str) -> None: ...

    @abstractmethod
    def _connect_upstream(self, container: Any, router: Any) -> None:
        """Attach a router's container to its upstream network at its WAN address."""

    @abstractmethod
    def _apply_routes(self, host: str, commands: list[list[str]]) -> None:
        """Run ``ip route`` commands in a started host's namespace from outside (a node
        holds no NET_ADMIN itself)."""

    @abstractmethod
    def _set_sysctls(self, router: str, sysctls: dict[str, str]) -> None: ...

    @abstractmethod
    def _docker_cli(self, host: str) -> list[str]:
        """The docker command line that reaches ``host``'s engine from this machine."""

    def _extra_labels(self) -> dict[str, str]:
        return {}

    def _prepare(self, plan: LabPlan, run_dir: Path) -> None:
        """Before any network: what a backend needs first (engines placed, agents up)."""

    def _start_host(self, name: str) -> None:
        self.containers[name].start()

    def _write_lab_file(self, host: str, relative: str, text: str) -> None:
        """A file under the run's folder that ``host`` reads at /lab/RELATIVE."""
        assert self.run_dir is not None
        (self.run_dir / relative).write_text(text)

    def _where(self, host: str) -> str:
        return ""  # " on ENGINE" where a lab spans engines

    # -- shared ----------------------------------------------------------------------------
    def programs(self) -> Programs:
        return image_programs(self.builds)

    def _labels(self, role: str | None = None) -> dict[str, str]:
        return {LABEL: "1", RUN_LABEL: self.run_id, **self._extra_labels(),
                **({ROLE_LABEL: role} if role else {})}

    def create(self, plan: LabPlan, run_dir: Path) -> None:
        import docker

        try:
            self._create(plan, run_dir)
        except docker.errors.DockerException as exc:
            # An engine error (no space, a name in use, a daemon restart) is the
            # environment's, not a bug: one line, and the run's folder keeps its logs.
            detail = getattr(exc, "explanation", None) or str(exc)
            raise BackendError(f"{self.refused} refused part of the lab: {detail}") from None

    def _create(self, plan: LabPlan, run_dir: Path) -> None:
        self.plan, self.run_dir = plan, run_dir
        for sub in self.run_folders:
            (run_dir / sub).mkdir(parents=True, exist_ok=True)
        self._prepare(plan, run_dir)
        for segment in plan.segments:
            self._create_network(segment)
        # Containers are created in parallel: on slow storage drivers each takes a while.
        with ThreadPoolExecutor(PARALLEL) as pool:
            list(pool.map(self._create_router, plan.routers.values()))
            list(pool.map(self._wait_router, plan.routers))
            for h in plan.hosts():
                self.recipes[h.name] = functools.partial(
                    self._create_container, h.name, h.segment, str(h.ip),
                    command=h.command(LAB_MOUNT, self.programs()))
            list(pool.map(lambda h: self.recipes[h.name](), list(plan.hosts())))

    def _create_router(self, router: Any) -> None:
        relative = f"routers/{router.name}.nft"
        self._write_lab_file(router.name, relative, router.nft_ruleset)

        def make() -> Any:
            container = self._create_container(
                router.name, router.lan, str(router.lan_ip),
                command=["p2plab-router", str(router.lan_ip), str(router.wan_ip),
                         str(LAB_MOUNT / relative)],
                cap_add=["NET_ADMIN"], environment=router_environment(router),
                sysctls={"net.ipv4.ip_forward": "1", **router.sysctls},
            )
            self._connect_upstream(container, router)
            return container

        self.recipes[router.name] = make
        make()
        self._start_host(router.name)

    def _create_container(self, name: str, segment: str, ip: str, command: list[str],
                          **kwargs: Any) -> Any:
        assert self.plan is not None and self.image is not None
        role = "router" if name in self.plan.routers else "node"
        container = create_host(
            self._client_for(name), self.image, f"{self.prefix}{name}", name,
            self._labels(role), self.networks[segment].name, ip, self._lab_source(),
            command, **kwargs)
        self.containers[name] = container
        return container

    def _wait_router(self, name: str) -> None:
        wait_router_ready(self.containers[name], name, timeout=self.router_timeout_s,
                          where=self._where(name))

    def start_node(self, name: str) -> None:
        assert self.plan is not None
        self._forget_status()
        self._start_host(name)
        # Via its NAT router, or no default route at all (Docker adds one even on
        # internal networks).
        host = self.plan.host(name)
        self._apply_routes(name, route_commands(host.gateway, host.routes))

    def reconfigure_router(self, name: str, ruleset: str, sysctls: dict[str, str]) -> None:
        """Load a NAT ruleset (replacing any) and flush connection tracking."""
        relative = f"routers/{name}.nft"
        self._write_lab_file(name, relative, ruleset)
        self._set_sysctls(name, sysctls)
        result = self.exec(name, ["nft", "-f", str(LAB_MOUNT / relative)])
        if result.returncode != 0:
            raise BackendError(f"router {name} refused its new rules: {result.stderr.strip()}")
        self.exec(name, ["conntrack", "-F"])

    def kill_node(self, name: str) -> None:
        self._forget_status()
        kill(self.containers[name])

    def node_running(self, name: str) -> bool:
        """From one listing of the run's containers per engine, at most a second old: the
        runner asks about every node many times a second, and 50 inspections a poll
        load an engine more than the lab does."""
        if name not in self.containers:
            return False
        now = time.monotonic()
        if now - self._status_at > 1.0 or name not in self._status:
            self._status = states(self._clients(), f"{RUN_LABEL}={self.run_id}", self.prefix)
            self._status_at = now
        return self._status.get(name) == "running"

    def _forget_status(self) -> None:
        self._status_at = 0.0

    def node_rss_mb(self, name: str) -> float | None:
        pid = self.host_pid(name) if self.node_running(name) else None
        return rss_mb_of_pid(pid) if pid else None

    def stop_node(self, name: str, timeout: float) -> int | None:
        container = self.containers.get(name)
        if container is None:
            return None
        assert self.run_dir is not None
        return stop_saving_log(container, timeout, self.run_dir / "logs" / f"{name}.log")

    def exec(self, host: str, argv: list[str]) -> subprocess.CompletedProcess[str]:
        return exec_in(self.containers[host], argv)

    def exec_argv(self, host: str, argv: list[str], interactive: bool = False) -> list[str]:
        tty = ["-it"] if interactive and sys.stdin.isatty() else ["-i"]
        return [*self._docker_cli(host), "exec", *tty, f"{self.prefix}{host}", *argv]

    def save_node_logs(self) -> None:
        """Each node's output into logs/NAME.log where the node was not stopped cleanly
        (an interrupted run); a courtesy before removal."""
        if self.run_dir is None or self.plan is None:
            return
        for name, container in self.containers.items():
            path = self.run_dir / "logs" / f"{name}.log"
            if path.exists() or name in self.plan.routers:
                continue
            try:
                path.write_bytes(container.logs())
            except Exception:  # a courtesy: removal goes on
                pass


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


def create_host(client: Any, image: str, name: str, hostname: str, labels: dict[str, str],
                network: str, ip: str, lab_source: str, command: list[str],
                **kwargs: Any) -> Any:
    """A created (not started) container for one lab host; ``lab_source`` is mounted at
    /lab (a host folder or a volume name)."""
    return client.containers.create(
        image, command=command, name=name, hostname=hostname, labels=labels,
        network=network,
        networking_config={network: client.api.create_endpoint_config(ipv4_address=ip)},
        volumes={lab_source: {"bind": str(LAB_MOUNT), "mode": "rw"}},
        sysctls={"net.ipv6.conf.all.disable_ipv6": "1", **kwargs.pop("sysctls", {})},
        stop_signal="SIGTERM", **kwargs,
    )


def wait_router_ready(container: Any, name: str, timeout: float, where: str = "") -> None:
    """Until the router's start-up script says it is ready (interfaces named, rules in)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        container.reload()
        if ROUTER_READY in container.logs().decode(errors="replace"):
            return
        if container.status == "exited":
            break
        time.sleep(0.1)
    raise BackendError(f"router {name} did not come up{where}:\n"
                       f"{container.logs().decode(errors='replace')[-800:]}")


def kill(container: Any) -> None:
    """SIGKILL a running host and wait until it is down (a crash)."""
    container.reload()
    if container.status == "running":
        container.kill()
        container.wait(timeout=30)


def stop_saving_log(container: Any, timeout: float, log: Path) -> int:
    """SIGTERM, wait, and keep the container's output as the node's log."""
    container.stop(timeout=max(1, int(timeout)))
    code = container.wait(timeout=30)["StatusCode"]
    log.write_bytes(container.logs())
    return int(code)


def exec_in(container: Any, argv: list[str]) -> subprocess.CompletedProcess[str]:
    result = container.exec_run(argv, demux=True)
    out, err = result.output
    return subprocess.CompletedProcess(argv, result.exit_code,
                                       (out or b"").decode(), (err or b"").decode())


def states(clients: Iterable[Any], label: str, prefix: str) -> dict[str, str]:
    """Host name -> container state, from one sparse listing per engine (the SDK would
    otherwise inspect every container: 50 inspections a poll load an engine more than
    the lab does)."""
    found: dict[str, str] = {}
    for client in clients:
        for c in client.containers.list(all=True, sparse=True, filters={"label": label}):
            found[c.attrs["Names"][0].lstrip("/").removeprefix(prefix)] = c.attrs["State"]
    return found
