"""Handles for a lab's hosts, in the spirit of Mininet's ``h1.cmd()``:

    lab["alice"].exec(["ip", "addr"])      # run a command in the host, get its output
    lab["alice"].send({"cmd": "say", "text": "hi"})   # a node-contract command
    lab["bob"].events("message_received")  # what the node has logged so far
    lab["bob"].kill()                       # a crash, as a timeline's kill step does

The same ``Host`` serves a running lab (the runner, the pytest fixture) and a kept one
(``p2plab exec``); what differs is its ``HostOwner``.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any, Protocol

from p2plab.compose.backends.base import BackendError

from p2plab.events import read_events


class HostOwner(Protocol):
    """What a host handle needs from whoever holds the lab."""

    run_dir: Path

    def exec_in(self, host: str, argv: list[str]) -> subprocess.CompletedProcess[str]: ...

    def argv_in(self, host: str, argv: list[str]) -> list[str]: ...

    def events_of(self, host: str, type_: str | None) -> list[dict[str, Any]]: ...

    def kill_host(self, host: str) -> None: ...

    def send_to(self, host: str, command: dict[str, Any]) -> None: ...


class Host:
    """One node or router of a lab."""

    def __init__(self, name: str, owner: HostOwner) -> None:
        self.name = name
        self.owner = owner

    def __repr__(self) -> str:
        return f"Host({self.name!r})"

    def exec(self, argv: list[str]) -> subprocess.CompletedProcess[str]:
        """Run a command inside the host and wait for it; output captured as text."""
        return self.owner.exec_in(self.name, argv)

    def argv(self, argv: list[str]) -> list[str]:
        """The command line that runs ``argv`` inside the host, for a terminal of your own."""
        return self.owner.argv_in(self.name, argv)

    def send(self, command: dict[str, Any]) -> None:
        """One command of the node contract, through the node's control FIFO."""
        self.owner.send_to(self.name, command)

    def events(self, type_: str | None = None) -> list[dict[str, Any]]:
        """The node's events so far (of one type, if given)."""
        return self.owner.events_of(self.name, type_)

    def kill(self) -> None:
        """SIGKILL the node, as a timeline's ``kill`` step does."""
        self.owner.kill_host(self.name)


class LogReader:
    """Events read straight from a results folder's logs (a kept lab has no runner)."""

    run_dir: Path

    def events_of(self, host: str, type_: str | None) -> list[dict[str, Any]]:
        path = self.run_dir / "events" / f"{host}.jsonl"
        if not path.exists():
            raise BackendError(f"{host!r} has no event log in {self.run_dir}: is it a node?")
        return [e for e in read_events(path) if type_ is None or e["type"] == type_]
