"""The scenario file: YAML in, a validated pydantic model out.

Errors name the file, the line and the field, and say how to fix it, before anything
is created. Cross-references (a node on a LAN that does not exist, a relay that is not
a relay node) are checked here too, so later stages can trust the model.
"""

from __future__ import annotations

import fnmatch
import ipaddress
from collections import Counter
import random
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from p2plab.topology import groups
from p2plab.topology.nat import PRESETS, NatBehaviour, resolve
from p2plab.topology.yaml_source import (YamlSourceError, field_path, line_for, line_index,
                                  parse_yaml, read_text)

NAME_RE = re.compile(r"[a-z][a-z0-9-]{0,19}")  # fullmatch: "$" would let "a\n" through
PUBLIC = "public"


class ScenarioError(Exception):
    """A scenario that cannot run; the message names file, line and field."""


class _Strict(BaseModel):
    # allow_inf_nan: `sleep: .inf` or `timeout: .nan` is a typo, never a plan.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


# A day: any longer wait or sleep in a lab is a typo (and would outlive the run's owner).
MAX_SECONDS = 86_400


TOPIC_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:/-]{0,63}")


def _check_topic(value: str) -> str:
    """Topics travel as command-line values: one starting with '-' would be a flag."""
    if not TOPIC_RE.fullmatch(value):
        raise ValueError(f"{value!r} is not a valid topic: use 1-64 letters, digits and "
                         "_ . : / -, not starting with '-' or '.'")
    return value


def _check_name(value: str) -> str:
    if not NAME_RE.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a valid name: use 1-20 lower-case letters, digits and "
            "dashes, starting with a letter"
        )
    return value


class Segment(_Strict):
    """The public internet segment: a flat subnet with no way out of the lab."""

    subnet: str = "203.0.113.0/24"

    @field_validator("subnet")
    @classmethod
    def _subnet(cls, value: str) -> str:
        return _check_subnet(value)


def _check_subnet(value: str) -> str:
    try:
        net = ipaddress.IPv4Network(value, strict=True)
    except ValueError as exc:
        raise ValueError(f"{value!r} is not an IPv4 subnet like 10.1.0.0/24 ({exc})") from None
    if net.prefixlen > 28:
        raise ValueError(f"{value!r} is too small: use /28 or larger")
    return _check_ordinary(net, value)


# Address blocks that mean something to every host's kernel: a lab there would capture
# the host's own loopback, link-local or multicast traffic, or could not route at all.
SPECIAL_BLOCKS = {
    "0.0.0.0/8": "'this network' (0.0.0.0/8)",
    "127.0.0.0/8": "loopback (127.0.0.0/8)",
    "169.254.0.0/16": "link-local (169.254.0.0/16)",
    "224.0.0.0/4": "multicast (224.0.0.0/4)",
    "240.0.0.0/4": "reserved (240.0.0.0/4)",
}


def _check_ordinary(net: ipaddress.IPv4Network, value: str) -> str:
    if net.prefixlen < 8:
        raise ValueError(f"{value!r} is larger than a /8: a lab needs a private block such "
                         "as 10.1.0.0/16")
    for block, meaning in SPECIAL_BLOCKS.items():
        if net.overlaps(ipaddress.IPv4Network(block)):
            raise ValueError(f"{value!r} lies in {meaning}, which every host's kernel treats "
                             "specially: use a private block such as 10.1.0.0/24")
    return value


class NatSpec(_Strict):
    """A NAT as a preset, with any of its parts overridden."""

    preset: str = "port-restricted"
    mapping: Literal["endpoint-independent", "address-dependent",
                     "address-and-port-dependent"] | None = None
    filtering: Literal["endpoint-independent", "address-dependent",
                       "address-and-port-dependent"] | None = None
    hairpin: bool | None = None
    udp_timeout: int | None = Field(default=None, gt=0, le=86400)
    tcp_timeout: int | None = Field(default=None, gt=0, le=864000)
    port_preservation: bool | None = None
    udp_blocked: bool | None = None

    @model_validator(mode="after")
    def _resolvable(self) -> "NatSpec":
        resolve(self.preset, **self.overrides())
        return self

    def overrides(self) -> dict[str, Any]:
        return {k: v for k, v in self.model_dump().items() if k != "preset" and v is not None}

    def behaviour(self) -> tuple[NatBehaviour | None, NatBehaviour | None]:
        """(this router, the carrier NAT above it or None)."""
        return resolve(self.preset, **self.overrides())


def nat_spec(value: str | NatSpec | None) -> NatSpec | None:
    if value is None or isinstance(value, NatSpec):
        return value
    return NatSpec(preset=value)


def _check_nat(value: Any) -> Any:
    if isinstance(value, str) and value not in PRESETS:
        raise ValueError(f"unknown NAT preset {value!r}; known: {', '.join(PRESETS)}")
    return value


class LinkSpec(_Strict):
    """Impairment of an access link, applied in both directions (node -> LAN and back).

    Between two impaired nodes a packet crosses the sender's link and the receiver's, so
    the configured round trip is 2 x (latency_a + latency_b).
    """

    latency_ms: float = Field(default=0, ge=0, le=10_000)
    jitter_ms: float = Field(default=0, ge=0, le=10_000)
    loss_pct: float = Field(default=0, ge=0, lt=100)
    bandwidth_kbit: int | None = Field(default=None, ge=8, le=10_000_000)

    @model_validator(mode="after")
    def _jitter(self) -> "LinkSpec":
        if self.jitter_ms > self.latency_ms:
            raise ValueError("jitter_ms cannot exceed latency_ms (a packet cannot arrive "
                             "before it was sent)")
        return self

    def is_impaired(self) -> bool:
        return bool(self.latency_ms or self.jitter_ms or self.loss_pct or self.bandwidth_kbit)


