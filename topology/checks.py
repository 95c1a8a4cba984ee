"""Checks on the expanded scenario: names that must exist, subnets that must not
overlap, a timeline that can run, expectations that refer to something. Each problem
carries the location in the file (``("nodes", 3, "lan")``) it came from, so the loader
can name the line.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from p2plab.topology import groups
from p2plab.topology.schema import (
    LAB_EVENTS,
    PUBLIC,
    Kill,
    Lan,
    LinkDown,
    LinkUp,
    Partition,
    Publish,
    Restart,
    SetNat,
    StopTraffic,
    WaitConnection,
    WaitHolePunch,
    WaitReservation,
    WaitTopicPeers,
    nat_spec,
    step_kind,
)

if TYPE_CHECKING:
    from p2plab.topology.scenario import Scenario

Problem = tuple[tuple[Any, ...], str]  # (location in the file, what is wrong and the fix)


class CrossReferenceErrors(ValueError):
    """Problems found after field validation: expansion raises it, the loader formats it."""

    def __init__(self, errors: list[Problem]) -> None:
        super().__init__("; ".join(m for _, m in errors))
        self.errors = errors


def outside_lab(multiaddr: str, public_subnet: str, lans: list[Lan]) -> str | None:
    """A literal multiaddr must point into the lab: it is sealed, and a dial to an
    address it did not create would wait for a timeout at best."""
    parts = multiaddr.split("/")
    if len(parts) < 3 or parts[1] not in ("ip4", "ip6", "dns", "dns4", "dns6"):
        return (f"{multiaddr!r} is not a multiaddr like /ip4/10.1.0.2/tcp/4001; "
                "name the node instead")
    if parts[1] != "ip4":
        return (f"{multiaddr!r}: the lab is IPv4 with no names; "
                "dial /ip4/ADDRESS/... or the node's name")
    try:
        address = ipaddress.IPv4Address(parts[2])
    except ValueError:
        return f"{multiaddr!r}: {parts[2]!r} is not an IPv4 address"
    nets = [ipaddress.IPv4Network(public_subnet)] + [
        ipaddress.IPv4Network(lan.subnet) for lan in lans]
    if not any(address in net for net in nets):
        return (f"{multiaddr!r} points outside the lab (no subnet of the scenario holds "
                f"{address}): the lab is sealed; dial a lab address or the node's name")
    return None

def cross_check(s: Scenario) -> list[Problem]:
    """Every problem of the expanded scenario, each at the file location it came from."""
    errors: list[Problem] = []
    lan_names = [lan.name for lan in s.lans]

    def node_loc(name: str) -> tuple[str, int]:
        return ("nodes", s.origin[name])

    def lan_loc(name: str) -> tuple[str, int]:
        return ("lans", s.lan_origin[name])

    if PUBLIC in lan_names:
        errors.append((("lans",), f"{PUBLIC!r} is reserved for the public segment"))
    if LAB_EVENTS in [n.name for n in s.nodes]:
        errors.append((("nodes",), f"{LAB_EVENTS!r} is reserved for the lab's events"))
    # Routers and carrier segments take their names from their LAN (plan.py): a
    # node or LAN with one of those names would be two hosts with one name.
    derived = {f"{lan.name}-{suffix}": (lan.name, what) for lan in s.lans
               for suffix, what in (("gw", "NAT router"), ("cgnat", "carrier NAT router"),
                                    ("carrier", "carrier segment"))}
    for node in s.nodes:
        if node.name in derived:
            owner, what = derived[node.name]
            errors.append(((*node_loc(node.name), "name"), f"{node.name!r} is the name of "
                           f"LAN {owner!r}'s {what}: rename the node"))
    for lan in s.lans:
        if lan.name in derived:
            other, what = derived[lan.name]
            errors.append(((*lan_loc(lan.name), "name"), f"{lan.name!r} is the name of "
                           f"LAN {other!r}'s {what}: rename the LAN"))
    subnets: list[tuple[tuple[Any, ...], ipaddress.IPv4Network, Lan | None]] = [
        (("public", "subnet"), ipaddress.IPv4Network(s.public.subnet), None)]
    subnets += [((*lan_loc(lan.name), "subnet"), ipaddress.IPv4Network(lan.subnet), lan)
                for lan in s.lans]
    carriers = s.carrier_subnets()
    subnets += [((*lan_loc(lan.name), "nat"), carriers[lan.name], None)
                for lan in s.lans if lan.name in carriers]
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
    errors += _capacity_errors(s, [(loc, net, lan) for loc, net, lan in subnets
                                     if loc[-1] == "subnet"])
    roles = {node.name: node.role for node in s.nodes}
    for node in s.nodes:
        if not node.tcp and not node.quic:
            errors.append(((*node_loc(node.name), "tcp"),
                           "a node needs tcp or quic: set quic: true"))
    errors += _timeline_errors(s, roles)
    for key, items in (("connections", s.expect.connections),
                       ("hole_punch", s.expect.hole_punch)):
        for i, item in enumerate(items):
            for name in item.between:
                if name not in roles:
                    errors.append((("expect", key, i, "between"),
                                   f"node {name!r} does not exist"))
    flows = s.flows()
    for i, item in enumerate(s.expect.flows):
        if item.flow not in flows:
            errors.append((("expect", "flows", i, "flow"), f"no publish step is named "
                           f"{item.flow!r}; named flows: {', '.join(flows) or 'none'}"))
    relays = [name for name, role in roles.items() if role == "relay"]
    for i, cut in enumerate(s.expect.relay_cuts):
        if not relays:
            errors.append((("expect", "relay_cuts", i), "the scenario has no relay (a node "
                           "with role: relay) to cut circuits"))
        elif cut.relay is not None and cut.relay not in relays:
            errors.append((("expect", "relay_cuts", i, "relay"), f"{cut.relay!r} is not a "
                           f"relay; relays: {', '.join(relays)}"))
    if s.punch_reference is not None and not relays:
        errors.append((("punch_reference",), "no pair can punch without a relay to meet "
                       "through: add a node with role: relay, or drop punch_reference"))
    kinds = {step_kind(s) for s in s.timeline}
    for i, item in enumerate(s.expect.recovery):
        if item.after not in kinds:
            errors.append((("expect", "recovery", i, "after"),
                           f"the timeline has no {item.after} step"))
    return errors

def _timeline_errors(s: Scenario, roles: Mapping[str, str]) -> list[Problem]:
    errors: list[Problem] = []
    names = list(roles)
    flows: list[str] = []
    last_at = 0.0
    for i, step in enumerate(s.timeline):
        loc = ("timeline", i)
        if step.at is not None:
            if step.at < last_at:
                errors.append(((*loc, "at"), f"at: {step.at:g} comes before an earlier "
                               f"step's at: {last_at:g}: keep the timeline in order"))
            last_at = step.at
        if isinstance(step, SetNat):
            lan = next((spec for spec in s.lans if spec.name == step.set_nat), None)
            lan_nat = lan.nat_spec if lan is not None else None  # None: no NAT router
            if lan_nat is None:
                errors.append(((*loc, "set-nat"), f"{step.set_nat!r} is not a LAN "
                               "with a NAT router"))
            elif ((lan_nat.preset == "double-nat")
                  != (nat_spec(step.nat).preset == "double-nat")):
                errors.append(((*loc, "nat"), "double-nat changes the topology "
                               "(a carrier router): it cannot be switched on or off mid-run"))
            elif nat_spec(step.nat).preset == "public" or lan_nat.preset == "public":
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
                for name in s.match_nodes(patterns):
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
                if not s.match_link_targets([p]):
                    errors.append((loc, f"{p!r} names no node and no LAN with nodes"))
        elif isinstance(step, Partition):
            errors += _partition_errors(s, step, loc)
        for p in patterns:
            if not groups.match([p], names):
                errors.append((loc, f"node {p!r} does not exist" if not groups.has_pattern(p)
                               else f"pattern {p!r} matches no node"))
    return errors

def _partition_errors(s: Scenario, step: Partition, loc: tuple[Any, ...]) -> list[Problem]:
    errors: list[Problem] = []
    group_of: dict[str, int] = {}
    for g, patterns in enumerate(step.partition):
        for p in patterns:
            members = s.match_link_targets([p])
            if not members:
                errors.append(((*loc, "partition", g), f"{p!r} names no node and no LAN "
                               "with nodes"))
            for m in members:
                if group_of.setdefault(m, g) != g:
                    errors.append(((*loc, "partition", g), f"node {m!r} is in two groups"))
    rest = len(step.partition)
    for lan in s.lans:
        spec = lan.nat_spec  # None exactly when lan.nat is None
        if spec is None or spec.preset == "public":
            continue  # no shared NAT address
        on_lan = {group_of.get(n.name, rest) for n in s.nodes if n.lan == lan.name}
        if len(on_lan) > 1:
            errors.append(((*loc, "partition"), f"the nodes of {lan.name!r} share its NAT "
                           "address, so they cannot be split: put them in one group"))
    return errors

def _capacity_errors(s: Scenario, subnets: list[tuple[tuple[Any, ...], ipaddress.IPv4Network,
                                                    Lan | None]]) -> list[Problem]:
    """Nodes take LAN addresses from .10 up, and the public segment from .2 up; the
    last address of every segment is kept for a container engine's bridge, and room
    is kept for the NAT probe's hosts (two reflectors, one client per LAN)."""
    errors = []
    on_lan = Counter(n.lan for n in s.nodes)
    for (loc, net, lan) in subnets:
        if lan is None:
            demand = on_lan[PUBLIC] + sum(1 for lan in s.lans if lan.nat is not None) + 2
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
