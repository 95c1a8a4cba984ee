"""The scenario file's schema: what each field may hold, checked field by field.

Checks that need the whole, expanded scenario (a node on a LAN that does not exist,
overlapping subnets) are in ``checks``; expanding groups is ``expansion``'s job.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any, Literal, overload

from p2plab.topology.nat import PRESETS, NatBehaviour, resolve
from p2plab.topology.placement import parse_constraint
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationInfo,
    field_validator,
    model_validator,
)

from p2plab.relay_limits import KEYS as RELAY_LIMIT_KEYS
from p2plab.relay_limits import RelayLimits

NAME_RE = re.compile(r"[a-z][a-z0-9-]{0,19}")  # fullmatch: "$" would let "a\n" through
PUBLIC = "public"



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


# impl: NAME or NAME@VERSION of a registered implementation (compose/impls/registry.py
# says which exist; the lab resolves them before anything is made).
IMPL_SPEC = re.compile(r"[a-z][a-z0-9_-]{0,39}(@[0-9A-Za-z][0-9A-Za-z.+_-]{0,39})?")


def check_impl_spec(value: str) -> str:
    if not IMPL_SPEC.fullmatch(value):
        raise ValueError(f"{value!r} is not an implementation: give NAME or NAME@VERSION "
                         "(py, rust, rust@0.53, my-node)")
    return value


ImplSpec = Annotated[str, AfterValidator(check_impl_spec)]


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
    def _resolvable(self) -> NatSpec:
        resolve(self.preset, **self.overrides())
        return self

    def overrides(self) -> dict[str, Any]:
        return {k: v for k, v in self.model_dump().items() if k != "preset" and v is not None}

    def behaviour(self) -> tuple[NatBehaviour | None, NatBehaviour | None]:
        """(this router, the carrier NAT above it or None)."""
        return resolve(self.preset, **self.overrides())


@overload
def nat_spec(value: str | NatSpec) -> NatSpec: ...
@overload
def nat_spec(value: str | NatSpec | None) -> NatSpec | None: ...
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
    def _jitter(self) -> LinkSpec:
        if self.jitter_ms > self.latency_ms:
            raise ValueError("jitter_ms cannot exceed latency_ms (a packet cannot arrive "
                             "before it was sent)")
        return self

    def is_impaired(self) -> bool:
        return bool(self.latency_ms or self.jitter_ms or self.loss_pct or self.bandwidth_kbit)


class Placement(_Strict):
    """Which engines of a cluster a group's hosts may run on, and how they are laid
    out over them (``--backend swarm``; the one-machine backends have one engine)."""

    constraints: list[str] = Field(
        default_factory=list, description="swarm's syntax, all must hold: node.hostname, "
        "node.id, node.role, node.platform.os/arch, node.labels.KEY, engine.labels.KEY "
        "with == or !=")
    strategy: Literal["spread", "pack"] | None = Field(
        default=None, description="spread: round the qualifying engines, least-loaded "
        "first; pack: all on one of them; default: P2PLAB_PLACEMENT, else spread")

    @field_validator("constraints")
    @classmethod
    def _constraints(cls, value: list[str]) -> list[str]:
        for text in value:
            parse_constraint(text)
        return value


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
    placement: Placement | None = Field(default=None, description="where its NAT router "
                                        "runs on a cluster")

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
    def _size(self) -> Lan:
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


class RelayLimitsSpec(_Strict):
    """Overrides of the relay's library defaults (``p2plab/relay_limits.py``); a field left
    out keeps the library's value. 0 is passed on as 0 (the spec's "no limit")."""

    reservations: int | None = Field(default=None, ge=0, description="reservations at once")
    reservations_per_peer: int | None = Field(default=None, ge=0)
    reservation_duration_s: int | None = Field(default=None, ge=0, le=MAX_SECONDS)
    circuits: int | None = Field(default=None, ge=0, description="circuits at once")
    circuits_per_peer: int | None = Field(default=None, ge=0)
    circuit_duration_s: int | None = Field(default=None, ge=0, le=MAX_SECONDS,
                                           description="the relay cuts a circuit after it")
    circuit_bytes: int | None = Field(default=None, ge=0, le=2**63 - 1,
                                      description="the relay cuts a circuit after it")
    rate_limits: bool | None = Field(default=None, description="the library's reservation "
                                     "and circuit rate limits on or off")

    @model_validator(mode="after")
    def _not_empty(self) -> RelayLimitsSpec:
        if not self.model_dump(exclude_none=True):
            raise ValueError("an empty relay_limits is the library's defaults: write "
                             "default, or name a limit such as {circuit_bytes: 131072}")
        return self

    def limits(self) -> RelayLimits:
        """The flag's value: each given field under its flag key, in the flag's order."""
        given = self.model_dump(exclude_none=True)
        overrides = []
        for key in RELAY_LIMIT_KEYS:
            field = key.replace("-", "_") + ("_s" if key.endswith("duration") else "")
            if field in given:
                overrides.append((key, given[field]))
        return RelayLimits(overrides=tuple(overrides))


def _limits_kind(value: Any) -> str:
    return "Limits" if isinstance(value, dict | RelayLimitsSpec) else "Preset"


def _limits_preset(value: Any) -> str:
    if value not in ("default", "unlimited"):
        raise ValueError(f"{value!r} is not relay limits: give default (the library's), "
                         "unlimited, or a mapping such as {circuit_bytes: 131072}")
    return str(value)


# A name or a mapping: an error speaks of the one that was given, not of both.
RelayLimitsField = Annotated[
    Annotated[Any, AfterValidator(_limits_preset), Tag("Preset")]
    | Annotated[RelayLimitsSpec, Tag("Limits")],
    Discriminator(_limits_kind),
]


class NodeSpec(_Strict):
    """One node, or with ``count`` a group of them (NAME-01, NAME-02, ...).

    ``lan`` may list several LANs or patterns (``home-*``): a group is dealt round-robin
    across them. ``bootstrap`` nodes chat like peers; others find them with
    ``connect: {to: bootstrap}``."""

    name: str
    count: int | None = Field(default=None, ge=1, le=200_000)
    lan: str | list[str] = Field(description=f"LAN names or patterns, or {PUBLIC!r}")
    role: Literal["peer", "relay", "bootstrap"] = "peer"
    impl: ImplSpec | None = Field(
        default=None, description="which registered implementation of the node contract "
        "runs it (py, rust, rust@0.53, or one you register); default: the scenario's impl")
    relay_limits: RelayLimitsField = Field(
        default="default", description="a relay's limits: default (its library's, as "
        "shipped), unlimited, or overrides {circuit_bytes: N, circuit_duration_s: S, "
        "circuits: N, ...}")
    quic: bool = False
    tcp: bool = Field(default=True, description="false with quic: true makes a QUIC-only node")
    mdns: bool = False
    holepunch: bool = Field(default=True, description="run DCUtR on relayed connections")
    relay: list[str] = Field(default_factory=list, description="relay nodes to reserve on")
    dial: list[str | DialTarget] = Field(
        default_factory=list,
        description="node names or patterns, {node, via} for a relayed dial, or multiaddrs",
    )
    connect: list[ConnectSpec] = Field(default_factory=list,
                                       description="one strategy or a list of them")
    topics: list[str] | None = Field(default=None, description="default: the scenario's topic")
    _topics = field_validator("topics")(classmethod(
        lambda cls, v: v if v is None else [_check_topic(t) for t in v]))
    link: LinkSpec | None = Field(default=None, description="overrides the LAN's link")
    placement: Placement | None = Field(default=None, description="where the group runs "
                                        "on a cluster (--backend swarm)")

    _name = field_validator("name")(classmethod(lambda cls, v: _check_name(v)))

    @field_validator("connect", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, dict) else value

    @field_validator("relay_limits")
    @classmethod
    def _limits_on_a_relay(cls, value: RelayLimitsField, info: ValidationInfo) -> RelayLimitsField:
        if value != "default" and info.data.get("role", "peer") != "relay":
            raise ValueError("only a relay has relay limits: set role: relay, or drop "
                             "relay_limits")
        return value

    def relay_limits_flag(self) -> RelayLimits | None:
        """What ``--relay-limits`` says for this node; None: the library's defaults."""
        if self.relay_limits == "default":
            return None
        if self.relay_limits == "unlimited":
            return RelayLimits(unlimited=True)
        return self.relay_limits.limits()

    @property
    def chats(self) -> bool:
        return self.role != "relay"

    @property
    def lan_name(self) -> str:
        """The node's one LAN: after expansion ``lan`` is always a single name."""
        assert isinstance(self.lan, str), f"{self.name}: lan {self.lan!r} is not expanded"
        return self.lan


