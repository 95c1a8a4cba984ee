"""Write ``summary.json``, ``report.md`` and ``report.html`` into a results folder, from
the folder's own files: the scenario as run, the manifest, the events, the topology."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import base64

import pandas as pd

from p2plab.analysis import plots
from p2plab.analysis.expectations import Verdict, check
from p2plab.analysis.event_log import EventLog, read_event_log
from p2plab.analysis.metrics import summarize
from p2plab.analysis.pages import render_page
from p2plab.analysis.tables import save_tables
from p2plab.topology.describe import TOPOLOGY_FILE, picture_from_json
from p2plab.topology.loading import load_scenario_file
from p2plab.files import write_atomic


BIG_SUMMARY_DELIVERIES = 100_000  # beyond, summary.json is written compact


def build_report(run_dir: Path) -> tuple[dict[str, Any], list[Verdict]]:
    """Recompute everything from the folder's own files (scenario as run, manifest, events)."""
    manifest = json.loads((run_dir / "manifest.json").read_text())
    scenario = load_scenario_file(run_dir / "scenario.yaml")  # expectations, description
    events = read_event_log(run_dir / "events")  # read once, for figures and tables
    summary = summarize(run_dir / "events", until=manifest.get("timeline_end"),
                        run_started=manifest.get("sim_epoch", manifest.get("started")),
                        spawned=manifest.get("node_spawned"), events=events)
    rtt_file = run_dir / "link_rtt.json"
    summary["link_rtt"] = json.loads(rtt_file.read_text()) if rtt_file.exists() else {}
    summary["node_rss_mb"] = manifest.get("node_rss_mb", {})
    probe_file = run_dir / "nat_probe.json"
    summary["nat_probe"] = json.loads(probe_file.read_text()) if probe_file.exists() else {}
    summary["backend"] = manifest.get("backend")
    interrupted = interruption(manifest)
    verdicts = check(scenario.expect, summary,
                     f"interrupted: {interrupted}" if interrupted else manifest.get("timeline_error"))
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
    write_atomic(run_dir / "summary.json", json.dumps(summary, indent=None if big else 2) + "\n")
    topology = run_dir / TOPOLOGY_FILE  # written by the executor; older folders lack it
    graph = picture_from_json(topology.read_text()) if topology.exists() else None
    figures = render_plots(run_dir, manifest, summary, graph, events)
    write_atomic(run_dir / "report.md", render_markdown(manifest, summary, verdicts, figures))
    write_atomic(run_dir / "report.html", render_html(run_dir, manifest, summary, verdicts,
                                                     figures, scenario.description))
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
                 graph: Any, events: EventLog | None = None) -> dict[str, Path]:
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
    per_pair = _per_pair(summary, deliveries)
    made = {
        "topology": (plots.topology_picture(graph, meta, out / "topology.png")
                     if graph is not None else None),
        "latency_cdf": plots.latency_cdf(deliveries, meta, out / "latency_cdf.png"),
        "propagation": plots.propagation_curves(summary["propagation"], deliveries, expected,
                                                meta, out / "propagation.png"),
        "delivery_heatmap": plots.delivery_heatmap(per_pair, meta, out / "delivery_heatmap.png"),
        "connections": plots.connection_timeline(summary["connection_mix"], meta,
                                                 out / "connections.png"),
        "hole_punch": plots.hole_punch_outcomes(summary["hole_punch"], meta,
                                                out / "hole_punch.png"),
        "machine_load": plots.machine_load(summary.get("cpu") or {}, meta,
                                           out / "machine_load.png"),
        "mesh": plots.mesh_over_time(summary.get("mesh") or {}, meta, out / "mesh.png",
                                     (summary.get("mesh") or {}).get("first_publish_t")),
    }
    return {k: v for k, v in made.items() if v is not None}


HEATMAP_MAX = 200


