"""Expansion: groups of LANs and nodes into single ones, connection strategies
(``connect``) into dials, each oriented so the dialer can reach the target.

An explicit step between the checked file and the scenario that runs; every problem it
finds is reported with the file's location of the spec it came from.
"""

from __future__ import annotations

import random
from typing import Any

from p2plab.topology import groups
from p2plab.topology.checks import CrossReferenceErrors, outside_lab
from p2plab.topology.scenario import Scenario
from p2plab.topology.schema import PUBLIC, DialTarget, Lan, NodeSpec, ScenarioFile


def expand(file: ScenarioFile) -> Scenario:
    """The scenario ``file`` describes, with every group expanded and every dial named;
    raises ``CrossReferenceErrors`` listing all it found wrong."""
    lans: list[Lan] = []
    nodes: list[NodeSpec] = []
    lan_origin: dict[str, int] = {}
    node_origin: dict[str, int] = {}
    errors: list[tuple[tuple[Any, ...], str]] = []
    failed_lan_groups: list[str] = []
    for i, lan in enumerate(file.lan_specs):
        if lan.name in lan_origin or (lan.count and any(
                n.startswith(f"{lan.name}-") for n in lan_origin)):
            errors.append((("lans", i, "name"), f"LAN name {lan.name!r} is used twice"))
            continue
        if lan.count is None:
            lans.append(lan)
            lan_origin[lan.name] = i
            continue
        try:
            subnets = groups.split_pool(lan.subnet, lan.count, lan.prefix)
        except ValueError as exc:
            errors.append((("lans", i, "count"), str(exc)))
            failed_lan_groups.append(lan.name)
            continue
        for k, subnet in enumerate(subnets, start=1):
            name = f"{lan.name}-{k}"
            lans.append(lan.model_copy(update={"name": name, "subnet": subnet,
                                                     "count": None}))
            lan_origin[name] = i
    lan_names = [PUBLIC] + [lan.name for lan in lans]
    # Reachable from everywhere: the public segment and LANs routed without NAT (the
    # plan's rule, ``plan.routed_lans``, read from the NAT spec before there is a plan).
    # A LAN with nat: null has no router at all: only its own nodes reach it.
    routed = {PUBLIC} | {lan.name for lan in lans
                         if lan.nat_spec is not None and lan.nat_spec.behaviour() == (None, None)}
    isolated = {lan.name for lan in lans if lan.nat is None}

    plain: list[NodeSpec] = []
    for i, spec in enumerate(file.node_specs):
        patterns = [spec.lan] if isinstance(spec.lan, str) else spec.lan
        spec_lans = groups.match(patterns, lan_names)
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
            if name in node_origin:
                errors.append((("nodes", i, "name"), f"node name {name!r} is used twice"))
                break
            if len(name) > 20:
                errors.append((("nodes", i, "name"), f"{name!r} is longer than 20 "
                               "characters: use a shorter group name"))
                break
            plain.append(spec.model_copy(update={"name": name, "count": None,
                                                 "lan": spec_lans[k % len(spec_lans)]}))
            node_origin.setdefault(name, i)
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
        i = node_origin[n.name]
        relays_of[n.name] = names_for(n.relay, ("nodes", i, "relay"), "relay", relay_names)

    rng = random.Random(file.seed)
    edges: list[groups.Edge] = []
    chatting = [n.name for n in plain if n.role != "relay"]
    if file.connect is not None:
        among = groups.match(file.connect.among, chatting)
        if not among:
            errors.append((("connect", "among"), "the patterns match no chatting node"))
        else:
            try:
                edges += groups.graph_edges(among, file.connect, rng, ("connect",))
            except groups.ExpansionError as exc:
                errors += exc.errors
    pools: dict[tuple[str, ...], list[str]] = {}
    for n, (k, c) in ((spec, kc) for spec in plain for kc in enumerate(spec.connect)):
        loc = ("nodes", node_origin[n.name], "connect", k)
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

    lan_of = {n.name: n.lan_name for n in plain}
    dials: dict[str, list[DialTarget]] = {n.name: [] for n in plain}
    for edge in groups.dedupe(edges):
        oriented = groups.orient(edge, lan_of, routed, relays_of, isolated)
        if isinstance(oriented, str):
            errors.append((edge.loc, oriented))
            continue
        dialer, dialled, via = oriented
        dials[dialer].append(DialTarget(node=dialled, via=via))

    for n in plain:
        i = node_origin[n.name]
        explicit: list[str | DialTarget] = []
        for j, target in enumerate(n.dial):
            if isinstance(target, str) and target.startswith("/"):
                problem = outside_lab(target, file.public.subnet, lans)
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
        nodes.append(n.model_copy(update={
            "relay": relays_of[n.name], "connect": [],
            "dial": explicit + dials[n.name]}))
    if errors:
        raise CrossReferenceErrors(list(dict.fromkeys(errors)))
    return Scenario(file, lans, nodes, lan_origin, node_origin)
