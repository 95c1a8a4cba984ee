"""The netns backend: a Linux network namespace per node and per router.

Layout: one ``fabric`` namespace per run holds a bridge per segment; every node and
router namespace is joined to its bridge by a veth pair created directly between the
two namespaces. Nothing is created in the host's namespace and no namespace has a
route to the host, so the lab is sealed and deleting the namespaces removes it all.
"""

from __future__ import annotations

import os
import platform
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Container
from pathlib import Path, PurePosixPath

from p2plab.compose.backends.base import PREFIX, BackendError, LocalHosts, rss_mb_of_pid
from p2plab.compose.lab.cleanup import kill_namespace_processes, remove_namespaces
from p2plab.topology.plan import LAB_PYTHON, LAN_IF, NODE_IF, WAN_IF, LabPlan, Programs

from p2plab.processes import stop_children


class NetnsBackend(LocalHosts):
    name = "netns"

    def __init__(self, run_id: str, python: str = sys.executable,
                 log: Callable[[str], None] = lambda message: None) -> None:
        """``python`` runs nodes and probes inside namespaces (this venv's interpreter)."""
        super().__init__(run_id, log)
        self.prefix = f"{PREFIX}{run_id}-"
        self.fabric = f"{self.prefix}fabric"
        self.python = python
        self.plan: LabPlan | None = None
        self.run_dir: Path | None = None
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self._veth = 0

    # -- environment ----------------------------------------------------------
    def check_environment(self, plan: LabPlan) -> None:
        if os.geteuid() != 0:
            raise BackendError(
                "the netns backend needs root to create network namespaces: "
                "run it with sudo (or as root)"
            )
        for tool, package in (("ip", "iproute2"), ("nft", "nftables"),
                              ("conntrack", "conntrack")):
            if shutil.which(tool) is None:
                raise BackendError(f"{tool!r} is not installed: apt-get install {package}")
        probe = f"{self.prefix}probe"  # carries the run id: `clean` finds a stray one
        try:
            result = subprocess.run(["ip", "netns", "add", probe], capture_output=True,
                                    text=True)
            if result.returncode != 0:
                raise BackendError(
                    f"cannot create a network namespace: {result.stderr.strip()}")
        finally:
            subprocess.run(["ip", "netns", "del", probe], capture_output=True)
        self.build_implementations()  # before anything is created

    def programs(self) -> Programs:
        return {LAB_PYTHON: [self.python],
                **{spec: built.argv(self.python) for spec, built in self.builds.items()}}

    def describe(self) -> dict[str, str]:
        return {
            "backend": self.name,
            "kernel": platform.release(),
            "nat": "nftables ruleset loaded with `nft -f` in each router namespace",
            "link_impairment": "none requested (no link shaping in this scenario)",
        }

    # -- helpers ---------------------------------------------------------------
    def ns(self, host: str) -> str:
        return f"{self.prefix}{host}"

    def _run(self, argv: list[str], stdin: str | None = None, check_quiet: bool = False) -> None:
        result = subprocess.run(argv, input=stdin, capture_output=True, text=True)
        # conntrack -F says "0 flow entries have been deleted" on stderr with status 0;
        # it exits 1 on an empty table with some versions: that is not an error here.
        if result.returncode != 0 and not (check_quiet and "deleted" in result.stderr):
            raise BackendError(f"`{' '.join(argv)}` failed: {result.stderr.strip()}")

    def _ip(self, namespace: str, *args: str) -> None:
        self._run(["ip", "-n", namespace, *args])

    def _sysctl(self, namespace: str, key: str, value: str) -> None:
        self._run(["ip", "netns", "exec", namespace, "sysctl", "-qw", f"{key}={value}"])

    def _add_namespace(self, namespace: str) -> None:
        self._run(["ip", "netns", "add", namespace])
        self._ip(namespace, "link", "set", "lo", "up")
        # The lab is IPv4: no IPv6 link-local chatter, no surprise routes.
        self._sysctl(namespace, "net.ipv6.conf.all.disable_ipv6", "1")
        self._sysctl(namespace, "net.ipv6.conf.default.disable_ipv6", "1")

    def _attach(self, host_ns: str, ifname: str, segment: str, address: str) -> None:
        """A veth from the fabric's bridge for ``segment`` into ``host_ns`` as ``ifname``."""
        self._veth += 1
        fabric_end = f"v{self._veth}"
        self._ip(self.fabric, "link", "add", fabric_end, "type", "veth",
                 "peer", "name", ifname, "netns", host_ns)
        self._ip(self.fabric, "link", "set", fabric_end, "master", _bridge(segment, self.plan))
        self._ip(self.fabric, "link", "set", fabric_end, "up")
        self._ip(host_ns, "addr", "add", address, "dev", ifname)
        self._ip(host_ns, "link", "set", ifname, "up")

    # -- lifecycle -------------------------------------------------------------
    def create(self, plan: LabPlan, run_dir: Path) -> None:
        self.plan = plan
        self.run_dir = run_dir
        self._add_namespace(self.fabric)
        for segment in plan.segments.values():
            bridge = _bridge(segment.name, plan)
            self._ip(self.fabric, "link", "add", bridge, "type", "bridge")
            self._ip(self.fabric, "link", "set", bridge, "up")
        for router in plan.routers.values():
            ns = self.ns(router.name)
            self._add_namespace(ns)
            lan = plan.segments[router.lan]
            upstream = plan.segments[router.upstream]
            self._attach(ns, LAN_IF, router.lan, f"{router.lan_ip}/{lan.subnet.prefixlen}")
            self._attach(ns, WAN_IF, router.upstream,
                         f"{router.wan_ip}/{upstream.subnet.prefixlen}")
            self._sysctl(ns, "net.ipv4.ip_forward", "1")
            self.reconfigure_router(router.name, router.nft_ruleset, router.sysctls)
            if router.default_via is not None:
                self._ip(ns, "route", "add", "default", "via", str(router.default_via))
            for subnet, via in router.routes:
                self._ip(ns, "route", "add", subnet, "via", via)
        for host in plan.hosts():
            ns = self.ns(host.name)
            self._add_namespace(ns)
            segment = plan.segments[host.segment]
            self._attach(ns, NODE_IF, host.segment, f"{host.ip}/{segment.subnet.prefixlen}")
            if host.gateway is not None:
                self._ip(ns, "route", "add", "default", "via", str(host.gateway))
            for subnet, via in host.routes:
                self._ip(ns, "route", "add", subnet, "via", via)
        for sub in ("events", "logs", "control", "probe"):
            (run_dir / sub).mkdir(parents=True, exist_ok=True)

    def reconfigure_router(self, name: str, ruleset: str, sysctls: dict[str, str]) -> None:
        """Load a NAT ruleset (replacing any) and flush connection tracking."""
        ns = self.ns(name)
        for key, value in sysctls.items():
            self._sysctl(ns, key, value)
        self._run(["ip", "netns", "exec", ns, "nft", "-f", "-"], stdin=ruleset)
        self._run(["ip", "netns", "exec", ns, "conntrack", "-F"], check_quiet=True)

    def start_node(self, name: str) -> None:
        assert self.plan is not None and self.run_dir is not None
        command = self.plan.host(name).command(PurePosixPath(self.run_dir), self.programs())
        log = open(self.run_dir / "logs" / f"{name}.log", "ab")
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.processes[name] = subprocess.Popen(
            ["ip", "netns", "exec", self.ns(name), *command],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
            start_new_session=True,  # Ctrl-C reaches the runner, which stops nodes itself
        )
        log.close()

    def kill_node(self, name: str) -> None:
        proc = self.processes.get(name)
        if proc is not None:
            stop_children([proc], grace=0, sig=signal.SIGKILL)

    def host_pid(self, host: str) -> int | None:
        """A node's process; a router namespace runs no process (NAT is kernel work)."""
        proc = self.processes.get(host)
        return proc.pid if proc is not None and proc.poll() is None else None

    def node_running(self, name: str) -> bool:
        proc = self.processes.get(name)
        return proc is not None and proc.poll() is None

    def node_rss_mb(self, name: str) -> float | None:
        proc = self.processes.get(name)
        if proc is None or proc.poll() is not None:
            return None
        return rss_mb_of_pid(proc.pid)

    def stop_node(self, name: str, timeout: float) -> int | None:
        proc = self.processes.get(name)
        if proc is None:
            return None
        stop_children([proc], grace=timeout)
        return proc.returncode

    def netns_command(self, host: str) -> list[str]:
        return ["ip", "netns", "exec", self.ns(host)]

    def exec(self, host: str, argv: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", "netns", "exec", self.ns(host), *argv],
                              capture_output=True, text=True)

    def exec_argv(self, host: str, argv: list[str], interactive: bool = False) -> list[str]:
        return ["ip", "netns", "exec", self.ns(host), *argv]

    def destroy(self) -> None:
        stop_children(self.processes.values(), grace=0, sig=signal.SIGKILL)
        for name in list(self.processes):
            kill_namespace_processes(self.ns(name))
        remove_namespaces(self.prefix)

    def take_down(self) -> list[str]:
        return remove_namespaces(self.prefix)

    @classmethod
    def clean(cls, spare: Container[str], logs_dirs: dict[str, Path]) -> list[str]:
        return remove_namespaces(spare=spare)  # a node's log is a file on the host already


def _bridge(segment: str, plan: LabPlan | None) -> str:
    """Bridge names are short (15-character limit): br + the segment's index."""
    assert plan is not None
    return f"br{list(plan.segments).index(segment)}"
