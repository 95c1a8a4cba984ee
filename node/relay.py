"""Circuit relay v2 wiring, which py-libp2p leaves to the application.

A relay runs the hop protocol. A peer runs the stop/client side: the circuit transport
is registered with the swarm (so circuit addresses dial and listen like any other), a
connection to each configured relay is made, and a reservation is requested on it.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import cast

import trio
from libp2p.abc import IHost
from libp2p.network.swarm import Swarm
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.relay.circuit_v2.config import RelayConfig, RelayRole
from libp2p.relay.circuit_v2.protocol import DEFAULT_RELAY_LIMITS, CircuitV2Protocol
from libp2p.relay.circuit_v2.protocol import PROTOCOL_ID as HOP_PROTOCOL_ID
from libp2p.relay.circuit_v2.resources import RelayLimits
from libp2p.relay.circuit_v2.transport import CircuitV2Transport
from libp2p.tools.anyio_service import background_trio_service
from multiaddr import Multiaddr
from p2plab.node.relay_limits import PY_LIMIT_FIELDS, unsupported

from p2plab.relay_limits import RelayLimits as ContractLimits

# ``--relay-limits unlimited``: a relay that does not limit the lab (a day, 1 TiB).
UNLIMITED_RELAY_LIMITS = RelayLimits(
    duration=86_400, data=1 << 40, max_circuit_conns=4096, max_reservations=4096,
    reservation_ttl=3600,
)


def relay_limits(limits: ContractLimits | None) -> RelayLimits:
    """py-libp2p's limits for ``--relay-limits``: its defaults, unlimited, or overrides."""
    if limits is None:
        return DEFAULT_RELAY_LIMITS
    if limits.unlimited:
        return UNLIMITED_RELAY_LIMITS
    refusal = unsupported(limits)
    assert refusal is None, refusal  # the flags were checked at start (__main__)
    return dataclasses.replace(DEFAULT_RELAY_LIMITS, **{
        PY_LIMIT_FIELDS[key]: int(value) for key, value in limits.overrides})


CIRCUIT_LISTEN_ADDR = Multiaddr("/p2p-circuit")


def swarm_of(host: IHost) -> Swarm:
    """The host's network as what it is: ``new_host`` always builds a Swarm, whose
    dialing parts (transport manager, upgrader, peer blocking) INetworkService lacks."""
    return cast(Swarm, host.get_network())


class Relaying:
    """The relay-v2 services of one node, owned by the node's nursery."""

    def __init__(self, host: IHost, hop: bool, limits: RelayLimits = DEFAULT_RELAY_LIMITS
                 ) -> None:
        self.host = host
        self.hop = hop
        self.protocol = CircuitV2Protocol(host, limits=limits, allow_hop=hop)
        roles = RelayRole.HOP if hop else RelayRole.STOP | RelayRole.CLIENT
        self.transport = CircuitV2Transport(
            host, self.protocol, RelayConfig(roles=roles, limits=limits)
        )

    async def run(self, nursery: trio.Nursery, started: trio.Event) -> None:
        """Run the protocol; on peers also accept circuits as a swarm transport."""
        async with background_trio_service(self.protocol):
            await self.protocol.event_started.wait()
            if not self.hop:
                network = swarm_of(self.host)
                network.transport_manager.add_transport(self.transport)
                await network.listen(CIRCUIT_LISTEN_ADDR)
            started.set()
            await trio.sleep_forever()

    async def reserve(
        self, relay_addr: Multiaddr, nursery: trio.Nursery, report: Callable[..., None]
    ) -> bool:
        """Connect to a relay and reserve a slot, retrying for a while if it is not up yet."""
        info = info_from_p2p_addr(relay_addr)
        start = time.monotonic()
        reason = ""
        deadline = start + 30.0
        while time.monotonic() < deadline:
            try:
                with trio.fail_after(10):
                    # Retries are paced here; lift py-libp2p's 60 s failed-dial block.
                    swarm_of(self.host).unblock_peer(info.peer_id)
                    await self.host.connect(info)
                    stream = await self.host.new_stream(info.peer_id, [HOP_PROTOCOL_ID])
                    ok = await self.transport.reserve(stream, info.peer_id, nursery)
                reason = "" if ok else "relay refused the reservation"
                if ok:
                    break
            except Exception as exc:  # connection refused, timeout, protocol error
                reason = f"{type(exc).__name__}: {exc}"
            await trio.sleep(1.0)
        else:
            ok = False
        report(
            relay=info.peer_id.to_base58(),
            outcome="ok" if ok else "failed",
            elapsed_ms=round((time.monotonic() - start) * 1000, 2),
            reason=reason,
            relay_addr=str(relay_addr),
        )
        return ok


def circuit_addr(relay_addr: Multiaddr, own_id: ID) -> Multiaddr:
    """The address through which others reach us via ``relay_addr``."""
    return relay_addr.encapsulate(Multiaddr(f"/p2p-circuit/p2p/{own_id.to_base58()}"))
