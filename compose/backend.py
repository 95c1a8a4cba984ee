"""The one small interface every backend implements.

A backend realises a LabPlan (segments, NAT routers, nodes), starts and stops node
processes, runs commands inside a host, and removes everything it made. Addressing,
NAT rules and node flags come from the plan; a backend never recomputes them.
"""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Protocol

if TYPE_CHECKING:  # the command line imports this module: keep its start-up light
    from p2plab.topology.plan import LabPlan, Programs

# Every name a backend creates starts with this, so `p2plab clean` can find leftovers.
PREFIX = "p2pl-"


class BackendError(Exception):
    """The environment cannot run the lab (not root, missing tool, ...): exit code 2."""


class Backend(Protocol):
    name: str
    run_id: str  # in the name of everything it creates
    python: str  # the interpreter that runs p2plab code inside a lab host

    def programs(self) -> Programs:
        """How this backend starts each node implementation (``py``: an interpreter that
        runs the module ``node``; ``rust``: the contract's binary)."""

    def check_environment(self) -> None:
        """Raise BackendError saying what to install or run, before anything is created."""

    def create(self, plan: LabPlan, run_dir: Path) -> None:
        """Build segments, routers (with their NAT rules) and node hosts."""

    def start_node(self, name: str) -> None:
        """Start the chat node on its host; its events go to run_dir/events/NAME.jsonl."""

    def stop_node(self, name: str, timeout: float) -> int | None:
        """SIGTERM the node, wait up to ``timeout``, then kill; return its exit code."""

    def kill_node(self, name: str) -> None:
        """SIGKILL the node (a crash); ``start_node`` starts it again, same identity."""

    def node_running(self, name: str) -> bool: ...

    def reconfigure_router(self, name: str, ruleset: str, sysctls: dict[str, str]) -> None:
        """Replace a router's NAT rules and flush its connection tracking."""

    def node_rss_mb(self, name: str) -> float | None:
        """Resident memory of a running node, for the manifest; None if unknown."""

    def host_pid(self, host: str) -> int | None:
        """The main process of a running node or router host on this machine (its
        descendants are accounted with it), or None (stopped, or kernel-only)."""

    def exec(self, host: str, argv: list[str]) -> subprocess.CompletedProcess[str]:
        """Run a command inside a node's or router's network."""

    def netns_command(self, host: str) -> list[str]:
        """A prefix that runs a program (tcpdump, a link stage) in a started host's
        network namespace: this machine's programs, or (swarm) the image's."""

    netns_python: str  # the interpreter after netns_command that runs p2plab code

    def lab_path(self, path: Path) -> str:
        """Where a file of the results folder is for a program run by netns_command."""

    def send_command(self, host: str, command: dict[str, Any]) -> None:
        """One node-contract command into a node's control FIFO (ControlError if not)."""

    def engine_of(self, host: str) -> str | None:
        """The machine (engine) a host runs on, for the manifest; None before placement."""

    def kept_details(self) -> dict[str, Any]:
        """What a kept lab's record needs beyond hosts and helpers to reach the lab once
        the runner has gone (``p2plab exec``, ``down``); empty for labs on this machine."""

    def destroy(self) -> None:
        """Remove everything this backend created for this run. Safe to call twice."""

    def describe(self) -> dict[str, str]:
        """Facts for the results manifest (kernel, mechanisms)."""


class LocalHosts:
    """What backends whose hosts live on this machine share: programs from netns_command
    are this machine's, the results folder is where the runner sees it, and commands
    go straight into the node's FIFO under run_dir/control."""

    netns_python = sys.executable
    run_dir: Path | None

    def lab_path(self, path: Path) -> str:
        return str(path)

    def engine_of(self, host: str) -> str | None:
        return platform.node()  # every host of the lab is on this machine

    def kept_details(self) -> dict[str, Any]:
        return {}  # names and labels are enough: `p2plab exec` and `down` find the rest

    def send_command(self, host: str, command: dict[str, Any]) -> None:
        from p2plab.control import send_command

        assert self.run_dir is not None
        send_command(self.run_dir / "control" / f"{host}.fifo", command)


def rss_mb_of_pid(pid: int) -> float | None:
    """Resident memory of a host process, read the same way for every backend."""
    import psutil

    try:
        return round(psutil.Process(pid).memory_info().rss / (1024 * 1024), 1)
    except psutil.Error:
        return None


BACKENDS = ("docker", "netns", "swarm", "sim")  # sim: compose/sim, no lab is built


def make_backend(name: str, run_id: str,
                 log: Callable[[str], None] = lambda message: None) -> Backend:
    """The backend called ``name`` for one run (imported lazily: Docker is optional)."""
    if name == "netns":
        from p2plab.compose.netns import NetnsBackend

        return NetnsBackend(run_id)
    if name == "docker":
        from p2plab.compose.docker_backend import DockerBackend

        return DockerBackend(run_id, log=log)
    if name == "swarm":
        from p2plab.compose.swarm.backend import SwarmBackend

        return SwarmBackend(run_id, log=log)
    raise BackendError(f"unknown backend {name!r}; available: {', '.join(BACKENDS)}")
