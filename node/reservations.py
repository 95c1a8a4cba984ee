"""Relay reservations (circuit relay v2): reserved on each relay the node was given, and
reserved again when a relay is lost."""

from __future__ import annotations

import trio
from libp2p.peer.peerinfo import info_from_p2p_addr
from multiaddr import Multiaddr
from p2plab.node.parts import REDIAL_PAUSE_S, NodeBase
from p2plab.node.relay import circuit_addr


class Reservations(NodeBase):
    async def _reserve(self, relay: Multiaddr, nursery: trio.Nursery) -> None:
        assert self.relaying is not None
        ok = await self.relaying.reserve(
            relay, nursery, lambda **f: self.emit("relay_reservation", **f)
        )
        if ok:
            self.say(f"reachable via relay: {circuit_addr(relay, self.peer_id)}")

    async def _keep_reserved(self, relay: Multiaddr, nursery: trio.Nursery) -> None:
        """Reserve on the relay, and reserve again after losing the connection to it."""
        relay_id = info_from_p2p_addr(relay).peer_id
        while True:
            await self._reserve(relay, nursery)
            await trio.sleep(1.0)
            while self._connected_to(relay_id):
                await trio.sleep(1.0)
            await trio.sleep(REDIAL_PAUSE_S)
