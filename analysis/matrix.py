"""The hole-punch grid: cell outcomes from lab summaries, compared with theory, and
rendered as CSV, JSON, a PNG grid and a self-contained HTML page with a legend."""

from __future__ import annotations

import base64
import csv
import json
from pathlib import Path
from statistics import median
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.colors import ListedColormap
from matplotlib.patches import Patch
from p2plab.analysis.metrics import pair_key
from p2plab.analysis.pages import render_page
from p2plab.topology.matrix import Cell, MatrixFile, split_pair, theory
from p2plab.topology.nat import PRESETS, resolve

from p2plab.files import write_atomic

OUTCOMES = ("direct", "relayed", "failed")
COLOURS = {"direct": "#2e9d4f", "relayed": "#e8a33d", "failed": "#c8453b"}
QUIC_CAUSE = ("py-libp2p 0.8.1's DCUtR predicts only TCP addresses, so a QUIC punch "
              "never gets a usable address")


def cell_results(cells: list[Cell], summary: dict[str, Any], lab: str) -> list[dict[str, Any]]:
    rows = []
    for c in cells:
        key = pair_key(c.node_a, c.node_b)[0]
        conn = summary["connections"].get(key, {})
        punch = summary["hole_punch"].get(key, {})
        ever = conn.get("ever", [])
        outcome = "direct" if "direct" in ever else ("relayed" if "relayed" in ever else "failed")
        expected = theory(c.a, c.b, c.transport)
        reasons = sorted({f["reason"] for f in punch.get("failures", []) if f.get("reason")})
        row = {
            "a": c.a, "b": c.b, "transport": c.transport, "impls": c.impls, "outcome": outcome,
            "theory": expected, "agrees": outcome == expected,
            "time_to_direct_ms": punch.get("time_to_direct_ms"),
            "attempts": punch.get("attempts", 0), "successes": punch.get("successes", 0),
            "reasons": "; ".join(reasons)[:300], "lab": lab, "nodes": f"{c.node_a},{c.node_b}",
        }
        row["known_cause"] = (QUIC_CAUSE if not row["agrees"] and c.transport == "quic"
                              and "py" in (c.impl_a.partition("@")[0], c.impl_b.partition("@")[0])
                              and expected == "direct" and outcome == "relayed" else "")
        rows.append(row)
    return rows


def _panels(rows: list[dict[str, Any]], transports: list[str]) -> list[tuple[str, str]]:
    """(implementation pair, transport) of each grid, in the matrix's order."""
    impls = list(dict.fromkeys(r["impls"] for r in rows))
    return [(i, t) for i in impls for t in transports]


def _grid(rows: list[dict[str, Any]], presets: list[str], transport: str,
          impls: str) -> list[list[str]]:
    grid = [["" for _ in presets] for _ in presets]
    for r in rows:
        if r["transport"] != transport or r["impls"] != impls:
            continue
        i, j = presets.index(r["a"]), presets.index(r["b"])
        grid[i][j] = r["outcome"]
        if not grid[j][i]:  # one direction only: the grid shows it both ways round
            grid[j][i] = r["outcome"]
    return grid


