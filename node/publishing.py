"""Publishing and receiving chat over gossipsub: the pubsub service, publish plans (the
lab's traffic), received messages and who shares each topic."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import trio
from libp2p.abc import INetConn
from libp2p.peer.id import ID
from libp2p.pubsub.gossipsub import PROTOCOL_ID, PROTOCOL_ID_V11, PROTOCOL_ID_V12, GossipSub
from libp2p.pubsub.pubsub import Pubsub
from libp2p.tools.anyio_service import background_trio_service
from p2plab.node import libp2p_tuning
from p2plab.node.libp2p_tuning import Forwarders
from p2plab.node.parts import NodeBase, log


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


class Publishing(NodeBase):
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
