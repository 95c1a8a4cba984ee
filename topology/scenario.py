"""The scenario file: YAML in, a validated pydantic model out.

Errors name the file, the line and the field, and say how to fix it, before anything
is created. Cross-references (a node on a LAN that does not exist, a relay that is not
a relay node) are checked here too, so later stages can trust the model.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from topology.nat import PRESETS, NatBehaviour, resolve

NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,19}$")
PUBLIC = "public"


class ScenarioError(Exception):
    """A scenario that cannot run; the message names file, line and field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_name(value: str) -> str:
    if not NAME_RE.match(value):
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


class Lan(_Strict):
    """A LAN; with ``nat`` set it sits behind a NAT router on the public segment."""

    name: str
    subnet: str
    nat: str | NatSpec | None = Field(
        default="port-restricted",
        description="a preset name, {preset, mapping, filtering, hairpin, udp_timeout, "
        "tcp_timeout, port_preservation, udp_blocked}, or null for no router",
    )

    _nat = field_validator("nat", mode="before")(classmethod(lambda cls, v: _check_nat(v)))

    @property
    def nat_spec(self) -> NatSpec | None:
        return nat_spec(self.nat)

    _name = field_validator("name")(classmethod(lambda cls, v: _check_name(v)))
    _subnet = field_validator("subnet")(classmethod(lambda cls, v: _check_subnet(v)))


class DialTarget(_Strict):
    """Dial another node by name, directly or through a relay node."""

    node: str
    via: str | None = None


class NodeSpec(_Strict):
    name: str
    lan: str = Field(description=f"a LAN name, or {PUBLIC!r}")
    role: Literal["peer", "relay"] = "peer"
    quic: bool = False
    tcp: bool = Field(default=True, description="false with quic: true makes a QUIC-only node")
    mdns: bool = False
    holepunch: bool = Field(default=True, description="run DCUtR on relayed connections")
    relay: list[str] = Field(default_factory=list, description="relay nodes to reserve on")
    dial: list[Union[str, DialTarget]] = Field(
        default_factory=list,
        description="node names, {node, via} for a relayed dial, or raw multiaddrs",
    )

    _name = field_validator("name")(classmethod(lambda cls, v: _check_name(v)))


class WaitReservation(_Strict):
    wait: Literal["reservation"]
    nodes: list[str]
    timeout: float = 30.0


class WaitTopicPeers(_Strict):
    wait: Literal["topic-peers"]
    nodes: list[str]
    min: int = 1
    timeout: float = 30.0


class WaitConnection(_Strict):
    """Wait for a connection of a kind between one pair, or (``pairs``) several at once."""

    wait: Literal["connection"]
    between: tuple[str, str] | None = None
    pairs: list[tuple[str, str]] = Field(default_factory=list)
    kind: Literal["any", "direct", "relayed"] = "any"
    timeout: float = 30.0
    required: bool = Field(default=True, description="false: on timeout, just go on")

    @model_validator(mode="after")
    def _one_of(self) -> "WaitConnection":
        if (self.between is None) == (not self.pairs):
            raise ValueError("give either between: [a, b] or pairs: [[a, b], ...]")
        return self

    def all_pairs(self) -> list[tuple[str, str]]:
        return [self.between] if self.between else list(self.pairs)


class Publish(_Strict):
    publish: list[str] | Literal["all"]
    count: int = Field(gt=0)
    size: int = Field(default=100, ge=0, le=1_000_000)
    rate: float = Field(default=5.0, gt=0)


class Sleep(_Strict):
    sleep: float = Field(ge=0)


class SetNat(_Strict):
    """Change a LAN's NAT mid-run (its connection tracking is flushed, as on a reboot)."""

    set_nat: str = Field(alias="set-nat", description="the LAN whose router changes")
    nat: str | NatSpec

    _nat = field_validator("nat", mode="before")(classmethod(lambda cls, v: _check_nat(v)))


STEP_TAGS = ("wait-reservation", "wait-topic-peers", "wait-connection", "publish", "sleep",
             "set-nat")


def _step_kind(value: Any) -> str | None:
    """Pick the step model by its key, so errors speak of one kind of step only."""
    if isinstance(value, BaseModel):
        value = value.model_dump()
    if isinstance(value, dict):
        if "wait" in value:
            return f"wait-{value['wait']}"
        for key in ("publish", "sleep", "set-nat"):
            if key in value:
                return key
    return None