def render_png(rows: list[dict[str, Any]], presets: list[str], transports: list[str],
               path: Path, meta: dict[str, Any]) -> None:
    panels = _panels(rows, transports)
    n_impls = len(panels) // len(transports)
    fig, axes = plt.subplots(n_impls, len(transports),
                             figsize=(6.2 * len(transports), 6.4 * n_impls), squeeze=False)
    cmap = ListedColormap([COLOURS[o] for o in OUTCOMES] + ["#dddddd"])
    for ax, (impls, transport) in zip(axes.flat, panels, strict=False):
        grid = _grid(rows, presets, transport, impls)
        values = [[OUTCOMES.index(v) if v in OUTCOMES else 3 for v in row] for row in grid]
        ax.imshow(values, cmap=cmap, vmin=0, vmax=3)
        by_key = {(r["a"], r["b"]): r for r in rows
                  if r["transport"] == transport and r["impls"] == impls}
        for i, a in enumerate(presets):
            for j, b in enumerate(presets):
                r = by_key.get((a, b)) or by_key.get((b, a))
                if r is None:
                    continue
                label = r["outcome"]
                if r["time_to_direct_ms"]:
                    label += "\n" + _duration(r["time_to_direct_ms"])
                if not r["agrees"]:
                    label += "\n≠ theory" + ("*" if r["known_cause"] else " (!)")
                ax.text(j, i, label, ha="center", va="center", fontsize=7, color="white")
        ax.set_xticks(range(len(presets)), presets, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(len(presets)), presets, fontsize=8)
        dialled, dialling = split_pair(impls)
        ax.set_title(f"{transport.upper()}, {dialled} dialled by {dialling}: outcome per NAT pair")
        ax.set_xlabel(f"NAT of the dialling node ({dialling})")
        ax.set_ylabel(f"NAT of the dialled node ({dialled})")
    height = fig.get_figheight()  # margins in inches, whatever the number of grids
    fig.suptitle(f"Hole punching through emulated NATs — backend {meta['backend']}, "
                 f"libp2p {meta['libp2p_version']}, seed {meta['seed']}", y=1 - 0.15 / height)
    fig.legend(handles=[Patch(color=COLOURS[o], label=o) for o in OUTCOMES],
               loc="upper center", bbox_to_anchor=(0.5, 1 - 0.4 / height), ncol=3)
    if any(r["known_cause"] for r in rows):
        fig.text(0.5, 0.12 / height, "* disagrees with theory for a known reason: "
                 + QUIC_CAUSE, ha="center", fontsize=8)
    fig.tight_layout(rect=(0, 0.35 / height, 1, 1 - 0.85 / height))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _figures(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for impls, transport in sorted({(r["impls"], r["transport"]) for r in rows}):
        mine = [r for r in rows if r["transport"] == transport and r["impls"] == impls]
        times = [r["time_to_direct_ms"] for r in mine if r["time_to_direct_ms"]]
        out[transport if impls == "py-py" and len({r["impls"] for r in rows}) == 1
            else f"{impls} {transport}"] = {
            "cells": len(mine),
            **{o: sum(r["outcome"] == o for r in mine) for o in OUTCOMES},
            "median_time_to_direct_ms": round(median(times), 1) if times else None,
            "disagree_with_theory": sum(not r["agrees"] for r in mine),
        }
    return out


def write_matrix_report(out: Path, matrix: MatrixFile, rows: list[dict[str, Any]],
                        meta: dict[str, Any]) -> dict[str, Any]:
    presets = matrix.matrix.presets
    transports: list[str] = list(matrix.matrix.transports)
    with open(out / "matrix.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    figures = _figures(rows)
    unexplained = [r for r in rows if not r["agrees"] and not r["known_cause"]]
    summary = {**meta, "figures": figures, "passed": not unexplained,
               "unexplained_disagreements": unexplained,
               "version_changes": version_changes(rows)}
    write_atomic(out / "matrix.json", json.dumps({"summary": summary, "cells": rows}, indent=2))
    render_png(rows, presets, transports, out / "matrix.png", meta)
    write_atomic(out / "matrix.html", _html(rows, presets, transports, summary, out / "matrix.png"))
    return summary


def _sides(row: dict[str, Any]) -> frozenset[tuple[str, str]]:
    """Which implementation (by name, not version) sits behind which NAT preset."""
    dialled, dialling = split_pair(row["impls"])
    return frozenset({(row["a"], dialled.partition("@")[0]),
                      (row["b"], dialling.partition("@")[0])})


def version_changes(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Cells whose outcome differs between versions of the same implementations (the
    same NAT pair and transport, ``rust@0.53/rust@0.53`` against ``rust/rust``), each with
    what the nodes recorded of the failed punches: where behaviour changed between
    releases, and the library's own words on why."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((_sides(r), r["transport"]), []).append(r)
    changes = []
    for (_sides_key, transport), members in groups.items():
        if len({m["outcome"] for m in members}) < 2:
            continue
        first = members[0]
        changes.append({"a": first["a"], "b": first["b"], "transport": transport,
                        "outcomes": {m["impls"]: m["outcome"] for m in members},
                        "reasons": {m["impls"]: m["reasons"] for m in members if m["reasons"]}})
    return changes


def _html(rows: list[dict[str, Any]], presets: list[str], transports: list[str],
          summary: dict[str, Any], png: Path) -> str:
    panels = []
    for impls, transport in _panels(rows, transports):
        by_key = {(r["a"], r["b"]): r for r in rows
                  if r["transport"] == transport and r["impls"] == impls}
        dialled, dialling = split_pair(impls)
        panels.append({"transport": transport, "dialled": dialled, "dialling": dialling,
                       "rows": [(a, [by_key.get((a, b)) or by_key.get((b, a)) for b in presets])
                                for a in presets]})
    return render_page(
        "matrix.html.j2", summary=summary, rows=rows, presets=presets, panels=panels,
        image=base64.b64encode(png.read_bytes()).decode(), colours=COLOURS,
        descriptions={p: PRESETS[p].description for p in presets}, short=_short,
        duration=_duration)


def _duration(ms: float) -> str:
    return f"{ms:.0f} ms" if ms < 1000 else f"{ms / 1000:.1f} s"


def _short(preset: str) -> str:
    own, cgnat = resolve(preset)
    if own is None:
        return "no NAT"
    return own.short() + (f" behind {cgnat.short()}" if cgnat else "")
