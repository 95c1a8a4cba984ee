"""Machine load from the lab's ``cpu`` events: who used the CPU, how much per message,
when the host was saturated, and which messages were in flight then.

A figure measured while the host was saturated (latency, propagation, recovery) is the
machine's as much as the network's: the summary says how many messages were in flight
during saturation, and verdicts, JUnit and ``compare`` carry that caveat.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from p2plab.analysis.event_log import EventLog

# Busy share of all cores at or above which a one-second sample counts as saturated.
SATURATED_PCT = 90.0
# Per-node CPU before the traffic, over this many seconds, is its idle rate.
IDLE_WINDOW_S = 5.0
# Traffic shorter than this gives no per-message CPU figure (see _per_message).
MIN_TRAFFIC_S = 3.0


def _cumulative_at(samples: list[tuple[float, dict[str, float]]], key: str, t: float) -> float:
    """A process's cumulative CPU at time ``t``, interpolated between samples."""
    before = [(st, s[key]) for st, s in samples if st <= t and s.get(key) is not None]
    after = [(st, s[key]) for st, s in samples if st >= t and s.get(key) is not None]
    if not before:
        return float(after[0][1]) if after else 0.0
    if not after:
        return float(before[-1][1])
    (t0, v0), (t1, v1) = before[-1], after[0]
    return float(v0) if t1 == t0 else float(v0) + (float(v1) - float(v0)) * (t - t0) / (t1 - t0)


def saturated_intervals(samples: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Merged [start, end] spans of samples at or above SATURATED_PCT busy; each sample
    covers the second before it."""
    spans: list[tuple[float, float]] = []
    previous = None
    for t, busy in samples:
        start = previous if previous is not None else t - 1.0
        if busy >= SATURATED_PCT:
            if spans and abs(spans[-1][1] - start) < 1e-6:
                spans[-1] = (spans[-1][0], t)
            else:
                spans.append((start, t))
        previous = t
    return spans


def cpu_figures(events: EventLog, messages: list[dict[str, Any]]) -> dict[str, Any]:
    """Empty when the run has no CPU samples (the simulator, or an older run)."""
    rows = events.of("cpu")
    if len(rows):
        rows = rows[rows["node"] == "_lab"]
    if len(rows) < 2:
        return {}
    samples = [(float(r.t), dict(r.cpu_s)) for r in rows.itertuples()]
    busy = [(float(r.t), float(r.host["busy_pct"])) for r in rows.itertuples()]
    cores = int(rows.iloc[-1]["cores"])
    t0, t1 = samples[0][0], samples[-1][0]
    wall = max(t1 - t0, 1e-9)
    keys = sorted({k for _, s in samples for k in s})
    used = {k: round(_cumulative_at(samples, k, t1) - _cumulative_at(samples, k, t0), 3)
            for k in keys}
    share = {k: round(100.0 * v / (wall * cores), 2) for k, v in used.items()}
    groups: dict[str, dict[str, float]] = {}
    for key, seconds in used.items():
        group = {"node": "nodes", "router": "routers", "link": "link stages"}.get(
            key.split(":", 1)[0], key)
        entry = groups.setdefault(group, {"cpu_s": 0.0, "share_pct": 0.0})
        entry["cpu_s"] = round(entry["cpu_s"] + seconds, 3)
        entry["share_pct"] = round(entry["share_pct"] + share[key], 2)
    spans = saturated_intervals(busy)
    saturated_s = sum(b - a for a, b in spans)
    host = [r.host for r in rows.itertuples()]
    out: dict[str, Any] = {
        "cores": cores, "t0": t0, "sampled_s": round(wall, 1), "samples": len(samples),
        "host_busy_pct_mean": round(sum(b for _, b in busy) / len(busy), 1),
        "host_busy_pct_max": max(b for _, b in busy),
        "host_softirq_pct_mean": round(sum(h.get("softirq_pct", 0.0) for h in host) / len(host), 1),
        "groups": groups,
        "share_pct": share,
        "cpu_s": used,
        "saturated": {
            "threshold_pct": SATURATED_PCT,
            "intervals": [[round(a, 3), round(b, 3)] for a, b in spans],
            "seconds": round(saturated_s, 1),
            "fraction_of_run": round(saturated_s / wall, 3),
        },
        "busy_curve": [[round(t - t0, 2), b] for t, b in busy],
    }
    out.update(_per_message(samples, keys, messages))
    out["saturated"].update(_in_flight(messages, spans))
    return out


def _per_message(samples: list[tuple[float, dict[str, float]]], keys: list[str],
                 messages: list[dict[str, Any]]) -> dict[str, Any]:
    """CPU-ms per message per node over the traffic (first publish to last delivery),
    less what the node used at rest just before it."""
    if not messages:
        return {}
    start = min(m["t"] for m in messages)
    end = max(m["t"] + max(m["delays_ms"].values(), default=0.0) / 1000.0 for m in messages)
    end = max(end, start + 1.0)
    idle_from = start - IDLE_WINDOW_S
    has_idle = sum(1 for t, _ in samples if idle_from <= t <= start) >= 2
    per_node: dict[str, float] = {}
    for key in keys:
        if not key.startswith("node:"):
            continue
        busy = _cumulative_at(samples, key, end) - _cumulative_at(samples, key, start)
        idle = 0.0
        if has_idle:
            rate = (_cumulative_at(samples, key, start)
                    - _cumulative_at(samples, key, idle_from)) / IDLE_WINDOW_S
            idle = rate * (end - start)
        per_node[key.split(":", 1)[1]] = round(max(0.0, busy - idle) * 1000.0 / len(messages), 3)
    values = pd.Series(list(per_node.values()), dtype=float)
    # Samples come once a second: over a shorter burst of traffic, or when no node used
    # more than at rest, the difference is noise, and 0.0 ms would read as a measurement.
    unmeasured = (f"the traffic lasted {end - start:.1f} s; CPU is sampled once a second, "
                  f"so the figure needs {MIN_TRAFFIC_S:g} s or more"
                  if end - start < MIN_TRAFFIC_S else
                  "no node used more CPU during the traffic than at rest before it"
                  if not values.empty and float(values.max()) <= 0.0 else None)
    shown = None if values.empty or unmeasured else values
    return {"cpu_ms_per_message": {
        "messages": len(messages), "window_s": round(end - start, 2), "idle_subtracted": has_idle,
        "per_node": per_node if shown is not None else {},
        "p50": None if shown is None else round(float(shown.median()), 3),
        "max": None if shown is None else round(float(shown.max()), 3),
        "all_nodes": None if shown is None else round(float(shown.sum()), 3),
        "unmeasured": unmeasured,
    }}


def _in_flight(messages: list[dict[str, Any]], spans: list[tuple[float, float]]) -> dict[str, Any]:
    """Messages whose way through the network (publish to last delivery) overlapped a
    saturated interval: their latency and propagation are partly the machine's."""
    hit = 0
    for m in messages:
        a = m["t"]
        b = a + max(m["delays_ms"].values(), default=0.0) / 1000.0
        if any(a <= hi and lo <= b for lo, hi in spans):
            hit += 1
    return {"messages_in_flight": hit, "messages": len(messages)}


def caveat(summary: dict[str, Any]) -> str:
    """One sentence for a timing figure measured while the host was saturated, or ''."""
    sat = (summary.get("cpu") or {}).get("saturated") or {}
    hit, total = sat.get("messages_in_flight", 0), sat.get("messages", 0)
    if not hit:
        return ""
    return (f"host saturated (>= {sat['threshold_pct']:g} % busy) for {sat['seconds']} s; "
            f"{hit} of {total} messages in flight then")
