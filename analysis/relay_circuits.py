"""What the relays did with their limits: circuits accepted, denied and cut, and what a
cut did to the pair it carried.

Read from the relay hop's own ``relay_hop`` events (why a circuit closed is known only
there: ``duration`` and ``bytes`` are its limits) set against both ends' connection
events and the messages between the two ends. A relay whose implementation does not
write ``relay_hop`` (py-libp2p gives no hook) leaves this empty; its cuts still show as
relayed connections closing.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from p2plab.analysis.event_log import EventLog

# A circuit that closed for one of these reasons was cut by its relay, not ended by a node.
LIMIT_REASONS = ("duration", "bytes")


def relay_circuits(events: EventLog, nodes: dict[str, dict[str, Any]],
                   messages: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts of the relays' actions, and every circuit closed other than by its ends:
    who, when, after how long, why; when the pair was connected again (and how); and of
    the messages between them published while they were not, how many arrived."""
    hops = events.of("relay_hop")
    if hops.empty:
        return {}
    name_of = {info["peer_id"]: name for name, info in nodes.items()}
    start = _first_start(events)
    actions = Counter(hops["action"].tolist())
    closed = hops[hops["action"] == "circuit-closed"]
    reasons = Counter(closed["reason"].tolist())
    opened_at: dict[tuple[str, str, str], float] = {}
    cuts = []
    for ev in hops.to_dict("records"):
        src = name_of.get(ev["src_peer"], ev["src_peer"])
        dst = name_of.get(ev["dst_peer"], ev["dst_peer"])
        key = (ev["node"], src, dst)
        if ev["action"] == "circuit-accepted":
            opened_at[key] = float(ev["t"])
        if ev["action"] != "circuit-closed" or ev["reason"] == "ended":
            continue
        t = float(ev["t"])
        since = opened_at.pop(key, None)
        back = _reconnected(events, src, dst, name_of, t)
        until = back[0] if back else float("inf")
        between = [(m, dst if m["origin"] == src else src) for m in messages
                   if m["origin"] in (src, dst) and t <= m["t"] < until]
        between = [(m, other) for m, other in between if other in m["eligible"]]
        arrived = sum(1 for m, other in between if other in m["delays_ms"])
        cuts.append({
            "relay": ev["node"], "src": src, "dst": dst, "reason": ev["reason"],
            "at_s": round(t - start, 3),
            "lived_s": None if since is None else round(t - since, 3),
            "reconnected_after_s": None if back is None else round(back[0] - t, 3),
            "reconnected_kind": None if back is None else back[1],
            "messages_while_cut": len(between), "arrived_while_cut": arrived,
        })
    return {
        "actions": dict(sorted(actions.items())),
        "closed_by_reason": dict(sorted(reasons.items())),
        "limit_cuts": sum(reasons[r] for r in LIMIT_REASONS),
        "cuts": cuts,
    }


def _first_start(events: EventLog) -> float:
    started = events.of("node_started")
    return float(started["t"].min()) if not started.empty else 0.0


def _reconnected(events: EventLog, a: str, b: str, name_of: dict[str, str],
                 after: float) -> tuple[float, str] | None:
    """The first connection between ``a`` and ``b`` opened after ``after`` (a cut relayed
    connection closes a moment later at both ends, so only a new one counts), and its kind."""
    opened = events.of("connection_opened")
    if opened.empty:
        return None
    later = opened[(opened["t"] > after) & opened["node"].isin([a, b])]
    for ev in later.to_dict("records"):
        other = name_of.get(ev["peer"])
        if {ev["node"], other} == {a, b}:
            return float(ev["t"]), str(ev["kind"])
    return None
