"""Command-line flags of the chat node, parsed into one validated NodeConfig.

Bad flags or an unparseable multiaddr end the process with one line on stderr and
exit code 2 (``UsageError``), never a traceback.
"""

from __future__ import annotations

import argparse
import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

from multiaddr import Multiaddr

from p2plab.relay_limits import RelayLimits, RelayLimitsError
from p2plab.relay_limits import parse as parse_relay_limits

DEFAULT_PORT = 4001
DEFAULT_TOPIC = "chat"
# Gossipsub message-id functions (docs/reference/node-contract.md): one per network, on every node.
MSG_ID_FUNCTIONS = ("origin-seq", "content")


class UsageError(Exception):
    """A problem with the command line: reported in one line, exit code 2."""


class VersionRequested(Exception):
    """``--version``: print the versions line and exit 0."""


def version_line() -> str:
    """``p2plab-node VERSION py-libp2p VERSION``, as the contract asks of ``--version``."""
    from importlib.metadata import version

    import p2plab

    return f"p2plab-node {p2plab.__version__} py-libp2p {version('libp2p')}"


@dataclass(frozen=True)
class GossipParams:
    """Gossipsub parameters, set explicitly (py-libp2p's defaults are not the spec's)."""

    degree: int = 6
    degree_low: int = 4
    degree_high: int = 12
    heartbeat_interval: float = 1.0
    # High enough that no node silently drops its own or a relayed message.
    max_messages_per_topic_per_second: float = 10_000.0


@dataclass(frozen=True)
class NodeConfig:
    name: str
    nick: str
    role: str  # "peer" or "relay"
    topics: tuple[str, ...]  # subscribed; the first is where chat lines go
    listen_ips: tuple[str, ...]
    port: int
    quic: bool
    tcp: bool
    mdns: bool
    dial: tuple[Multiaddr, ...]
    relays: tuple[Multiaddr, ...]
    key_seed: str | None
    key_file: Path | None
    events: Path | None
    control: Path | None
    interactive: bool
    ping_interval: float
    dial_timeout: float
    holepunch: bool
    gossip: GossipParams = field(default_factory=GossipParams)
    msg_id: str = "origin-seq"
    relay_limits: RelayLimits | None = None  # None: the library's defaults

    @property
    def topic(self) -> str:
        return self.topics[0]


SUPPORTED_TRANSPORTS = ("tcp", "quic-v1")


def parse_multiaddr(text: str, flag: str) -> Multiaddr:
    """Parse and check a dialable multiaddr: /ip4|/ip6|/dns4|/dns6, tcp or udp/quic-v1."""
    try:
        addr = Multiaddr(text)
    except Exception as exc:  # multiaddr raises several exception types
        raise UsageError(f"{flag} {text!r}: not a multiaddr ({exc})") from None
    names = [p.name for p in addr.protocols()]
    if not names or names[0] not in ("ip4", "ip6", "dns", "dns4", "dns6", "p2p"):
        raise UsageError(
            f"{flag} {text!r}: must start with /ip4, /ip6, /dns4, /dns6 or /p2p"
        )
    if "p2p-circuit" in names:
        if "p2p" not in names[: names.index("p2p-circuit")]:
            raise UsageError(f"{flag} {text!r}: a circuit address needs the relay's /p2p/ID")
        if names[-1] != "p2p":
            raise UsageError(f"{flag} {text!r}: a circuit address must end in /p2p/TARGET_ID")
        return addr
    if names[0] != "p2p" and not ("tcp" in names or "quic-v1" in names):
        raise UsageError(f"{flag} {text!r}: needs /tcp/PORT or /udp/PORT/quic-v1")
    if "udp" in names and "quic-v1" not in names:
        raise UsageError(f"{flag} {text!r}: UDP is only supported as /udp/PORT/quic-v1")
    return addr


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="p2plab-node",
        description="libp2p chat node: mDNS, gossipsub, QUIC, circuit relay v2, DCUtR.",
    )
    parser.add_argument("--name", default=None, help="node name used in event logs")
    parser.add_argument("--nick", default=None, help="chat nickname (default: the name)")
    parser.add_argument("--role", choices=("peer", "relay"), default="peer",
                        help="relay: act as a circuit relay v2 hop and do not chat")
    parser.add_argument("--relay-limits", default=None, metavar="LIMITS",
                        help="with --role relay: unlimited, or KEY=VALUE,... overriding "
                             "the library's defaults (p2plab/relay_limits.py)")
    parser.add_argument("--topic", action="append", default=None, metavar="TOPIC",
                        help=f"subscribe (repeatable; default {DEFAULT_TOPIC})")
    parser.add_argument("--listen-ip", action="append", default=[], metavar="IP",
                        help="address to listen on (repeatable; default: every "
                             "non-loopback IPv4 address of this host)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--quic", action="store_true",
                        help="listen and dial QUIC as well as TCP")
    parser.add_argument("--no-tcp", action="store_true",
                        help="with --quic: QUIC only (py-libp2p then cannot dial TCP peers)")
    parser.add_argument("--mdns", action="store_true",
                        help="discover LAN peers with mDNS and connect to them")
    parser.add_argument("--dial", action="append", default=[], metavar="MULTIADDR")
    parser.add_argument("--relay", action="append", default=[], metavar="MULTIADDR",
                        help="circuit relay v2 to reserve a slot on (needs /p2p/ID)")
    key = parser.add_mutually_exclusive_group()
    key.add_argument("--key-seed", default=None, help="derive the identity from a seed")
    key.add_argument("--key-file", type=Path, default=None,
                     help="32 raw bytes or 64 hex chars of ed25519 seed")
    parser.add_argument("--events", type=Path, default=None, help="JSON-lines event log")
    parser.add_argument("--control", type=Path, default=None,
                        help="FIFO to read JSON-line commands from (created if missing)")
    parser.add_argument("--no-stdin", action="store_true",
                        help="do not read chat lines from standard input")
    parser.add_argument("--ping-interval", type=float, default=5.0,
                        help="seconds between pings to each connected peer (0: off)")
    parser.add_argument("--no-holepunch", action="store_true",
                        help="do not run DCUtR (relayed connections stay relayed)")
    parser.add_argument("--dial-timeout", type=float, default=30.0,
                        help="keep retrying each --dial for this many seconds")
    parser.add_argument("--degree", type=int, default=GossipParams.degree)
    parser.add_argument("--degree-low", type=int, default=GossipParams.degree_low)
    parser.add_argument("--degree-high", type=int, default=GossipParams.degree_high)
    parser.add_argument("--heartbeat", type=float, default=GossipParams.heartbeat_interval)
    parser.add_argument("--msg-id", choices=MSG_ID_FUNCTIONS, default="origin-seq",
                        help="gossipsub message-id function, the same on every node")
    parser.add_argument("--version", action="store_true",
                        help="print the implementation and libp2p versions, then exit")
    return parser


