"""A sweep's table and page: ``sweep.csv`` (a row per run), ``sweep.json`` and a
self-contained ``sweep.html`` with each headline figure plotted against each swept
parameter (mean over repeats, the spread as a band; a line per value of the other
parameters)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib
import pandas as pd

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # after the backend is chosen
from p2plab.analysis.headline import FIGURES
from p2plab.analysis.pages import render_page
from p2plab.analysis.plots import png_base64

from p2plab.files import write_atomic


def sweep_frame(spec: dict[str, Any], records: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per finished run: parameters (as written), repeat, seed, status, run
    folder and every headline figure."""
    axes = [axis["path"] for axis in spec["axes"]]
    rows = []
    for record in sorted(records, key=lambda r: (r["point"], r["repeat"])):
        row: dict[str, Any] = {path: record["params"][path] for path in axes}
        row.update(point=record["point"], repeat=record["repeat"], seed=record["seed"],
                   status=record["status"], run_dir=record["run_dir"])
        row.update({figure.key: record["figures"].get(figure.key) for figure in FIGURES})
        rows.append(row)
    columns = axes + ["point", "repeat", "seed", "status", "run_dir"] + [f.key for f in FIGURES]
    return pd.DataFrame(rows, columns=columns)


def _numeric(values: pd.Series) -> bool:
    """Whether an axis's values are all numbers (a numeric x axis; else categories)."""
    return bool(pd.to_numeric(values, errors="coerce").notna().all())


def plot(frame: pd.DataFrame, axis: str, others: list[str], key: str, label: str) -> str:
    """PNG (base64) of ``key`` against ``axis``: mean over repeats, min-max band."""
    fig, ax = plt.subplots(figsize=(5.2, 3.4), dpi=100)
    numeric = _numeric(frame[axis])
    data = frame.assign(_x=pd.to_numeric(frame[axis]) if numeric else frame[axis])
    groups = data.groupby(others, sort=False) if others else [((), data)]
    for name, group in groups:
        stats = group.groupby("_x", sort=True)[key].agg(["mean", "min", "max"]).dropna()
        if stats.empty:
            continue
        names = name if isinstance(name, tuple) else (name,)
        line_label = ", ".join(f"{o}={v}" for o, v in zip(others, names, strict=True)) or None
        x = stats.index if numeric else list(range(len(stats)))
        ax.plot(x, stats["mean"], marker="o", label=line_label)
        ax.fill_between(x, stats["min"], stats["max"], alpha=0.2)
        if not numeric:
            ax.set_xticks(list(range(len(stats))), [str(v) for v in stats.index])
    ax.set_xlabel(axis)
    ax.set_ylabel(label)
    ax.grid(alpha=0.3)
    if others:
        ax.legend(fontsize=7)
    return png_base64(fig)


def write_sweep_outputs(out: Path, spec: dict[str, Any], records: list[dict[str, Any]],
                        planned: int) -> pd.DataFrame:
    frame = sweep_frame(spec, records)
    write_atomic(out / "sweep.csv", frame.to_csv(index=False))
    write_atomic(out / "sweep.json", json.dumps(
        {"spec": spec, "planned": planned, "finished": len(frame),
         "runs": json.loads(frame.to_json(orient="records"))}, indent=1) + "\n")
    axes = [axis["path"] for axis in spec["axes"]]
    shown = [f for f in FIGURES if f.key in frame and frame[f.key].notna().any()]
    plots = []
    for figure in shown:
        for axis in axes:
            others = [a for a in axes if a != axis]
            plots.append({"figure": figure.label, "axis": axis,
                          "png": plot(frame, axis, others, figure.key, figure.label)})
    write_atomic(out / "sweep.html", render_page(
        "sweep.html.j2", spec=spec, planned=planned, finished=len(frame),
        failed=int((frame["status"] != "PASS").sum()) if len(frame) else 0,
        plots=plots, table=frame.drop(columns=["run_dir"]).to_dict(orient="records"),
        columns=[c for c in frame.columns if c != "run_dir"]))
    return frame
