"""Metrics from event logs alone: delivery, latency, connections, hole punches, pings.

Inputs are the JSON-lines logs of a results folder, read once into an ``EventLog``
(columns per event type); nothing here knows which backend ran. ``until`` cuts the logs
at the end of the timeline, so connections that close at
shutdown do not count against what the run achieved.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from p2plab.analysis.cpu import cpu_figures
from p2plab.analysis.event_log import EventLog, read_event_log
from p2plab.analysis.lab_state import LabState
from p2plab.analysis.relay_circuits import relay_circuits


def _percentile(series: pd.Series, q: float) -> float | None:
    return None if series.empty else round(float(series.quantile(q)), 3)


def pair_key(x: str, y: str) -> tuple[str, str, str]:
    """('a<->b', 'a', 'b') with the names in order: one key per unordered pair."""
    a, b = sorted((x, y))
    return f"{a}<->{b}", a, b


def node_table(events: EventLog) -> dict[str, dict[str, Any]]:
    started = events.of("node_started")
    table = {}
    for row in started.to_dict("records"):
        topics = row.get("topics")
        table[row["node"]] = {"peer_id": row["peer_id"], "role": row["role"],
                              "topic": row["topic"],
                              "topics": list(topics) if isinstance(topics, list)
                              else [row["topic"]]}
    return table


def message_outcomes(events: EventLog, nodes: dict[str, dict[str, Any]],
                     state: LabState) -> list[dict[str, Any]]:
    """Per published message: its eligible and reachable receivers and who got it when.

    Eligible: peers subscribed to its topic (not the origin) alive when it went out;
    reachable: those of them the origin could reach then (no cut link, same partition).
    """
    published = events.of("message_published")
    received = events.of("message_received")
    got_by_msg: dict[str, dict[str, float]] = {}
    mesh_by_msg: dict[str, dict[str, bool]] = {}
    if len(received):
        columns = [c for c in ("msg_id", "node", "t", "via_mesh") if c in received.columns]
        # In time order: the first copy each node got (a mask, not a copy of the frame).
        first = received.loc[~received.duplicated(["msg_id", "node"]), columns]
        for msg_id, got in first.groupby("msg_id", sort=False, observed=True):
            nodes_ = got["node"].tolist()
            got_by_msg[msg_id] = dict(zip(nodes_, got["t"].astype(float).tolist(), strict=True))
            if "via_mesh" in got.columns:
                mesh_by_msg[msg_id] = {n: v for n, v
                                       in zip(nodes_, got["via_mesh"].tolist(), strict=True)
                                       if isinstance(v, bool)}
    subscribers: dict[str, list[str]] = {}
    for name, info in nodes.items():
        if info["role"] == "peer":
            for topic in info["topics"]:
                subscribers.setdefault(topic, []).append(name)
    out = []
    has_flow = "flow" in published.columns
    # Each message id published once (the usual case): free its receptions as we go,
    # a big run has a million.
    take = got_by_msg.pop if published["msg_id"].is_unique else got_by_msg.get
    # When every subscriber of a topic had started: its latest start.
    all_up = {topic: max((state.starts.get(n, float("inf")) for n in names), default=0.0)
              for topic, names in subscribers.items()}
    for pub in published.itertuples():
        t = float(pub.t)
        if state.steady:  # nothing killed, cut or partitioned: skip the per-node checks
            names = subscribers.get(pub.topic, [])
            if t >= all_up.get(pub.topic, 0.0):
                eligible = [n for n in names if n != pub.node]
            else:
                eligible = [n for n in names if n != pub.node and state.started_by(n, t)]
            reachable = eligible
        else:
            eligible = [n for n in subscribers.get(pub.topic, []) if n != pub.node
                        and state.alive(n, t)]
            reachable = [n for n in eligible if state.reachable(pub.node, n, t)]
        got = take(pub.msg_id, {})
        flow = getattr(pub, "flow", None) if has_flow else None
        out.append({
            "msg_id": pub.msg_id, "origin": pub.node, "t": t, "topic": pub.topic,
            "flow": flow if isinstance(flow, str) else None,
            "eligible": eligible, "reachable": reachable,
            "delays_ms": {n: round((got[n] - t) * 1000.0, 3) for n in eligible if n in got},
            "via_mesh": {n: v for n, v in mesh_by_msg.get(pub.msg_id, {}).items()
                         if n in eligible},
        })
    return out


def arrivals(messages: list[dict[str, Any]]) -> dict[str, Any]:
    """How deliveries arrived, where the node can tell (``via_mesh``): pushed by a mesh
    peer, or from outside the mesh (an IWANT answer to gossip, or the publisher's flood
    publish). Gossip arrives at heartbeat pace, so a share of slow deliveries here
    points at a thin mesh rather than at the network."""
    classes: dict[str, list[float]] = {"mesh": [], "outside_mesh": [], "unknown": []}
    for m in messages:
        for node, delay in m["delays_ms"].items():
            via = m.get("via_mesh", {}).get(node)
            classes["unknown" if via is None else "mesh" if via else "outside_mesh"].append(delay)
    total = sum(len(v) for v in classes.values())
    out: dict[str, Any] = {"deliveries": total}
    for name, delays in classes.items():
        series = pd.Series(delays, dtype=float)
        out[name] = {"count": len(delays),
                     "share": round(len(delays) / total, 4) if total else None,
                     "latency_ms_p50": _percentile(series, 0.5),
                     "latency_ms_p90": _percentile(series, 0.9)}
    return out


def _delivery_figures(messages: list[dict[str, Any]]) -> dict[str, Any]:
    expected = sum(len(m["eligible"]) for m in messages)
    delivered = sum(len(m["delays_ms"]) for m in messages)
    reach_expected = sum(len(m["reachable"]) for m in messages)
    reach_delivered = sum(sum(1 for n in m["reachable"] if n in m["delays_ms"]) for m in messages)
    lat = pd.Series([d for m in messages for d in m["delays_ms"].values()], dtype=float)
    return {
        "messages_published": len(messages),
        "deliveries_expected": expected,
        "deliveries": delivered,
        "delivery_ratio": (delivered / expected) if expected else None,
        "reachable_expected": reach_expected,
        "reachable_deliveries": reach_delivered,
        "reachable_delivery_ratio": (reach_delivered / reach_expected) if reach_expected else None,
        "messages_fully_delivered": sum(1 for m in messages
                                        if len(m["delays_ms"]) >= len(m["eligible"])),
        "latency_ms": {
            "count": int(lat.size),
            "p50": _percentile(lat, 0.50),
            "p95": _percentile(lat, 0.95),
            "p99": _percentile(lat, 0.99),
            "max": None if lat.empty else round(float(lat.max()), 3),
        },
    }


def delivery(events: EventLog, messages: list[dict[str, Any]]) -> dict[str, Any]:
    """Delivery and latency over all messages, per flow, per publisher and per receiver."""
    received = events.of("message_received")
    out = _delivery_figures(messages)
    out["duplicate_receptions"] = (int(received.duplicated(["node", "msg_id"]).sum())
                                   if len(received) else 0)
    flows: dict[str, list[dict[str, Any]]] = {}
    per_publisher: dict[str, list[int]] = {}
    per_receiver: dict[str, list[int]] = {}
    for m in messages:
        flows.setdefault(m["flow"] or "(unnamed)", []).append(m)
        acc = per_publisher.setdefault(m["origin"], [0, 0])
        acc[0] += len(m["delays_ms"])
        acc[1] += len(m["eligible"])
        for n in m["eligible"]:
            r = per_receiver.setdefault(n, [0, 0])
            r[1] += 1
            r[0] += n in m["delays_ms"]
    out["per_flow"] = {name: {k: v for k, v in _delivery_figures(ms).items()}
                       for name, ms in flows.items()}
    out["per_publisher"] = {k: (g / e if e else None) for k, (g, e) in per_publisher.items()}
    out["per_receiver"] = {k: (g / e if e else None) for k, (g, e) in per_receiver.items()}
    out["per_message"] = [
        {"msg_id": m["msg_id"], "origin": m["origin"], "flow": m["flow"],
         "expected": len(m["eligible"]), "received": len(m["delays_ms"]),
         "ratio": len(m["delays_ms"]) / len(m["eligible"]) if m["eligible"] else 1.0,
         "missing": sorted(set(m["eligible"]) - set(m["delays_ms"]))}
        for m in messages]
    return out


PROPAGATION_LEVELS = (0.5, 0.9, 0.99, 1.0)


def propagation(messages: list[dict[str, Any]]) -> dict[str, Any]:
    """How long until a share of a message's subscribers have it (ms since publish).

    Per message, the time at which 50/90/99/100 % of its eligible receivers had it
    (None if never); over all messages, the median of each, and a curve: the mean share
    reached at each time since publish.
    """
    per_message = []
    delays: list[list[float]] = []
    for m in messages:
        n = len(m["eligible"])
        if not n:
            continue
        times = sorted(m["delays_ms"].values())
        delays.append(times + [float("inf")] * (n - len(times)))
        entry: dict[str, Any] = {"msg_id": m["msg_id"]}
        for level in PROPAGATION_LEVELS:
            k = max(1, int(-(-level * n // 1)))  # ceil, at least one receiver
            entry[f"t{int(level * 100)}_ms"] = round(times[k - 1], 3) if len(times) >= k else None
        per_message.append(entry)
    summary: dict[str, Any] = {"messages": len(per_message)}
    for level in PROPAGATION_LEVELS:
        key = f"t{int(level * 100)}_ms"
        values = [m[key] for m in per_message if m[key] is not None]
        # A message that never reached the level counts as infinitely slow in the median.
        ranked = sorted(values) + [float("inf")] * (len(per_message) - len(values))
        median = ranked[(len(ranked) - 1) // 2] if ranked else None
        summary[f"{key}_median"] = (round(float(median), 3) if median is not None
                                    and median != float("inf") else None)
        summary[f"{key}_reached"] = len(values)
    finite = [t for d in delays for t in d if t != float("inf")]
    horizon = max(finite) * 1.05 if finite else 1.0
    grid = [horizon * i / 100 for i in range(101)]
    curve = _mean_share_curve(delays, grid)
    summary["curve"] = {"t_ms": [round(x, 3) for x in grid], "share": [round(c, 4) for c in curve]}
    summary["per_message"] = per_message
    return summary


def _mean_share_curve(delays: list[list[float]], grid: list[float]) -> list[float]:
    if not delays:
        return [0.0 for _ in grid]
    import bisect

    sorted_delays = [sorted(d) for d in delays]
    return [sum(bisect.bisect_right(d, x) / len(d) for d in sorted_delays) / len(sorted_delays)
            for x in grid]


def connection_mix(events: EventLog, nodes: dict[str, dict[str, Any]], until: float | None,
                   step_s: float = 0.5) -> dict[str, Any]:
    """Open direct and relayed connections between nodes over time (each pair once)."""
    by_peer = {info["peer_id"]: name for name, info in nodes.items()}
    conn = events.of("connection_opened", "connection_closed")
    span = events.time_span()
    if conn.empty or span is None:
        return {"t_s": [], "direct": [], "relayed": []}
    start = span[0]
    end = until if until is not None else span[1]
    # Counted as events go: connections open per (a, b, kind, address), connections
    # open per (a, b, kind), and pairs with at least one open, per kind.
    open_: dict[tuple[str, str, str, str], int] = {}
    per_pair: dict[tuple[str, str, str], int] = {}
    pairs_open = {"direct": 0, "relayed": 0}
    samples: dict[str, list[float]] = {"t_s": [], "direct": [], "relayed": []}
    columns = [conn[c].tolist() for c in ("t", "node", "peer", "kind", "remote_addr", "type")]
    rows = list(zip(*columns, strict=True))
    i = 0
    t = start
    while t <= end + 1e-9:
        while i < len(rows) and rows[i][0] <= t:
            _, node, peer, kind, addr, type_ = rows[i]
            a, b = sorted((node, by_peer.get(peer, peer)))
            key = (a, b, kind, addr)
            before = open_.get(key, 0)
            after = before + (1 if type_ == "connection_opened" else -1)
            open_[key] = after
            if (before > 0) != (after > 0):
                pair = (a, b, kind)
                count = per_pair.get(pair, 0) + (1 if after > 0 else -1)
                per_pair[pair] = count
                if kind in pairs_open and count in (0, 1) and (count == 1) == (after > 0):
                    pairs_open[kind] += 1 if count == 1 else -1
            i += 1
        for kind in ("direct", "relayed"):
            samples[kind].append(pairs_open[kind])
        samples["t_s"].append(round(t - start, 3))
        t += step_s
    return samples


def recovery(messages: list[dict[str, Any]], state: LabState) -> list[dict[str, Any]]:
    """For each fault the timeline applied: how long until a message published after it
    reached every subscriber that was alive and reachable (the network works again),
    and how many messages published after it fell short before then."""
    out = []
    for fault in state.faults:
        t = fault["t"]
        after = [m for m in messages if m["t"] > t and m["reachable"]]
        recovered = None
        short = 0
        for m in after:
            if all(n in m["delays_ms"] for n in m["reachable"]):
                done = m["t"] + max((m["delays_ms"][n] for n in m["reachable"]), default=0) / 1000
                recovered = round((done - t) * 1000, 1)
                break
            short += 1
        out.append({"fault": f"{fault['action']} {', '.join(fault['targets'][:4])}"
                    + (" ..." if len(fault["targets"]) > 4 else ""),
                    "action": fault["action"], "t": t, "recovery_ms": recovered,
                    "messages_after": len(after), "short_before_recovery": short})
    return out


def connections(events: EventLog, nodes: dict[str, dict[str, Any]],
                until: float | None) -> dict[str, Any]:
    """Per pair of peers: what was open at the end of the timeline, and what ever opened."""
    by_peer_id = {info["peer_id"]: name for name, info in nodes.items()}
    conn = events.of("connection_opened", "connection_closed")
    if until is not None:
        conn = conn[conn["t"] <= until]
    pairs: dict[str, dict[str, Any]] = {}
    open_now: dict[tuple[str, str], list[tuple[str, str]]] = {}
    columns = ("t", "node", "type", "peer", "remote_addr", "kind")
    for values in zip(*(conn[c].tolist() for c in columns), strict=True):
        ev = dict(zip(columns, values, strict=True))
        other = by_peer_id.get(ev["peer"])
        if other is None:
            continue
        key, a, b = pair_key(ev["node"], other)
        pair = pairs.setdefault(key, {"nodes": [a, b], "ever": [], "first_opened": {}})
        side = (ev["node"], other)
        entry = (ev["remote_addr"], ev["kind"])
        if ev["type"] == "connection_opened":
            open_now.setdefault(side, []).append(entry)
            if ev["kind"] not in pair["ever"]:
                pair["ever"].append(ev["kind"])
            pair["first_opened"].setdefault(ev["kind"], float(ev["t"]))
        elif entry in open_now.get(side, []):
            open_now[side].remove(entry)
    for pair in pairs.values():
        a, b = pair["nodes"]
        kinds = {k for side in ((a, b), (b, a)) for _, k in open_now.get(side, [])}
        pair["final"] = "direct" if "direct" in kinds else (
            "relayed" if "relayed" in kinds else "none")
        pair["transports"] = sorted(
            {e for side in ((a, b), (b, a)) for e, _ in open_now.get(side, [])}
        )
    return pairs


def hole_punches(events: EventLog, nodes: dict[str, dict[str, Any]],
                 pairs: dict[str, Any]) -> dict[str, Any]:
    """Attempts and successes per pair; time from the relayed connection to direct."""
    by_peer_id = {info["peer_id"]: name for name, info in nodes.items()}
    punches = events.of("hole_punch")
    result: dict[str, Any] = {}
    for ev in punches.to_dict("records"):
        other = by_peer_id.get(ev["peer"])
        if other is None:
            continue
        key, a, b = pair_key(ev["node"], other)
        entry = result.setdefault(key, {"nodes": [a, b], "attempts": 0, "successes": 0,
                                        "failures": [], "first_success_t": None})
        # Both sides report the same punch; count the initiator's view only.
        if ev.get("role") not in (None, "initiator"):
            continue
        entry["attempts"] += 1
        if ev["outcome"] == "success":
            entry["successes"] += 1
            if entry["first_success_t"] is None:
                entry["first_success_t"] = float(ev["t"])
        else:
            entry["failures"].append({"attempt": int(ev["attempt"]), "reason": ev["reason"],
                                      "transport": ev["transport"]})
    for key, entry in result.items():
        relayed_at = pairs.get(key, {}).get("first_opened", {}).get("relayed")
        direct_at = pairs.get(key, {}).get("first_opened", {}).get("direct")
        entry["outcome"] = "success" if entry["successes"] else "failure"
        # DCUtR's initiator said it failed, yet a direct connection opened after the
        # relayed one: the responder's dial got in (rust-libp2p's initiator waits for its
        # own attempt only), or a plain dial did. Told apart from a failure that left the
        # pair relayed (go-libp2p#2103 asks the same: a punch from a reversal).
        entry["direct_anyway"] = (entry["outcome"] == "failure" and relayed_at is not None
                                  and direct_at is not None and direct_at > relayed_at)
        entry["time_to_direct_ms"] = (
            round((direct_at - relayed_at) * 1000, 1)
            if relayed_at is not None and direct_at is not None and direct_at > relayed_at
            else None
        )
        entry.pop("first_success_t")
    return result


def pings(events: EventLog) -> dict[str, Any]:
    ping = events.of("ping")
    ok = (ping[ping["outcome"] == "ok"]["rtt_ms"].astype(float) if not ping.empty
          else pd.Series(dtype=float))
    return {
        "count": len(ping),
        "failed": int((ping["outcome"] != "ok").sum()) if not ping.empty else 0,
        "rtt_ms_p50": _percentile(ok, 0.5),
        "rtt_ms_max": None if ok.empty else round(float(ok.max()), 3),
    }


def startup(events: EventLog, run_started: float | None,
            spawned: dict[str, float] | None) -> dict[str, Any]:
    """Seconds from process spawn to node_started, per node, and until all were ready."""
    started = events.of("node_started")
    if started.empty or run_started is None:
        return {}
    per_node = {row["node"]: round(float(row["t"]) - spawned[row["node"]], 3)
                for row in started.to_dict("records") if spawned and row["node"] in spawned}
    out: dict[str, Any] = {"all_ready_s": round(float(started["t"].max()) - run_started, 3)}
    if per_node:
        out["node_startup_s"] = per_node
        out["node_startup_s_max"] = max(per_node.values())
    return out


def summarize(events_dir: Path, until: float | None = None,
              run_started: float | None = None,
              spawned: dict[str, float] | None = None,
              events: EventLog | None = None) -> dict[str, Any]:
    """Every figure of a run from its events (read from ``events_dir`` unless given)."""
    if events is None:
        events = read_event_log(events_dir)
    torn = events.torn
    nodes = node_table(events)
    pairs = connections(events, nodes, until)
    state = LabState.from_events(events)
    messages = message_outcomes(events, nodes, state)
    return {
        "torn_lines": torn,
        "nodes": nodes,
        "delivery": delivery(events, messages),
        "arrivals": arrivals(messages),
        "propagation": propagation(messages),
        "connection_mix": connection_mix(events, nodes, until),
        "recovery": recovery(messages, state),
        "connections": {k: {kk: vv for kk, vv in v.items() if kk != "first_opened"}
                        for k, v in pairs.items()},
        "hole_punch": hole_punches(events, nodes, pairs),
        "ping": pings(events),
        "startup": startup(events, run_started, spawned),
        "cpu": cpu_figures(events, messages),
        "mesh": mesh_sizes(events, nodes, messages),
        "relay_circuits": relay_circuits(events, nodes, messages),
        "relay_reservations": [
            {"node": r["node"], "outcome": r["outcome"], "elapsed_ms": r["elapsed_ms"]}
            for r in events.of("relay_reservation").to_dict("records")
        ],
    }


def mesh_sizes(events: EventLog, nodes: dict[str, dict[str, Any]],
               messages: list[dict[str, Any]]) -> dict[str, Any]:
    """Gossipsub mesh size of each chatting node on its first topic, over time (from
    its topic_peers events): a node with a mesh below D_lo gets messages late, by
    IHAVE/IWANT at heartbeat pace, or not at all."""
    rows = events.of("topic_peers")
    if "mesh" not in rows.columns:
        return {}
    series: dict[str, list[tuple[float, int]]] = {}
    for r in rows.itertuples():
        info = nodes.get(r.node)
        if info is None or r.topic != info["topic"] or not isinstance(r.mesh, list):
            continue
        series.setdefault(r.node, []).append((float(r.t), len(r.mesh)))
    if not series:
        return {}

    def size_at(node: str, t: float) -> int:
        before = [n for tt, n in series[node] if tt <= t]
        return before[-1] if before else 0

    first = min((m["t"] for m in messages), default=None)
    at_traffic = {n: size_at(n, first) for n in series} if first is not None else {}
    end = max(t for points in series.values() for t, _ in points)
    return {
        "first_publish_t": first,
        "at_first_publish": at_traffic,
        "at_first_publish_min": min(at_traffic.values()) if at_traffic else None,
        "at_first_publish_median": (float(pd.Series(list(at_traffic.values())).median())
                                    if at_traffic else None),
        "nodes_without_mesh_at_first_publish": sorted(n for n, k in at_traffic.items() if k == 0),
        "at_end": {n: size_at(n, end) for n in series},
        "series": {n: [[round(t, 3), k] for t, k in points] for n, points in series.items()},
    }