def parse_args(argv: list[str]) -> NodeConfig:
    parser = _build_parser()
    # argparse prints usage and exits 2 on its own errors; keep it to one line.
    def fail(message: str) -> NoReturn:
        raise UsageError(message)

    parser.error = fail  # type: ignore[method-assign]  # argparse has no other hook for it
    args = parser.parse_args(argv)
    if args.version:
        raise VersionRequested()
    for ip in args.listen_ip:
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            raise UsageError(f"--listen-ip {ip!r}: not an IP address") from None
    if not 0 < args.port < 65536:
        raise UsageError(f"--port {args.port}: must be 1-65535")
    if not (0 < args.degree_low <= args.degree <= args.degree_high):
        raise UsageError("gossipsub degrees must satisfy 0 < D_lo <= D <= D_hi")
    if args.no_tcp and not args.quic:
        raise UsageError("--no-tcp needs --quic: a node must listen on something")
    if args.heartbeat <= 0:
        raise UsageError("--heartbeat must be positive")
    relay_limits = None
    if args.relay_limits is not None:
        if args.role != "relay":
            raise UsageError("--relay-limits needs --role relay")
        try:
            relay_limits = parse_relay_limits(args.relay_limits)
        except RelayLimitsError as exc:
            raise UsageError(str(exc)) from None
    relays = tuple(parse_multiaddr(a, "--relay") for a in args.relay)
    for text, addr in zip(args.relay, relays, strict=True):
        if "p2p" not in [p.name for p in addr.protocols()]:
            raise UsageError(f"--relay {text!r}: needs the relay's /p2p/ID")
    name = args.name or args.nick or "node"
    return NodeConfig(
        name=name,
        nick=args.nick or name,
        role=args.role,
        topics=tuple(dict.fromkeys(args.topic or [DEFAULT_TOPIC])),
        listen_ips=tuple(args.listen_ip),
        port=args.port,
        quic=args.quic,
        tcp=not args.no_tcp,
        mdns=args.mdns,
        dial=tuple(parse_multiaddr(a, "--dial") for a in args.dial),
        relays=relays,
        key_seed=args.key_seed,
        key_file=args.key_file,
        events=args.events,
        control=args.control,
        interactive=not args.no_stdin,
        ping_interval=args.ping_interval,
        dial_timeout=args.dial_timeout,
        holepunch=not args.no_holepunch,
        gossip=GossipParams(
            degree=args.degree,
            degree_low=args.degree_low,
            degree_high=args.degree_high,
            heartbeat_interval=args.heartbeat,
        ),
        msg_id=args.msg_id,
        relay_limits=relay_limits,
    )