def _per_pair(summary: dict[str, Any], deliveries: pd.DataFrame) -> pd.DataFrame:
    """Delivery ratio for every publisher x receiver pair."""
    peers = sorted(n for n, i in summary["nodes"].items() if i["role"] == "peer")
    if len(peers) > HEATMAP_MAX:
        return pd.DataFrame()  # unreadable, and slow to build: the summary has per_receiver
    counts = {m["origin"]: 0 for m in summary["delivery"]["per_message"]}
    for m in summary["delivery"]["per_message"]:
        counts[m["origin"]] += 1
    publishers = sorted(counts)
    if not publishers:
        return pd.DataFrame()
    got = deliveries[~deliveries["duplicate"].astype(bool)].groupby(
        ["origin_node", "receiver"]).size()
    frame = pd.DataFrame(index=publishers, columns=peers, dtype=float)
    for p in publishers:
        for r in peers:
            if r != p:
                frame.loc[p, r] = got.get((p, r), 0) / counts[p]
    return frame


def implementations_line(manifest: dict[str, Any], limit: int = 8) -> str:
    """Which node implementation ran which nodes, with versions (from the manifest)."""
    found = manifest.get("implementations")
    if not found:
        return f"libp2p {manifest.get('libp2p_version')}"
    parts = []
    for impl, info in sorted(found.items()):
        nodes = info.get("nodes", [])
        shown = ", ".join(nodes[:limit]) + (f" and {len(nodes) - limit} more"
                                             if len(nodes) > limit else "")
        parts.append(f"{impl} node {info.get('version')} on {info.get('libp2p')} "
                     f"({len(nodes)}: {shown})")
    return "nodes: " + "; ".join(parts)


def machine_load_lines(cpu: dict[str, Any]) -> list[str]:
    """The report's machine-load section: who used the CPU, per message, saturation."""
    if not cpu:
        return []
    sat = cpu["saturated"]
    per_msg = cpu.get("cpu_ms_per_message") or {}
    out = ["", "## Machine load", "",
           f"- host CPU busy: mean {cpu['host_busy_pct_mean']} %, max {cpu['host_busy_pct_max']} % "
           f"of {cpu['cores']} cores over {cpu['sampled_s']} s (kernel softirq, where NAT and "
           f"bridging run: {cpu['host_softirq_pct_mean']} %)",
           f"- saturated (>= {sat['threshold_pct']:g} % busy): {sat['seconds']} s "
           f"({100 * sat['fraction_of_run']:.0f} % of the run); messages in flight then: "
           f"{sat.get('messages_in_flight', 0)} of {sat.get('messages', 0)}"
           + (" — their latency and propagation are partly the machine's CPU queue"
              if sat.get("messages_in_flight") else "")]
    out += [f"- {group}: {v['cpu_s']} CPU-s, {v['share_pct']} % of the machine"
            for group, v in sorted(cpu["groups"].items(), key=lambda kv: -kv[1]["share_pct"])]
    if per_msg.get("p50") is not None:
        out.append(f"- CPU per message per node: median {per_msg['p50']} ms, max "
                   f"{per_msg['max']} ms, all nodes together {per_msg['all_nodes']} ms "
                   f"({per_msg['messages']} messages over {per_msg['window_s']} s"
                   + (", idle CPU subtracted)" if per_msg["idle_subtracted"] else ")"))
    top = sorted(cpu["share_pct"].items(), key=lambda kv: -kv[1])[:5]
    out.append("- busiest: " + ", ".join(f"{k} {v} %" for k, v in top))
    return out