class Lan(_Strict):
    """A LAN; with ``nat`` set it sits behind a NAT router on the public segment.

    With ``count`` it stands for that many LANs named NAME-1, NAME-2, ..., each with a
    /``prefix`` subnet carved in order from ``subnet``."""

    name: str
    subnet: str
    nat: str | NatSpec | None = Field(
        default="port-restricted",
        description="a preset name, {preset, mapping, filtering, hairpin, udp_timeout, "
        "tcp_timeout, port_preservation, udp_blocked}, or null for no router",
    )
    count: int | None = Field(default=None, ge=1, le=20_000)
    prefix: int = Field(default=24, ge=8, le=28, description="subnet size with count")
    link: LinkSpec | None = Field(default=None, description="every node's access link")

    _nat = field_validator("nat", mode="before")(classmethod(lambda cls, v: _check_nat(v)))

    @property
    def nat_spec(self) -> NatSpec | None:
        return nat_spec(self.nat)

    _name = field_validator("name")(classmethod(lambda cls, v: _check_name(v)))

    @field_validator("subnet")
    @classmethod
    def _subnet(cls, value: str) -> str:
        try:
            net = ipaddress.IPv4Network(value, strict=True)
        except ValueError as exc:
            raise ValueError(f"{value!r} is not an IPv4 subnet like 10.1.0.0/24 ({exc})") from None
        return _check_ordinary(net, value)

    @model_validator(mode="after")
    def _size(self) -> "Lan":
        if self.count is None:
            _check_subnet(self.subnet)
        return self


class DialTarget(_Strict):
    """Dial another node by name, directly or through a relay node."""

    node: str
    via: str | None = None


class ConnectSpec(_Strict):
    """Who a group's nodes dial: k random peers, every match, or every bootstrap node."""

    to: Literal["random", "all", "bootstrap"]
    k: int = Field(default=3, ge=1)
    among: list[str] = Field(default_factory=lambda: ["*"], description="name patterns")


class GraphSpec(_Strict):
    """Connections laid out by a networkx generator over the matching nodes."""

    graph: Literal["full-mesh", "ring", "star", "random-regular", "erdos-renyi",
                   "barabasi-albert", "watts-strogatz"]
    among: list[str] = Field(default_factory=lambda: ["*"], description="name patterns")
    degree: int = Field(default=3, ge=1, description="random-regular, barabasi-albert (m), "
                        "watts-strogatz (k)")
    p: float = Field(default=0.1, gt=0, le=1, description="erdos-renyi, watts-strogatz")


ROLES = ("peer", "relay", "bootstrap")


class NodeSpec(_Strict):
    """One node, or with ``count`` a group of them (NAME-01, NAME-02, ...).

    ``lan`` may list several LANs or patterns (``home-*``): a group is dealt round-robin
    across them. ``bootstrap`` nodes chat like peers; others find them with
    ``connect: {to: bootstrap}``."""

    name: str
    count: int | None = Field(default=None, ge=1, le=200_000)
    lan: str | list[str] = Field(description=f"LAN names or patterns, or {PUBLIC!r}")
    role: Literal["peer", "relay", "bootstrap"] = "peer"
    impl: Literal["py", "rust"] | None = Field(
        default=None, description="which implementation of the node contract runs it "
        "(py-libp2p or rust-libp2p); default: the scenario's impl")
    quic: bool = False
    tcp: bool = Field(default=True, description="false with quic: true makes a QUIC-only node")
    mdns: bool = False
    holepunch: bool = Field(default=True, description="run DCUtR on relayed connections")
    relay: list[str] = Field(default_factory=list, description="relay nodes to reserve on")
    dial: list[Union[str, DialTarget]] = Field(
        default_factory=list,
        description="node names or patterns, {node, via} for a relayed dial, or multiaddrs",
    )
    connect: list[ConnectSpec] = Field(default_factory=list,
                                       description="one strategy or a list of them")
    topics: list[str] | None = Field(default=None, description="default: the scenario's topic")
    _topics = field_validator("topics")(classmethod(
        lambda cls, v: v if v is None else [_check_topic(t) for t in v]))
    link: LinkSpec | None = Field(default=None, description="overrides the LAN's link")

    _name = field_validator("name")(classmethod(lambda cls, v: _check_name(v)))

    @field_validator("connect", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, dict) else value

    @property
    def chats(self) -> bool:
        return self.role != "relay"


class _Step(_Strict):
    at: float | None = Field(default=None, ge=0, le=MAX_SECONDS, description="seconds after the timeline "
                             "starts: the step waits until then")


class WaitReservation(_Step):
    wait: Literal["reservation"]
    nodes: list[str]
    timeout: float = Field(default=30.0, gt=0, le=MAX_SECONDS)


class WaitTopicPeers(_Step):
    wait: Literal["topic-peers"]
    nodes: list[str]
    min: int = 1
    timeout: float = Field(default=30.0, gt=0, le=MAX_SECONDS)


class _WaitPairs(_Step):
    between: tuple[str, str] | None = None
    pairs: list[tuple[str, str]] = Field(default_factory=list)
    timeout: float = Field(default=30.0, gt=0, le=MAX_SECONDS)
    required: bool = Field(default=True, description="false: on timeout, just go on")

    @model_validator(mode="after")
    def _one_of(self) -> "_WaitPairs":
        if (self.between is None) == (not self.pairs):
            raise ValueError("give either between: [a, b] or pairs: [[a, b], ...]")
        return self

    def all_pairs(self) -> list[tuple[str, str]]:
        return [self.between] if self.between else list(self.pairs)