class _Step(_Strict):
    at: float | None = Field(default=None, ge=0, le=MAX_SECONDS,
                             description="seconds after the timeline "
                             "starts: the step waits until then")


class _Wait(_Step):
    timeout: float = Field(default=30.0, gt=0, le=MAX_SECONDS)
    required: bool = Field(default=True, description="false: on timeout, just go on")


class WaitReservation(_Wait):
    wait: Literal["reservation"]
    nodes: list[str]


class WaitTopicPeers(_Wait):
    wait: Literal["topic-peers"]
    nodes: list[str]
    min: int = 1


class _WaitPairs(_Wait):
    between: tuple[str, str] | None = None
    pairs: list[tuple[str, str]] = Field(default_factory=list)

    @model_validator(mode="after")
    def _one_of(self) -> _WaitPairs:
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
    Annotated[WaitReservation, Tag("wait-reservation")]
    | Annotated[WaitTopicPeers, Tag("wait-topic-peers")]
    | Annotated[WaitConnection, Tag("wait-connection")]
    | Annotated[WaitHolePunch, Tag("wait-hole-punch")]
    | Annotated[Publish, Tag("publish")]
    | Annotated[StopTraffic, Tag("stop-traffic")]
    | Annotated[Sleep, Tag("sleep")]
    | Annotated[SetNat, Tag("set-nat")]
    | Annotated[Kill, Tag("kill")]
    | Annotated[Restart, Tag("restart")]
    | Annotated[LinkDown, Tag("link-down")]
    | Annotated[LinkUp, Tag("link-up")]
    | Annotated[Partition, Tag("partition")]
    | Annotated[Heal, Tag("heal")],
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


