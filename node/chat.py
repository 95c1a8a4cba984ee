"""The chat node: one libp2p host with gossipsub chat, discovery, relay and hole punching.

Every task runs in the node's one nursery (trio structured concurrency), so a quit
command, SIGTERM or a crash cancels all of it together.
"""

from __future__ import annotations

import hashlib
import logging
import socket
import sys
import time
from collections.abc import Callable
from importlib.metadata import version
from typing import Any, TextIO

import psutil
import trio
from libp2p import new_host
from libp2p.abc import INetConn, INetStream, INetwork, INotifee
from libp2p.discovery.events.peerDiscovery import peerDiscovery
from libp2p.host.ping import PingService
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo, info_from_p2p_addr
from libp2p.pubsub.gossipsub import PROTOCOL_ID, PROTOCOL_ID_V11, PROTOCOL_ID_V12, GossipSub
from libp2p.pubsub.pubsub import Pubsub
from libp2p.tools.anyio_service import background_trio_service
from multiaddr import Multiaddr
from p2plab.node import libp2p_tuning
from p2plab.node.config import NodeConfig
from p2plab.node.control import CommandError, lines, open_fifo, parse_command
from p2plab.node.holepunch import RecordingDCUtR
from p2plab.node.identity import key_pair_from_file, key_pair_from_seed
from p2plab.node.libp2p_tuning import Forwarders
from p2plab.node.relay import Relaying, circuit_addr, swarm_of

import p2plab
from p2plab.events import EventWriter

log = logging.getLogger("p2plab.node")
# After losing a persistent peer or a relay: wait this long, then dial again.
REDIAL_PAUSE_S = 2.0


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


def chat_payload(text: str, size: int = 0) -> bytes:
    """The gossip payload is the chat text itself (padded with spaces to ``size`` bytes),
    as in the proof of concept, so any libp2p chat on the topic shows it."""
    data = text.encode("utf-8")
    return data + b" " * max(0, size - len(data))


def message_id_function(name: str) -> Callable[[Any], bytes]:
    """The network-wide gossipsub message id (docs/reference/node-contract.md): origin peer id bytes
    followed by the 8-byte sequence number (py-libp2p's and go-libp2p's default), or the
    SHA-256 of the payload (content-addressed, as the proof of concept)."""
    if name == "content":
        return lambda msg: hashlib.sha256(msg.data).digest()
    return lambda msg: msg.from_id + msg.seqno


def short_id(peer: str) -> str:
    return peer[-6:]


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