class WaitConnection(_WaitPairs):
    """Wait for a connection of a kind between one pair, or (``pairs``) several at once."""

    wait: Literal["connection"]
    kind: Literal["any", "direct", "relayed"] = "any"


class WaitHolePunch(_WaitPairs):
    """Wait until DCUtR between the pair has finished (either way)."""

    wait: Literal["hole-punch"]


class Publish(_Step):
    """Traffic: each publisher sends ``count`` messages at ``rate`` per second on average.

    ``pattern``: constant spacing, poisson (exponential gaps), or bursts of ``burst``
    back-to-back messages. Send times are drawn from the scenario's seed."""

    publish: list[str] | Literal["all"]
    count: int = Field(gt=0, le=100_000)
    size: int = Field(default=100, ge=0, le=1_000_000)
    rate: float = Field(default=5.0, gt=0, le=10_000)
    pattern: Literal["constant", "poisson", "burst"] = "constant"
    burst: int = Field(default=10, ge=1)
    topic: str | None = Field(default=None, description="default: the publisher's first topic")
    _topic = field_validator("topic")(classmethod(
        lambda cls, v: v if v is None else _check_topic(v)))
    name: str | None = Field(default=None, description="a flow name, for expectations "
                             "and stop-traffic")


class StopTraffic(_Step):
    stop_traffic: str = Field(alias="stop-traffic", description="a flow name, or all")


class Sleep(_Step):
    sleep: float = Field(ge=0, le=MAX_SECONDS)


class SetNat(_Step):
    """Change a LAN's NAT mid-run (its connection tracking is flushed, as on a reboot)."""

    set_nat: str = Field(alias="set-nat", description="the LAN whose router changes")
    nat: str | NatSpec

    _nat = field_validator("nat", mode="before")(classmethod(lambda cls, v: _check_nat(v)))


class Kill(_Step):
    """SIGKILL nodes (a crash: no goodbye to peers). A killed relay is 'the relay died'."""

    kill: list[str]


class Restart(_Step):
    """Start killed nodes again, with the same identity and address."""

    restart: list[str]


class LinkDown(_Step):
    """Cut nodes' access links (LAN names cut every node on the LAN): packets are dropped."""

    link_down: list[str] = Field(alias="link-down")


class LinkUp(_Step):
    link_up: list[str] = Field(alias="link-up")


class Partition(_Step):
    """Split the lab into groups that cannot reach each other; nodes not named form one
    more group. Nodes behind one NAT share its address, so they stay together."""

    partition: list[list[str]] = Field(min_length=1)


class Heal(_Step):
    heal: Literal[True]


STEP_KEYS = ("publish", "sleep", "set-nat", "stop-traffic", "kill", "restart", "link-down",
             "link-up", "partition", "heal")
STEP_TAGS = ("wait-reservation", "wait-topic-peers", "wait-connection", "wait-hole-punch",
             *STEP_KEYS)
FAULT_STEPS = ("kill", "restart", "link-down", "link-up", "partition", "heal", "set-nat")


def _step_kind(value: Any) -> str | None:
    """Pick the step model by its key, so errors speak of one kind of step only."""
    if isinstance(value, BaseModel):
        value = value.model_dump(by_alias=True)
    if isinstance(value, dict):
        if "wait" in value:
            return f"wait-{value['wait']}"
        for key in STEP_KEYS:
            if key in value:
                return key
    return None


def step_kind(step: BaseModel) -> str:
    kind = _step_kind(step)
    assert kind is not None
    return kind


Step = Annotated[
    Union[
        Annotated[WaitReservation, Tag("wait-reservation")],
        Annotated[WaitTopicPeers, Tag("wait-topic-peers")],
        Annotated[WaitConnection, Tag("wait-connection")],
        Annotated[WaitHolePunch, Tag("wait-hole-punch")],
        Annotated[Publish, Tag("publish")],
        Annotated[StopTraffic, Tag("stop-traffic")],
        Annotated[Sleep, Tag("sleep")],
        Annotated[SetNat, Tag("set-nat")],
        Annotated[Kill, Tag("kill")],
        Annotated[Restart, Tag("restart")],
        Annotated[LinkDown, Tag("link-down")],
        Annotated[LinkUp, Tag("link-up")],
        Annotated[Partition, Tag("partition")],
        Annotated[Heal, Tag("heal")],
    ],
    Discriminator(
        _step_kind,
        custom_error_type="timeline_step",
        custom_error_message="a step is one of: wait: reservation | topic-peers | "
        "connection | hole-punch, publish: [nodes], stop-traffic: FLOW, sleep: SECONDS, "
        "set-nat: LAN, kill: [nodes], restart: [nodes], link-down: [nodes or LANs], "
        "link-up: [...], partition: [[group], ...], heal: true",
    ),
]


class ConnectionExpectation(_Strict):
    between: tuple[str, str]
    final: Literal["direct", "relayed", "none"]


class HolePunchExpectation(_Strict):
    between: tuple[str, str]
    outcome: Literal["success", "failure"]


class PropagationExpectation(_Strict):
    """The median message reaches ``percent`` % of its subscribers within ``max_ms``."""

    percent: Literal[50, 90, 99, 100]
    max_ms: float = Field(gt=0)


