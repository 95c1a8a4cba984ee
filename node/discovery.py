"""mDNS discovery: peers found on the LAN are reported and dialled."""

from __future__ import annotations

import time
from collections.abc import Callable

import trio
from libp2p.discovery.events.peerDiscovery import peerDiscovery
from libp2p.peer.peerinfo import PeerInfo
from p2plab.node.dialing import Dialing


class MdnsDiscovery(Dialing):
    # Found on zeroconf's thread, handed to the node's nursery through this channel.
    _discovered_send: trio.MemorySendChannel[PeerInfo]
    _discovered_recv: trio.MemoryReceiveChannel[PeerInfo]
    _mdns_handler: Callable[[PeerInfo], None] | None
    def _listen_for_mdns(self) -> Callable[[PeerInfo], None]:
        """Hand mDNS discoveries (made on zeroconf's thread) over to trio.

        Registered before the host starts: zeroconf begins browsing as soon as the
        host exists, and an early discovery must not be missed.
        """
        token = trio.lowlevel.current_trio_token()

        def on_discovered(info: PeerInfo) -> None:  # runs on zeroconf's thread
            try:
                trio.from_thread.run_sync(
                    self._discovered_send.send_nowait, info, trio_token=token
                )
            except (trio.RunFinishedError, trio.WouldBlock, trio.Cancelled):
                pass

        peerDiscovery.register_peer_discovered_handler(on_discovered)
        return on_discovered

    async def _mdns_connector(self) -> None:
        """py-libp2p's mDNS only fills the peerstore; connecting is up to us."""
        try:
            async for info in self._discovered_recv:
                if info.peer_id == self.peer_id:
                    continue
                self.emit(
                    "peer_discovered",
                    peer=info.peer_id.to_base58(),
                    via="mdns",
                    addrs=[str(a) for a in info.addrs],
                )
                if info.peer_id in self.host.get_network().connections:
                    continue
                # Dial only our own-subnet addresses; the other side's dial may race us.
                start = time.monotonic()
                try:
                    with trio.fail_after(10):
                        await self.host.connect(info)
                    outcome, reason = "ok", ""
                except Exception as exc:
                    outcome, reason = "failed", f"{type(exc).__name__}: {exc}"
                self.emit(
                    "dial",
                    target=f"/p2p/{info.peer_id.to_base58()}",
                    outcome=outcome,
                    elapsed_ms=round((time.monotonic() - start) * 1000, 2),
                    reason=reason,
                    via="mdns",
                )
        finally:
            if self._mdns_handler is not None:
                peerDiscovery.unregister_peer_discovered_handler(self._mdns_handler)
