"""Dialling: addresses resolved, a peer id learnt when the address has none, dials
retried, and persistent peers dialled again when lost."""

from __future__ import annotations

import socket
import time

import trio
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import info_from_p2p_addr
from multiaddr import Multiaddr
from p2plab.node.parts import REDIAL_PAUSE_S, NodeBase
from p2plab.node.relay import swarm_of


class Dialing(NodeBase):
    async def _resolve(self, addr: Multiaddr) -> Multiaddr:
        """Resolve a /dns, /dns4 or /dns6 first component to an IP address."""
        first = addr.protocols()[0].name
        if first not in ("dns", "dns4", "dns6"):
            return addr
        name = addr.value_for_protocol(first)
        family = socket.AF_INET6 if first == "dns6" else socket.AF_INET
        infos = await trio.socket.getaddrinfo(name, None, family=family)
        ip = infos[0][4][0]
        ip_proto = "ip6" if family == socket.AF_INET6 else "ip4"
        rest = str(addr).split("/", 3)[3]
        return Multiaddr(f"/{ip_proto}/{ip}/{rest}")

    async def learn_peer_id(self, addr: Multiaddr) -> ID:
        """Who listens at an address given without /p2p/ID: ask the handshake.

        libp2p dials need the remote peer id. A throwaway noise handshake over TCP
        tells us the id; the real dial then proceeds normally. py-libp2p 0.8.1's QUIC
        transport refuses to dial without an id, so for a QUIC address the id is
        asked over TCP at the same IP and port (where p2plab nodes also listen).
        """
        names = [p.name for p in addr.protocols()]
        if "quic-v1" in names:
            ip_proto = names[0]
            tcp = Multiaddr(f"/{ip_proto}/{addr.value_for_protocol(ip_proto)}"
                            f"/tcp/{addr.value_for_protocol('udp')}")
            try:
                return await self.learn_peer_id(tcp)
            except Exception as exc:
                raise ValueError(
                    "py-libp2p cannot dial QUIC without /p2p/PEER_ID, and asking over "
                    f"TCP at the same port failed ({exc}): add /p2p/PEER_ID"
                ) from None
        network = swarm_of(self.host)
        transport = network.transport_manager.transport_for_dialing(addr)
        if transport is None:
            raise ValueError(f"no transport can dial {addr}")
        raw = await transport.dial(addr)
        try:
            # No expected peer id: learn it. Noise's handshake takes None for that,
            # though the security transports' hints say ID.
            sec = network.upgrader.security_multistream
            secured = await sec.secure_outbound(raw, None)  # type: ignore[arg-type]  # id unknown
            return secured.get_remote_peer()
        finally:
            await raw.close()

    async def dial(self, addr: Multiaddr) -> None:
        """Dial one address; raises on failure."""
        addr = await self._resolve(addr)
        if "p2p" not in [p.name for p in addr.protocols()]:
            peer = await self.learn_peer_id(addr)
            addr = addr.encapsulate(Multiaddr(f"/p2p/{peer.to_base58()}"))
        info = info_from_p2p_addr(addr)
        network = swarm_of(self.host)
        # py-libp2p refuses, for 60 s, to dial a peer whose addresses all failed once;
        # our callers pace their own retries (a peer still starting, a node restarted).
        network.unblock_peer(info.peer_id)
        if "p2p-circuit" in str(addr):
            assert self.relaying is not None
            # Make sure we are connected to the relay, then dial through it.
            relay_part = Multiaddr(str(addr).split("/p2p-circuit")[0])
            relay_info = info_from_p2p_addr(relay_part)
            network.unblock_peer(relay_info.peer_id)
            await self.host.connect(relay_info)
            # py-libp2p's host.connect cannot dial /p2p-circuit; the transport can, and
            # the connection it returns is registered with the swarm like any other.
            await self.relaying.transport.dial(addr)
            return
        await self.host.connect(info)

    async def _dial_with_retry(self, addr: Multiaddr) -> bool:
        """Keep dialing until it works or --dial-timeout passes (peers start in any order)."""
        start = time.monotonic()
        attempts = 0
        reason = ""
        while True:
            attempts += 1
            try:
                with trio.fail_after(10):
                    await self.dial(addr)
                outcome = "ok"
                reason = ""
                break
            except Exception as exc:
                reason = f"{type(exc).__name__}: {exc}"
                if time.monotonic() - start > self.config.dial_timeout:
                    outcome = "failed"
                    break
            await trio.sleep(1.0)
        self.emit(
            "dial",
            target=str(addr),
            outcome=outcome,
            elapsed_ms=round((time.monotonic() - start) * 1000, 2),
            reason=reason,
            attempts=attempts,
        )
        if outcome != "ok":
            self.say(f"dial {addr} failed: {reason}")
        return outcome == "ok"

    async def _keep_dialed(self, addr: Multiaddr) -> None:
        """A --dial peer is a persistent peer: dial it, and dial again whenever every
        connection to it is gone (it crashed and came back, its relay restarted)."""
        peer_text = str(addr).rsplit("/p2p/", 1)[-1] if "/p2p/" in str(addr) else None
        while True:
            if not await self._dial_with_retry(addr):
                await trio.sleep(REDIAL_PAUSE_S)
                continue
            if peer_text is None:
                return  # no id to watch (it was learnt during the dial)
            peer = ID.from_base58(peer_text)
            while self._connected_to(peer):
                await trio.sleep(1.0)
            await trio.sleep(REDIAL_PAUSE_S)