class RelayCutExpectation(_Strict):
    """How many circuits the relays closed for this reason (``relay_hop`` events):
    ``duration`` and ``bytes`` are their limits, ``limit`` either of them."""

    reason: Literal["duration", "bytes", "limit", "connection-lost"]
    relay: str | None = Field(default=None, description="count this relay's cuts only")
    min: int | None = Field(default=None, ge=0, description="default 1, or 0 with max")
    max: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> RelayCutExpectation:
        if self.max is not None and self.max < self.at_least:
            raise ValueError(f"max {self.max} is below min {self.at_least}: swap them")
        return self

    @property
    def at_least(self) -> int:
        if self.min is not None:
            return self.min
        return 0 if self.max is not None else 1


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
    relay_cuts: list[RelayCutExpectation] = Field(
        default_factory=list, description="circuits the relays cut: [{reason: bytes, "
        "min: 1}], reason duration, bytes, limit or connection-lost; max: 0 for none")
    hole_punch_success_min: float | None = Field(
        default=None, ge=0, le=1, description="of the pairs that tried DCUtR, the share "
        "that punched (a big lab's hole-punch health in one figure)")
    punch_theory_agreement_min: float | None = Field(
        default=None, ge=0, le=1, description="of the pairs that tried DCUtR, the share "
        "whose outcome NAT theory predicts for their NATs, or whose difference the "
        "routers' connection tracking gives a cause for (forensics: true)")


class SimModel(_Strict):
    """Parameters of the simulator's model that emulation measures instead: CPU time a
    node spends on each message it receives (decrypt, verify the signature, bookkeep)
    and on each copy it sends (encode, encrypt, write), one message at a time. 0 leaves
    CPU out of the model. Emulation backends ignore this section."""

    receive_ms: float = Field(default=0.0, ge=0, le=10_000)
    send_ms: float = Field(default=0.0, ge=0, le=10_000)


# The runner writes the lab's own events (faults, traffic) under this name.
LAB_EVENTS = "_lab"



class ScenarioFile(_Strict):
    """What a scenario file says, each field checked on its own; groups and connection
    strategies are not expanded yet (``expansion.expand`` does that)."""

    name: str
    description: str = ""
    seed: int = 1
    topic: str = "chat"
    _topic = field_validator("topic")(classmethod(lambda cls, v: _check_topic(v)))
    impl: ImplSpec = Field(default="py", description="the node implementation (NAME or "
                           "NAME@VERSION) of every node that does not name its own")
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
    forensics: bool = Field(default=False, description="record every router's connection "
                            "tracking (routers/ROUTER.conntrack) and explain each failed hole "
                            "punch from it in the report")
    punch_reference: Literal["dcutr-campaign-2025"] | None = Field(
        default=None, description="set the run's hole punches, as a population (success "
        "with a 95 % interval, first-attempt share, TCP vs QUIC, final transport), beside "
        "a published campaign's figures in the report; needs a relay")
    probe_nat: bool = Field(default=False, description="classify every NAT with the "
                            "built-in probe at lab start; a mismatch fails the run")
    sim: SimModel = Field(default_factory=SimModel, description="simulator-only model "
                          "parameters")
    in_suite: bool = Field(default=True, description="false: `p2plab suite` without "
                           "arguments leaves it out (too big to emulate, or run by a test)")

    _name = field_validator("name")(classmethod(lambda cls, v: _check_name(v)))
