"""DCUtR with an event per hole-punch attempt.

py-libp2p's DCUtRProtocol drives punches by itself but only logs outcomes; this
subclass times each punch and records attempt, outcome and the library's own reason.
"""

from __future__ import annotations

import logging
import time
from typing import Callable

from libp2p.peer.id import ID
from libp2p.relay.circuit_v2.dcutr import DCUtRProtocol
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
    """DCUtRProtocol that reports every punch through ``on_attempt``."""

    def __init__(self, host, on_attempt: Callable[..., None]) -> None:  # type: ignore[no-untyped-def]
        super().__init__(host)
        self._on_attempt = on_attempt
        self._attempts: dict[ID, int] = {}
        self._reason = _LastWarning()
        logger = logging.getLogger(DCUTR_LOGGER)
        logger.addHandler(self._reason)
        if logger.level == logging.NOTSET or logger.level > logging.WARNING:
            logger.setLevel(logging.WARNING)

    async def _perform_hole_punch(  # type: ignore[override]
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
            self._on_attempt(
                peer=peer_id.to_base58(),
                attempt=attempt,
                outcome="success" if ok else "failure",
                elapsed_ms=round((time.monotonic() - start) * 1000, 2),
                reason=reason,
                transport=transport_of(addrs),
                role="initiator" if as_responder else "responder",
                addrs=[str(a) for a in addrs],
            )
        return ok
