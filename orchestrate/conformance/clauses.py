"""The node contract (docs/reference/node-contract.md), clause by clause, as checks on real
processes over loopback: the same checks for ``p2plab conform`` and ``tests/test_contract.py``
(which only calls them), so the users' tool and the tests cannot drift apart.

A check takes the implementations it runs (one, or a pair: publisher then receiver) and a
scratch folder, and raises ``ClauseFailed`` (or AssertionError) saying what was wrong.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from p2plab.compose.impls.registry import Registry
from p2plab.node.identity import peer_id_for_seed
from p2plab.orchestrate.conformance.nodes import (
    CLEANUP_TIMEOUT_S,
    NodeProcess,
    free_port,
    node_program,
    stop_all,
)

from p2plab.events import read_events

LO = ["--listen-ip", "127.0.0.1"]


class ClauseFailed(AssertionError):
    """A clause the implementation does not follow; the message says how."""


def check(condition: object, message: str) -> None:
    if not condition:
        raise ClauseFailed(message)


@dataclass(frozen=True)
class Clause:
    name: str
    says: str  # the contract's words, shortened
    arity: int  # 1: the implementation alone; 2: publisher and receiver; 3: + a hub
    run: Callable[..., None]


def _run(impl: str, registry: Registry, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*node_program(impl, registry), *args], capture_output=True,
                          text=True, timeout=60)


def version_line(impl: str, registry: Registry, workdir: Path) -> None:
    out = _run(impl, registry, "--version")
    check(out.returncode == 0, f"--version exited {out.returncode}: {out.stderr.strip()}")
    words = out.stdout.split()
    check(len(words) == 4, f"--version printed {out.stdout.strip()!r}, not "
          "'NAME VERSION LIBRARY LIBRARY_VERSION'")
    library = registry.resolve(impl).file.library
    check(words[2:] == [library.name, library.version],
          f"--version names {' '.join(words[2:])}; the declaration pins {library.name} "
          f"{library.version}")


BAD_FLAGS = [
    (["--dial", "/ip4/1.2.3/tcp/1"], "not a multiaddr"),
    (["--dial", "/ip4/1.2.3.4/udp/5"], "quic-v1"),
    (["--dial", "/ip4/1.2.3.4"], "needs /tcp/PORT"),
    (["--relay", "/ip4/1.2.3.4/tcp/4001"], "needs the relay's /p2p/ID"),
    (["--port", "0"], "port"),
    (["--listen-ip", "nope"], "nope"),
    (["--degree", "0"], "D_lo <= D <= D_hi"),
    (["--no-tcp"], "--no-tcp needs --quic"),
    (["--msg-id", "md5"], "md5"),
    (["--bogus"], "--bogus"),
]


def bad_flags(impl: str, registry: Registry, workdir: Path) -> None:
    wrong = []
    for args, words in BAD_FLAGS:
        out = _run(impl, registry, *args)
        if not (out.returncode == 2 and out.stderr.count("\n") == 1 and words in out.stderr
                and out.stdout == ""):
            wrong.append(f"{' '.join(args)}: exit {out.returncode}, stderr "
                         f"{out.stderr.strip()[:120]!r} (wanted exit 2 and one line naming "
                         f"{words!r})")
    check(not wrong, "; ".join(wrong))


def key_file_and_quit(impl: str, registry: Registry, workdir: Path) -> None:
    from libp2p.crypto.ed25519 import create_new_key_pair
    from libp2p.peer.id import ID

    key = workdir / "key"
    key.write_text("11" * 32 + "\n")
    node = NodeProcess(workdir, "k", *LO, "--port", str(free_port()), "--key-file", str(key),
                       impl=impl, registry=registry)
    try:
        expected = ID.from_pubkey(create_new_key_pair(bytes([0x11] * 32)).public_key)
        check(node.started()["peer_id"] == expected.to_base58(),
              "the peer id is not the one of the --key-file's ed25519 secret")
        node.send({"cmd": "quit"})
        node.proc.wait(10)
        check(node.proc.returncode == 0, f"quit: exit code {node.proc.returncode}, not 0")
        check(node.of("node_stopped")[-1]["reason"] == "quit", "node_stopped's reason is "
              "not quit")
    finally:
        node.stop(CLEANUP_TIMEOUT_S)


def long_command(impl: str, registry: Registry, workdir: Path) -> None:
    """A pipe holds 64 KiB; a publish schedule can be far longer. The whole line must
    arrive (written as the node reads) and the commands after it still work."""
    node = NodeProcess(workdir, "long", *LO, "--port", str(free_port()), impl=impl,
                       registry=registry)
    try:
        node.started()
        offsets = [3600 + i / 1000 for i in range(40_000)]  # ~0.4 MB of JSON, never due
        node.send({"cmd": "publish", "count": len(offsets), "size": 10, "rate": 1,
                   "offsets": offsets, "flow": "long"})
        node.send({"cmd": "stop-traffic", "flow": "long"})
        node.wait_for("both commands", lambda n: len(n.of("command")) >= 2)
        outcomes = {e["cmd"]: e["outcome"] for e in node.of("command")}
        check(outcomes == {"publish": "ok", "stop-traffic": "ok"}, f"outcomes {outcomes}")
        node.send({"cmd": "quit"})
        node.proc.wait(10)
        check(node.proc.returncode == 0, f"exit code {node.proc.returncode} after quit")
    finally:
        node.stop(CLEANUP_TIMEOUT_S)


def _chat(publisher: str, receiver: str, registry: Registry, workdir: Path,
          msg_id: str) -> None:
    """Identity from the seed, readiness, events of schema v1, message ids from gossipsub's
    own origin + sequence number, plain-text payloads, commands, SIGTERM."""
    port_a, port_b = free_port(), free_port()
    common = [*LO, "--msg-id", msg_id, "--ping-interval", "0.5"]
    a = NodeProcess(workdir, "a", *common, "--port", str(port_a), "--key-seed", "seed-a",
                    impl=publisher, registry=registry)
    b = None
    try:
        started = a.started()
        check(started["peer_id"] == peer_id_for_seed("seed-a"),
              f"{publisher}: the peer id is not the one --key-seed derives")
        check(started["msg_id_fn"] == msg_id, f"{publisher}: node_started says msg_id_fn "
              f"{started['msg_id_fn']!r}, not {msg_id!r}")
        # b also shows chat lines on stdout (stdin open): the payload is the text.
        b = NodeProcess(workdir, "b", *common, "--port", str(port_b), "--key-seed", "seed-b",
                        "--dial", f"/ip4/127.0.0.1/tcp/{port_a}/p2p/{started['peer_id']}",
                        stdin=True, impl=receiver, registry=registry)
        check(b.started()["peer_id"] == peer_id_for_seed("seed-b"),
              f"{receiver}: the peer id is not the one --key-seed derives")
        for node in (a, b):
            node.wait_for("a mesh peer", lambda n: any(e["mesh"] for e in n.of("topic_peers")))
        a.send({"cmd": "publish", "count": 20, "size": 300, "rate": 40, "flow": "f"})
        a.send({"cmd": "say", "text": "hello from a"})
        a.send({"cmd": "frobnicate"})
        b.wait_for("21 messages", lambda n: len(n.of("message_received")) >= 21)
        a.wait_for("command results", lambda n: len(n.of("command")) >= 3)
        b.wait_for("a ping", lambda n: any(e["outcome"] == "ok" for e in n.of("ping")))
        published = {e["msg_id"]: e for e in a.of("message_published")}
        received = b.of("message_received")
        check(len(published) == 21 and {e["msg_id"] for e in received} == set(published),
              "the receiver's message ids are not the publisher's")
        for event in received:
            origin, seq = event["msg_id"].rsplit("/", 1)
            check(origin == started["peer_id"] == event["origin"] and int(seq) == event["seq"],
                  f"msg_id {event['msg_id']} is not ORIGIN/SEQ of the event's origin and seq")
            # Two nodes: the only path is a's push to its mesh peer b.
            check(event["via_peer"] == started["peer_id"] and event["via_mesh"] is True,
                  "a message did not come by the publisher's mesh push")
        seqs = sorted(e["seq"] for e in published.values())
        check(seqs == list(range(seqs[0], seqs[0] + 21)), f"sequence numbers {seqs}")
        check({e["size"] for e in received} == {300, len("hello from a")},
              "payload sizes are not the published ones")
        check({e["flow"] for e in published.values()} == {"f", None}, "flows not recorded")
        commands = {e["cmd"]: e["outcome"] for e in a.of("command")}
        check(commands == {"publish": "ok", "say": "ok", "?": "failed"},
              f"command outcomes {commands}")
        b.wait_for("the text on stdout", lambda n: "hello from a" in n.out.read_text())
        check(f"{started['peer_id'][-6:]}: a message 1\n" in b.out.read_text(),
              "the chat line on stdout is not 'ID6: TEXT'")
        took = a.stop()
        check(took < 5 and a.proc.returncode == 0,  # the contract: 5 s, loaded or not
              f"SIGTERM: exit {a.proc.returncode} after {took:.1f} s")
        events = list(read_events(a.events))  # every line valid against schema v1
        check(events[0]["type"] == "node_started", "the first event is not node_started")
        check(events[-1]["type"] == "node_stopped" and events[-1]["reason"] == "SIGTERM",
              "the last event is not node_stopped with reason SIGTERM")
        b.wait_for("the connection to close",
                   lambda n: bool(n.of("connection_closed")), timeout=15)
    finally:
        stop_all([a] if b is None else [a, b])


def chat_origin_seq(publisher: str, receiver: str, registry: Registry, workdir: Path) -> None:
    _chat(publisher, receiver, registry, workdir, "origin-seq")


def chat_content(publisher: str, receiver: str, registry: Registry, workdir: Path) -> None:
    _chat(publisher, receiver, registry, workdir, "content")


def _gossip(publisher: str, receiver: str, hub: str, registry: Registry, workdir: Path,
            msg_id: str) -> None:
    """A publishes to hub B, whose mesh holds exactly one peer (A) and is full (D_hi 1);
    C connects to B after that, and B refuses C's GRAFT (an inbound peer into a full
    mesh), so C backs off. Eager push therefore never reaches C: every message C gets
    came by B's IHAVE and C's IWANT, with ids the three nodes (of different
    implementations) computed alike. C keeps a 1 s heartbeat: rust-libp2p 0.53 sends
    IWANT only at its next heartbeat (libp2p-gossipsub 0.46 pools control messages),
    later releases at once; both recover within the check's 30 s."""
    ports = {n: free_port() for n in "abc"}
    ids = {n: peer_id_for_seed(f"gossip-{n}") for n in "abc"}
    addr = {n: f"/ip4/127.0.0.1/tcp/{ports[n]}/p2p/{ids[n]}" for n in "abc"}

    def start(name: str, impl: str, *extra: str) -> NodeProcess:
        return NodeProcess(workdir, name, *LO, "--port", str(ports[name]), "--key-seed",
                           f"gossip-{name}", "--ping-interval", "0", "--msg-id", msg_id,
                           *extra, impl=impl, registry=registry)

    # The hub's heartbeat is 3 s: it gossips (IHAVE) the messages of its last 3 heartbeats
    # and keeps them for 5, so a receiver stalled for seconds on a loaded machine can
    # still ask for them.
    b = start("b", hub, "--degree", "1", "--degree-low", "1", "--degree-high", "1",
              "--heartbeat", "3")
    nodes = [b]
    try:
        b.started()
        a = start("a", publisher, "--dial", addr["b"])
        nodes.append(a)
        b.wait_for("A in B's mesh",
                   lambda n: any(e["mesh"] == [ids["a"]] for e in n.of("topic_peers")))
        c = start("c", receiver, "--heartbeat", "1", "--dial", addr["b"])
        nodes.append(c)
        b.wait_for("C subscribed at B",
                   lambda n: any(ids["c"] in e["peers"] for e in n.of("topic_peers")))
        a.send({"cmd": "publish", "count": 10, "size": 100, "rate": 5})
        c.wait_for("10 messages by gossip", lambda n: len(n.of("message_received")) >= 10,
                   timeout=30)
        published = {e["msg_id"] for e in a.of("message_published")}
        check({e["msg_id"] for e in c.of("message_received")} == published,
              "C's message ids are not A's")
        # ... and C saw it so: every copy came from outside its (empty) mesh.
        check(all(e["via_peer"] == ids["b"] and e["via_mesh"] is False
                  for e in c.of("message_received")), "a copy reached C by mesh push")
        # The only eager path to C would be B's mesh: C was never in it.
        check(all(ids["c"] not in e["mesh"] for e in b.of("topic_peers")), "C in B's mesh")
    finally:
        stop_all(nodes)


