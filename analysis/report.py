"""Write ``summary.json``, ``report.md`` and ``report.html`` into a results folder, from
the folder's own files: the scenario as run, the manifest, the events, the topology."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pandas as pd
from p2plab.analysis import plots
from p2plab.analysis.event_log import EventLog, read_event_log
from p2plab.analysis.expectations import Verdict, check
from p2plab.analysis.grouping import AGGREGATE_AT, node_classes, pair_class
from p2plab.analysis.metrics import summarize
from p2plab.analysis.pages import render_page
from p2plab.analysis.punch_field import punch_population
from p2plab.analysis.punch_forensics import explain_failed_punches
from p2plab.analysis.punch_theory import punch_theory, sides
from p2plab.analysis.report_model import Report, Summary, report_model
from p2plab.analysis.tables import save_tables
from p2plab.topology.describe import TOPOLOGY_FILE, picture_from_json
from p2plab.topology.loading import load_scenario
from p2plab.topology.plan import build_plan

from p2plab.files import write_atomic

BIG_SUMMARY_DELIVERIES = 100_000  # beyond, summary.json is written compact


def build_report(run_dir: Path) -> tuple[dict[str, Any], list[Verdict]]:
    """Recompute everything from the folder's own files (scenario as run, manifest, events)."""
    manifest = json.loads((run_dir / "manifest.json").read_text())
    scenario = load_scenario(run_dir / "scenario.yaml")  # expectations, NATs, description
    events = read_event_log(run_dir / "events")  # read once, for figures and tables
    summary = summarize(run_dir / "events", until=manifest.get("timeline_end"),
                        run_started=manifest.get("sim_epoch", manifest.get("started")),
                        spawned=manifest.get("node_spawned"), events=events)
    rtt_file = run_dir / "link_rtt.json"
    summary["link_rtt"] = json.loads(rtt_file.read_text()) if rtt_file.exists() else {}
    summary["node_rss_mb"] = manifest.get("node_rss_mb", {})
    probe_file = run_dir / "nat_probe.json"
    summary["nat_probe"] = json.loads(probe_file.read_text()) if probe_file.exists() else {}
    summary["punch_forensics"] = explain_failed_punches(run_dir, manifest, summary)
    summary["punch_theory"] = summary["punch_field"] = {}
    if summary.get("hole_punch") or scenario.punch_reference:
        plan = build_plan(scenario)  # every node's NATs: only where punches are judged
        summary["punch_theory"] = punch_theory(plan, events, summary)
        if scenario.punch_reference:
            summary["punch_field"] = punch_population(events, summary["nodes"], sides(plan),
                                                      scenario.punch_reference)
    summary["backend"] = manifest.get("backend")
    summary["packets"] = manifest.get("packets", True)  # the simulator sends none
    interrupted = interruption(manifest)
    verdicts = check(scenario.expect, summary,
                     f"interrupted: {interrupted}" if interrupted
                     else manifest.get("timeline_error"))
    summary["verdicts"] = [v.as_dict() for v in verdicts]
    summary["passed"] = not interrupted and all(v.passed for v in verdicts)
    summary["interrupted"] = interrupted
    summary["status"] = ("INTERRUPTED" if interrupted else
                         "PASS" if summary["passed"] else "FAIL")
    summary["wall_time_s"] = (round(manifest["ended"] - manifest["started"], 2)
                              if "ended" in manifest and "started" in manifest else None)
    # Indented for reading, unless big: Python's indenting encoder is pure Python
    # (1.4 s for gossip-10k's 13 MB), the compact one is C.
    big = summary["delivery"]["deliveries_expected"] > BIG_SUMMARY_DELIVERIES
    Summary.model_validate(summary)  # the file's promise to its readers, checked
    write_atomic(run_dir / "summary.json", json.dumps(summary, indent=None if big else 2) + "\n")
    topology = run_dir / TOPOLOGY_FILE  # written by the executor; older folders lack it
    graph = picture_from_json(topology.read_text()) if topology.exists() else None
    classes = node_classes(manifest, list(summary["nodes"]))
    figures = render_plots(run_dir, manifest, summary, graph, events, classes)
    report = report_model(manifest, summary, verdicts, figures, scenario.description, classes)
    write_atomic(run_dir / "report.md", render_markdown(report))
    write_atomic(run_dir / "report.html", render_html(report, figures))
    return summary, verdicts


def interruption(manifest: dict[str, Any]) -> str | None:
    """Why the run did not finish, or None. A run records its end in the manifest; one
    without it was killed before it could (SIGKILL, power loss) or is still running."""
    if manifest.get("interrupted"):
        return str(manifest["interrupted"])
    if "ended" not in manifest:
        return "the run never recorded its end (killed, or still running)"
    return None


