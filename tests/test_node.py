"""The chat node as a real process: flags, chat over TCP and QUIC, commands, identity,
interactive use and shutdown. Nodes listen on loopback only."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from p2plab.node.identity import peer_id_for_seed
from p2plab.orchestrate.conformance.nodes import NodeProcess, free_port

LO = ["--listen-ip", "127.0.0.1"]


@pytest.mark.quick
@pytest.mark.parametrize("args, words", [
    (["--dial", "/ip4/1.2.3/tcp/1"], "not a multiaddr"),
    (["--dial", "/ip4/1.2.3.4/udp/5"], "quic-v1"),
    (["--dial", "/ip4/1.2.3.4"], "needs /tcp/PORT"),
    (["--relay", "/ip4/1.2.3.4/tcp/4001"], "needs the relay's /p2p/ID"),
    (["--dial", "/ip4/1.2.3.4/tcp/1/p2p-circuit/p2p/"
                "12D3KooWRdFFg3yTbTsDq5Z1yCvCWbqznEFro9jeVivo7rkayJ4D"],
     "relay's /p2p/ID"),
    (["--port", "0"], "--port"),
    (["--listen-ip", "nope"], "not an IP address"),
    (["--bogus"], "unrecognized arguments"),
])
def test_bad_flags_exit_2_with_one_line(args: list[str], words: str) -> None:
    result = subprocess.run([sys.executable, "-m", "p2plab.node", *args], capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and words in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_tcp_chat_commands_ping_and_sigterm(tmp_path: Path) -> None:
    port_a, port_b = free_port(), free_port()
    a = NodeProcess(tmp_path, "a", *LO, "--port", str(port_a), "--key-seed", "a",
                    "--ping-interval", "0")
    a_id = a.started()["peer_id"]
    assert a_id == peer_id_for_seed("a")
    # b dials without /p2p/ID: the node learns the id from the handshake.
    b = NodeProcess(tmp_path, "b", *LO, "--port", str(port_b), "--ping-interval", "0.5",
                    "--dial", f"/ip4/127.0.0.1/tcp/{port_a}")
    try:
        b.started()
        b.wait_for("dial", lambda n: bool(n.of("dial")))
        assert b.of("dial")[0]["outcome"] == "ok", b.of("dial")
        for node in (a, b):
            node.wait_for("a mesh peer", lambda n: any(e["mesh"] for e in n.of("topic_peers")))
        a.send({"cmd": "publish", "count": 30, "size": 512, "rate": 50})
        b.wait_for("30 messages", lambda n: len(n.of("message_received")) >= 30)
        received = b.of("message_received")
        published = {e["msg_id"]: e for e in a.of("message_published")}
        assert len(published) == 30 and {e["msg_id"] for e in received} == set(published)
        assert all(e["origin"] == a_id and e["size"] == 512 for e in received)
        assert all(0 <= r["t"] - published[r["msg_id"]]["t"] < 5 for r in received)
        b.wait_for("a ping", lambda n: bool(n.of("ping")))
        ping = b.of("ping")[0]
        assert ping["peer"] == a_id and ping["outcome"] == "ok" and ping["rtt_ms"] > 0
        opened = b.of("connection_opened")[0]
        assert (opened["kind"], opened["transport"], opened["direction"]) == ("direct", "tcp",
                                                                               "outbound")
        b.send({"cmd": "dial", "addr": "/ip4/127.0.0.1/tcp/1/p2p/" + a_id})
        b.send({"cmd": "frobnicate"})
        b.wait_for("the bad command", lambda n: any(e["cmd"] == "?" for e in n.of("command")))
        bad = next(e for e in b.of("command") if e["cmd"] == "?")
        assert bad["outcome"] == "failed" and "cmd in" in bad["reason"]
    finally:
        took = a.stop()
        b.stop()
    assert took < 5.0, f"SIGTERM took {took:.2f} s (the contract allows 5 s)"
    assert a.proc.returncode == 0
    assert a.read()[-1]["type"] == "node_stopped" and a.read()[-1]["reason"] == "SIGTERM"


def test_quic_dial_and_key_file(tmp_path: Path) -> None:
    key = tmp_path / "a.key"
    key.write_text("11" * 32)
    port_a, port_c = free_port(), free_port()
    a = NodeProcess(tmp_path, "a", *LO, "--port", str(port_a), "--quic", "--key-file", str(key),
                    "--ping-interval", "0")
    started = a.started()
    assert any(addr.endswith("/quic-v1") for addr in started["listen_addrs"])
    assert any("/tcp/" in addr for addr in started["listen_addrs"])
    c = NodeProcess(tmp_path, "c", *LO, "--port", str(port_c), "--quic", "--ping-interval", "0",
                    "--dial", f"/dns4/localhost/udp/{port_a}/quic-v1/p2p/{started['peer_id']}")
    try:
        c.started()
        c.wait_for("a connection", lambda n: bool(n.of("connection_opened")))
        assert c.of("connection_opened")[0]["transport"] == "quic"
        for node in (a, c):
            node.wait_for("a mesh peer", lambda n: any(e["mesh"] for e in n.of("topic_peers")))
        c.send({"cmd": "say", "text": "over quic"})
        a.wait_for("the message", lambda n: bool(n.of("message_received")))
    finally:
        a.stop()
        c.stop()
    # The same key file gives the same identity.
    again = NodeProcess(tmp_path, "again", *LO, "--port", str(free_port()), "--key-file", str(key))
    try:
        assert again.started()["peer_id"] == started["peer_id"]
    finally:
        again.stop()


@pytest.mark.parametrize("impl", ["py", "rust"])
def test_typed_lines_arrive_as_sender_colon_text(tmp_path: Path, impl: str) -> None:
    port_a, port_b = free_port(), free_port()
    a = NodeProcess(tmp_path, "a", *LO, "--port", str(port_a), "--nick", "alice",
                    "--key-seed", "ia", stdin=True, impl=impl)
    a_id = a.started()["peer_id"]
    other = "rust" if impl == "py" else "py"
    b = NodeProcess(tmp_path, "b", *LO, "--port", str(port_b), "--nick", "bob",
                    "--dial", f"/ip4/127.0.0.1/tcp/{port_a}/p2p/{a_id}", stdin=True,
                    impl=other)
    try:
        out = a.out.read_text()
        assert f"peer id: {a_id}" in out and f"/tcp/{port_a}/p2p/{a_id}" in out
        for node in (a, b):
            node.wait_for("a mesh peer", lambda n: any(e["mesh"] for e in n.of("topic_peers")))
        assert a.proc.stdin is not None
        a.proc.stdin.write("hello from the terminal\n")
        a.proc.stdin.flush()
        line = f"{a_id[-6:]}: hello from the terminal"
        b.wait_for("the chat line", lambda n: line in n.out.read_text())
        assert b.proc.stdin is not None
        b.proc.stdin.write("/quit\n")
        b.proc.stdin.flush()
        b.proc.wait(10)
        assert b.proc.returncode == 0
    finally:
        a.stop()
        b.stop()