def gossip_origin_seq(publisher: str, receiver: str, hub: str, registry: Registry,
                      workdir: Path) -> None:
    _gossip(publisher, receiver, hub, registry, workdir, "origin-seq")


def gossip_content(publisher: str, receiver: str, hub: str, registry: Registry,
                   workdir: Path) -> None:
    _gossip(publisher, receiver, hub, registry, workdir, "content")


CLAUSES = [
    Clause("version-line", "--version prints NAME VERSION LIBRARY LIBRARY_VERSION, the "
           "library its declaration pins", 1, version_line),
    Clause("bad-flags", "a bad flag: one line on stderr naming it, exit code 2", 1, bad_flags),
    Clause("key-file-and-quit", "--key-file's ed25519 secret is the identity; quit exits 0 "
           "with node_stopped", 1, key_file_and_quit),
    Clause("long-command", "a control line longer than a pipe arrives whole", 1,
           long_command),
    Clause("chat/origin-seq", "peer ids from --key-seed, schema-v1 events, ids "
           "ORIGIN/SEQ equal on both sides, payload is the text, commands, SIGTERM", 2,
           chat_origin_seq),
    Clause("chat/content", "the same with content-hash message ids", 2, chat_content),
    Clause("gossip/origin-seq", "IHAVE/IWANT recovers what eager push missed, across "
           "implementations (publisher, receiver, hub)", 3, gossip_origin_seq),
    Clause("gossip/content", "the same with content-hash message ids", 3, gossip_content),
]
