"""A run's headline figures, read from its summary.json: what ``compare`` sets side by
side and what a sweep tabulates and plots, named once."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Figure:
    key: str  # a column name (sweep.csv)
    label: str  # for people (compare, sweep.html)
    get: Callable[[dict[str, Any]], Any]
    higher_is_better: bool
    absolute: bool  # compare: an absolute tolerance (ratios) instead of a relative one

    def of(self, summary: dict[str, Any]) -> Any:
        """The figure, or None where the run has none (no pings, no hole punch, ...)."""
        try:
            value = self.get(summary)
        except (KeyError, TypeError, ValueError, ZeroDivisionError):
            return None
        return value


def _punch_rate(s: dict[str, Any]) -> float | None:
    attempts = sum(p["attempts"] for p in s["hole_punch"].values())
    return sum(p["successes"] for p in s["hole_punch"].values()) / attempts if attempts else None


FIGURES: list[Figure] = [
    Figure("delivery_ratio", "delivery ratio", lambda s: s["delivery"]["delivery_ratio"],
           True, True),
    Figure("latency_p50_ms", "latency p50 (ms)", lambda s: s["delivery"]["latency_ms"]["p50"],
           False, False),
    Figure("latency_p95_ms", "latency p95 (ms)", lambda s: s["delivery"]["latency_ms"]["p95"],
           False, False),
    Figure("latency_p99_ms", "latency p99 (ms)", lambda s: s["delivery"]["latency_ms"]["p99"],
           False, False),
    Figure("t50_ms", "time to 50 % (ms, median)",
           lambda s: s["propagation"]["t50_ms_median"], False, False),
    Figure("t90_ms", "time to 90 % (ms, median)",
           lambda s: s["propagation"]["t90_ms_median"], False, False),
    Figure("t100_ms", "time to 100 % (ms, median)",
           lambda s: s["propagation"]["t100_ms_median"], False, False),
    Figure("punch_successes", "hole-punch successes",
           lambda s: sum(p["successes"] for p in s["hole_punch"].values()), True, False),
    Figure("punch_success_rate", "hole-punch success rate", _punch_rate, True, True),
    Figure("time_to_direct_ms", "time to direct (ms, max)",
           lambda s: max([p["time_to_direct_ms"] or 0
                          for p in s["hole_punch"].values()] or [0]) or None, False, False),
    Figure("expectations_passed", "expectations passed",
           lambda s: sum(v["passed"] for v in s.get("verdicts", [])), True, False),
    Figure("cpu_ms_per_message_p50", "CPU ms/message/node (p50)",
           lambda s: s["cpu"]["cpu_ms_per_message"]["p50"], False, False),
    Figure("host_busy_pct_mean", "host busy % (mean)",
           lambda s: s["cpu"]["host_busy_pct_mean"], False, False),
]


def headline(summary: dict[str, Any]) -> dict[str, Any]:
    """Every figure of one run by key (None where it has none)."""
    return {figure.key: figure.of(summary) for figure in FIGURES}
