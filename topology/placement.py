"""Where a group's hosts may run on a cluster: swarm's placement-constraint syntax
(``node.labels.zone==eu``, ``node.hostname!=edge-1``), parsed once from the scenario
and matched against each engine's attributes by the swarm backend. Backends on one
machine have a single engine and leave it unused.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

# What Docker Swarm lets a service constrain on (docs: "docker service create
# --constraint"); labels take a key after the prefix.
FIXED_KEYS = ("node.id", "node.hostname", "node.role", "node.platform.os",
              "node.platform.arch")
LABEL_PREFIXES = ("node.labels.", "engine.labels.")
_CONSTRAINT = re.compile(r"\s*([A-Za-z0-9_.\-]+)\s*(==|!=)\s*(\S(?:.*\S)?)\s*")


@dataclass(frozen=True)
class Constraint:
    key: str
    op: str  # == or !=
    value: str

    def holds_for(self, attributes: Mapping[str, str]) -> bool:
        """Like swarm: ``!=`` holds for an engine without the key (an unlabelled node
        is not in zone eu); values compare case-insensitively except labels'."""
        have = attributes.get(self.key)
        if self.key.startswith(LABEL_PREFIXES):
            equal = have == self.value
        else:
            equal = have is not None and have.lower() == self.value.lower()
        return equal if self.op == "==" else not equal

    def __str__(self) -> str:
        return f"{self.key}{self.op}{self.value}"


def parse_constraint(text: str) -> Constraint:
    """A constraint, or a ValueError saying what is wrong and what would be right."""
    match = _CONSTRAINT.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r} is not a placement constraint: write KEY==VALUE or "
                         "KEY!=VALUE, for example node.labels.zone==eu")
    key, op, value = match.groups()
    if key not in FIXED_KEYS and not any(
            key.startswith(p) and len(key) > len(p) for p in LABEL_PREFIXES):
        raise ValueError(f"{key!r} is not something a constraint can name: use one of "
                         f"{', '.join(FIXED_KEYS)}, node.labels.KEY or engine.labels.KEY")
    if key == "node.role" and value.lower() not in ("manager", "worker"):
        raise ValueError(f"node.role is manager or worker, not {value!r}")
    return Constraint(key, op, value)


def engine_attributes(node_attrs: Mapping[str, object]) -> dict[str, str]:
    """What constraints can name, from a swarm node as ``docker node inspect`` shows it."""
    spec = node_attrs.get("Spec") or {}
    description = node_attrs.get("Description") or {}
    assert isinstance(spec, dict) and isinstance(description, dict)
    platform = description.get("Platform") or {}
    engine = description.get("Engine") or {}
    out = {
        "node.id": str(node_attrs.get("ID", "")),
        "node.hostname": str(description.get("Hostname", "")),
        "node.role": str(spec.get("Role", "")),
        "node.platform.os": str(platform.get("OS", "")),
        "node.platform.arch": str(platform.get("Architecture", "")),
    }
    out.update({f"node.labels.{k}": str(v) for k, v in (spec.get("Labels") or {}).items()})
    out.update({f"engine.labels.{k}": str(v) for k, v in (engine.get("Labels") or {}).items()})
    return out


@dataclass(frozen=True)
class PlacementRule:
    """A host's placement as the plan carries it: the group it came from (named in
    errors; a packed group shares one engine), the constraints every engine it may run
    on meets, and the strategy (None: the run's default)."""

    group: str
    constraints: tuple[Constraint, ...] = ()
    strategy: str | None = None

    def qualifies(self, attributes: Mapping[str, str]) -> bool:
        return all(c.holds_for(attributes) for c in self.constraints)

    def describe(self) -> str:
        return " and ".join(str(c) for c in self.constraints) or "no constraint"


def rule_for(group: str, constraints: list[str] | None = None,
             strategy: str | None = None) -> PlacementRule:
    return PlacementRule(group, tuple(parse_constraint(c) for c in constraints or ()),
                         strategy)
