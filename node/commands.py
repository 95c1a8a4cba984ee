"""The control channel's commands (node contract): read from the FIFO, carried out in
the order they came, each reported as a ``command`` event."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import trio
from libp2p.peer.id import ID
from p2plab.node.control import CommandError, lines, open_fifo, parse_command
from p2plab.node.dialing import Dialing
from p2plab.node.pinging import Pinging
from p2plab.node.publishing import Publishing


class Commands(Publishing, Dialing, Pinging):
    async def execute(self, command: dict[str, Any],
                      accepted: Callable[[], None] = lambda: None) -> None:
        """Carry out one command; ``accepted`` is called once it has taken effect enough
        for the next command to see it (a publish plan: once its flow is registered)."""
        cmd = command["cmd"]
        if cmd != "publish":
            accepted()
        if cmd == "quit":
            self.quit.set()
        elif cmd == "publish":
            if self.pubsub is None:
                raise CommandError("a relay does not publish")
            count, rate = int(command["count"]), float(command["rate"])
            offsets = command.get("offsets") or [i / rate for i in range(count)]
            await self._publish_plan([float(o) for o in offsets], int(command["size"]),
                                     command.get("topic"), command.get("flow"), accepted)
        elif cmd == "stop-traffic":
            flow = str(command["flow"])
            for name, scopes in self._flows.items():
                if flow in ("all", name):
                    for scope in scopes:
                        scope.cancel()
        elif cmd == "say":
            await self.publish(str(command["text"]))
        elif cmd == "dial":
            from p2plab.node.config import parse_multiaddr

            await self._dial_with_retry(parse_multiaddr(str(command["addr"]), "dial"))
        elif cmd == "ping":
            await self.ping(ID.from_base58(command["peer"]), int(command.get("count", 1)))

    async def _run_command(self, command: dict[str, Any],
                           task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        started = False

        def accepted() -> None:
            nonlocal started
            if not started:
                started = True
                task_status.started()

        try:
            await self.execute(command, accepted)
            self.emit("command", cmd=command["cmd"], outcome="ok", reason="", args=command)
        except Exception as exc:
            self.emit("command", cmd=command["cmd"], outcome="failed",
                      reason=f"{type(exc).__name__}: {exc}", args=command)
        finally:
            accepted()

    async def _read_control(self) -> None:
        assert self.config.control is not None
        stream = open_fifo(self.config.control)
        async with trio.open_nursery() as nursery:
            async for line in lines(stream):
                if not line.strip():
                    continue
                try:
                    command = parse_command(line)
                except CommandError as exc:
                    self.emit("command", cmd="?", outcome="failed", reason=str(exc), args=line)
                    continue
                # Commands run concurrently (a long publish plan must not block a quit),
                # but take effect in the order they came: a stop-traffic right after a
                # publish finds its plan, whichever task trio schedules first.
                await nursery.start(self._run_command, command)
