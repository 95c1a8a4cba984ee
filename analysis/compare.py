"""Compare two results folders: headline figures side by side, differences flagged.

A figure is flagged when it got worse by more than the tolerance (relative, or
absolute for ratios), so a regression between versions or settings stands out.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
import pandas as pd

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # after the backend is chosen
from p2plab.analysis.cpu import caveat
from p2plab.analysis.event_log import read_event_log
from p2plab.analysis.headline import FIGURES
from p2plab.analysis.pages import render_page
from p2plab.analysis.plots import png_base64
from p2plab.analysis.tables import build_tables

from p2plab.files import write_atomic

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


def compare(run_a: Path, run_b: Path, tolerance: float = 0.10) -> list[Row]:
    a = json.loads((run_a / "summary.json").read_text())
    b = json.loads((run_b / "summary.json").read_text())
    rows = []
    hot = ", ".join(name for name, summary in (("A", a), ("B", b)) if caveat(summary))
    for figure in FIGURES:
        label, higher_better, absolute = figure.label, figure.higher_is_better, figure.absolute
        va, vb = figure.of(a), figure.of(b)
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


def _latencies(run: Path) -> list[float]:
    """First-copy latencies (ms) of a run, from its deliveries table (or its events)."""
    table = run / "tables" / "deliveries.csv"
    if table.exists():
        frame = pd.read_csv(table, usecols=lambda c: c in ("latency_ms", "duplicate"))
    elif (run / "events").is_dir():
        frame = build_tables(read_event_log(run / "events"))["deliveries"]
    else:
        return []
    if "duplicate" in frame:
        frame = frame[~frame["duplicate"].astype(bool)]
    return sorted(frame["latency_ms"].dropna().astype(float).tolist())


def _overlay_png(run_a: Path, run_b: Path, a: dict[str, Any], b: dict[str, Any]) -> str:
    """Both runs' propagation curves and latency CDFs, side by side, as base64 PNG."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8), dpi=100)
    for name, run, summary in (("A", run_a, a), ("B", run_b, b)):
        curve = summary.get("propagation", {}).get("curve") or {}
        if curve.get("t_ms"):
            left.plot(curve["t_ms"], [100 * v for v in curve["share"]],
                      label=f"{name}: {run.name}")
        latencies = _latencies(run)
        if latencies:
            right.plot(latencies, [100 * (i + 1) / len(latencies) for i in range(len(latencies))],
                       label=f"{name}: {run.name}")
    left.set(xlabel="ms since publishing", ylabel="% of subscribers reached (mean)",
             title="propagation")
    right.set(xlabel="latency (ms, first copies)", ylabel="% of deliveries", title="latency CDF")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7)
    return png_base64(fig)


def write_page(rows: list[Row], run_a: Path, run_b: Path, tolerance: float, out: Path) -> None:
    """``compare.html``: the figures table and both runs' curves overlaid, one file."""
    a = json.loads((run_a / "summary.json").read_text())
    b = json.loads((run_b / "summary.json").read_text())
    write_atomic(out, render_page("compare.html.j2", run_a=run_a, run_b=run_b, rows=rows,
                                  tolerance=tolerance, image=_overlay_png(run_a, run_b, a, b),
                                  status_a=a.get("status"), status_b=b.get("status")))
