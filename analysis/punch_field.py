"""A run's hole punches as a population, beside a published field campaign's figures
(scenario field ``punch_reference``): success rate with a 95 % interval, the share of
successes on the first DCUtR run, TCP against QUIC where only one was common, and the
transport a pair ended on where both were.

The figures are measured the campaign's way where the lab can: the campaign's clients
were limited to TCP or QUIC by filter (so its TCP and QUIC rates come from single-
transport attempts), and its final-transport share from unfiltered ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from p2plab.analysis.event_log import EventLog
from p2plab.analysis.metrics import pair_key
from p2plab.analysis.punch_theory import Side

Z95 = 1.959964  # the normal quantile of a two-sided 95 % interval


@dataclass(frozen=True)
class Published:
    """One figure of a campaign, with where it was read."""

    figure: str
    value: str
    source: str


REFERENCES: dict[str, tuple[Published, ...]] = {
    "dcutr-campaign-2025": (
        Published("success rate", "70 % ± 7.1 %",
                  "Trautwein et al., arXiv 2510.27500 (2025), abstract: 4.4 M attempts "
                  "from 85,000+ networks, conditional on a relay reservation"),
        Published("successes on the first attempt", "97.6 %", "ibid., abstract"),
        Published("TCP success (TCP-only attempts)", "~70 %",
                  "ibid.: TCP and QUIC statistically indistinguishable"),
        Published("QUIC success (QUIC-only attempts)", "~70 %", "ibid."),
        Published("final transport QUIC (both allowed)", "~81 %",
                  "probe-lab/network-measurements rfm15-nat-hole-punching.md (Dec 2022 "
                  "campaign)"),
    ),
}
SUCCESS_RANGE = {"dcutr-campaign-2025": (0.629, 0.771)}


def wilson_interval(successes: int, trials: int) -> tuple[float, float]:
    """The Wilson score interval at 95 %: unlike the normal approximation it stays
    inside [0, 1] and holds for small samples and rates near 0 or 1."""
    if trials == 0:
        return (0.0, 1.0)
    p = successes / trials
    centre = (p + Z95**2 / (2 * trials)) / (1 + Z95**2 / trials)
    half = (Z95 / (1 + Z95**2 / trials)) * math.sqrt(
        p * (1 - p) / trials + Z95**2 / (4 * trials**2))
    return (max(0.0, centre - half), min(1.0, centre + half))


def _rate(successes: int, trials: int) -> dict[str, Any]:
    low, high = wilson_interval(successes, trials)
    return {"successes": successes, "attempts": trials,
            "rate": round(successes / trials, 4) if trials else None,
            "ci95": [round(low, 4), round(high, 4)]}


def punch_population(events: EventLog, nodes: dict[str, dict[str, Any]],
                     sides: dict[str, Side], reference: str) -> dict[str, Any]:
    """The population's figures from the initiators' ``hole_punch`` events (one per
    DCUtR run; the library's own retries within a run are not told apart)."""
    by_peer_id = {info["peer_id"]: name for name, info in nodes.items()}
    punches = events.of("hole_punch")
    attempts = successes = first = 0
    by_common: dict[str, list[int]] = {"tcp": [0, 0], "quic": [0, 0], "both": [0, 0]}
    final: dict[str, int] = {}
    pairs: set[str] = set()
    for ev in punches.to_dict("records") if not punches.empty else []:
        other = by_peer_id.get(ev["peer"])
        if other is None:
            continue
        pairs.add(pair_key(ev["node"], other)[0])
        if ev.get("role") not in (None, "initiator"):
            continue
        a, b = sides.get(ev["node"]), sides.get(other)
        if a is None or b is None:
            continue
        common = ("both" if a.tcp and b.tcp and a.quic and b.quic else
                  "quic" if a.quic and b.quic and not (a.tcp and b.tcp) else "tcp")
        success = ev["outcome"] == "success"
        attempts += 1
        successes += success
        first += success and int(ev["attempt"]) == 1
        by_common[common][0] += success
        by_common[common][1] += 1
        if success and common == "both":
            final[ev["transport"]] = final.get(ev["transport"], 0) + 1
    both_successes = sum(final.values())
    low, high = SUCCESS_RANGE[reference]
    overall = _rate(successes, attempts)
    return {
        "reference": reference,
        "published": [vars(p) for p in REFERENCES[reference]],
        "pairs": len(pairs),
        "success": overall,
        "first_attempt_share": round(first / successes, 4) if successes else None,
        "by_transport": {k: _rate(s, n) for k, (s, n) in by_common.items()},
        "final_transport_quic_share": (round(final.get("quic", 0) / both_successes, 4)
                                       if both_successes else None),
        "overlaps_published_range": (overall["rate"] is not None
                                   and overall["ci95"][0] <= high
                                   and overall["ci95"][1] >= low),
    }