class ChatNode:
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

    def pubsub_stream_lost(self, conn: INetConn) -> None:
        """A connection closed while another to the same peer lives on (a relay died
        after DCUtR went direct): py-libp2p 0.8.1's pubsub keeps its stream on the
        dead connection and the peer goes silent. Dropping the peer from pubsub while
        it is connected makes pubsub open a fresh stream, on the live connection.

        Only when pubsub's stream was on the closed connection: dropping a peer also
        drops its subscriptions and mesh place, so doing it for a stream that lives on
        (the relayed connection closing after pubsub had moved to the direct one) cut a
        direct pair off for 14 s on a loaded machine (relay-failure)."""
        if self.pubsub is None:
            return
        try:
            peer = conn.muxed_conn.peer_id
            stream = self.pubsub.peers.get(peer)
            on_closed = (stream is not None
                         and getattr(stream, "muxed_conn", None) is conn.muxed_conn)
            if on_closed and self.host.get_network().get_connections(peer):
                self.pubsub._handle_dead_peer(peer)  # schedules a new stream while connected
        except Exception as exc:  # a private API: never let it take the node down
            log.warning("could not renew the pubsub stream: %s", exc)

    # -- events -----------------------------------------------------------------
    def emit(self, type_: str, **fields: Any) -> None:
        if self.events is not None:
            self.events.emit(type_, **fields)

    def say(self, line: str) -> None:
        self.out.write(line + "\n")
        self.out.flush()

    # -- main ------------------------------------------------------------------
    async def run(self) -> None:
        self._mdns_handler = self._listen_for_mdns() if self.config.mdns else None
        async with self.host.run(self.listen_addrs), trio.open_nursery() as nursery:
            self.host.get_network().register_notifee(_ConnectionEvents(self))
            if self.config.role == "relay":
                self.relaying = Relaying(self.host, hop=True)
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

    async def _start_pubsub(self, nursery: trio.Nursery) -> None:
        g = self.config.gossip
        # py-libp2p 0.8.1 hints heartbeat_interval as int but only passes it to
        # trio.sleep: the scenario's fractional seconds work as they are.
        beat = g.heartbeat_interval
        self.gossipsub = GossipSub(
            protocols=[PROTOCOL_ID_V12, PROTOCOL_ID_V11, PROTOCOL_ID],
            degree=g.degree,
            degree_low=g.degree_low,
            degree_high=g.degree_high,
            heartbeat_interval=beat,  # type: ignore[arg-type]  # hinted int, only slept: floats do
            spam_protection_enabled=True,
            max_messages_per_topic_per_second=g.max_messages_per_topic_per_second,
            # Extra grafts for IP diversity are not in the spec; a lab puts many
            # peers behind one NAT address, so it would only distort the mesh.
            eclipse_protection_enabled=False,
            # py-libp2p 0.8.1 otherwise moves D_lo/D_hi and the gossip factor at run time
            # by its own "network health" score (not in the spec, not in other
            # implementations): a mesh of D=1 then grafts extra peers and prunes the
            # publisher. The scenario's D/D_lo/D_hi must mean what they say.
            adaptive_gossip_enabled=False,
        )
        self.pubsub = Pubsub(self.host, self.gossipsub, strict_signing=True,
                             msg_id_constructor=message_id_function(self.config.msg_id))
        gossipsub, pubsub = self.gossipsub, self.pubsub
        self.forwarders = Forwarders(self.pubsub, lambda topic: gossipsub.mesh.get(topic, ()))
        ready = trio.Event()

        async def run_pubsub() -> None:
            async with background_trio_service(pubsub), \
                    background_trio_service(gossipsub):
                await pubsub.wait_until_ready()
                ready.set()
                await trio.sleep_forever()

        nursery.start_soon(run_pubsub)
        await ready.wait()
        for topic in self.config.topics:
            subscription = await self.pubsub.subscribe(topic)
            nursery.start_soon(self._receive, subscription, topic)
        nursery.start_soon(self._watch_topic_peers)

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

    # -- chat ------------------------------------------------------------------
    async def publish(self, text: str, size: int = 0, topic: str | None = None,
                      flow: str | None = None) -> None:
        assert self.pubsub is not None, "a relay does not chat"
        topic = topic or self.config.topic
        data = chat_payload(text, size)
        origin = self.peer_id.to_base58()
        seq = libp2p_tuning.next_sequence_number(self.pubsub)
        self.emit(
            "message_published",
            msg_id=f"{origin}/{seq}",
            origin=origin,
            seq=seq,
            size=len(data),
            topic=topic,
            flow=flow,
        )
        await self.pubsub.publish(topic, data)

    async def _receive(self, subscription: Any, topic: str) -> None:
        own = self.peer_id.to_bytes()
        while True:
            message = await subscription.get()
            if message.from_id == own:
                continue
            origin = ID(message.from_id).to_base58()
            seq = int.from_bytes(message.seqno, "big")
            via = self.forwarders.pop(message) if self.forwarders else None
            self.emit(
                "message_received",
                msg_id=f"{origin}/{seq}",
                origin=origin,
                seq=seq,
                size=len(message.data),
                topic=topic,
                **({"via_peer": via[0].to_base58(), "via_mesh": via[1]} if via else {}),
            )
            if self.config.interactive or self.config.control is None:
                text = message.data.decode("utf-8", "replace").rstrip()
                self.say(f"{short_id(origin)}: {text}")

    async def _publish_plan(self, offsets: list[float], size: int, topic: str | None,
                            flow: str | None, accepted: Callable[[], None]) -> None:
        """Publish one message at each offset (seconds from now); the lab computes the
        offsets from its seed, so the schedule is the same on every backend. A
        stop-traffic command for the flow (or "all") ends the plan early; the plan is
        registered (``accepted``) before the next command is read."""
        start = trio.current_time()
        with trio.CancelScope() as scope:
            self._flows.setdefault(flow or "", []).append(scope)
            accepted()
            for offset in offsets:
                await trio.sleep_until(start + offset)
                self.sent += 1
                await self.publish(f"{self.config.name} message {self.sent}", size=size,
                                   topic=topic, flow=flow)
        self._flows[flow or ""].remove(scope)

    async def _watch_topic_peers(self) -> None:
        """Report who shares each topic: the lab waits on this before driving traffic."""
        last: dict[str, tuple[list[str], list[str]]] = {}
        while True:
            assert self.pubsub is not None and self.gossipsub is not None
            for topic in self.config.topics:
                peers = sorted(p.to_base58() for p in self.pubsub.peer_topics.get(topic, ()))
                mesh = sorted(p.to_base58() for p in self.gossipsub.mesh.get(topic, ()))
                if (peers, mesh) != last.get(topic):
                    last[topic] = (peers, mesh)
                    self.emit("topic_peers", topic=topic, peers=peers, mesh=mesh)
            await trio.sleep(0.2)

    # -- connectivity ------------------------------------------------------------
    async def _reserve(self, relay: Multiaddr, nursery: trio.Nursery) -> None:
        assert self.relaying is not None
        ok = await self.relaying.reserve(
            relay, nursery, lambda **f: self.emit("relay_reservation", **f)
        )
        if ok:
            self.say(f"reachable via relay: {circuit_addr(relay, self.peer_id)}")

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

    def _connected_to(self, peer: ID) -> bool:
        return peer in self.host.get_network().connections

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

    async def _keep_reserved(self, relay: Multiaddr, nursery: trio.Nursery) -> None:
        """Reserve on the relay, and reserve again after losing the connection to it."""
        relay_id = info_from_p2p_addr(relay).peer_id
        while True:
            await self._reserve(relay, nursery)
            await trio.sleep(1.0)
            while self._connected_to(relay_id):
                await trio.sleep(1.0)
            await trio.sleep(REDIAL_PAUSE_S)

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

    # -- commands ----------------------------------------------------------------
    async def execute(self, command: dict[str, Any],
                      accepted: Callable[[], None] = lambda: None) -> None:
        """Carry out one command; ``accepted`` is called once it has taken effect enough
        for the next command to see it (a publish plan: once its flow is registered)."""
        cmd = command["cmd"]
        if cmd != "publish":
            accepted()
        if cmd == "quit":
            self.quit.set()
        elif cmd == "publish":
            if self.pubsub is None:
                raise CommandError("a relay does not publish")
            count, rate = int(command["count"]), float(command["rate"])
            offsets = command.get("offsets") or [i / rate for i in range(count)]
            await self._publish_plan([float(o) for o in offsets], int(command["size"]),
                                     command.get("topic"), command.get("flow"), accepted)
        elif cmd == "stop-traffic":
            flow = str(command["flow"])
            for name, scopes in self._flows.items():
                if flow in ("all", name):
                    for scope in scopes:
                        scope.cancel()
        elif cmd == "say":
            await self.publish(str(command["text"]))
        elif cmd == "dial":
            from p2plab.node.config import parse_multiaddr

            await self._dial_with_retry(parse_multiaddr(str(command["addr"]), "dial"))
        elif cmd == "ping":
            await self.ping(ID.from_base58(command["peer"]), int(command.get("count", 1)))

    async def _run_command(self, command: dict[str, Any],
                           task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        started = False

        def accepted() -> None:
            nonlocal started
            if not started:
                started = True
                task_status.started()

        try:
            await self.execute(command, accepted)
            self.emit("command", cmd=command["cmd"], outcome="ok", reason="", args=command)
        except Exception as exc:
            self.emit("command", cmd=command["cmd"], outcome="failed",
                      reason=f"{type(exc).__name__}: {exc}", args=command)
        finally:
            accepted()

    async def _read_control(self) -> None:
        assert self.config.control is not None
        stream = open_fifo(self.config.control)
        async with trio.open_nursery() as nursery:
            async for line in lines(stream):
                if not line.strip():
                    continue
                try:
                    command = parse_command(line)
                except CommandError as exc:
                    self.emit("command", cmd="?", outcome="failed", reason=str(exc), args=line)
                    continue
                # Commands run concurrently (a long publish plan must not block a quit),
                # but take effect in the order they came: a stop-traffic right after a
                # publish finds its plan, whichever task trio schedules first.
                await nursery.start(self._run_command, command)

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
