"""Which engine each router and node runs on.

Each host may carry the placement rule of its scenario group (``placement:`` on a node
group, or on a LAN for its NAT router): constraints in swarm's syntax pick the engines
it may run on, and the strategy how the group is laid out over them. ``spread`` (the
default) takes the least-loaded qualifying engine, ties to the first by hostname (with
no constraints, round-robin in the plan's order); each NAT router goes on the next
qualifying engine after its LAN's first node's, so a LAN's traffic to its router
crosses engines whenever it can. ``pack`` puts a group on its first qualifying engine.
P2PLAB_PLACEMENT=pack makes pack every group's default (a single-engine baseline on the
same cluster). A group no engine qualifies for stops the run before anything is made.
"""

from __future__ import annotations

import ipaddress
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, TypeVar

from p2plab.compose.backends.base import BackendError
from p2plab.topology.placement import PlacementRule
from p2plab.topology.plan import LabPlan

STRATEGIES = ("spread", "pack")


class Engine(Protocol):
    """What placement reads of an engine (read-only, so any record of one will do)."""

    @property
    def hostname(self) -> str: ...

    @property
    def attributes(self) -> Mapping[str, str]: ...


E = TypeVar("E", bound=Engine)


def default_strategy() -> str:
    strategy = os.environ.get("P2PLAB_PLACEMENT", "spread")
    if strategy not in STRATEGIES:
        raise BackendError(f"P2PLAB_PLACEMENT={strategy!r}: use one of {', '.join(STRATEGIES)}")
    return strategy


def place(plan: LabPlan, engines: Sequence[E]) -> dict[str, E]:
    """Host name -> engine for every node, probe host and router of the plan."""
    default = default_strategy()
    load: Counter[int] = Counter()
    packed: dict[str, int] = {}
    where: dict[str, E] = {}

    def choose(rule: PlacementRule | None, after: int | None = None) -> E:
        eligible = qualifying(rule, engines)
        strategy = (rule.strategy if rule else None) or default
        if strategy == "pack":
            key = rule.group if rule else ""
            index = packed.setdefault(key, eligible[0])
            if index not in eligible:  # a router's rule may differ from its group's
                index = eligible[0]
        elif after is not None:  # a router: the next qualifying engine after `after`
            index = min(eligible, key=lambda i: ((i - after - 1) % len(engines), load[i]))
        else:
            index = min(eligible, key=lambda i: (load[i], i))
        load[index] += 1
        return engines[index]

    first_on_lan: dict[str, int] = {}
    for host in plan.hosts():
        where[host.name] = choose(host.placement)
        first_on_lan.setdefault(host.segment, engines.index(where[host.name]))
    for name, router in plan.routers.items():
        where[name] = choose(router.placement, after=first_on_lan.get(router.lan, -1))
    return where


def qualifying(rule: PlacementRule | None, engines: Sequence[Engine]) -> list[int]:
    """Indexes of the engines a rule allows, or a BackendError naming the group, what it
    asks, and what each engine offers."""
    if rule is None or not rule.constraints:
        return list(range(len(engines)))
    eligible = [i for i, e in enumerate(engines) if rule.qualifies(e.attributes)]
    if not eligible:
        offers = "; ".join(
            f"{e.hostname} (" + ", ".join(f"{k}={v}" for k, v in sorted(e.attributes.items())
                                          if k != "node.id") + ")" for e in engines)
        raise BackendError(
            f"placement of {rule.group}: no engine of the swarm meets {rule.describe()}. "
            f"Engines: {offers}. Change the constraints in the scenario, or label a node "
            "to match: docker node update --label-add KEY=VALUE NODE")
    return eligible


def rules_used(plan: LabPlan, where: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """For the manifest: each group with a rule, what it asked and where it landed."""
    out: dict[str, dict[str, Any]] = {}
    hosts = [*((h.name, h.placement) for h in plan.hosts()),
             *((n, r.placement) for n, r in plan.routers.items())]
    for name, rule in hosts:
        if rule is None or (not rule.constraints and rule.strategy is None):
            continue
        entry = out.setdefault(rule.group, {"constraints": [str(c) for c in rule.constraints],
                                            "strategy": rule.strategy, "engines": []})
        engine = getattr(where[name], "hostname", str(where[name]))
        if engine not in entry["engines"]:
            entry["engines"].append(engine)
    return out


def dynamic_range(subnet: ipaddress.IPv4Network, used: set[str],
                  engines: int) -> ipaddress.IPv4Network:
    """The part of a segment swarm may hand out itself: every engine attached to an
    overlay takes an address for its load balancer, and it must not be one the plan
    gave a host. The highest block of the subnet that holds none of the plan's
    addresses and room for every engine (the network's gateway may sit in it: swarm
    reserves that one)."""
    taken = {ipaddress.IPv4Address(a) for a in used}
    for prefix in range(max(subnet.prefixlen + 1, 29), subnet.prefixlen, -1):
        block_size = 2 ** (32 - prefix)
        if block_size - 3 < engines:
            continue
        for block in reversed(list(subnet.subnets(new_prefix=prefix))):
            if not any(a in block for a in taken):
                return block
    raise BackendError(f"segment {subnet} has no block of free addresses for the swarm's "
                       f"{engines} load-balancer endpoints: use a bigger subnet")


def counts(where: dict[str, Any]) -> dict[str, int]:
    """Hosts per engine, for the manifest."""
    return dict(sorted(Counter(getattr(e, "hostname", str(e)) for e in where.values()).items()))