def render_markdown(manifest: dict[str, Any], summary: dict[str, Any],
                    verdicts: list[Verdict], figures: dict[str, Path] | None = None) -> str:
    d = summary["delivery"]
    lat = d["latency_ms"]
    out = [
        f"# {manifest['scenario']}: {summary['status']}",
        "",
        f"backend `{manifest['backend']}` · kernel `{manifest['kernel']}` · seed "
        f"{manifest['seed']} · p2plab {manifest['p2plab_version']} · wall time "
        f"{summary['wall_time_s']} s",
        "",
        implementations_line(manifest),
        "",
        "## Expectations",
        "",
        "| expectation | expected | observed | verdict |",
        "|---|---|---|---|",
    ]
    out += [f"| {v.name} | {v.expected} | {v.observed}"
            f"{' (measured while the ' + v.caveat + ')' if v.caveat else ''} | "
            f"{'pass' if v.passed else '**FAIL**'} |" for v in verdicts]
    if summary.get("not_checked"):
        out += ["", "Not checked on this backend: " + "; ".join(summary["not_checked"]) + "."]
    if manifest.get("sim_warnings"):
        out += ["", "The simulator ignored: " + "; ".join(manifest["sim_warnings"]) + "."]
    ratio = "n/a" if d["delivery_ratio"] is None else f"{d['delivery_ratio']:.4f}"
    out += [
        "",
        "## Delivery",
        "",
        f"- messages published: {d['messages_published']}, fully delivered: "
        f"{d['messages_fully_delivered']}",
        f"- deliveries: {d['deliveries']}/{d['deliveries_expected']} (ratio {ratio}), "
        f"duplicate receptions: {d['duplicate_receptions']}",
        f"- latency ms: p50 {lat['p50']}, p95 {lat['p95']}, p99 {lat['p99']}, max {lat['max']}",
        f"- receivers that could reach the publisher (no cut link, same partition): "
        f"{d['reachable_deliveries']}/{d['reachable_expected']}",
        *arrival_lines(summary.get("arrivals") or {}),
        "",
        "Eligible receivers are the topic's subscribers alive when a message went out."
        + (f" Event logs had {len(summary['torn_lines'])} torn line(s) (a process killed "
           f"mid-write), read past: {', '.join(summary['torn_lines'][:5])}."
           if summary.get("torn_lines") else ""),
        "",
        "## Connections at the end of the timeline",
        "",
        "| pair | final | ever opened |",
        "|---|---|---|",
    ]
    out += [f"| {k} | {v['final']} | {', '.join(v['ever'])} |"
            for k, v in summary["connections"].items()]
    if summary["hole_punch"]:
        out += ["", "## Hole punching", "", "| pair | outcome | attempts | successes | "
                "time to direct (ms) | failure reasons |", "|---|---|---|---|---|---|"]
        for k, v in summary["hole_punch"].items():
            reasons = "; ".join(f"#{f['attempt']} {f['reason']}" for f in v["failures"]) or "-"
            out.append(f"| {k} | {v['outcome']} | {v['attempts']} | {v['successes']} | "
                       f"{v['time_to_direct_ms']} | {reasons} |")
    if summary.get("nat_probe"):
        out += ["", "## NAT probe (declared vs observed)", "",
                "| LAN | router | preset | UDP observed | TCP observed | matches |",
                "|---|---|---|---|---|---|"]
        for lan, r in summary["nat_probe"].items():
            out.append(f"| {lan} | {r['router']} | {r['nat']} | {_probe_cell(r['observed'], 'udp')} "
                       f"| {_probe_cell(r['observed'], 'tcp')} | "
                       f"{'yes' if r['matches'] else '**no**: ' + '; '.join(r['mismatches'])} |")
    prop = summary.get("propagation", {})
    if prop.get("messages"):
        out += ["", "## Propagation", "",
                "| share of subscribers | median time (ms) | messages that got there |",
                "|---|---|---|"]
        for level in (50, 90, 99, 100):
            out.append(f"| {level} % | {prop.get(f't{level}_ms_median')} | "
                       f"{prop.get(f't{level}_ms_reached')}/{prop['messages']} |")
    flows = d.get("per_flow", {})
    if len(flows) > 1 or any(k != "(unnamed)" for k in flows):
        out += ["", "## Traffic flows", "", "| flow | messages | delivered | ratio | reachable "
                "ratio | latency p50 / p99 (ms) |", "|---|---|---|---|---|---|"]
        for name, f in flows.items():
            r = "n/a" if f["delivery_ratio"] is None else f"{f['delivery_ratio']:.4f}"
            rr = ("n/a" if f["reachable_delivery_ratio"] is None
                  else f"{f['reachable_delivery_ratio']:.4f}")
            out.append(f"| {name} | {f['messages_published']} | {f['deliveries']}/"
                       f"{f['deliveries_expected']} | {r} | {rr} | {f['latency_ms']['p50']} / "
                       f"{f['latency_ms']['p99']} |")
    if summary.get("recovery"):
        out += ["", "## Faults and recovery", "",
                "Recovery: from the fault until a message published after it reached every "
                "live, reachable subscriber.", "",
                "| fault | recovery (ms) | messages after it | short before recovery |",
                "|---|---|---|---|"]
        out += [f"| {r['fault']} | {r['recovery_ms']} | {r['messages_after']} | "
                f"{r['short_before_recovery']} |" for r in summary["recovery"]]
    shaping = manifest.get("link_shaping") or {}
    if shaping.get("links"):
        out += ["", "## Links", "", f"Impairment applied by **{shaping.get('mechanism')}** "
                f"({shaping.get('why')}).", "",
                "| nodes | latency ms | jitter ms | loss % | bandwidth kbit/s |",
                "|---|---|---|---|---|"]
        same: dict[tuple[Any, ...], list[str]] = {}
        for node, link in shaping["links"].items():
            key = (link["latency_ms"], link["jitter_ms"], link["loss_pct"], link["bandwidth_kbit"])
            same.setdefault(key, []).append(node)
        for (lat, jit, loss, bw), nodes in same.items():
            names = ", ".join(nodes[:6]) + (f" and {len(nodes) - 6} more" if len(nodes) > 6 else "")
            out.append(f"| {names} | {lat} | {jit} | {loss} | {bw or '-'} |")
        rtt = summary.get("link_rtt", {})
        if rtt.get("pairs"):
            out += ["", "Round trips measured with UDP echoes before the timeline (median of "
                    "20), against the configured 2 x (latency of both access links):", "",
                    "| path | configured ms | measured ms (min / median / max) | error % | "
                    "echoes back |", "|---|---|---|---|---|"]
            out += [f"| {r['pair']} | {r['configured_ms']} | {r.get('min_ms')} / "
                    f"{r['measured_ms']} / {r.get('max_ms')} | {r['error_pct']} | "
                    f"{r.get('received', 0)}/{r.get('sent', 0)} |" for r in rtt["pairs"]]
    out += machine_load_lines(summary.get("cpu") or {})
    out += cluster_lines(manifest)
    mesh = summary.get("mesh") or {}
    if mesh.get("at_first_publish"):
        out += ["", "## Gossipsub mesh", "",
                f"- mesh size at the first publish: median {mesh['at_first_publish_median']}, "
                f"min {mesh['at_first_publish_min']} (a node below D_lo gets messages late, "
                "by gossip at heartbeat pace)",
                "- nodes without a mesh then: "
                + (", ".join(mesh["nodes_without_mesh_at_first_publish"]) or "none")]
    if figures:
        out += ["", "## Plots", ""] + [f"![{k}](plots/{v.name})" for k, v in figures.items()]
    p = summary["ping"]
    out += ["", "## Ping", "", f"- {p['count']} pings, {p['failed']} failed, RTT p50 "
            f"{p['rtt_ms_p50']} ms, max {p['rtt_ms_max']} ms", ""]
    if summary.get("startup"):
        st = summary["startup"]
        out += [f"All nodes ready {st['all_ready_s']} s after the run started; slowest node "
                f"start-up {st.get('node_startup_s_max')} s.", ""]
    rss = {k: v for k, v in summary.get("node_rss_mb", {}).items() if v is not None}
    if rss:
        out += ["Resident memory per node at the end of the timeline (MB): "
                + ", ".join(f"{k} {v}" for k, v in rss.items()), ""]
    return "\n".join(out)


