"""Expanding a scenario's shorthands into concrete LANs, nodes and dials.

A scenario may say ``count: 40`` on a LAN or a node, put a group of nodes on several
LANs (``lan: [home-*]``), name nodes with shell patterns, and ask for connections by
strategy (k random peers, every bootstrap node, a networkx graph). This module turns
all of that into plain lists, with every random choice drawn from the scenario's seed,
so two expansions of one file are identical. Errors carry the location of the spec
they came from.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import random
from collections.abc import Callable, Iterable, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any

import networkx as nx

Loc = tuple[Any, ...]
PUBLIC = "public"


class ExpansionError(Exception):
    def __init__(self, errors: list[tuple[Loc, str]]) -> None:
        super().__init__("; ".join(m for _, m in errors))
        self.errors = errors


def numbered(name: str, index: int, count: int) -> str:
    """``peer`` x 40 -> peer-01 .. peer-40 (zero-padded so names sort in order)."""
    return f"{name}-{index:0{len(str(count))}d}"


def has_pattern(name: str) -> bool:
    return any(c in name for c in "*?[")


def match(patterns: Iterable[str], names: Sequence[str]) -> list[str]:
    """Names matching any of the shell patterns, in ``names`` order, without repeats."""
    pats = list(patterns)
    return [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in pats)]


def split_pool(subnet: str, count: int, prefix: int) -> list[str]:
    """``count`` consecutive /prefix subnets carved from a pool; ValueError if short."""
    pool = ipaddress.IPv4Network(subnet)
    if prefix < pool.prefixlen:
        raise ValueError(f"prefix /{prefix} is larger than the pool {pool}")
    subnets = pool.subnets(new_prefix=prefix)
    out = []
    for _ in range(count):
        try:
            out.append(str(next(subnets)))
        except StopIteration:
            raise ValueError(f"{pool} holds only {len(out)} /{prefix} subnets, not {count}: "
                             "use a larger pool or a longer prefix") from None
    return out


@dataclass(frozen=True)
class Edge:
    """``a`` should end up connected to ``b``; which side dials is decided later."""

    a: str
    b: str
    loc: Loc


GRAPHS: dict[str, Callable[[int, Any, random.Random], nx.Graph]] = {
    # graph name -> generator(n, spec, rng); n nodes labelled 0..n-1
    "full-mesh": lambda n, s, r: nx.complete_graph(n),
    "ring": lambda n, s, r: nx.cycle_graph(n),
    "star": lambda n, s, r: nx.star_graph(n - 1),
    "random-regular": lambda n, s, r: nx.random_regular_graph(s.degree, n, seed=r.randrange(2**32)),
    "erdos-renyi": lambda n, s, r: nx.erdos_renyi_graph(n, s.p, seed=r.randrange(2**32)),
    "barabasi-albert": lambda n, s, r: nx.barabasi_albert_graph(
        n, s.degree, seed=r.randrange(2**32)),
    "watts-strogatz": lambda n, s, r: nx.connected_watts_strogatz_graph(
        n, s.degree, s.p, seed=r.randrange(2**32)),
}


def graph_edges(names: list[str], spec: Any, rng: random.Random, loc: Loc) -> list[Edge]:
    """Edges of a networkx generator laid over ``names`` (in a seeded order)."""
    if len(names) < 2:
        return []
    order = list(names)
    rng.shuffle(order)
    try:
        graph = GRAPHS[spec.graph](len(order), spec, rng)
    except nx.NetworkXError as exc:
        raise ExpansionError([(loc, f"networkx cannot build a {spec.graph} graph over "
                               f"{len(order)} nodes: {exc}")]) from None
    return [Edge(order[u], order[v], loc) for u, v in sorted(graph.edges())]


def random_edges(node: str, candidates: list[str], k: int, rng: random.Random,
                 loc: Loc) -> list[Edge]:
    """k distinct random candidates other than the node itself (without copying the
    pool per node: groups run to tens of thousands)."""
    want = min(k, len(candidates) - (1 if node in candidates else 0)) \
        if len(candidates) <= 2 * k + 2 else k
    picked = [c for c in rng.sample(candidates, min(len(candidates), want + 1)) if c != node]
    return [Edge(node, other, loc) for other in picked[:want]]


def dedupe(edges: list[Edge]) -> list[Edge]:
    seen: set[frozenset[str]] = set()
    out = []
    for e in edges:
        key = frozenset((e.a, e.b))
        if e.a != e.b and key not in seen:
            seen.add(key)
            out.append(e)
    return out


def orient(edge: Edge, lan_of: dict[str, str], routed: set[str],
           relays_of: dict[str, list[str]], isolated: AbstractSet[str] = frozenset()
           ) -> tuple[str, str, str | None] | str:
    """(dialer, target, relay or None) for an edge, or the reason it cannot be dialled.

    A node can be dialled directly from everywhere if it is on the public segment or a
    LAN without NAT, and from its own LAN always. Two nodes behind different NATs meet
    through a relay the target reserves on (DCUtR may then upgrade the connection).
    """
    a, b = edge.a, edge.b

    def direct(dialer: str, target: str) -> bool:
        if lan_of[target] == lan_of[dialer]:
            return True
        return lan_of[target] in routed and lan_of[dialer] not in isolated

    if direct(a, b):
        return (a, b, None)
    if direct(b, a):
        return (b, a, None)
    for x in (a, b):
        if lan_of[x] in isolated:
            return (f"{a} and {b} cannot meet: {x}'s LAN {lan_of[x]!r} has nat: null (no "
                    "router, no way out); use nat: public for a routed LAN")
    if relays_of.get(b):
        return (a, b, relays_of[b][0])
    if relays_of.get(a):
        return (b, a, relays_of[a][0])
    return (f"{a} and {b} are behind different NATs and neither reserves on a relay: "
            "give one of them relay: [RELAY]")
