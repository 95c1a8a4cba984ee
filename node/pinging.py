"""Pings: on command, and every ping interval to every connected peer."""

from __future__ import annotations

import time

import trio
from libp2p.host.ping import PingService
from libp2p.peer.id import ID
from p2plab.node.parts import NodeBase


class Pinging(NodeBase):
    async def ping(self, peer: ID, count: int = 1) -> None:
        service = PingService(self.host)
        for _ in range(count):
            start = time.perf_counter()
            try:
                with trio.fail_after(10):
                    async for lib_rtt in service.ping_iter(peer, ping_amt=1):
                        rtt = (time.perf_counter() - start) * 1000
                        self.emit("ping", peer=peer.to_base58(), rtt_ms=round(rtt, 3),
                                  lib_rtt_ms=lib_rtt, outcome="ok", reason="")
            except Exception as exc:
                self.emit("ping", peer=peer.to_base58(), rtt_ms=None, lib_rtt_ms=None,
                          outcome="failed", reason=f"{type(exc).__name__}: {exc}")

    async def _ping_loop(self) -> None:
        while True:
            await trio.sleep(self.config.ping_interval)
            for peer in list(self.host.get_network().connections):
                await self.ping(peer)