Step = Annotated[
    Union[
        Annotated[WaitReservation, Tag("wait-reservation")],
        Annotated[WaitTopicPeers, Tag("wait-topic-peers")],
        Annotated[WaitConnection, Tag("wait-connection")],
        Annotated[Publish, Tag("publish")],
        Annotated[Sleep, Tag("sleep")],
        Annotated[SetNat, Tag("set-nat")],
    ],
    Discriminator(
        _step_kind,
        custom_error_type="timeline_step",
        custom_error_message="a step is one of: wait: reservation | topic-peers | "
        "connection, publish: [nodes], sleep: SECONDS, set-nat: LAN",
    ),
]


class ConnectionExpectation(_Strict):
    between: tuple[str, str]
    final: Literal["direct", "relayed", "none"]


class HolePunchExpectation(_Strict):
    between: tuple[str, str]
    outcome: Literal["success", "failure"]


class Expectations(_Strict):
    delivery_ratio_min: float | None = Field(default=None, ge=0, le=1)
    latency_p99_ms_max: float | None = Field(default=None, gt=0)
    connections: list[ConnectionExpectation] = Field(default_factory=list)
    hole_punch: list[HolePunchExpectation] = Field(default_factory=list)


class Scenario(_Strict):
    name: str
    description: str = ""
    seed: int = 1
    topic: str = "chat"
    public: Segment = Field(default_factory=Segment)
    lans: list[Lan] = Field(default_factory=list)
    nodes: list[NodeSpec]
    timeline: list[Step] = Field(default_factory=list)
    expect: Expectations = Field(default_factory=Expectations)
    settle: float = Field(default=2.0, ge=0, description="seconds after the timeline")
    probe_nat: bool = Field(default=False, description="classify every NAT with the "
                            "built-in probe at lab start; a mismatch fails the run")

    _name = field_validator("name")(classmethod(lambda cls, v: _check_name(v)))

    @model_validator(mode="after")
    def _cross_references(self) -> "Scenario":
        errors: list[tuple[tuple[Any, ...], str]] = []
        lan_names = [lan.name for lan in self.lans]
        node_names = [node.name for node in self.nodes]
        for kind, names, key in (("LAN", lan_names, "lans"), ("node", node_names, "nodes")):
            seen: set[str] = set()
            for i, name in enumerate(names):
                if name in seen:
                    errors.append(((key, i, "name"), f"{kind} name {name!r} is used twice"))
                seen.add(name)
        if PUBLIC in lan_names:
            errors.append((("lans",), f"{PUBLIC!r} is reserved for the public segment"))
        subnets = [(("public", "subnet"), ipaddress.IPv4Network(self.public.subnet))]
        subnets += [(("lans", i, "subnet"), ipaddress.IPv4Network(lan.subnet))
                    for i, lan in enumerate(self.lans)]
        carriers = self.carrier_subnets()
        subnets += [(("lans", i, "nat"), carriers[lan.name])
                    for i, lan in enumerate(self.lans) if lan.name in carriers]
        for a in range(len(subnets)):
            for b in range(a):
                if subnets[a][1].overlaps(subnets[b][1]):
                    errors.append((subnets[a][0], f"subnet {subnets[a][1]} overlaps "
                                   f"{subnets[b][1]}: give each LAN its own subnet"))
        errors += self._capacity_errors([(loc, net) for loc, net in subnets if loc[-1] == "subnet"])
        roles = {node.name: node.role for node in self.nodes}
        for i, node in enumerate(self.nodes):
            if not node.tcp and not node.quic:
                errors.append((("nodes", i, "tcp"), "a node needs tcp or quic: set quic: true"))
            if node.lan != PUBLIC and node.lan not in lan_names:
                errors.append(((("nodes", i, "lan")), f"LAN {node.lan!r} does not exist; "
                               f"known: {', '.join([PUBLIC] + lan_names)}"))
            for j, relay in enumerate(node.relay):
                if roles.get(relay) != "relay":
                    errors.append((("nodes", i, "relay", j),
                                   f"{relay!r} is not a node with role: relay"))
            for j, target in enumerate(node.dial):
                if isinstance(target, str):
                    if target.startswith("/"):
                        continue
                    target = DialTarget(node=target)
                if target.node not in roles:
                    errors.append((("nodes", i, "dial", j), f"node {target.node!r} does not exist"))
                if target.via is not None and roles.get(target.via) != "relay":
                    errors.append((("nodes", i, "dial", j, "via"),
                                   f"{target.via!r} is not a node with role: relay"))
        for i, step in enumerate(self.timeline):
            if isinstance(step, SetNat):
                lan = next((l for l in self.lans if l.name == step.set_nat), None)
                if lan is None or lan.nat is None:
                    errors.append((("timeline", i, "set-nat"), f"{step.set_nat!r} is not a LAN "
                                   "with a NAT router"))
                elif (lan.nat_spec.preset == "double-nat") != (nat_spec(step.nat).preset == "double-nat"):  # type: ignore[union-attr]
                    errors.append((("timeline", i, "nat"), "double-nat changes the topology "
                                   "(a carrier router): it cannot be switched on or off mid-run"))
                elif nat_spec(step.nat).preset == "public" or lan.nat_spec.preset == "public":  # type: ignore[union-attr]
                    errors.append((("timeline", i, "nat"), "public changes routing: it cannot "
                                   "be switched on or off mid-run"))
                continue
            names: list[str] = []
            if isinstance(step, (WaitReservation, WaitTopicPeers)):
                names = step.nodes
            elif isinstance(step, WaitConnection):
                names = [n for pair in step.all_pairs() for n in pair]
            elif isinstance(step, Publish) and step.publish != "all":
                names = list(step.publish)
            for name in names:
                if name not in roles:
                    errors.append((("timeline", i), f"node {name!r} does not exist"))
                elif isinstance(step, Publish) and roles[name] == "relay":
                    errors.append((("timeline", i), f"{name!r} is a relay: relays do not chat"))
        for key, items in (("connections", self.expect.connections),
                           ("hole_punch", self.expect.hole_punch)):
            for i, item in enumerate(items):
                for name in item.between:
                    if name not in roles:
                        errors.append((("expect", key, i, "between"),
                                       f"node {name!r} does not exist"))
        if errors:
            raise _CrossReferenceErrors(errors)
        return self

    def _capacity_errors(self, subnets: list[tuple[tuple[Any, ...], ipaddress.IPv4Network]]
                         ) -> list[tuple[tuple[Any, ...], str]]:
        """Nodes take LAN addresses from .10 up, and the public segment from .2 up; the
        last address of every segment is kept for a container engine's bridge, and room
        is kept for the NAT probe's hosts (two reflectors, one client per LAN)."""
        errors = []
        for (loc, net) in subnets:
            if loc[0] == "public":
                users = [n for n in self.nodes if n.lan == PUBLIC]
                demand = len(users) + sum(1 for lan in self.lans if lan.nat is not None) + 2
                supply = net.num_addresses - 4
                what = f"{demand} routers, public nodes and NAT probe reflectors"
            else:
                lan = self.lans[loc[1]]
                demand = sum(1 for n in self.nodes if n.lan == lan.name) + 1
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

    def node(self, name: str) -> NodeSpec:
        return next(n for n in self.nodes if n.name == name)

    def peers(self) -> list[NodeSpec]:
        return [n for n in self.nodes if n.role == "peer"]


