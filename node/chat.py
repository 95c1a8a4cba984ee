"""The chat node: one libp2p host with gossipsub chat, discovery, relay and hole punching.

Every task runs in the node's one nursery (trio structured concurrency), so a quit
command, SIGTERM or a crash cancels all of it together.
"""

from __future__ import annotations

import socket
from importlib.metadata import version
from typing import Any, TextIO

import psutil
import trio
from libp2p import new_host
from libp2p.abc import INetConn, INetStream, INetwork, INotifee
from libp2p.peer.peerinfo import PeerInfo
from libp2p.pubsub.gossipsub import GossipSub
from libp2p.pubsub.pubsub import Pubsub
from libp2p.tools.anyio_service import background_trio_service
from multiaddr import Multiaddr
from p2plab.node.config import NodeConfig
from p2plab.node.discovery import MdnsDiscovery
from p2plab.node.holepunch import RecordingDCUtR
from p2plab.node.identity import key_pair_from_file, key_pair_from_seed
from p2plab.node.libp2p_tuning import Forwarders
from p2plab.node.parts import REDIAL_PAUSE_S, log
from p2plab.node.publishing import chat_payload, message_id_function, short_id
from p2plab.node.relay import Relaying, relay_limits
from p2plab.node.reservations import Reservations
from p2plab.node.stdin import Stdin

import p2plab
from p2plab.events import EventWriter

__all__ = ["REDIAL_PAUSE_S", "ChatNode", "chat_payload", "connection_kind", "log",
           "message_id_function", "short_id"]


def connection_kind(addrs: list[Multiaddr]) -> tuple[str, str]:
    """(direct|relayed, tcp|quic|circuit) from a connection's transport addresses."""
    text = " ".join(str(a) for a in addrs)
    if "/p2p-circuit" in text:
        return "relayed", "circuit"
    if "quic" in text:
        return "direct", "quic"
    return "direct", "tcp"


def default_listen_ips() -> list[str]:
    """Every non-loopback IPv4 address of this host (never 0.0.0.0: see the notes)."""
    ips = []
    for addrs in psutil.net_if_addrs().values():
        for addr in addrs:
            if addr.family == socket.AF_INET and not addr.address.startswith("127."):
                ips.append(addr.address)
    return ips or ["127.0.0.1"]


class _ConnectionEvents(INotifee):
    """Turns swarm notifications into connection events."""

    def __init__(self, node: ChatNode) -> None:
        self.node = node

    def _emit(self, type_: str, conn: INetConn) -> None:
        try:
            addrs = list(conn.get_transport_addresses())
        except Exception:
            addrs = []
        kind, transport = connection_kind(addrs)
        direction = getattr(conn, "direction", "unknown")
        self.node.emit(
            type_,
            peer=conn.muxed_conn.peer_id.to_base58(),
            remote_addr=str(addrs[0]) if addrs else "",
            kind=kind,
            transport=transport,
            direction=str(getattr(direction, "name", direction)).lower(),
        )

    async def connected(self, network: INetwork, conn: INetConn) -> None:
        self._emit("connection_opened", conn)

    async def disconnected(self, network: INetwork, conn: INetConn) -> None:
        self._emit("connection_closed", conn)
        self.node.pubsub_stream_lost(conn)

    async def opened_stream(self, network: INetwork, stream: INetStream) -> None:
        pass

    async def closed_stream(self, network: INetwork, stream: INetStream) -> None:
        pass

    async def listen(self, network: INetwork, multiaddr: Multiaddr) -> None:
        pass

    async def listen_close(self, network: INetwork, multiaddr: Multiaddr) -> None:
        pass