class FlowExpectation(_Strict):
    """Expectations on one named traffic flow (a publish step's ``name``)."""

    flow: str
    delivery_ratio_min: float | None = Field(default=None, ge=0, le=1)
    delivery_ratio_max: float | None = Field(default=None, ge=0, le=1)
    reachable_delivery_ratio_min: float | None = Field(default=None, ge=0, le=1)
    latency_p99_ms_max: float | None = Field(default=None, gt=0)


class RecoveryExpectation(_Strict):
    """After every fault step of this kind, a message published after it reaches all its
    (live) subscribers within ``max_s``."""

    after: Literal["kill", "restart", "link-down", "link-up", "partition", "heal", "set-nat"]
    max_s: float = Field(gt=0)


class Expectations(_Strict):
    delivery_ratio_min: float | None = Field(default=None, ge=0, le=1)
    reachable_delivery_ratio_min: float | None = Field(default=None, ge=0, le=1)
    latency_p50_ms_max: float | None = Field(default=None, gt=0)
    latency_p99_ms_max: float | None = Field(default=None, gt=0)
    propagation: list[PropagationExpectation] = Field(default_factory=list)
    flows: list[FlowExpectation] = Field(default_factory=list)
    recovery: list[RecoveryExpectation] = Field(default_factory=list)
    link_rtt_tolerance_pct: float | None = Field(
        default=None, gt=0, description="UDP round trips measured over the impaired links "
        "before the timeline are within this % (+2 ms) of the configured ones")
    connections: list[ConnectionExpectation] = Field(default_factory=list)
    hole_punch: list[HolePunchExpectation] = Field(default_factory=list)


class SimModel(_Strict):
    """Parameters of the simulator's model that emulation measures instead: CPU time a
    node spends on each message it receives (decrypt, verify the signature, bookkeep)
    and on each copy it sends (encode, encrypt, write), one message at a time. 0 leaves
    CPU out of the model. Emulation backends ignore this section."""

    receive_ms: float = Field(default=0.0, ge=0, le=10_000)
    send_ms: float = Field(default=0.0, ge=0, le=10_000)


# The runner writes the lab's own events (faults, traffic) under this name.
LAB_EVENTS = "_lab"


