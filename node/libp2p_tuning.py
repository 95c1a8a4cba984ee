"""The one place where our node changes py-libp2p 0.8.1's per-message costs.

Profiled in a 10-node loopback mesh at 20 messages/s, a py node spends about 15 % of its
CPU sending a yamux window update after every read (an encrypted frame and a socket
write per message) and about 11 % verifying ed25519 signatures of the same signed peer
record, which pubsub and gossipsub each check again on every RPC. Here:

- ``yamux-window-hysteresis``: a stream gives its peer receive credit back once half
  its window has been read, as go-yamux and rust's yamux do, instead of after nearly
  every read. py-libp2p's own switch for this (``PY_YAMUX_RELEASE_ON_READ=0``) still
  sends an update every other read through its "partial slack" branch, so the stream's
  window-update method (called by both read paths) is replaced.
- ``signed-record-once``: a peer's signed record is verified and stored once per
  distinct record (a new sequence number, new addresses), not on every RPC: the
  library's check is wrapped where pubsub and gossipsub call it.

``tests/test_libp2p_tuning.py`` pins both to the library's internals, so an upgrade
that moves them fails a test instead of silently undoing them. ``P2PLAB_PY_TUNING=0``
turns all of it off (``benchmarks/node_impls.py`` measures both ways in one run).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

# Every module of the library that calls the signed-record check, by name.
RECORD_CALLERS = ("libp2p.pubsub.pubsub", "libp2p.pubsub.gossipsub", "libp2p.pubsub.floodsub")


def next_sequence_number(pubsub: Any) -> int:
    """The sequence number py-libp2p's Pubsub.publish will give the next message: it
    takes ``counter + 1`` before its first await, and the contract's message id is
    origin/seqno (py-libp2p does not return it). Not a change: a read of the library's
    internals, pinned by the same tests."""
    return int(pubsub.counter) + 1


class Forwarders:
    """Who delivered each message first, and whether it was then a mesh peer.

    py-libp2p's subscription hands the node a message without the peer it came from;
    the contract's ``via_peer`` / ``via_mesh`` tell a mesh push from an IWANT answer or a
    publisher's flood publish. ``Pubsub.push_msg(forwarder, msg)`` is where every
    received message passes (scheduled as ``self.push_msg``), so the instance's method
    is wrapped: observation only, the message path is unchanged."""

    LIMIT = 10_000  # messages never handed to a subscription (our own) age out

    def __init__(self, pubsub: Any, mesh: Callable[[str], Any]) -> None:
        self._first: dict[bytes, tuple[Any, bool]] = {}
        original = pubsub.push_msg

        async def push_msg(forwarder: Any, msg: Any) -> None:
            if not pubsub._is_msg_seen(msg):
                key = msg.from_id + msg.seqno
                if key not in self._first:
                    if len(self._first) >= self.LIMIT:
                        self._first.pop(next(iter(self._first)))
                    in_mesh = any(forwarder in mesh(t) for t in msg.topicIDs)
                    self._first[key] = (forwarder, in_mesh)
            await original(forwarder, msg)

        pubsub.push_msg = push_msg

    def pop(self, msg: Any) -> tuple[Any, bool] | None:
        return self._first.pop(msg.from_id + msg.seqno, None)


def enabled() -> bool:
    return os.environ.get("P2PLAB_PY_TUNING", "1") != "0"


def record_once(original: Callable[[Any, Any, Any], bool]) -> Callable[[Any, Any, Any], bool]:
    """The library's ``maybe_consume_signed_record``, run only for a record not yet
    accepted from that peer; failures are never remembered (checked again each time)."""
    accepted: dict[Any, bytes] = {}

    def check(msg: Any, host: Any, peer_id: Any) -> bool:
        if not msg.HasField("senderRecord"):
            return True
        record = msg.senderRecord
        if accepted.get(peer_id) == record:
            return True
        ok = original(msg, host, peer_id)
        if ok:
            accepted[peer_id] = record
        return ok

    check.__wrapped__ = original  # type: ignore[attr-defined]  # as functools.wraps would
    return check


async def window_update_when_half_read(self: Any, *, bytes_read: int = 0) -> None:
    """YamuxStream._auto_tune_and_send_window_update, go-yamux's rule: credit for what
    was read goes back in one WINDOW_UPDATE once it reaches half the window."""
    increment = 0
    async with self.window_lock:
        self._pending_recv_release += bytes_read
        if self._pending_recv_release >= self.target_recv_window // 2:
            increment = self._pending_recv_release
            self._pending_recv_release = 0
            self.recv_window += increment
    if increment:
        await self.send_window_update(increment, skip_lock=True)  # never under the lock


def apply() -> list[str]:
    """Apply the changes (before the node creates its host); return their names."""
    if not enabled():
        return []
    import importlib

    from libp2p.pubsub import utils
    from libp2p.stream_muxer.yamux.yamux import YamuxStream

    YamuxStream._auto_tune_and_send_window_update = (  # type: ignore[method-assign]  # the patch
        window_update_when_half_read)
    checked = record_once(utils.maybe_consume_signed_record)
    for name in RECORD_CALLERS:
        module = importlib.import_module(name)
        module.maybe_consume_signed_record = checked  # type: ignore[attr-defined]  # patched name
    return ["yamux-window-hysteresis", "signed-record-once"]
