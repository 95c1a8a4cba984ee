"""Every relayed pair's hole punch set against NAT theory for its two sides' NATs, in
every report (not only the hole-punch grid's): what the pair's NATs and common
transports predict (``nat.punch_transport``, the simulator's and the grid's rule), what
the pair did, and, where they disagree, what the routers recorded about it.

A disagreement is a finding, not a failure: theory knows NATs, not libraries (rust-libp2p
0.57.1 sends a ClientHello from both sides over QUIC, which the fixed-roles rule does not).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from p2plab.analysis.event_log import EventLog
from p2plab.topology.nat import NatBehaviour, punch_transport
from p2plab.topology.plan import LabPlan, nat_chain
from p2plab.topology.schema import PUBLIC


@dataclass(frozen=True)
class Side:
    """What theory needs to know of one node: its NATs and the transports it runs."""

    nat: str  # the preset name, or "public"
    chain: Sequence[NatBehaviour]
    tcp: bool
    quic: bool


def sides(plan: LabPlan) -> dict[str, Side]:
    """Each node's NATs (innermost first) and transports, from the plan."""
    specs = {spec.name: spec for spec in plan.scenario.nodes}
    out = {}
    for name, node in plan.nodes.items():
        spec = specs[name]
        public = node.segment == PUBLIC
        out[name] = Side("public" if public else plan.router_for(node.segment).nat,
                         [] if public else nat_chain(plan, node.segment), spec.tcp, spec.quic)
    return out


def relayed_diallers(events: EventLog,
                     nodes: dict[str, dict[str, Any]]) -> dict[frozenset[str], str]:
    """Who dialled each pair's first relayed connection (over QUIC its ClientHello is
    the one that must get in)."""
    by_peer_id = {info["peer_id"]: name for name, info in nodes.items()}
    out: dict[frozenset[str], str] = {}
    opened = events.of("connection_opened")
    if opened.empty:
        return out
    relayed = opened[(opened["kind"] == "relayed") & (opened["direction"] == "outbound")]
    for row in relayed[["node", "peer"]].itertuples(index=False):
        other = by_peer_id.get(row.peer)
        if other is not None:
            out.setdefault(frozenset((row.node, other)), row.node)
    return out


def expected(listener: Side, dialler: Side) -> str | None:
    """The transport theory says the pair's punch ends on; None: it stays relayed."""
    return punch_transport(listener.chain, dialler.chain, listener.tcp and dialler.tcp,
                           listener.quic and dialler.quic)


def punch_theory(plan: LabPlan, events: EventLog, summary: dict[str, Any]) -> dict[str, Any]:
    """Each punched pair against theory: counts by NAT pair, and every disagreement with
    the routers' explanation when forensics recorded one."""
    punches = summary.get("hole_punch") or {}
    if not punches:
        return {}
    known = sides(plan)
    diallers = relayed_diallers(events, summary["nodes"])
    forensics = summary.get("punch_forensics") or {}
    classes: dict[tuple[str, str], Counter[str]] = {}
    disagreements = []
    for key, pair in punches.items():
        a, b = pair["nodes"]
        if a not in known or b not in known:
            continue
        dialler = diallers.get(frozenset((a, b)), a)
        listener = b if dialler == a else a
        theory = expected(known[listener], known[dialler])
        observed = "direct" if pair["outcome"] == "success" or pair["direct_anyway"] else "relayed"
        agrees = (theory is not None) == (observed == "direct")
        label = tuple(sorted((known[a].nat, known[b].nat)))
        tally = classes.setdefault((f"{label[0]} / {label[1]}", "direct" if theory else "relayed"),
                                   Counter())
        tally["pairs"] += 1
        tally["direct"] += observed == "direct"
        tally["agree"] += agrees
        if not agrees:
            # What the routers recorded is shown; only a cause outside NAT theory (a
            # pair that never sent in a common transport) explains the difference.
            recorded = forensics.get(key, {})
            disagreements.append({
                "pair": key, "listener": listener, "dialler": dialler,
                "nats": f"{known[listener].nat} (listener) / {known[dialler].nat} (dialler)",
                "theory": f"direct over {theory}" if theory else "relayed",
                "observed": observed, "recorded": recorded.get("text"),
                "explained": recorded.get("cause")})
    by_class = [{"nats": nats, "theory": theory, "pairs": t["pairs"], "direct": t["direct"],
                 "agree": t["agree"]} for (nats, theory), t in sorted(classes.items())]
    return {"pairs": sum(c["pairs"] for c in by_class),
            "agree": sum(c["agree"] for c in by_class),
            "explained": sum(1 for d in disagreements if d["explained"]),
            "theory_direct": sum(c["pairs"] for c in by_class if c["theory"] == "direct"),
            "by_class": by_class, "disagreements": disagreements}