class Scenario(_Strict):
    name: str
    description: str = ""
    seed: int = 1
    topic: str = "chat"
    _topic = field_validator("topic")(classmethod(lambda cls, v: _check_topic(v)))
    impl: Literal["py", "rust"] = Field(default="py", description="the node implementation "
                                        "of every node that does not name its own")
    msg_id: Literal["origin-seq", "content"] = Field(
        default="origin-seq", description="the gossipsub message-id function every node "
        "uses: origin + sequence number, or a hash of the payload")
    public: Segment = Field(default_factory=Segment)
    lan_specs: list[Lan] = Field(default_factory=list, alias="lans")
    node_specs: list[NodeSpec] = Field(alias="nodes")
    connect: GraphSpec | None = Field(default=None, description="connections laid out by "
                                      "a networkx generator")
    timeline: list[Step] = Field(default_factory=list)
    expect: Expectations = Field(default_factory=Expectations)
    settle: float = Field(default=2.0, ge=0, description="seconds after the timeline")
    ping_interval: float = Field(default=5.0, ge=0, description="seconds between a node's "
                                 "pings of each connected peer (0: never); each ping costs "
                                 "CPU, so big labs ping less")
    probe_nat: bool = Field(default=False, description="classify every NAT with the "
                            "built-in probe at lab start; a mismatch fails the run")
    sim: SimModel = Field(default_factory=SimModel, description="simulator-only model "
                          "parameters")
    in_suite: bool = Field(default=True, description="false: `p2plab suite` without "
                           "arguments leaves it out (too big to emulate, or run by a test)")

    _lans: list[Lan] = PrivateAttr(default_factory=list)
    _nodes: list[NodeSpec] = PrivateAttr(default_factory=list)
    _lan_origin: dict[str, int] = PrivateAttr(default_factory=dict)
    _node_origin: dict[str, int] = PrivateAttr(default_factory=dict)
    _lan_by_name: dict[str, Lan] = PrivateAttr(default_factory=dict)

    _name = field_validator("name")(classmethod(lambda cls, v: _check_name(v)))

    # -- the expanded scenario -----------------------------------------------------
    @property
    def lans(self) -> list[Lan]:
        """Every LAN, with ``count`` expanded."""
        return self._lans

    @property
    def nodes(self) -> list[NodeSpec]:
        """Every node, with groups expanded and connection strategies turned into dials."""
        return self._nodes

    def node(self, name: str) -> NodeSpec:
        return next(n for n in self.nodes if n.name == name)

    def peers(self) -> list[NodeSpec]:
        """Nodes that chat (peers and bootstrap nodes)."""
        return [n for n in self.nodes if n.chats]

    def impl_of(self, node: NodeSpec) -> str:
        return node.impl or self.impl

    def topics_of(self, node: NodeSpec) -> list[str]:
        return list(node.topics) if node.topics else [self.topic]

    def match_nodes(self, patterns: list[str] | Literal["all"]) -> list[str]:
        """Node names matching the patterns ("all": every chatting node)."""
        if patterns == "all":
            return [n.name for n in self.peers()]
        return groups.match(patterns, [n.name for n in self.nodes])

    def match_chatting(self, patterns: list[str]) -> list[str]:
        """Matching nodes that chat: what a topic-peers wait means by ``["*"]`` (a relay
        subscribes to nothing, so waiting for its mesh could only time out)."""
        relays = {n.name for n in self.nodes if not n.chats}
        return [n for n in self.match_nodes(patterns) if n not in relays]

    def match_link_targets(self, patterns: list[str]) -> list[str]:
        """Nodes named, and every node on a LAN named, by the patterns."""
        lans = set(groups.match(patterns, [lan.name for lan in self.lans]))
        return [n.name for n in self.nodes
                if n.lan in lans or any(fnmatch.fnmatchcase(n.name, p) for p in patterns)]

    def link_of(self, node: NodeSpec) -> LinkSpec | None:
        """The node's own link, or its LAN's."""
        if node.link is not None:
            return node.link
        if len(self._lan_by_name) != len(self._lans):
            self._lan_by_name = {l.name: l for l in self._lans}
        lan = self._lan_by_name.get(node.lan)
        return lan.link if lan is not None else None

    def node_origin(self, name: str) -> int:
        """Index in the file's ``nodes`` list of the spec a node came from."""
        return self._node_origin[name]

    def flows(self) -> list[str]:
        return [s.name for s in self.timeline if isinstance(s, Publish) and s.name]

    # -- expansion -----------------------------------------------------------------
    @model_validator(mode="after")
    def _expand(self) -> "Scenario":
        errors: list[tuple[tuple[Any, ...], str]] = []
        failed_lan_groups: list[str] = []
        for i, lan in enumerate(self.lan_specs):
            if lan.name in self._lan_origin or (lan.count and any(
                    n.startswith(f"{lan.name}-") for n in self._lan_origin)):
                errors.append((("lans", i, "name"), f"LAN name {lan.name!r} is used twice"))
                continue
            if lan.count is None:
                self._lans.append(lan)
                self._lan_origin[lan.name] = i
                continue
            try:
                subnets = groups.split_pool(lan.subnet, lan.count, lan.prefix)
            except ValueError as exc:
                errors.append((("lans", i, "count"), str(exc)))
                failed_lan_groups.append(lan.name)
                continue
            for k, subnet in enumerate(subnets, start=1):
                name = f"{lan.name}-{k}"
                self._lans.append(lan.model_copy(update={"name": name, "subnet": subnet,
                                                         "count": None}))
                self._lan_origin[name] = i
        lan_names = [PUBLIC] + [lan.name for lan in self._lans]
        # Reachable from everywhere: the public segment and LANs routed without NAT.
        # A LAN with nat: null has no router at all: only its own nodes reach it.
        routed = {PUBLIC} | {lan.name for lan in self._lans
                             if lan.nat_spec is not None and lan.nat_spec.preset == "public"}
        isolated = {lan.name for lan in self._lans if lan.nat is None}

        plain: list[NodeSpec] = []
        for i, spec in enumerate(self.node_specs):
            patterns = [spec.lan] if isinstance(spec.lan, str) else spec.lan
            lans = groups.match(patterns, lan_names)
            missing = [p for p in patterns if not groups.match([p], lan_names)]
            if missing:
                bad = missing[0]
                if not any(bad.startswith(f"{failed}-") for failed in failed_lan_groups):
                    errors.append((("nodes", i, "lan"), (
                        f"pattern {bad!r} matches no LAN" if groups.has_pattern(bad)
                        else f"LAN {bad!r} does not exist") + f"; known: {', '.join(lan_names)}"))
                continue
            names = ([spec.name] if spec.count is None else
                     [groups.numbered(spec.name, k, spec.count)
                      for k in range(1, spec.count + 1)])
            for k, name in enumerate(names):
                if name in self._node_origin:
                    errors.append((("nodes", i, "name"), f"node name {name!r} is used twice"))
                    break
                if len(name) > 20:
                    errors.append((("nodes", i, "name"), f"{name!r} is longer than 20 "
                                   "characters: use a shorter group name"))
                    break
                plain.append(spec.model_copy(update={"name": name, "count": None,
                                                     "lan": lans[k % len(lans)]}))
                self._node_origin.setdefault(name, i)
        all_names = [n.name for n in plain]
        roles = {n.name: n.role for n in plain}
        relay_names = [n for n, r in roles.items() if r == "relay"]

        def one(pattern: str, loc: tuple[Any, ...], what: str, pool: list[str]) -> list[str]:
            """Names matching one pattern, or an error at ``loc`` saying why none do."""
            found = groups.match([pattern], pool)
            if not found:
                if pattern in all_names:
                    errors.append((loc, f"{pattern!r} is not a node with role: {what}"))
                elif groups.has_pattern(pattern):
                    errors.append((loc, f"pattern {pattern!r} matches no node"
                                   + (f" with role: {what}" if what != "any" else "")))
                else:
                    errors.append((loc, f"node {pattern!r} does not exist"))
            return found

        def names_for(patterns: list[str], loc: tuple[Any, ...], what: str,
                      pool: list[str]) -> list[str]:
            out: list[str] = []
            for j, p in enumerate(patterns):
                out += [f for f in one(p, (*loc, j), what, pool) if f not in out]
            return out

        relays_of: dict[str, list[str]] = {}
        for n in plain:
            i = self._node_origin[n.name]
            relays_of[n.name] = names_for(n.relay, ("nodes", i, "relay"), "relay", relay_names)

        rng = random.Random(self.seed)
        edges: list[groups.Edge] = []
        chatting = [n.name for n in plain if n.role != "relay"]
        if self.connect is not None:
            among = groups.match(self.connect.among, chatting)
            if not among:
                errors.append((("connect", "among"), "the patterns match no chatting node"))
            else:
                try:
                    edges += groups.graph_edges(among, self.connect, rng, ("connect",))
                except groups.ExpansionError as exc:
                    errors += exc.errors
        pools: dict[tuple[str, ...], list[str]] = {}
        for n, (k, c) in ((n, kc) for n in plain for kc in enumerate(n.connect)):
            loc = ("nodes", self._node_origin[n.name], "connect", k)
            if c.to == "bootstrap":
                targets = [m for m in all_names if roles[m] == "bootstrap"]
                if not targets:
                    errors.append((loc, "no node has role: bootstrap"))
                edges += [groups.Edge(n.name, t, loc) for t in targets]
                continue
            key = tuple(c.among)
            if key not in pools:  # one match per distinct pattern list: groups are big
                pools[key] = groups.match(c.among, chatting)
            pool = pools[key]
            if c.to == "all":
                edges += [groups.Edge(n.name, t, loc) for t in pool]
            else:
                edges += groups.random_edges(n.name, pool, c.k, rng, loc)

        lan_of = {n.name: n.lan for n in plain}
        dials: dict[str, list[DialTarget]] = {n.name: [] for n in plain}
        for edge in groups.dedupe(edges):
            oriented = groups.orient(edge, lan_of, routed, relays_of, isolated)
            if isinstance(oriented, str):
                errors.append((edge.loc, oriented))
                continue
            dialer, target, via = oriented
            dials[dialer].append(DialTarget(node=target, via=via))

        for n in plain:
            i = self._node_origin[n.name]
            explicit: list[str | DialTarget] = []
            for j, target in enumerate(n.dial):
                if isinstance(target, str) and target.startswith("/"):
                    problem = self._outside_lab(target)
                    if problem:
                        errors.append((("nodes", i, "dial", j), problem))
                    explicit.append(target)
                    continue
                if isinstance(target, str):
                    target = DialTarget(node=target)
                if target.node == n.name:
                    errors.append((("nodes", i, "dial", j), f"{n.name!r} dials itself: "
                                   "remove it from its own dial list"))
                    continue
                found = one(target.node, ("nodes", i, "dial", j), "any", all_names)
                via = None
                if target.via is not None:
                    vias = one(target.via, ("nodes", i, "dial", j, "via"), "relay",
                                relay_names)
                    via = vias[0] if vias else None
                explicit += [DialTarget(node=f, via=via) for f in found if f != n.name]
            self._nodes.append(n.model_copy(update={
                "relay": relays_of[n.name], "connect": [],
                "dial": explicit + dials[n.name]}))
        if errors:
            raise _CrossReferenceErrors(list(dict.fromkeys(errors)))
        return self

    # -- checks on the expanded scenario -----------------------------------------
    def _outside_lab(self, multiaddr: str) -> str | None:
        """A literal multiaddr must point into the lab: it is sealed, and a dial to an
        address it did not create would wait for a timeout at best."""
        parts = multiaddr.split("/")
        if len(parts) < 3 or parts[1] not in ("ip4", "ip6", "dns", "dns4", "dns6"):
            return (f"{multiaddr!r} is not a multiaddr like /ip4/10.1.0.2/tcp/4001; "
                    "name the node instead")
        if parts[1] != "ip4":
            return f"{multiaddr!r}: the lab is IPv4 with no names; dial /ip4/ADDRESS/... or the node's name"
        try:
            address = ipaddress.IPv4Address(parts[2])
        except ValueError:
            return f"{multiaddr!r}: {parts[2]!r} is not an IPv4 address"
        nets = [ipaddress.IPv4Network(self.public.subnet)] + [
            ipaddress.IPv4Network(lan.subnet) for lan in self.lans]
        if not any(address in net for net in nets):
            return (f"{multiaddr!r} points outside the lab (no subnet of the scenario holds "
                    f"{address}): the lab is sealed; dial a lab address or the node's name")
        return None

    @model_validator(mode="after")
    def _cross_references(self) -> "Scenario":
        errors: list[tuple[tuple[Any, ...], str]] = []
        lan_names = [lan.name for lan in self.lans]
        node_loc = lambda name: ("nodes", self._node_origin[name])  # noqa: E731
        lan_loc = lambda name: ("lans", self._lan_origin[name])  # noqa: E731
        if PUBLIC in lan_names:
            errors.append((("lans",), f"{PUBLIC!r} is reserved for the public segment"))
        if LAB_EVENTS in [n.name for n in self.nodes]:
            errors.append((("nodes",), f"{LAB_EVENTS!r} is reserved for the lab's events"))
        # Routers and carrier segments take their names from their LAN (plan.py): a
        # node or LAN with one of those names would be two hosts with one name.
        derived = {f"{lan.name}-{suffix}": (lan.name, what) for lan in self.lans
                   for suffix, what in (("gw", "NAT router"), ("cgnat", "carrier NAT router"),
                                        ("carrier", "carrier segment"))}
        for node in self.nodes:
            if node.name in derived:
                lan, what = derived[node.name]
                errors.append(((*node_loc(node.name), "name"), f"{node.name!r} is the name of "
                               f"LAN {lan!r}'s {what}: rename the node"))
        for lan in self.lans:
            if lan.name in derived:
                other, what = derived[lan.name]
                errors.append(((*lan_loc(lan.name), "name"), f"{lan.name!r} is the name of "
                               f"LAN {other!r}'s {what}: rename the LAN"))
        subnets = [(("public", "subnet"), ipaddress.IPv4Network(self.public.subnet), None)]
        subnets += [((*lan_loc(lan.name), "subnet"), ipaddress.IPv4Network(lan.subnet), lan)
                    for lan in self.lans]
        carriers = self.carrier_subnets()
        subnets += [((*lan_loc(lan.name), "nat"), carriers[lan.name], None)
                    for lan in self.lans if lan.name in carriers]
        # Sorted by first address, a subnet can only overlap those before it that
        # reach past its start: one pass, fast for thousands of LANs.
        order = sorted(range(len(subnets)), key=lambda i: (
            int(subnets[i][1].network_address), i))
        reach: list[int] = []  # indexes whose end is beyond the current start, so far
        for i in order:
            net = subnets[i][1]
            start = int(net.network_address)
            reach = [j for j in reach if int(subnets[j][1].broadcast_address) >= start]
            for j in reach:
                a, b = (i, j) if i > j else (j, i)
                errors.append((subnets[a][0], f"subnet {subnets[a][1]} overlaps "
                               f"{subnets[b][1]}: give each LAN its own subnet"))
            reach.append(i)
        errors += self._capacity_errors([(loc, net, lan) for loc, net, lan in subnets
                                         if loc[-1] == "subnet"])
        roles = {node.name: node.role for node in self.nodes}
        for node in self.nodes:
            if not node.tcp and not node.quic:
                errors.append(((*node_loc(node.name), "tcp"),
                               "a node needs tcp or quic: set quic: true"))
        errors += self._timeline_errors(roles)
        for key, items in (("connections", self.expect.connections),
                           ("hole_punch", self.expect.hole_punch)):
            for i, item in enumerate(items):
                for name in item.between:
                    if name not in roles:
                        errors.append((("expect", key, i, "between"),
                                       f"node {name!r} does not exist"))
        flows = self.flows()
        for i, item in enumerate(self.expect.flows):
            if item.flow not in flows:
                errors.append((("expect", "flows", i, "flow"), f"no publish step is named "
                               f"{item.flow!r}; named flows: {', '.join(flows) or 'none'}"))
        kinds = {step_kind(s) for s in self.timeline}
        for i, item in enumerate(self.expect.recovery):
            if item.after not in kinds:
                errors.append((("expect", "recovery", i, "after"),
                               f"the timeline has no {item.after} step"))
        if errors:
            raise _CrossReferenceErrors(errors)
        return self

    def _timeline_errors(self, roles: dict[str, str]) -> list[tuple[tuple[Any, ...], str]]:
        errors: list[tuple[tuple[Any, ...], str]] = []
        names = list(roles)
        flows: list[str] = []
        last_at = 0.0
        for i, step in enumerate(self.timeline):
            loc = ("timeline", i)
            if step.at is not None:
                if step.at < last_at:
                    errors.append(((*loc, "at"), f"at: {step.at:g} comes before an earlier "
                                   f"step's at: {last_at:g}: keep the timeline in order"))
                last_at = step.at
            if isinstance(step, SetNat):
                lan = next((l for l in self.lans if l.name == step.set_nat), None)
                if lan is None or lan.nat is None:
                    errors.append(((*loc, "set-nat"), f"{step.set_nat!r} is not a LAN "
                                   "with a NAT router"))
                elif (lan.nat_spec.preset == "double-nat") != (nat_spec(step.nat).preset == "double-nat"):  # type: ignore[union-attr]
                    errors.append(((*loc, "nat"), "double-nat changes the topology "
                                   "(a carrier router): it cannot be switched on or off mid-run"))
                elif nat_spec(step.nat).preset == "public" or lan.nat_spec.preset == "public":  # type: ignore[union-attr]
                    errors.append(((*loc, "nat"), "public changes routing: it cannot "
                                   "be switched on or off mid-run"))
                continue
            patterns: list[str] = []
            if isinstance(step, (WaitReservation, WaitTopicPeers)):
                patterns = step.nodes
            elif isinstance(step, (WaitConnection, WaitHolePunch)):
                patterns = [n for pair in step.all_pairs() for n in pair]
            elif isinstance(step, Publish):
                if step.name is not None:
                    if step.name in flows or step.name == "all":
                        errors.append(((*loc, "name"), f"flow name {step.name!r} is used twice "
                                       "or reserved"))
                    flows.append(step.name)
                if step.publish != "all":
                    patterns = list(step.publish)
                    for name in self.match_nodes(patterns):
                        if roles[name] == "relay":
                            errors.append((loc, f"{name!r} is a relay: relays do not chat"))
            elif isinstance(step, StopTraffic):
                if step.stop_traffic != "all" and step.stop_traffic not in flows:
                    errors.append(((*loc, "stop-traffic"), f"no earlier publish step is named "
                                   f"{step.stop_traffic!r}"))
            elif isinstance(step, (Kill, Restart)):
                patterns = step.kill if isinstance(step, Kill) else step.restart
            elif isinstance(step, (LinkDown, LinkUp)):
                targets = step.link_down if isinstance(step, LinkDown) else step.link_up
                for p in targets:
                    if not self.match_link_targets([p]):
                        errors.append((loc, f"{p!r} names no node and no LAN with nodes"))
            elif isinstance(step, Partition):
                errors += self._partition_errors(step, loc)
            for p in patterns:
                if not groups.match([p], names):
                    errors.append((loc, f"node {p!r} does not exist" if not groups.has_pattern(p)
                                   else f"pattern {p!r} matches no node"))
        return errors

    def _partition_errors(self, step: "Partition", loc: tuple[Any, ...]
                          ) -> list[tuple[tuple[Any, ...], str]]:
        errors: list[tuple[tuple[Any, ...], str]] = []
        group_of: dict[str, int] = {}
        for g, patterns in enumerate(step.partition):
            for p in patterns:
                members = self.match_link_targets([p])
                if not members:
                    errors.append(((*loc, "partition", g), f"{p!r} names no node and no LAN "
                                   "with nodes"))
                for m in members:
                    if group_of.setdefault(m, g) != g:
                        errors.append(((*loc, "partition", g), f"node {m!r} is in two groups"))
        rest = len(step.partition)
        for lan in self.lans:
            if lan.nat is None or lan.nat_spec.preset == "public":  # type: ignore[union-attr]
                continue  # no shared NAT address
            on_lan = {group_of.get(n.name, rest) for n in self.nodes if n.lan == lan.name}
            if len(on_lan) > 1:
                errors.append(((*loc, "partition"), f"the nodes of {lan.name!r} share its NAT "
                               "address, so they cannot be split: put them in one group"))
        return errors

    def _capacity_errors(self, subnets: list[tuple[tuple[Any, ...], ipaddress.IPv4Network,
                                                   Lan | None]]
                         ) -> list[tuple[tuple[Any, ...], str]]:
        """Nodes take LAN addresses from .10 up, and the public segment from .2 up; the
        last address of every segment is kept for a container engine's bridge, and room
        is kept for the NAT probe's hosts (two reflectors, one client per LAN)."""
        errors = []
        on_lan = Counter(n.lan for n in self.nodes)
        for (loc, net, lan) in subnets:
            if lan is None:
                demand = on_lan[PUBLIC] + sum(1 for l in self.lans if l.nat is not None) + 2
                supply = net.num_addresses - 4
                what = f"{demand} routers, public nodes and NAT probe reflectors"
            else:
                demand = on_lan[lan.name] + 1
                supply = max(0, net.num_addresses - 2 - 9 - 1)
                what = f"{demand} nodes and NAT probe hosts"
            if demand > supply:
                errors.append((loc, f"subnet {net} has room for {supply} but the scenario puts "
                               f"{what} on it: use a larger subnet"))
        return errors

    def carrier_subnets(self) -> dict[str, ipaddress.IPv4Network]:
        """The 100.64.0.0/10 segment between each double-NAT LAN's two routers."""
        out = {}
        for lan in self.lans:
            spec = lan.nat_spec
            if spec is not None and spec.preset == "double-nat":
                out[lan.name] = ipaddress.IPv4Network(f"100.64.{len(out) + 1}.0/24")
        return out


