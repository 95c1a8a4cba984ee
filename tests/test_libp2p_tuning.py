"""The seam where our py node changes py-libp2p's per-message costs
(node/libp2p_tuning.py), pinned to the library's internals: if an upgrade moves what
the seam relies on, these fail instead of the change silently no longer applying."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import libp2p
import pytest
import trio
from libp2p.pubsub import utils
from libp2p.stream_muxer.yamux import yamux
from p2plab.node import libp2p_tuning
from trio.testing import MockClock

pytestmark = pytest.mark.quick


class _Conn:
    """What a yamux stream's window bookkeeping reads from its connection."""

    def __init__(self) -> None:
        self.stream_buffers: dict[int, bytearray] = {1: bytearray()}

    def rtt(self) -> float:
        return 0.0


def window_updates(tuned: bool, reads: list[int]) -> list[int]:
    """Window-update increments a real YamuxStream sends for these reads."""
    stream = yamux.YamuxStream(1, _Conn(), True)
    if tuned:
        stream._auto_tune_and_send_window_update = (  # type: ignore[method-assign]  # the patch under test
            libp2p_tuning.window_update_when_half_read.__get__(stream))
    sent: list[int] = []

    async def record(increment: int, skip_lock: bool = False) -> None:
        sent.append(increment)

    stream.send_window_update = record  # type: ignore[method-assign]  # records what is sent

    async def main() -> None:
        for n in reads:
            await trio.sleep(0.05)  # chat traffic: a message every 50 ms
            stream.recv_window -= n  # the peer sent n bytes
            await stream._auto_tune_and_send_window_update(bytes_read=n)

    trio.run(main, clock=MockClock(autojump_threshold=0))  # simulated time, no waiting
    return sent


def test_yamux_returns_window_credit_per_half_window_not_per_read() -> None:
    reads = [300] * 1000  # 300 kB in chat-sized reads, 50 ms apart
    stock = window_updates(False, reads)
    tuned = window_updates(True, reads)
    assert len(stock) >= 500  # the library: a WINDOW_UPDATE frame for (nearly) every read
    # Ours: one per half window (128 KiB); all credit returned but the last half window.
    half = yamux.DEFAULT_WINDOW_SIZE // 2
    assert len(tuned) == 300 * 1000 // half and all(t >= half for t in tuned)
    # The stream's bookkeeping and both read paths are where the seam relies on them.
    stream = yamux.YamuxStream(1, _Conn(), True)
    assert {"_pending_recv_release", "recv_window", "target_recv_window",
            "window_lock"} <= set(vars(stream))
    assert inspect.getsource(yamux.YamuxStream.read).count(
        "_auto_tune_and_send_window_update(bytes_read=") == 2
    assert list(inspect.signature(yamux.YamuxStream.send_window_update).parameters) == \
        ["self", "increment", "skip_lock"]


class _Rpc:
    def __init__(self, record: bytes | None) -> None:
        self.senderRecord = record

    def HasField(self, name: str) -> bool:
        return name == "senderRecord" and self.senderRecord is not None


def test_a_signed_record_is_checked_once_per_peer_and_record() -> None:
    calls: list[bytes] = []

    def original(msg: _Rpc, host: object, peer: str) -> bool:
        calls.append(msg.senderRecord or b"")
        return msg.senderRecord != b"forged"

    check = libp2p_tuning.record_once(original)
    assert all(check(_Rpc(b"r1"), None, "A") for _ in range(50))
    assert check(_Rpc(b"r1"), None, "B") and check(_Rpc(b"r2"), None, "A")
    assert not check(_Rpc(b"forged"), None, "A") and not check(_Rpc(b"forged"), None, "A")
    assert check(_Rpc(None), None, "A")
    assert calls == [b"r1", b"r1", b"r2", b"forged", b"forged"]


def test_the_seam_covers_every_caller_of_the_record_check() -> None:
    """Every module of the library that calls maybe_consume_signed_record imports it by
    name, and is one the seam patches."""
    assert list(inspect.signature(utils.maybe_consume_signed_record).parameters) == \
        ["msg", "host", "peer_id"]
    callers = set()
    root = Path(libp2p.__file__).parent
    for source in root.rglob("*.py"):
        text = source.read_text(encoding="utf-8", errors="replace")
        if ("libp2p.pubsub.utils import" in text and "maybe_consume_signed_record" in text) \
                or ("pubsub.utils.maybe_consume_signed_record" in text):
            callers.add(".".join(source.relative_to(root.parent).with_suffix("").parts))
    assert callers == set(libp2p_tuning.RECORD_CALLERS)
    original_update = yamux.YamuxStream._auto_tune_and_send_window_update
    applied = libp2p_tuning.apply()
    try:
        assert applied == ["yamux-window-hysteresis", "signed-record-once"]
        assert yamux.YamuxStream._auto_tune_and_send_window_update is \
            libp2p_tuning.window_update_when_half_read
        for name in libp2p_tuning.RECORD_CALLERS:
            patched = importlib.import_module(name).maybe_consume_signed_record
            assert patched.__wrapped__ is utils.maybe_consume_signed_record
    finally:
        yamux.YamuxStream._auto_tune_and_send_window_update = original_update
        for name in libp2p_tuning.RECORD_CALLERS:
            importlib.import_module(name).maybe_consume_signed_record = \
                utils.maybe_consume_signed_record


def test_the_next_sequence_number_is_read_where_publish_takes_it() -> None:
    """Pubsub.publish builds the message with _next_seqno() (counter + 1, 8 bytes) before
    any await, so reading counter + 1 just before publishing names the message."""
    from libp2p.pubsub.pubsub import Pubsub

    assert "self.counter += 1" in inspect.getsource(Pubsub._next_seqno)
    publish = inspect.getsource(Pubsub.publish)
    assert publish.index("seqno=self._next_seqno()") < publish.index("await ")

    class _Pubsub:
        counter = 41

    assert libp2p_tuning.next_sequence_number(_Pubsub()) == 42


def test_what_the_node_reads_of_pubsub_internals_is_still_there() -> None:
    """node/chat.py renews pubsub's stream to a peer only if it was on the connection
    that closed (NetStream.muxed_conn), through Pubsub._handle_dead_peer; and the
    forwarder of each message is read where every received message is scheduled
    (``self.push_msg``), after the seen-check the wrapper copies."""
    from libp2p.network.stream.net_stream import NetStream
    from libp2p.pubsub.pubsub import Pubsub

    assert "self.muxed_conn = " in inspect.getsource(NetStream.__init__)
    dead = inspect.getsource(Pubsub._handle_dead_peer)
    assert "del self.peers[peer_id]" in dead and "_peer_is_connected" in dead
    assert "self.manager.run_task(self.push_msg, peer_id, msg)" in inspect.getsource(
        Pubsub.continuously_read_stream)
    assert inspect.getsource(Pubsub.push_msg).index("_is_msg_seen") < \
        inspect.getsource(Pubsub.push_msg).index("_mark_msg_seen")
