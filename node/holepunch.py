"""DCUtR with an event per hole-punch attempt.

py-libp2p's DCUtRProtocol drives punches by itself but only logs outcomes; this
subclass times each punch and records attempt, outcome and the library's own reason.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import trio
from libp2p.abc import IHost, INetConn
from libp2p.peer.id import ID
from libp2p.relay.circuit_v2.dcutr import MAX_HOLE_PUNCH_ATTEMPTS, DCUtRProtocol
from multiaddr import Multiaddr

DCUTR_LOGGER = "libp2p.relay.circuit_v2.dcutr"


class _LastWarning(logging.Handler):
    """Keeps the library's most recent warning as the reason of a failed punch."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.last = ""

    def emit(self, record: logging.LogRecord) -> None:
        self.last = record.getMessage()


def transport_of(addrs: list[Multiaddr]) -> str:
    text = " ".join(str(a) for a in addrs)
    if "quic" in text:
        return "quic"
    if "/tcp/" in text:
        return "tcp"
    return "none"


class RecordingDCUtR(DCUtRProtocol):
    """DCUtRProtocol that reports every punch through ``on_attempt``, and that starts a
    punch only from the side that accepted the relayed connection, as the DCUtR spec
    says. py-libp2p 0.8.1 drives punches from both sides at once; two concurrent
    sessions interfere, and a punch that theory allows (full cone with symmetric) then
    fails at random."""

    def __init__(self, host: IHost, on_attempt: Callable[..., None]) -> None:
        super().__init__(host)
        self._on_attempt = on_attempt
        self._attempts: dict[ID, int] = {}
        self._reason = _LastWarning()
        logger = logging.getLogger(DCUTR_LOGGER)
        logger.addHandler(self._reason)
        if logger.level == logging.NOTSET or logger.level > logging.WARNING:
            logger.setLevel(logging.WARNING)

    async def _auto_drive_loop(self) -> None:
        while True:
            await trio.sleep(1.0)
            network = self.host.get_network()
            for peer_id, conns in list(getattr(network, "connections", {}).items()):
                if peer_id in self._in_progress or peer_id in self._direct_connections:
                    continue
                if self._hole_punch_attempts.get(peer_id, 0) >= MAX_HOLE_PUNCH_ATTEMPTS:
                    continue
                conns = conns if isinstance(conns, list) else [conns]
                kinds = [(_relayed(c), _inbound(c)) for c in conns]
                if kinds and all(relayed for relayed, _ in kinds) and any(i for _, i in kinds):
                    try:
                        await self.initiate_hole_punch(peer_id)
                    except trio.Cancelled:
                        raise
                    except Exception as exc:  # recorded by the punch itself when it ran
                        self._reason.last = str(exc)

    async def _perform_hole_punch(
        self, peer_id: ID, addrs: list[Multiaddr], as_responder: bool = False
    ) -> bool:
        attempt = self._attempts.get(peer_id, 0) + 1
        self._attempts[peer_id] = attempt
        self._reason.last = ""
        start = time.monotonic()
        ok = False
        try:
            ok = await super()._perform_hole_punch(peer_id, addrs, as_responder)
        finally:
            reason = "" if ok else (self._reason.last or "no direct connection")
            if not addrs:
                reason = "peer sent no direct addresses"
            elif not ok and all(_private(a) for a in addrs):
                reason += f" (the peer offered only private addresses: {[str(a) for a in addrs]})"
            self._on_attempt(
                peer=peer_id.to_base58(),
                attempt=attempt,
                outcome="success" if ok else "failure",
                elapsed_ms=round((time.monotonic() - start) * 1000, 2),
                reason=reason,
                transport=transport_of(addrs),
                # py-libp2p's as_responder (a QUIC-server sense) is set on the side
                # that accepted the relayed connection and starts DCUtR: the initiator.
                role="initiator" if as_responder else "responder",
                addrs=[str(a) for a in addrs],
            )
        return ok


RFC1918 = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")


def _private(addr: Multiaddr) -> bool:
    """True for an RFC 1918 address: no one outside the peer's own LAN can dial it."""
    import ipaddress

    try:
        ip = ipaddress.ip_address(addr.value_for_protocol("ip4"))
    except Exception:
        return False
    return any(ip in ipaddress.ip_network(net) for net in RFC1918)


def _relayed(conn: INetConn) -> bool:
    try:
        return any("/p2p-circuit" in str(a) for a in conn.get_transport_addresses())
    except Exception:
        return False


def _inbound(conn: INetConn) -> bool:
    direction = getattr(conn, "direction", None)
    return str(getattr(direction, "name", direction)).lower() == "inbound"
