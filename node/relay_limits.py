"""Which ``--relay-limits`` keys py-libp2p's relay can honour, checked with the flags
(before libp2p is imported), so a key it has no setting for is refused at start."""

from __future__ import annotations

from p2plab.relay_limits import RelayLimits

# --relay-limits keys -> py-libp2p 0.8.1's RelayLimits fields. Its relay has no total
# circuit cap, no per-peer reservation cap and no rate limits.
PY_LIMIT_FIELDS = {
    "reservations": "max_reservations",
    "reservation-duration": "reservation_ttl",
    "circuits-per-peer": "max_circuit_conns",  # per reservation, i.e. per destination
    "circuit-duration": "duration",
    "circuit-bytes": "data",
}


def unsupported(limits: RelayLimits | None) -> str | None:
    """The one-line refusal for keys py-libp2p's relay lacks, or None."""
    if limits is None or limits.unlimited:
        return None
    lacking = [key for key in limits.asks() if key not in PY_LIMIT_FIELDS]
    if not lacking:
        return None
    return (f"--relay-limits: py-libp2p's relay has no {', '.join(lacking)} limit (it has "
            f"{', '.join(PY_LIMIT_FIELDS)})")
