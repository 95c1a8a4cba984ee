"""The hole-punch matrix: every pair of NAT presets x transports, as generated scenarios.

A matrix file (``matrix:`` at the top level) is expanded into a few ordinary scenarios,
each holding several cells side by side (two NAT'd chat nodes per cell, one relay per
lab), so the whole grid runs in a handful of labs. Theory says which cells can punch.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from p2plab.topology.loading import ScenarioError, scenario_from_data
from p2plab.topology.nat import PRESETS, preset_chain, punch_works, quic_punch_works
from p2plab.topology.scenario import Scenario
from p2plab.topology.schema import ImplSpec, check_impl_spec
from p2plab.topology.yaml_source import (
    YamlSourceError,
    field_path,
    line_for,
    line_index,
    parse_yaml,
    read_text,
)
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)

Transport = Literal["tcp", "quic"]


def split_pair(pair: str) -> tuple[str, str]:
    """An implementation pair, dialled side first: ``A/B`` of any two implementations
    (``rust@0.53/rust@0.57.1``), or ``A-B`` of two plain names (``py-rust``)."""
    parts = pair.split("/") if "/" in pair else pair.split("-")
    if len(parts) != 2:
        raise ValueError(f"{pair!r} is not an implementation pair: write DIALLED/DIALLING, "
                         "e.g. rust@0.53/rust or py/rust@0.57.1 (py-rust for plain names)")
    for part in parts:
        check_impl_spec(part)
    return parts[0], parts[1]


def _check_pair(pair: str) -> str:
    split_pair(pair)
    return pair


# Implementation pairs, dialled side first: "py-rust" is a py node dialled by a rust one.
ImplPair = Annotated[str, AfterValidator(_check_pair)]


class MatrixSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    presets: list[str] = Field(default_factory=lambda: list(PRESETS))
    transports: list[Transport] = Field(default_factory=lambda: list[Transport](["tcp", "quic"]))
    impls: list[ImplPair] = Field(default_factory=lambda: list[ImplPair](["py-py"]),
                                  description="node implementations per cell, dialled side "
                                  "first (py-rust: a py node dialled by a rust node)")
    relay: ImplSpec = Field(default="py", description="the relay's implementation")
    direct_timeout: float = Field(default=40.0, gt=0,
                                  description="seconds a cell may take to turn direct")
    cells_per_lab: int = Field(default=8, ge=1, le=20)
    directions: Literal["one", "both"] = Field(default="one", description=(
        "both: each pair of different presets in both roles too (which NAT is dialled "
        "through the relay): over QUIC the dialler sends the ClientHello, so the outcome "
        "can depend on it (libp2p/specs#487)"))

    @field_validator("presets")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        for name in value:
            if name not in PRESETS:
                raise ValueError(f"unknown NAT preset {name!r}; known: {', '.join(PRESETS)}")
        return value


class MatrixFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str = ""
    seed: int = 1
    matrix: MatrixSpec = Field(default_factory=MatrixSpec)


@dataclass(frozen=True)
class Cell:
    a: str  # preset of the listening side (dialled through the relay)
    b: str  # preset of the dialling side
    transport: Transport
    node_a: str
    node_b: str
    lab: int
    impls: str = "py-py"  # implementation of node_a, then of node_b

    @property
    def impl_a(self) -> str:
        return split_pair(self.impls)[0]

    @property
    def impl_b(self) -> str:
        return split_pair(self.impls)[1]

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.a, self.b, self.transport, self.impls)


def is_matrix_file(path: Path) -> bool:
    try:
        data = parse_yaml(read_text(path), str(path)).data
    except YamlSourceError:
        return False
    return isinstance(data, dict) and "matrix" in data


def load_matrix(path: Path) -> MatrixFile:
    try:
        document = parse_yaml(read_text(path), str(path))
    except YamlSourceError as exc:
        raise ScenarioError(str(exc)) from None
    try:
        return MatrixFile.model_validate(document.data)
    except ValidationError as exc:
        index = line_index(document.root)
        lines = [f"{path}:{line_for(index, tuple(e['loc']))}: {field_path(tuple(e['loc']))}: "
                 f"{e['msg'].removeprefix('Value error, ')}" for e in exc.errors()]
        raise ScenarioError("\n".join(dict.fromkeys(lines))) from None


def theory(a: str, b: str, transport: Transport) -> str:
    """What the NAT literature predicts for a cell: direct, relayed or failed.

    A public side is dialled directly; otherwise the punch is judged over both sides'
    chains of NATs (``nat.punch_works``, the simulator's rule too; over QUIC only the
    dialler's packet counts, ``nat.quic_punch_works``), and a failed punch leaves the
    relayed connection. UDP blocked stops QUIC altogether (no relay, no
    punch) and is a home router for TCP.
    """
    chains = [preset_chain(p) for p in (a, b)]
    if transport == "quic" and any(n.udp_blocked for c in chains for n in c):
        return "failed"
    if not all(chains):
        return "direct"
    if transport == "quic":  # a: the listener, b: the dialler, whose ClientHello must get in
        return "direct" if quic_punch_works(*chains) else "relayed"
    return "direct" if punch_works(*chains) else "relayed"


def cells(spec: MatrixSpec) -> list[Cell]:
    """Unordered preset pairs (each with itself too) for every implementation pair and
    transport. Cells of one lab share a relay, so a lab holds one transport's cells."""
    out: list[Cell] = []
    pairs = list(itertools.combinations_with_replacement(spec.presets, 2))
    if spec.directions == "both":
        pairs += [(b, a) for a, b in pairs if a != b]
    for impls in spec.impls:
        for transport in spec.transports:
            for a, b in pairs:
                n = len(out)
                out.append(Cell(a, b, transport, f"a{n}", f"b{n}", n // spec.cells_per_lab,
                                impls))
    return out


def lab_scenarios(matrix: MatrixFile) -> list[tuple[Scenario, list[Cell]]]:
    """One scenario per lab: a relay, and per cell two LANs with a chat node each."""
    all_cells = cells(matrix.matrix)
    labs = []
    for lab in sorted({c.lab for c in all_cells}):
        mine = [c for c in all_cells if c.lab == lab]
        quic = any(c.transport == "quic" for c in mine)
        # The grid measures NAT theory, not a relay's capacity: one relay serves every cell.
        lans, nodes, pairs = [], [{"name": "relay", "lan": "public", "role": "relay",
                                   "relay_limits": "unlimited",
                                   "quic": quic, "impl": matrix.matrix.relay}], []
        for c in mine:
            n = int(c.node_a[1:])
            for side, preset in (("a", c.a), ("b", c.b)):
                lans.append({"name": f"{side}{n}-lan",
                             "subnet": f"10.{n + 1}.{ord(side) - 96}.0/24",
                             "nat": preset})
            q = c.transport == "quic"
            nodes.append({"name": c.node_a, "lan": f"a{n}-lan", "relay": ["relay"],
                          "quic": q, "tcp": not q, "impl": c.impl_a})
            nodes.append({"name": c.node_b, "lan": f"b{n}-lan", "relay": ["relay"],
                          "quic": q, "tcp": not q, "impl": c.impl_b,
                          "dial": [{"node": c.node_a, "via": "relay"}]})
            pairs.append([c.node_a, c.node_b])
        timeline = [{"wait": "connection", "pairs": pairs, "kind": "relayed", "timeout": 15,
                     "required": False},
                    {"wait": "connection", "pairs": pairs, "kind": "direct",
                     "timeout": matrix.matrix.direct_timeout, "required": False}]
        scenario = scenario_from_data({
            "name": f"{matrix.name}-{lab}", "seed": matrix.seed + lab,
            "description": f"{matrix.name} lab {lab}: cells "
                           f"{mine[0].node_a[1:]}-{mine[-1].node_a[1:]}",
            # A node that also listens on TCP would punch over TCP: QUIC cells are QUIC-only.
            "public": {"subnet": "203.0.113.0/24"}, "lans": lans, "nodes": nodes,
            "timeline": timeline, "settle": 0,
        })
        labs.append((scenario, mine))
    return labs
