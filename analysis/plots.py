"""The report's plots, each a PNG labelled with units and the run's parameters."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import networkx as nx
import pandas as pd
from matplotlib.ticker import MaxNLocator

COLOURS = {"direct": "#2e9d4f", "relayed": "#e8a33d", "success": "#2e9d4f", "failure": "#c8453b"}


def _subtitle(meta: dict[str, Any], width: int = 64) -> str:
    """What produced the plot, broken between its parts into lines of at most ``width``
    characters: a lab of several libp2p releases names them all, wider than a plot."""
    parts = [str(meta.get("scenario")), f"backend {meta.get('backend')}",
             f"seed {meta.get('seed')}", f"libp2p {meta.get('libp2p_version')}"]
    lines = [parts[0]]
    for part in parts[1:]:
        if len(lines[-1]) + 3 + len(part) > width:
            lines.append(part)
        else:
            lines[-1] += f" · {part}"
    return "\n".join(lines)


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def png_base64(fig: plt.Figure) -> str:
    """The figure as base64 PNG, for a self-contained page (sweep, compare); closed."""
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode()


def latency_cdf(deliveries: pd.DataFrame, meta: dict[str, Any], path: Path) -> Path | None:
    lat = deliveries.loc[~deliveries["duplicate"].astype(bool), "latency_ms"].dropna()
    if lat.empty:
        return None
    values = lat.sort_values().to_numpy()
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.step(values, [(i + 1) / len(values) for i in range(len(values))], where="post")
    for q in (0.5, 0.95, 0.99):
        x = float(lat.quantile(q))
        ax.axvline(x, color="grey", lw=0.8, ls="--")
        ax.text(x, 0.02 + q * 0.1, f"p{int(q * 100)} {x:.1f} ms", fontsize=8, rotation=90)
    ax.set_xlabel("delivery latency (ms, receive time − publish time)")
    ax.set_ylabel("share of deliveries")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"Latency CDF ({len(values)} deliveries)\n{_subtitle(meta)}", fontsize=10)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def propagation_curves(prop: dict[str, Any], deliveries: pd.DataFrame, expected: dict[str, int],
                       meta: dict[str, Any], path: Path) -> Path | None:
    curve = prop.get("curve", {})
    if not curve.get("t_ms") or not prop.get("messages"):
        return None
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for msg_id, group in deliveries[~deliveries["duplicate"].astype(bool)].groupby("msg_id"):
        n = expected.get(msg_id)
        if not n:
            continue
        times = sorted(group["latency_ms"].dropna())
        ax.step([0] + times, [0] + [(i + 1) / n for i in range(len(times))], where="post",
                color="#9bb7d4", lw=0.6, alpha=0.6)
    ax.plot(curve["t_ms"], curve["share"], color="#1f4e79", lw=2.2, label="mean over messages")
    t90 = prop.get("t90_ms_median")
    if t90 is not None:
        ax.axhline(0.9, color="#c8453b", lw=0.8, ls="--")
        ax.axvline(t90, color="#c8453b", lw=0.8, ls="--")
        ax.annotate(f"90 % of subscribers: {t90:.1f} ms (median)", (t90, 0.9),
                    xytext=(10, -30), textcoords="offset points", fontsize=9, color="#c8453b")
    ax.set_xlabel("time since publish (ms)")
    ax.set_ylabel("share of subscribers that have the message")
    ax.set_ylim(0, 1.05)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(f"Gossip propagation ({prop['messages']} messages)\n{_subtitle(meta)}",
                 fontsize=10)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def delivery_heatmap(per_pair: pd.DataFrame, meta: dict[str, Any], path: Path) -> Path | None:
    if per_pair.empty:
        return None
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 + 0.5 * len(per_pair.columns)),
                                    max(4.0, 1.2 + 0.45 * len(per_pair))))
    image = ax.imshow(per_pair.to_numpy(dtype=float), vmin=0, vmax=1, cmap="RdYlGn")
    ax.set_xticks(range(len(per_pair.columns)), per_pair.columns, rotation=45, ha="right")
    ax.set_yticks(range(len(per_pair.index)), per_pair.index)
    for i in range(len(per_pair.index)):
        for j in range(len(per_pair.columns)):
            v = per_pair.iat[i, j]
            if pd.notna(v):
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7)
    ax.set_xlabel(per_pair.columns.name or "receiver")
    ax.set_ylabel(per_pair.index.name or "publisher")
    fig.colorbar(image, ax=ax, label="delivery ratio")
    ax.set_title(f"Delivery ratio, publisher × receiver\n{_subtitle(meta)}", fontsize=9)
    return _save(fig, path)


def connection_timeline(mix: dict[str, Any], meta: dict[str, Any], path: Path) -> Path | None:
    if not mix.get("t_s"):
        return None
    fig, ax = plt.subplots(figsize=(7, 3.4))
    ax.stackplot(mix["t_s"], mix["direct"], mix["relayed"], labels=["direct", "relayed"],
                 colors=[COLOURS["direct"], COLOURS["relayed"]], alpha=0.85)
    ax.set_xlabel("time since the first event (s)")
    ax.set_ylabel("node pairs connected")
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title(f"Connections over time, direct vs relayed\n{_subtitle(meta)}", fontsize=10)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def hole_punch_outcomes(punches: dict[str, Any], meta: dict[str, Any], path: Path) -> Path | None:
    if not punches:
        return None
    pairs = list(punches)
    ok = [punches[p]["successes"] for p in pairs]
    bad = [punches[p]["attempts"] - punches[p]["successes"] for p in pairs]
    fig, ax = plt.subplots(figsize=(max(5, 1.2 * len(pairs)), 3.4))
    ax.bar(pairs, ok, color=COLOURS["success"], label="succeeded")
    ax.bar(pairs, bad, bottom=ok, color=COLOURS["failure"], label="failed")
    for i, p in enumerate(pairs):
        t = punches[p].get("time_to_direct_ms")
        if t is not None:  # in ms below a second: a LAN punch takes a few (never "0.0 s")
            shown = f"{t:.3g} ms" if t < 1000 else f"{t / 1000:.1f} s"
            ax.text(i, ok[i] + bad[i] + 0.05, f"{shown} to direct", ha="center", fontsize=8)
    ax.set_ylabel("hole-punch attempts")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylim(0, max(o + b for o, b in zip(ok, bad, strict=True)) + 1)
    ax.legend(fontsize=8)
    ax.set_title(f"Hole-punch outcomes (DCUtR)\n{_subtitle(meta)}", fontsize=10)
    return _save(fig, path)


def topology_picture(graph: nx.Graph, meta: dict[str, Any], path: Path,
                     dials: list[tuple[str, str, bool]] | None = None) -> Path:
    """Segments, routers and nodes; with ``dials`` (dialer, target, relayed) the planned
    connections too (dashed: through a relay)."""
    big = graph.number_of_nodes() > 40
    fig, ax = plt.subplots(figsize=(14, 10) if big else (8, 5.5))
    pos = nx.spring_layout(graph, seed=int(meta.get("seed") or 0),
                           k=None if not big else 1.5 / max(1, graph.number_of_nodes()) ** 0.5)
    for dialer, target, relayed in dials or []:
        if dialer in pos and target in pos:
            (x1, y1), (x2, y2) = pos[dialer], pos[target]
            ax.plot([x1, x2], [y1, y2], color="#7b5ea7", alpha=0.35, linewidth=0.8,
                    linestyle="--" if relayed else "-", zorder=0)
    kinds = nx.get_node_attributes(graph, "kind")
    style = {"segment": ("s", "#bcd4e6", 900), "router": ("D", "#e8a33d", 500),
             "node": ("o", "#2e9d4f", 400)}
    for kind, (shape, colour, size) in style.items():
        members = [n for n, k in kinds.items() if k == kind]
        nx.draw_networkx_nodes(graph, pos, nodelist=members, node_shape=shape,
                               node_color=colour, node_size=size * (0.4 if big else 1.0), ax=ax)
    nx.draw_networkx_edges(graph, pos, ax=ax, alpha=0.5)
    labels = {n: (f"{n}\n{graph.nodes[n].get('subnet', '')}" if kinds.get(n) == "segment"
                  else f"{n}\n{graph.nodes[n].get('nat', '')}" if kinds.get(n) == "router" else n)
              for n in graph.nodes}
    nx.draw_networkx_labels(graph, pos, labels=labels, font_size=5 if big else 7, ax=ax)
    ax.set_title("Topology: segments (squares), NAT routers (diamonds), nodes (circles)"
                 + ("; planned dials in purple (dashed: relayed)" if dials else "") + "\n"
                 f"{_subtitle(meta)}", fontsize=10)
    ax.axis("off")
    return _save(fig, path)


def machine_load(cpu: dict[str, Any], meta: dict[str, Any], path: Path) -> Path | None:
    """Host CPU busy over the run, saturated intervals shaded, and who used the CPU."""
    if not cpu.get("busy_curve"):
        return None
    fig, (ax, bars) = plt.subplots(1, 2, figsize=(11, 3.6), gridspec_kw={"width_ratios": [3, 2]})
    ax.plot([p[0] for p in cpu["busy_curve"]], [p[1] for p in cpu["busy_curve"]],
            color="#3b6fb6", lw=1.2)
    for a, b in cpu["saturated"]["intervals"]:  # absolute times; the curve starts at t0
        ax.axvspan(a - cpu["t0"], b - cpu["t0"], color="#c8453b", alpha=0.2)
    ax.axhline(cpu["saturated"]["threshold_pct"], color="#c8453b", ls="--", lw=0.8,
               label=f"saturated (>= {cpu['saturated']['threshold_pct']:g} %)")
    ax.set_ylim(0, 105)
    ax.set_xlabel("seconds since sampling began")
    ax.set_ylabel(f"host CPU busy, % of {cpu['cores']} cores")
    ax.legend(loc="lower right", fontsize=8)
    groups = sorted(cpu["groups"].items(), key=lambda kv: -kv[1]["share_pct"])
    bars.barh([g for g, _ in groups], [v["share_pct"] for _, v in groups], color="#3b6fb6")
    bars.set_xlabel("share of the machine over the run, %")
    bars.invert_yaxis()
    fig.suptitle(f"Machine load · {_subtitle(meta, width=200)}", fontsize=9)  # 11 in wide
    return _save(fig, path)


def mesh_over_time(mesh: dict[str, Any], meta: dict[str, Any], path: Path,
                   first_publish: float | None) -> Path | None:
    """Median, min and max gossipsub mesh size across nodes over the run."""
    series = mesh.get("series") or {}
    if not series:
        return None
    t0 = min(points[0][0] for points in series.values())
    grid = sorted({round(t - t0, 1) for points in series.values() for t, _ in points})
    sizes = []
    for g in grid:
        now = []
        for points in series.values():
            before = [k for t, k in points if t - t0 <= g]
            now.append(before[-1] if before else 0)
        sizes.append(now)
    frame = pd.DataFrame(sizes, index=grid)
    fig, ax = plt.subplots(figsize=(8, 3.6))
    ax.fill_between(grid, frame.min(axis=1), frame.max(axis=1), color="#3b6fb6", alpha=0.2,
                    step="post", label="min - max over nodes")
    ax.step(grid, frame.median(axis=1), where="post", color="#3b6fb6", lw=1.6, label="median")
    if first_publish is not None:
        ax.axvline(first_publish - t0, color="#777", ls=":", lw=1, label="first publish")
    ax.set_xlabel("seconds since the first node reported its mesh")
    ax.set_ylabel("mesh peers (first topic)")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))  # peers come whole
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(f"Gossipsub mesh size over time\n{_subtitle(meta)}", fontsize=9)
    return _save(fig, path)
