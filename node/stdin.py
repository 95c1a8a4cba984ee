"""Interactive use: a typed line is published; /dial, /ping, /peers, /quit."""

from __future__ import annotations

import sys

import trio
from p2plab.node.commands import Commands


class Stdin(Commands):
    async def _read_stdin(self) -> None:
        """Interactive use: a typed line is published; /dial, /ping, /peers, /quit."""
        while True:
            # mypy reads trio through trio-typing's stubs (a libp2p dependency), which
            # predate abandon_on_cancel; trio itself (>= 0.23) takes it.
            line = await trio.to_thread.run_sync(  # type: ignore[call-arg]  # stale trio-stubs
                sys.stdin.readline, abandon_on_cancel=True)
            if not line:
                return  # stdin closed: keep running as a daemon
            line = line.strip()
            if not line:
                continue
            if line.startswith("/"):
                word, _, rest = line.partition(" ")
                if word == "/quit":
                    self.quit.set()
                    return
                if word == "/peers":
                    for peer in self.host.get_network().connections:
                        self.say(f"peer: {peer.to_base58()}")
                    continue
                if word == "/dial":
                    await self._run_command({"cmd": "dial", "addr": rest.strip()})
                    continue
                if word == "/ping":
                    await self._run_command({"cmd": "ping", "peer": rest.strip(), "count": 1})
                    continue
                self.say("commands: /dial MULTIADDR, /ping PEER_ID, /peers, /quit")
                continue
            if self.pubsub is None:
                self.say("a relay does not chat")
                continue
            await self.publish(line)
