"""Which engine each router and node runs on.

Spread: nodes round-robin over the engines in the plan's order; each NAT router on
the engine after its LAN's first node's, so a LAN's traffic to its router crosses
engines whenever there are two or more. P2PLAB_PLACEMENT=pack puts everything on the
first engine (a single-engine baseline on the same cluster).
"""

from __future__ import annotations

import ipaddress
import os
from collections import Counter
from typing import Any, Sequence, TypeVar

from p2plab.compose.backend import BackendError
from p2plab.topology.plan import LabPlan

E = TypeVar("E")
STRATEGIES = ("spread", "pack")


def spread(plan: LabPlan, engines: Sequence[E]) -> dict[str, E]:
    strategy = os.environ.get("P2PLAB_PLACEMENT", "spread")
    if strategy not in STRATEGIES:
        raise BackendError(f"P2PLAB_PLACEMENT={strategy!r}: use one of {', '.join(STRATEGIES)}")
    if strategy == "pack":
        return {name: engines[0] for name in [*plan.routers, *(h.name for h in plan.hosts())]}
    where: dict[str, E] = {}
    first_on_lan: dict[str, int] = {}
    for index, host in enumerate(plan.hosts()):
        where[host.name] = engines[index % len(engines)]
        first_on_lan.setdefault(host.segment, index)
    for name, router in plan.routers.items():
        where[name] = engines[(first_on_lan.get(router.lan, 0) + 1) % len(engines)]
    return where


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
