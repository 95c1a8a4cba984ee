"""Real chat-node processes on this machine's loopback, as the conformance checks (and
tests) run them: started with an implementation's command, read through their event
log, driven through their control FIFO, stopped with SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from p2plab.compose.impls.builds import ensure_built
from p2plab.compose.impls.registry import Registry

from p2plab.control import send_command


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def node_program(impl: str, registry: Registry | None = None,
                 log: Callable[[str], None] = lambda message: None) -> list[str]:
    """How to start a node of implementation ``impl`` (a spec: ``py``, ``rust@0.53``) on
    this machine, building it first if it is not built."""
    declaration = (registry or Registry.load()).resolve(impl)
    return ensure_built(declaration, log).argv(sys.executable)


class NodeProcess:
    def __init__(self, workdir: Path, name: str, *args: str, stdin: bool = False,
                 ns: str | None = None, impl: str = "py",
                 registry: Registry | None = None) -> None:
        self.name = name
        self.impl = impl
        self.events = workdir / f"{name}.jsonl"
        self.control = workdir / f"{name}.fifo"
        self.out = workdir / f"{name}.out"
        prefix = ["ip", "netns", "exec", ns] if ns else []
        argv = [*prefix, *node_program(impl, registry), "--name", name,
                "--events", str(self.events), *args]
        if not stdin:
            argv += ["--control", str(self.control), "--no-stdin"]
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=open(self.out, "wb"), stderr=subprocess.STDOUT,
            env=dict(os.environ, PYTHONUNBUFFERED="1"), text=stdin or None,
        )

    def read(self) -> list[dict[str, Any]]:
        if not self.events.exists():
            return []
        return [json.loads(line) for line in self.events.read_text().splitlines()
                if line.endswith("}")]

    def of(self, type_: str) -> list[dict[str, Any]]:
        return [e for e in self.read() if e["type"] == type_]

    def wait_for(self, what: str, cond: Callable[[NodeProcess], bool], timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not cond(self):
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited ({self.proc.returncode}) waiting for "
                                     f"{what}:\n{self.out.read_text()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name}: timed out waiting for {what}:\n"
                                     f"{self.out.read_text()}")
            time.sleep(0.1)

    def started(self) -> dict[str, Any]:
        self.wait_for("node_started", lambda n: bool(n.of("node_started")))
        return self.of("node_started")[0]

    def send(self, command: dict[str, Any]) -> None:
        send_command(self.control, command)

    def stop(self, timeout: float = 5) -> float:
        """SIGTERM; return how long the node took to exit."""
        start = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"{self.name} ignored SIGTERM for {timeout} s") from None
        return time.monotonic() - start


# How long a node may take to stop when stopping is cleanup, not the clause under test
# (the shutdown clause holds nodes to the contract's 5 s); a busy CI host is slow.
CLEANUP_TIMEOUT_S = 15.0


def stop_all(nodes: list[NodeProcess], timeout: float = CLEANUP_TIMEOUT_S) -> None:
    """Stop every node, even when one of them ignores SIGTERM (that one is killed and
    the failure raised after the others are stopped: no node outlives its check)."""
    failures = []
    for node in nodes:
        try:
            node.stop(timeout)
        except AssertionError as exc:
            failures.append(exc)
    if failures:
        raise failures[0]
