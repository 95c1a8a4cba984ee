"""Emulation against simulation for one scenario: the figures side by side, and the
propagation curves on one plot. Where they differ is where the model leaves something
out (docs/reference/simulation.md lists what)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from p2plab.files import write_atomic

FIGURES: list[tuple[str, Callable[[dict[str, Any]], Any]]] = [
    ("delivery ratio", lambda s: s["delivery"]["delivery_ratio"]),
    ("latency p50 (ms)", lambda s: s["delivery"]["latency_ms"]["p50"]),
    ("latency p95 (ms)", lambda s: s["delivery"]["latency_ms"]["p95"]),
    ("latency p99 (ms)", lambda s: s["delivery"]["latency_ms"]["p99"]),
    ("time to 50 % (ms, median message)", lambda s: s["propagation"]["t50_ms_median"]),
    ("time to 90 % (ms, median message)", lambda s: s["propagation"]["t90_ms_median"]),
    ("time to 99 % (ms, median message)", lambda s: s["propagation"]["t99_ms_median"]),
    ("time to 100 % (ms, median message)", lambda s: s["propagation"]["t100_ms_median"]),
    ("messages published", lambda s: s["delivery"]["messages_published"]),
]


def _get(getter: Callable[[dict[str, Any]], Any], summary: dict[str, Any]) -> Any:
    try:
        return getter(summary)
    except (KeyError, TypeError):
        return None


# Timing figures whose gap to a network-only simulation is processing, not network.
DECOMPOSED = ("latency p50 (ms)", "latency p99 (ms)", "time to 50 % (ms, median message)",
              "time to 90 % (ms, median message)")


def decomposition(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """For a simulation without a CPU model: how much of each emulated timing figure is
    the network (what the model has) and how much is processing and queueing."""
    out = []
    for r in rows:
        emulated, network = r["emulated"], r["simulated"]
        if r["figure"] not in DECOMPOSED or not emulated or network is None:
            continue
        processing = max(0.0, emulated - network)
        out.append({"figure": r["figure"], "emulated_ms": emulated, "network_ms": network,
                    "processing_ms": round(processing, 3),
                    "processing_share": round(processing / emulated, 3)})
    return out


def crosscheck(emulated: Path, simulated: Path, out: Path,
               network_only: bool = False) -> dict[str, Any]:
    emu = json.loads((emulated / "summary.json").read_text())
    sim = json.loads((simulated / "summary.json").read_text())
    manifest = json.loads((emulated / "manifest.json").read_text())
    rows = []
    for label, getter in FIGURES:
        a, b = _get(getter, emu), _get(getter, sim)
        diff = None if a is None or b is None else b - a
        rel = None if diff is None or not a else diff / abs(a)
        rows.append({"figure": label, "emulated": a, "simulated": b,
                     "difference": diff, "relative": rel})
    result = {"scenario": manifest["scenario"], "emulated_backend": manifest["backend"],
              "emulated_run": str(emulated), "simulated_run": str(simulated), "rows": rows,
              "network_only": network_only,
              "decomposition": decomposition(rows) if network_only else []}
    write_atomic(out / "crosscheck.json", json.dumps(result, indent=2) + "\n")
    _plot(emu, sim, manifest, out / "crosscheck.png")
    write_atomic(out / "crosscheck.md", render(result))
    return result


def render(result: dict[str, Any]) -> str:
    def fmt(v: Any) -> str:
        if v is None:
            return "n/a"
        return f"{v:.4f}" if isinstance(v, float) and abs(v) < 10 else (
            f"{v:.1f}" if isinstance(v, float) else str(v))

    lines = [f"# {result['scenario']}: emulation ({result['emulated_backend']}) against "
             "simulation", "", "| figure | emulated | simulated | simulated − emulated | "
             "relative |", "|---|---|---|---|---|"]
    for r in result["rows"]:
        rel = "n/a" if r["relative"] is None else f"{r['relative']:+.0%}"
        lines.append(f"| {r['figure']} | {fmt(r['emulated'])} | {fmt(r['simulated'])} | "
                     f"{fmt(r['difference'])} | {rel} |")
    if result.get("decomposition"):
        lines += ["", "## Where the latency goes", "",
                  "The simulation models the network only (links, NATs, relays, gossipsub; "
                  "no CPU), so what emulation adds is processing and queueing in the nodes "
                  "and on the host.", "",
                  "| figure | emulated ms | network ms | processing ms | processing share |",
                  "|---|---|---|---|---|"]
        lines += [f"| {d['figure']} | {fmt(d['emulated_ms'])} | {fmt(d['network_ms'])} | "
                  f"{fmt(d['processing_ms'])} | {d['processing_share']:.0%} |"
                  for d in result["decomposition"]]
    lines += ["", f"Emulated run: `{result['emulated_run']}`  ", f"Simulated run: "
              f"`{result['simulated_run']}`", "", "![propagation](crosscheck.png)", ""]
    return "\n".join(lines)


def _plot(emu: dict[str, Any], sim: dict[str, Any], manifest: dict[str, Any], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for summary, label, style in ((emu, f"emulated ({manifest['backend']})", "-"),
                                  (sim, "simulated", "--")):
        curve = summary.get("propagation", {}).get("curve", {})
        if curve.get("t_ms"):
            ax.plot(curve["t_ms"], [100 * s for s in curve["share"]], style, linewidth=2,
                    label=label)
    ax.set_xlabel("time since publish (ms)")
    ax.set_ylabel("subscribers reached (%, mean over messages)")
    ax.set_ylim(0, 102)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(f"{manifest['scenario']}: propagation, emulated vs simulated (seed "
                 f"{manifest['seed']})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