class _CrossReferenceErrors(ValueError):
    def __init__(self, errors: list[tuple[tuple[Any, ...], str]]) -> None:
        super().__init__("; ".join(m for _, m in errors))
        self.errors = errors


# -- loading with line numbers --------------------------------------------------------

def _line_index(node: yaml.Node, path: tuple[Any, ...] = ()) -> dict[tuple[Any, ...], int]:
    """Map every key path in a YAML document to its (1-based) line."""
    index = {path: node.start_mark.line + 1}
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            child = path + (key.value,)
            index[child] = key.start_mark.line + 1
            index.update({k: v for k, v in _line_index(value, child).items() if k != child})
    elif isinstance(node, yaml.SequenceNode):
        for i, value in enumerate(node.value):
            index.update(_line_index(value, path + (i,)))
    return index


def _line_for(index: dict[tuple[Any, ...], int], loc: tuple[Any, ...]) -> int:
    loc = tuple(loc)
    while loc and loc not in index:
        loc = loc[:-1]
    return index.get(loc, 1)


def _field(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def parse_scenario(text: str, source: str = "<scenario>") -> Scenario:
    try:
        root = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ScenarioError(f"{source}{line}: not valid YAML: {problem}") from None
    if not isinstance(data, dict) or root is None:
        raise ScenarioError(f"{source}:1: a scenario is a YAML mapping with name, nodes, ...")
    index = _line_index(root)
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
                    lines.append(f"{source}:{_line_for(index, where)}: {_field(where)}: {message}")
                continue
            message = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                message = f"unknown field {loc[-1]!r}: remove it or check its spelling"
            elif err["type"] == "missing":
                message = f"required field {loc[-1]!r} is missing"
            entries.append((loc, message, err["type"]))
        for loc, message, kind in entries:
            # A union (a name or a mapping) fails once per member: keep the member that
            # got furthest, not "Input should be a valid string" for the other one.
            if kind.endswith("_type") and any(
                    other[:len(loc)] == loc and other_kind != kind
                    for other, _, other_kind in entries if (other, other_kind) != (loc, kind)):
                continue
            lines.append(f"{source}:{_line_for(index, loc)}: {_field(loc)}: {message}")
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
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read the scenario ({exc.strerror})") from None
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
