"""The one small interface every backend implements.

A backend realises a LabPlan (segments, NAT routers, nodes), starts and stops node
processes, runs commands inside a host, and removes everything it made. Addressing,
NAT rules and node flags come from the plan; a backend never recomputes them.
"""

from __future__ import annotations

import platform
import subprocess
import sys
from abc import ABC, abstractmethod
from collections.abc import Callable, Container
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the command line imports this module: keep its start-up light
    from p2plab.compose.impls.builds import Built
    from p2plab.compose.impls.declaration import Declaration
    from p2plab.topology.plan import LabPlan, Programs

# Every name a backend creates starts with this, so `p2plab clean` can find leftovers.
PREFIX = "p2pl-"


class BackendError(Exception):
    """The environment cannot run the lab (not root, missing tool, ...): exit code 2."""


class Backend(ABC):
    """A backend for one run. What differs between backends is a method here: shared
    code never asks a backend for its name (``registry`` is the one place that does)."""

    name: str
    run_id: str  # in the name of everything it creates
    python: str  # the interpreter that runs p2plab code inside a lab host
    netns_python: str  # the interpreter after netns_command that runs p2plab code
    run_dir: Path | None
    # Places hosts on machines of its choosing (a scenario's placement rules apply).
    places_hosts = False
    # Its labs' subnets share one address space with the other runs on this machine
    # (Docker bridges in the host's namespace, a swarm's overlays).
    shares_address_space = False

    def __init__(self, run_id: str, log: Callable[[str], None] = lambda message: None) -> None:
        """Every backend is made for one run; ``log`` takes its progress lines."""
        self.run_id = run_id
        self.log = log
        self.run_dir = None
        self.declarations: dict[str, Declaration] = {}
        self.builds: dict[str, Built] = {}

    @abstractmethod
    def programs(self) -> Programs:
        """How this backend starts each implementation the plan names (by the spec the
        scenario gives: ``py``, ``rust@0.53``), and the lab's Python (``LAB_PYTHON``)."""

    @abstractmethod
    def check_environment(self, plan: LabPlan) -> None:
        """Raise BackendError saying what to install or run for ``plan``, before anything
        is created (and build what it needs: the implementations, the image)."""

    def build_implementations(self) -> None:
        """Build (or find built) each of ``declarations`` (set by the lab before
        ``check_environment``): once per what each is built from, whatever the backend."""
        from p2plab.compose.impls.builds import ensure_built

        self.builds = {spec: ensure_built(declaration, self.log)
                       for spec, declaration in self.declarations.items()}

    def check_address_space(self, subnets: list[str]) -> None:  # noqa: B027  # optional
        """Raise BackendError if a lab subnet would clash with this machine's networks
        (nothing to check where every lab has its own routes)."""

    @abstractmethod
    def create(self, plan: LabPlan, run_dir: Path) -> None:
        """Build segments, routers (with their NAT rules) and node hosts."""

    @abstractmethod
    def start_node(self, name: str) -> None:
        """Start the chat node on its host; its events go to run_dir/events/NAME.jsonl."""

    @abstractmethod
    def stop_node(self, name: str, timeout: float) -> int | None:
        """SIGTERM the node, wait up to ``timeout``, then kill; return its exit code."""

    @abstractmethod
    def kill_node(self, name: str) -> None:
        """SIGKILL the node (a crash); ``start_node`` starts it again, same identity."""

    @abstractmethod
    def node_running(self, name: str) -> bool: ...

    @abstractmethod
    def reconfigure_router(self, name: str, ruleset: str, sysctls: dict[str, str]) -> None:
        """Replace a router's NAT rules and flush its connection tracking."""

    @abstractmethod
    def node_rss_mb(self, name: str) -> float | None:
        """Resident memory of a running node, for the manifest; None if unknown."""

    @abstractmethod
    def host_pid(self, host: str) -> int | None:
        """The main process of a running node or router host on this machine (its
        descendants are accounted with it), or None (stopped, or kernel-only)."""

    @abstractmethod
    def exec(self, host: str, argv: list[str]) -> subprocess.CompletedProcess[str]:
        """Run a command inside a node's or router's network."""

    @abstractmethod
    def exec_argv(self, host: str, argv: list[str], interactive: bool = False) -> list[str]:
        """The command line, run on this machine, that runs ``argv`` inside a host (for
        a terminal of the user's own: ``p2plab exec``, ``lab["alice"].argv(...)``)."""

    @abstractmethod
    def netns_command(self, host: str) -> list[str]:
        """A prefix that runs a program (tcpdump, a link stage) in a started host's
        network namespace: this machine's programs, or (swarm) the image's."""

    @abstractmethod
    def lab_path(self, path: Path) -> str:
        """Where a file of the results folder is for a program run by netns_command."""

    @abstractmethod
    def send_command(self, host: str, command: dict[str, Any]) -> None:
        """One node-contract command into a node's control FIFO (ControlError if not)."""

    @abstractmethod
    def engine_of(self, host: str) -> str | None:
        """The machine (engine) a host runs on, for the manifest; None before placement."""

    def kept_details(self) -> dict[str, Any]:
        """What a kept lab's record needs beyond hosts and helpers to reach the lab once
        the runner has gone (``p2plab exec``, ``down``); empty for labs on this machine."""
        return {}

    @classmethod
    def reattach(cls, run_id: str, run_dir: Path, details: dict[str, Any]) -> Backend:
        """This backend for a kept lab whose runner has gone: commands, ``exec_argv``
        and ``take_down`` work (``details``: what ``kept_details`` said)."""
        backend = cls(run_id)
        backend.run_dir = run_dir
        return backend

    @abstractmethod
    def take_down(self) -> list[str]:
        """Remove what this run made, found by its run id (a kept lab, re-attached);
        returns what was removed."""

    @classmethod
    @abstractmethod
    def clean(cls, spare: Container[str], logs_dirs: dict[str, Path]) -> list[str]:
        """Remove what this backend made for runs not in ``spare`` (``p2plab clean``),
        saving node logs into ``logs_dirs[run]`` where a run has a folder."""

    @abstractmethod
    def destroy(self) -> None:
        """Remove everything this backend created for this run. Safe to call twice."""

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """Facts for the results manifest (kernel, mechanisms)."""


class LocalHosts(Backend, ABC):
    """What backends whose hosts live on this machine share: programs from netns_command
    are this machine's, the results folder is where the runner sees it, and commands
    go straight into the node's FIFO under run_dir/control."""

    netns_python = sys.executable
    run_dir: Path | None

    def lab_path(self, path: Path) -> str:
        return str(path)

    def engine_of(self, host: str) -> str | None:
        return platform.node()  # every host of the lab is on this machine

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