def render_plots(run_dir: Path, manifest: dict[str, Any], summary: dict[str, Any],
                 graph: Any, events: EventLog | None, classes: dict[str, str]
                 ) -> dict[str, Path]:
    """Tables to CSV, and every plot that has data, into plots/."""
    tables = save_tables(run_dir, events)
    out = run_dir / "plots"
    out.mkdir(exist_ok=True)
    meta = {k: manifest.get(k) for k in ("scenario", "backend", "seed", "libp2p_version")}
    ran = manifest.get("implementations")
    if ran:  # name the libraries that ran, not only py-libp2p's version
        meta["libp2p_version"] = " + ".join(str(i.get("libp2p")) for _, i in sorted(ran.items()))
    deliveries = tables["deliveries"]
    expected = {m["msg_id"]: m["expected"] for m in summary["delivery"]["per_message"]}
    per_pair = delivery_grid(summary, deliveries, classes)
    made = {
        "topology": (plots.topology_picture(graph, meta, out / "topology.png")
                     if graph is not None else None),
        "latency_cdf": plots.latency_cdf(deliveries, meta, out / "latency_cdf.png"),
        "propagation": plots.propagation_curves(summary["propagation"], deliveries, expected,
                                                meta, out / "propagation.png"),
        "delivery_heatmap": plots.delivery_heatmap(per_pair, meta, out / "delivery_heatmap.png"),
        "connections": plots.connection_timeline(summary["connection_mix"], meta,
                                                 out / "connections.png"),
        "hole_punch": plots.hole_punch_outcomes(punches_by_class(summary["hole_punch"], classes),
                                                meta, out / "hole_punch.png"),
        "machine_load": plots.machine_load(summary.get("cpu") or {}, meta,
                                           out / "machine_load.png"),
        "mesh": plots.mesh_over_time(summary.get("mesh") or {}, meta, out / "mesh.png",
                                     (summary.get("mesh") or {}).get("first_publish_t")),
    }
    return {k: v for k, v in made.items() if v is not None}


def delivery_grid(summary: dict[str, Any], deliveries: pd.DataFrame,
                  classes: dict[str, str]) -> pd.DataFrame:
    """Delivery ratio of every publisher x receiver pair; with AGGREGATE_AT receivers or
    more, of every publisher (or publisher class) x receiver class: a heat map of 9 x 199
    cells is a strip nobody reads, one of 9 x 4 classes is not."""
    peers = sorted(n for n, i in summary["nodes"].items() if i["role"] == "peer")
    counts: dict[str, int] = {}
    for m in summary["delivery"]["per_message"]:
        counts[m["origin"]] = counts.get(m["origin"], 0) + 1
    publishers = sorted(counts)
    if not publishers or not peers:
        return pd.DataFrame()
    first = deliveries[~deliveries["duplicate"].astype(bool)]
    if len(peers) < AGGREGATE_AT:
        got = first.groupby(["origin_node", "receiver"]).size()
        frame = pd.DataFrame(index=publishers, columns=peers, dtype=float)
        for p in publishers:
            for r in peers:
                if r != p:
                    frame.loc[p, r] = got.get((p, r), 0) / counts[p]
        return frame
    by_class = len(publishers) >= AGGREGATE_AT
    row_of = {p: classes.get(p, p) if by_class else p for p in publishers}
    receivers = pd.Series([classes.get(r, r) for r in peers], index=peers)
    members = receivers.value_counts()
    got = first.assign(row=first["origin_node"].astype(str).map(row_of),
                       col=first["receiver"].astype(str).map(receivers)).groupby(
        ["row", "col"]).size()
    rows = sorted(set(row_of.values()))
    frame = pd.DataFrame(index=pd.Index(rows, name="publisher class" if by_class else
                                        "publisher"),
                         columns=pd.Index(sorted(members.index),
                                          name="receiver class (group · NAT)"), dtype=float)
    for p in publishers:  # what each publisher's messages could reach, per class
        for col, size in members.items():
            own = 1 if receivers.get(p) == col else 0  # a publisher does not receive its own
            expected = counts[p] * (size - own)
            if expected:
                row = row_of[p]
                frame.loc[row, col] = (0.0 if pd.isna(frame.loc[row, col]) else
                                       frame.loc[row, col]) + expected
    for row in rows:
        for col in frame.columns:
            expected = frame.loc[row, col]
            if pd.notna(expected) and expected:
                frame.loc[row, col] = got.get((row, col), 0) / expected
    return frame


def punches_by_class(punches: dict[str, Any], classes: dict[str, str]) -> dict[str, Any]:
    """Hole punches per pair, or with many pairs per pair of classes (attempts and
    successes summed; time to direct the slowest)."""
    if len(punches) < AGGREGATE_AT:
        return punches
    out: dict[str, Any] = {}
    for punch in punches.values():
        key = pair_class(punch["nodes"][0], punch["nodes"][1], classes)
        entry = out.setdefault(key, {"attempts": 0, "successes": 0, "time_to_direct_ms": None})
        entry["attempts"] += punch["attempts"]
        entry["successes"] += punch["successes"]
        if punch.get("time_to_direct_ms"):
            entry["time_to_direct_ms"] = max(entry["time_to_direct_ms"] or 0.0,
                                             punch["time_to_direct_ms"])
    return out


# (figure key, section title, alt text), in page order.
HTML_FIGURES = (("topology", "Topology", "topology"),
                ("propagation", "Propagation", "propagation curves"),
                ("latency_cdf", "Latency", "latency CDF"),
                ("delivery_heatmap", "Delivery", "delivery heat map"),
                ("connections", "Connections", "connection timeline"),
                ("hole_punch", "Hole punching", "hole-punch outcomes"),
                ("machine_load", "Machine load", "host CPU over the run"),
                ("mesh", "Gossipsub mesh", "mesh size over time"))


def render_markdown(report: Report) -> str:
    return render_page("report.md.j2", report=report)


def render_html(report: Report, figures: dict[str, Path]) -> str:
    """One self-contained page: images embedded, no scripts, opens from disk."""
    shown = [f for f in HTML_FIGURES if f[0] in figures]
    images = {key: base64.b64encode(figures[key].read_bytes()).decode() for key, _, _ in shown}
    return render_page("report.html.j2", report=report, figures=shown, images=images)
