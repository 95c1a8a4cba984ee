"""A text summary of a scenario as it will run: what ``p2plab show`` prints."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from p2plab.topology.schema import PUBLIC, DialTarget, LinkSpec, step_kind

if TYPE_CHECKING:  # a report reads pictures without building (or importing) a plan
    import networkx as nx
    from p2plab.topology.plan import LabPlan


def link_text(link: LinkSpec | None) -> str:
    if link is None or not link.is_impaired():
        return "unimpaired"
    parts = []
    if link.latency_ms or link.jitter_ms:
        parts.append(f"{link.latency_ms:g}" + (f" ± {link.jitter_ms:g}" if link.jitter_ms else "")
                     + " ms each way")
    if link.loss_pct:
        parts.append(f"{link.loss_pct:g} % loss each way")
    if link.bandwidth_kbit:
        parts.append(f"{link.bandwidth_kbit} kbit/s")
    return ", ".join(parts)


def dials(plan: LabPlan) -> list[tuple[str, str, bool]]:
    """(dialer, target, through a relay) for every planned dial between lab nodes."""
    out = []
    for node in plan.scenario.nodes:
        for target in node.dial:
            if isinstance(target, DialTarget):
                out.append((node.name, target.node, target.via is not None))
    return out


def describe(plan: LabPlan) -> str:
    s = plan.scenario
    lines = [f"{s.name} (seed {s.seed})"]
    if s.description:
        lines.append("  " + " ".join(s.description.split()))
    lines.append("")
    lines.append(f"Segments ({len(plan.segments)}):")
    for name, seg in plan.segments.items():
        on = [n for n in s.nodes if n.lan == name]
        roles = Counter(n.role for n in on)
        who = ", ".join(f"{c} {r}{'s' if c > 1 else ''}"
                        for r, c in sorted(roles.items())) or "no nodes"
        if name == PUBLIC:
            nat = "public segment"
        elif any(r.lan == name for r in plan.routers.values()):
            router = plan.router_for(name)
            nat = (f"behind {router.name}: {router.nat} "
                   f"({router.behaviour.short() if router.behaviour else 'no NAT'})")
        else:
            nat = "isolated (nat: null): only its own hosts reach it"
        links = Counter(link_text(s.link_of(n)) for n in on)
        link = "; ".join(f"{k}" + (f" ({v})" if len(links) > 1 else "") for k, v in links.items())
        lines.append(f"  {name:<18} {seg.subnet!s:<16} {nat}; {who}"
                     + (f"; links {link}" if on else ""))
    planned = dials(plan)
    relayed = sum(1 for *_, r in planned if r)
    lines += ["", f"Nodes: {len(s.nodes)} ("
              + ", ".join(f"{c} {r}" for r, c in sorted(Counter(n.role for n in s.nodes).items()))
              + "); "
              f"planned dials: {len(planned)} ({relayed} through a relay)"]
    for node in s.nodes[:12]:
        targets = ", ".join(f"{d.node}{' via ' + d.via if d.via else ''}"
                            if isinstance(d, DialTarget)
                            else str(d) for d in node.dial) or "-"
        lines.append(f"  {node.name:<12} {node.lan:<14} {node.role:<9} dials {targets}")
    if len(s.nodes) > 12:
        lines.append(f"  ... and {len(s.nodes) - 12} more")
    rules = [(f"nodes {spec.name}", spec.placement) for spec in s.node_specs if spec.placement]
    rules += [(f"router of lans {spec.name}", spec.placement) for spec in s.lan_specs
              if spec.placement]
    if rules:
        lines += ["", "Placement on a cluster (--backend swarm):"]
        lines += [f"  {who:<24} " + (" and ".join(rule.constraints) or "any engine")
                  + f"; {rule.strategy or 'default strategy'}" for who, rule in rules]
    lines += ["", f"Timeline ({len(s.timeline)} steps):"]
    for i, step in enumerate(s.timeline):
        data = step.model_dump(by_alias=True, exclude_none=True, exclude_defaults=True)
        at = f"at {step.at:g} s: " if step.at is not None else ""
        lines.append(f"  {i:>2}. {at}{step_kind(step)}: "
                     + ", ".join(f"{k}={v}" for k, v in data.items() if k not in ("at",)))
    expect = s.expect.model_dump(exclude_none=True, exclude_defaults=True)
    lines += ["", "Expectations:"] + [f"  {k}: {v}" for k, v in expect.items()] if expect else []
    return "\n".join(lines)


# Above this many hosts a picture of every node is a hairball (and slow to lay out):
# draw the groups instead.
DETAILED_PICTURE_MAX = 300


def condensed_graph(plan: LabPlan) -> nx.Graph:
    """One vertex per LAN group and per node group (with counts), for big scenarios."""
    import networkx as nx

    s = plan.scenario
    graph = nx.Graph()
    graph.add_node(PUBLIC, kind="segment", subnet=s.public.subnet)
    lan_group = {lan.name: s.lan_specs[s.lan_origin[lan.name]] for lan in s.lans}
    sizes = Counter(spec.name for spec in lan_group.values())
    for spec in s.lan_specs:
        label = f"{spec.name} x{sizes[spec.name]}" if spec.count else spec.name
        nat = spec.nat_spec.preset if spec.nat_spec else "isolated"
        graph.add_node(label, kind="segment", subnet=f"{nat}")
        if spec.nat_spec is not None:
            graph.add_edge(label, PUBLIC)
    counts: Counter[tuple[str, str]] = Counter()
    for node in s.nodes:
        group = s.node_specs[s.node_origin(node.name)].name
        lan = node.lan_name if node.lan_name == PUBLIC else lan_group[node.lan_name].name
        counts[(group, lan)] += 1
    for (group, lan), n in counts.items():
        lan_label = lan if lan == PUBLIC else next(
            v for v in graph.nodes if v == lan or v.startswith(f"{lan} x"))
        vertex = f"{group} x{n}"
        graph.add_node(vertex, kind="node")
        graph.add_edge(vertex, lan_label)
    return graph


def picture_graph(plan: LabPlan) -> nx.Graph:
    return plan.graph if plan.graph.number_of_nodes() <= DETAILED_PICTURE_MAX \
        else condensed_graph(plan)


TOPOLOGY_FILE = "topology.json"


def picture_json(plan: LabPlan) -> str:
    """The picture's graph as node-link JSON: every executor writes it into the results
    folder, so a report draws the lab from the folder's files without rebuilding a plan."""
    import json

    import networkx as nx

    return json.dumps(nx.node_link_data(picture_graph(plan), edges="edges"), indent=1) + "\n"


def picture_from_json(text: str) -> nx.Graph:
    import json

    import networkx as nx

    return nx.node_link_graph(json.loads(text), edges="edges")