class _CrossReferenceErrors(ValueError):
    def __init__(self, errors: list[tuple[tuple[Any, ...], str]]) -> None:
        super().__init__("; ".join(m for _, m in errors))
        self.errors = errors


# -- loading with line numbers --------------------------------------------------------

def parse_scenario(text: str, source: str = "<scenario>") -> Scenario:
    try:
        document = parse_yaml(text, source)
    except YamlSourceError as exc:
        raise ScenarioError(str(exc)) from None
    data, root = document.data, document.root
    if not isinstance(data, dict):
        raise ScenarioError(f"{source}:1: a scenario is a YAML mapping with name, nodes, ...")
    index = line_index(root)
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        lines = []
        entries = []
        for err in exc.errors():
            loc = _strip_union_tags(tuple(err["loc"]))
            cross = err.get("ctx", {}).get("error")
            if isinstance(cross, _CrossReferenceErrors):
                for where, message in cross.errors:
                    lines.append(f"{source}:{line_for(index, where)}: {field_path(where)}: {message}")
                continue
            message = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                message = f"unknown field {loc[-1]!r}: remove it or check its spelling"
            elif err["type"] == "missing":
                message = f"required field {loc[-1]!r} is missing"
            elif err["type"] == "finite_number":
                message = f"{err['input']!r} is not a finite number: give a plain number"
            elif err["type"] in ("greater_than", "greater_than_equal", "less_than",
                                 "less_than_equal"):
                message = f"{err['input']!r} is out of range: {message[0].lower()}{message[1:]}"
            entries.append((loc, message, err["type"]))
        for loc, message, kind in entries:
            # A union (a name or a mapping) fails once per member: keep the member that
            # got furthest, not "Input should be a valid string" for the other one.
            if kind.endswith("_type") and any(
                    other[:len(loc)] == loc and other_kind != kind
                    for other, _, other_kind in entries if (other, other_kind) != (loc, kind)):
                continue
            lines.append(f"{source}:{line_for(index, loc)}: {field_path(loc)}: {message}")
        raise ScenarioError("\n".join(dict.fromkeys(lines))) from None


def _strip_union_tags(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """pydantic puts union member names ('DialTarget', 'str', step tags) into locations."""
    out: list[Any] = []
    for i, part in enumerate(loc):
        if isinstance(part, str) and (part[:1].isupper() or part in ("str", "list[str]")
                                      or "[" in part):
            continue
        if part in STEP_TAGS and i >= 2 and loc[i - 2] == "timeline":
            continue
        out.append(part)
    return tuple(out)


def load_scenario(path: Path) -> Scenario:
    try:
        text = read_text(path)
    except YamlSourceError as exc:
        raise ScenarioError(str(exc)) from None
    return parse_scenario(text, str(path))


def find_scenario(name_or_path: str, scenarios_dir: Path) -> Path:
    """Accept a path, or the name of a shipped scenario (``nat-relay``)."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.exists():
            raise ScenarioError(f"{path}: no such scenario file")
        return path
    candidate = scenarios_dir / f"{name_or_path}.yaml"
    if candidate.exists():
        return candidate
    known = sorted(p.stem for p in scenarios_dir.glob("*.yaml"))
    raise ScenarioError(
        f"no scenario named {name_or_path!r}; shipped: {', '.join(known) or 'none'}"
    )