def _probe_cell(observed: dict[str, Any], proto: str) -> str:
    seen = observed.get(proto, {})
    if "error" in observed:
        return "probe failed"
    if seen.get("blocked"):
        return "blocked"
    if not seen.get("translated"):
        return "not translated"
    short = {"endpoint-independent": "EI", "address-dependent": "AD",
             "address-and-port-dependent": "APD"}
    return (f"{short.get(seen.get('mapping'), '?')}M+{short.get(seen.get('filtering'), '?')}F"
            + (", hairpin" if seen.get("hairpin") else ""))


# (figure key, section title, alt text), in page order.
HTML_FIGURES = (("topology", "Topology", "topology"),
                ("propagation", "Propagation", "propagation curves"),
                ("latency_cdf", "Latency", "latency CDF"),
                ("delivery_heatmap", "Delivery", "delivery heat map"),
                ("connections", "Connections", "connection timeline"),
                ("hole_punch", "Hole punching", "hole-punch outcomes"),
                ("machine_load", "Machine load", "host CPU over the run"),
                ("mesh", "Gossipsub mesh", "mesh size over time"))


def render_html(run_dir: Path, manifest: dict[str, Any], summary: dict[str, Any],
                verdicts: list[Verdict], figures: dict[str, Path], description: str) -> str:
    """One self-contained page: images embedded, no scripts, opens from disk."""
    d, lat, prop = summary["delivery"], summary["delivery"]["latency_ms"], summary["propagation"]
    ratio = "n/a" if d["delivery_ratio"] is None else f"{d['delivery_ratio']:.4f}"
    headline = [
        ("verdict", summary["status"]),
        ("delivery ratio", f"{ratio} ({d['deliveries']}/{d['deliveries_expected']})"),
        ("latency p50 / p99", f"{lat['p50']} / {lat['p99']} ms"),
        ("time to 90 % of subscribers (median)", f"{prop.get('t90_ms_median')} ms"),
        ("wall time", f"{summary['wall_time_s']} s"),
    ]
    shown = [f for f in HTML_FIGURES if f[0] in figures]
    images = {key: base64.b64encode(figures[key].read_bytes()).decode() for key, _, _ in shown}
    details = "## Delivery" + render_markdown(manifest, summary, verdicts).split("## Delivery", 1)[-1]
    return render_page(
        "report.html.j2", manifest=manifest, summary=summary, description=description.strip(),
        link_mechanism=(manifest.get("link_shaping") or {}).get("mechanism") or "none",
        implementations=implementations_line(manifest), headline=headline,
        verdicts=verdicts, figures=shown, images=images, details=details)


