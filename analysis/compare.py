"""Compare two results folders: headline figures side by side, differences flagged.

A figure is flagged when it got worse by more than the tolerance (relative, or
absolute for ratios), so a regression between versions or settings stands out.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from p2plab.analysis.cpu import caveat

# (label, getter, higher is better, absolute tolerance instead of relative)
FIGURES: list[tuple[str, Callable[[dict[str, Any]], Any], bool, bool]] = [
    ("delivery ratio", lambda s: s["delivery"]["delivery_ratio"], True, True),
    ("latency p50 (ms)", lambda s: s["delivery"]["latency_ms"]["p50"], False, False),
    ("latency p95 (ms)", lambda s: s["delivery"]["latency_ms"]["p95"], False, False),
    ("latency p99 (ms)", lambda s: s["delivery"]["latency_ms"]["p99"], False, False),
    ("time to 90 % (ms, median)", lambda s: s.get("propagation", {}).get("t90_ms_median"),
     False, False),
    ("time to 100 % (ms, median)", lambda s: s.get("propagation", {}).get("t100_ms_median"),
     False, False),
    ("hole-punch successes", lambda s: sum(p["successes"] for p in s["hole_punch"].values()),
     True, False),
    ("time to direct (ms, max)", lambda s: max([p["time_to_direct_ms"] or 0
                                                for p in s["hole_punch"].values()] or [0]) or None,
     False, False),
    ("expectations passed", lambda s: sum(v["passed"] for v in s.get("verdicts", [])), True, False),
    ("CPU ms/message/node (p50)", lambda s: s["cpu"]["cpu_ms_per_message"]["p50"], False, False),
    ("host busy % (mean)", lambda s: s["cpu"]["host_busy_pct_mean"], False, False),
]
# Figures that CPU queueing moves: marked when either run had its host saturated.
TIMING = ("latency", "time to")


@dataclass
class Row:
    figure: str
    a: Any
    b: Any
    change: str
    regression: bool
    saturated: str = ""  # "A", "B" or "A, B": runs whose host was saturated (timing rows)


def _get(getter: Callable[[dict[str, Any]], Any], summary: dict[str, Any]) -> Any:
    try:
        return getter(summary)
    except (KeyError, TypeError, ValueError):
        return None


def compare(run_a: Path, run_b: Path, tolerance: float = 0.10) -> list[Row]:
    a = json.loads((run_a / "summary.json").read_text())
    b = json.loads((run_b / "summary.json").read_text())
    rows = []
    hot = ", ".join(name for name, summary in (("A", a), ("B", b)) if caveat(summary))
    for label, getter, higher_better, absolute in FIGURES:
        va, vb = _get(getter, a), _get(getter, b)
        if va is None or vb is None:
            rows.append(Row(label, va, vb, "n/a", va is not None and vb is None))
            continue
        diff = vb - va
        if absolute:
            worse = (-diff if higher_better else diff) > tolerance * 0.1
            change = f"{diff:+.4f}"
        else:
            rel = diff / abs(va) if va else (0.0 if diff == 0 else float("inf"))
            worse = (-rel if higher_better else rel) > tolerance
            change = f"{rel:+.1%}"
        rows.append(Row(label, va, vb, change, worse,
                        hot if label.startswith(TIMING) else ""))
    return rows


def render(rows: list[Row], run_a: Path, run_b: Path, tolerance: float) -> str:
    lines = [f"A: {run_a}", f"B: {run_b}", f"(flagged: worse by more than {tolerance:.0%}; "
             f"delivery ratio by more than {tolerance * 0.1:.3f})", "",
             f"{'figure':<28} {'A':>12} {'B':>12} {'change':>9}"]

    def fmt(v: Any) -> str:
        return "n/a" if v is None else (f"{v:.4g}" if isinstance(v, float) else str(v))

    for r in rows:
        lines.append(f"{r.figure:<28} {fmt(r.a):>12} {fmt(r.b):>12} {r.change:>9}"
                     + ("  << REGRESSION" if r.regression else "")
                     + (f"  (host saturated in {r.saturated})" if r.saturated else ""))
    if any(r.saturated for r in rows):
        lines += ["", "Timing figures marked were measured while the host was saturated: "
                  "they are partly the machine's CPU queue, not the network's."]
    return "\n".join(lines)
