"""A text summary of a scenario as it will run: what ``p2plab show`` prints."""

from __future__ import annotations

from collections import Counter

from topology.plan import LabPlan
from topology.scenario import PUBLIC, DialTarget, LinkSpec, step_kind


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
        who = ", ".join(f"{c} {r}{'s' if c > 1 else ''}" for r, c in sorted(roles.items())) or "no nodes"
        if name == PUBLIC:
            nat = "public segment"
        elif any(r.lan == name for r in plan.routers.values()):
            router = plan.router_for(name)
            nat = (f"behind {router.name}: {router.nat} "
                   f"({router.behaviour.short() if router.behaviour else 'no NAT'})")
        else:
            nat = "routed, no NAT"
        links = Counter(link_text(s.link_of(n)) for n in on)
        link = "; ".join(f"{k}" + (f" ({v})" if len(links) > 1 else "") for k, v in links.items())
        lines.append(f"  {name:<18} {str(seg.subnet):<16} {nat}; {who}"
                     + (f"; links {link}" if on else ""))
    planned = dials(plan)
    relayed = sum(1 for *_, r in planned if r)
    lines += ["", f"Nodes: {len(s.nodes)} ({', '.join(f'{c} {r}' for r, c in sorted(Counter(n.role for n in s.nodes).items()))}); "
              f"planned dials: {len(planned)} ({relayed} through a relay)"]
    for node in s.nodes[:12]:
        targets = ", ".join(f"{d.node}{' via ' + d.via if d.via else ''}" if isinstance(d, DialTarget)
                            else str(d) for d in node.dial) or "-"
        lines.append(f"  {node.name:<12} {node.lan:<14} {node.role:<9} dials {targets}")
    if len(s.nodes) > 12:
        lines.append(f"  ... and {len(s.nodes) - 12} more")
    lines += ["", f"Timeline ({len(s.timeline)} steps):"]
    for i, step in enumerate(s.timeline):
        data = step.model_dump(by_alias=True, exclude_none=True, exclude_defaults=True)
        at = f"at {step.at:g} s: " if step.at is not None else ""
        lines.append(f"  {i:>2}. {at}{step_kind(step)}: "
                     + ", ".join(f"{k}={v}" for k, v in data.items() if k not in ("at",)))
    expect = s.expect.model_dump(exclude_none=True, exclude_defaults=True)
    lines += ["", "Expectations:"] + [f"  {k}: {v}" for k, v in expect.items()] if expect else []
    return "\n".join(lines)