class ChatNode(Stdin, MdnsDiscovery, Reservations):
    """The node: its parts composed (publishing, dialling, discovery, reservations,
    pings, commands, stdin), started together in one nursery."""

    def __init__(self, config: NodeConfig, events: EventWriter | None, out: TextIO,
                 tuning: list[str] | None = None) -> None:
        self.config = config
        self.tuning = tuning or []  # node/libp2p_tuning.py: what was changed in the library
        self.events = events
        self.out = out
        if config.key_file is not None:
            key_pair = key_pair_from_file(config.key_file)
        elif config.key_seed is not None:
            key_pair = key_pair_from_seed(config.key_seed)
        else:
            key_pair = None
        ips = list(config.listen_ips) or default_listen_ips()
        self.listen_addrs = ([Multiaddr(f"/ip4/{ip}/tcp/{config.port}") for ip in ips]
                             if config.tcp else [])
        if config.quic:
            self.listen_addrs += [
                Multiaddr(f"/ip4/{ip}/udp/{config.port}/quic-v1") for ip in ips
            ]
        self.host = new_host(
            key_pair=key_pair, listen_addrs=self.listen_addrs, enable_mDNS=config.mdns
        )
        self.peer_id = self.host.get_id()
        self.sent = 0  # lab messages published, for unique texts (content ids)
        self.pubsub: Pubsub | None = None
        self.gossipsub: GossipSub | None = None
        self.forwarders: Forwarders | None = None
        self.relaying: Relaying | None = None
        self.quit = trio.Event()
        self._flows: dict[str, list[trio.CancelScope]] = {}  # running publish plans
        self._discovered_send, self._discovered_recv = trio.open_memory_channel[PeerInfo](256)

    async def run(self) -> None:
        self._mdns_handler = self._listen_for_mdns() if self.config.mdns else None
        async with self.host.run(self.listen_addrs), trio.open_nursery() as nursery:
            self.host.get_network().register_notifee(_ConnectionEvents(self))
            if self.config.role == "relay":
                self.relaying = Relaying(self.host, hop=True,
                                         limits=relay_limits(self.config.relay_limits))
            elif self.config.relays or any("p2p-circuit" in str(a) for a in self.config.dial):
                self.relaying = Relaying(self.host, hop=False)
            if self.relaying is not None:
                relay_ready = trio.Event()
                nursery.start_soon(self.relaying.run, nursery, relay_ready)
                await relay_ready.wait()
            if self.config.role == "peer":
                await self._start_pubsub(nursery)
            if self.config.role == "peer" and self.config.holepunch:
                dcutr = RecordingDCUtR(
                    self.host, lambda **f: self.emit("hole_punch", **f)
                )
                nursery.start_soon(self._run_service, dcutr)
            self._announce_start()
            if self.config.mdns:
                nursery.start_soon(self._mdns_connector)
            for relay in self.config.relays:
                nursery.start_soon(self._keep_reserved, relay, nursery)
            for addr in self.config.dial:
                nursery.start_soon(self._keep_dialed, addr)
            if self.config.ping_interval > 0:
                nursery.start_soon(self._ping_loop)
            if self.config.control is not None:
                nursery.start_soon(self._read_control)
            if self.config.interactive:
                nursery.start_soon(self._read_stdin)
            await self.quit.wait()
            nursery.cancel_scope.cancel()

    async def _run_service(self, service: Any) -> None:
        async with background_trio_service(service):
            await trio.sleep_forever()

    def _announce_start(self) -> None:
        own = self.peer_id.to_base58()
        listen = [str(a) for a in self.host.get_transport_addrs()]
        announced = [str(a) for a in self.host.get_addrs()]
        self.emit(
            "node_started",
            peer_id=own,
            listen_addrs=listen,
            announced_addrs=announced,
            role=self.config.role,
            topic=self.config.topic,
            topics=list(self.config.topics),
            nick=self.config.nick,
            impl="py",
            impl_version=p2plab.__version__,
            libp2p=f"py-libp2p {version('libp2p')}",
            msg_id_fn=self.config.msg_id,
            tuning=self.tuning,
        )
        self.say(f"peer id: {own}")
        for addr in announced:
            self.say(f"listening on: {addr}")