def cluster_lines(manifest: dict[str, Any]) -> list[str]:
    """Where hosts ran and how far each engine's clock was from the runner's (a lab
    over several engines: event times were corrected by the offsets at the start)."""
    swarm = manifest.get("swarm") or {}
    if not swarm.get("engines"):
        return []
    per_engine = swarm.get("hosts_per_engine") or {}
    start, end = swarm.get("clock_offsets") or {}, swarm.get("clock_offsets_end") or {}
    out = ["", "## Engines and clocks", "",
           f"{len(swarm['engines'])} engines of the swarm at `{swarm.get('manager')}`, image "
           f"from `{swarm.get('registry')}`. Event times are on the runner's clock: each "
           "engine's offset, measured at the start (best of "
           f"{next(iter(start.values()), {}).get('samples', '?')} round trips), was "
           "subtracted; the end measurement shows the drift over the run.", "",
           "| engine | address | hosts | clock offset at start (ms) | at end (ms) |",
           "|---|---|---|---|---|"]
    for engine in swarm["engines"]:
        name = engine["hostname"]
        fmt = lambda o: (f"{o['offset_ms']:+.3f} ± {o['uncertainty_ms']:.3f}"  # noqa: E731
                         if o else "not measured")
        out.append(f"| {name} | {engine['address']} | {per_engine.get(name, 0)} | "
                   f"{fmt(start.get(name))} | {fmt(end.get(name))} |")
    return out


def arrival_lines(arrivals: dict[str, Any]) -> list[str]:
    """How first copies arrived (nodes that report ``via_mesh``)."""
    known = [(label, arrivals.get(key) or {}) for key, label in
             (("mesh", "pushed by a mesh peer"),
              ("outside_mesh", "from outside the mesh (IWANT answer or flood publish)"))]
    if not any(a.get("count") for _, a in known):
        return []
    out = []
    for label, a in known:
        if a.get("count"):
            out.append(f"- {label}: {a['count']} ({a['share'] * 100:.1f} %), latency p50 "
                       f"{a['latency_ms_p50']} ms, p90 {a['latency_ms_p90']} ms")
    unknown = (arrivals.get("unknown") or {}).get("count")
    if unknown:
        out.append(f"- arrival path not reported: {unknown}")
    return out

