"""What a run's report says, as data: a header, headline figures, the verdicts and
sections of paragraphs, bullets and tables. ``report.md.j2`` and ``report.html.j2``
render the same model, so the Markdown and the HTML page never say different things."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from p2plab.analysis.expectations import Verdict
from p2plab.analysis.grouping import AGGREGATE_AT, pair_class
from p2plab.analysis.punch_report import field_section, theory_section
from p2plab.analysis.report_parts import Section
from pydantic import BaseModel, ConfigDict


class Summary(BaseModel):
    """What summary.json holds at its top, whoever reads it (compare, crosscheck, a
    notebook): checked before it is written; the figures' own sections stay open."""

    model_config = ConfigDict(extra="allow")

    status: Literal["PASS", "FAIL", "INTERRUPTED"]
    passed: bool
    interrupted: str | None
    wall_time_s: float | None
    backend: str | None
    delivery: dict[str, Any]
    connections: dict[str, Any]
    hole_punch: dict[str, Any]
    propagation: dict[str, Any]
    ping: dict[str, Any]
    verdicts: list[dict[str, Any]]


@dataclass
class VerdictRow:
    name: str
    expected: str
    observed: str
    caveat: str | None
    passed: bool


@dataclass
class Report:
    scenario: str
    status: str
    meta: list[tuple[str, Any]]  # backend, kernel, seed, version, wall time
    implementations: str
    description: str
    link_mechanism: str
    headline: list[tuple[str, str]]
    verdicts: list[VerdictRow]
    notes: list[str]  # under the verdicts: what was not checked, what the model ignored
    sections: list[Section]
    plots: list[tuple[str, str]]  # (name, file under plots/) for the Markdown page


def _ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _ms(value: float | None) -> str:
    """A time in ms, or "n/a" where the run has none (no delivery, no direct connection)."""
    return "n/a" if value is None else f"{value} ms"


def implementations_line(manifest: dict[str, Any]) -> str:
    """Which node implementation each node ran, with versions as the nodes reported."""
    impls = manifest.get("implementations") or {}
    if not impls:
        return "nodes: " + ", ".join(f"{k}: {v}" for k, v in
                                     (manifest.get("node_implementations") or {}).items())
    parts = []
    for impl, info in sorted(impls.items()):
        nodes = info.get("nodes") or []
        limit = 8
        shown = ", ".join(nodes[:limit]) + (f" and {len(nodes) - limit} more"
                                             if len(nodes) > limit else "")
        parts.append(f"{impl} node {info.get('version')} on {info.get('libp2p')} "
                     f"({len(nodes)}: {shown})")
    return "nodes: " + "; ".join(parts)


def delivery_section(summary: dict[str, Any]) -> Section:
    d = summary["delivery"]
    lat = d["latency_ms"]
    section = Section("Delivery").bullets([
        f"messages published: {d['messages_published']}, fully delivered: "
        f"{d['messages_fully_delivered']}",
        f"deliveries: {d['deliveries']}/{d['deliveries_expected']} (ratio "
        f"{_ratio(d['delivery_ratio'])}), duplicate receptions: {d['duplicate_receptions']}",
        f"latency: p50 {_ms(lat['p50'])}, p95 {_ms(lat['p95'])}, p99 {_ms(lat['p99'])}, "
        f"max {_ms(lat['max'])}",
        f"receivers that could reach the publisher (no cut link, same partition): "
        f"{d['reachable_deliveries']}/{d['reachable_expected']}",
        *arrival_lines(summary.get("arrivals") or {}),
    ])
    torn = summary.get("torn_lines")
    return section.paragraph(
        "Eligible receivers are the topic's subscribers alive when a message went out."
        + (f" Event logs had {len(torn)} torn line(s) (a process killed mid-write), read "
           f"past: {', '.join(torn[:5])}." if torn else ""))


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
            out.append(f"{label}: {a['count']} ({a['share'] * 100:.1f} %), latency p50 "
                       f"{a['latency_ms_p50']} ms, p90 {a['latency_ms_p90']} ms")
    unknown = (arrivals.get("unknown") or {}).get("count")
    if unknown:
        out.append(f"arrival path not reported: {unknown}")
    return out


def connection_sections(summary: dict[str, Any],
                        classes: dict[str, str] | None = None) -> list[Section]:
    """Connections and hole punches per pair; with AGGREGATE_AT pairs or more, per pair
    of node classes (group and NAT), the per-pair rows left to the CSV tables."""
    classes = classes or {}
    connections, punches = summary["connections"], summary["hole_punch"]
    if len(connections) < AGGREGATE_AT:
        out = [Section("Connections at the end of the timeline").table(
            ["pair", "final", "ever opened"],
            [[k, v["final"], ", ".join(v["ever"])] for k, v in connections.items()])]
    else:
        tally: dict[str, Counter[str]] = {}
        for v in connections.values():
            key = pair_class(v["nodes"][0], v["nodes"][1], classes)
            tally.setdefault(key, Counter())[v["final"]] += 1
        finals = sorted({f for c in tally.values() for f in c})
        out = [Section("Connections at the end of the timeline").paragraph(
            f"{len(connections)} pairs, by the classes of their nodes (group · the NAT in "
            "front of its LAN); every pair is in tables/connections.csv.").table(
            ["classes", "pairs", *finals],
            [[k, sum(c.values()), *[c.get(f, 0) for f in finals]]
             for k, c in sorted(tally.items(), key=lambda kv: (-sum(kv[1].values()), kv[0]))])]
    if punches and len(punches) < AGGREGATE_AT:
        rows = [[k, "failure, direct anyway" if v.get("direct_anyway") else v["outcome"],
                 v["attempts"], v["successes"], _ms(v["time_to_direct_ms"]),
                 "; ".join(f"#{f['attempt']} {f['reason']}" for f in v["failures"]) or "-"]
                for k, v in punches.items()]
        out.append(Section("Hole punching").table(
            ["pair", "outcome", "attempts", "successes", "time to direct",
             "failure reasons"], rows))
    elif punches:
        groups: dict[str, list[dict[str, Any]]] = {}
        for v in punches.values():
            groups.setdefault(pair_class(v["nodes"][0], v["nodes"][1], classes), []).append(v)
        rows = []
        for key, members in sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0])):
            attempts = sum(v["attempts"] for v in members)
            successes = sum(v["successes"] for v in members)
            times = sorted(v["time_to_direct_ms"] for v in members if v["time_to_direct_ms"])
            reasons = Counter(f["reason"] for v in members for f in v["failures"])
            rows.append([key, len(members), sum(v["outcome"] == "success" for v in members),
                         attempts, successes,
                         f"{successes / attempts:.0%}" if attempts else "-",
                         times[len(times) // 2] if times else "-",
                         "; ".join(f"{n}x {r}" for r, n in reasons.most_common(2)) or "-"])
        out.append(Section("Hole punching").paragraph(
            f"{len(punches)} pairs, by the classes of their nodes; every attempt is in "
            "tables/hole_punches.csv.").table(
            ["classes", "pairs", "pairs direct", "attempts", "successes", "success rate",
             "time to direct p50 (ms)", "commonest failures"], rows))
    forensics = summary.get("punch_forensics") or {}
    if forensics:
        out.append(Section("Why hole punches failed (the routers' connection tracking)")
                   .paragraph("From each router's conntrack log (forensics: true), not "
                              "from theory: where each side's packets went, what the other "
                              "side's router had mapped, and what it let in (a packet a "
                              "router drops leaves no entry: it shows as none let in).")
                   .bullets([f"**{k}**: {v['text']}" for k, v in
                             list(forensics.items())[:AGGREGATE_AT]]))
    if summary.get("nat_probe"):
        rows = [[lan, r["router"], r["nat"], _probe_cell(r["observed"], "udp"),
                 _probe_cell(r["observed"], "tcp"),
                 "yes" if r["matches"] else "**no**: " + "; ".join(r["mismatches"])]
                for lan, r in summary["nat_probe"].items()]
        out.append(Section("NAT probe (declared vs observed)").table(
            ["LAN", "router", "preset", "UDP observed", "TCP observed", "matches"], rows))
    return out


def relay_section(summary: dict[str, Any]) -> Section | None:
    """What the relays did, from their own events: counts, and each circuit they cut with
    how long the pair was apart and what the messages sent meanwhile did."""
    circuits = summary.get("relay_circuits") or {}
    if not circuits:
        return None
    actions = ", ".join(f"{n} {a}" for a, n in circuits["actions"].items())
    closed = ", ".join(f"{n} {r}" for r, n in circuits["closed_by_reason"].items()) or "none"
    section = Section("Relayed circuits").paragraph(
        f"The relays' own account: {actions}; circuits closed by reason: {closed} "
        "(duration and bytes: the relay cut the circuit at its limit).")
    cuts = circuits["cuts"]
    if cuts:
        rows = [[f"{c['src']} -> {c['dst']}", c["relay"], c["reason"], f"{c['at_s']:g} s",
                 "-" if c["lived_s"] is None else f"{c['lived_s']:g} s",
                 "never" if c["reconnected_after_s"] is None
                 else f"{c['reconnected_after_s']:g} s ({c['reconnected_kind']})",
                 f"{c['arrived_while_cut']}/{c['messages_while_cut']}"]
                for c in cuts[:AGGREGATE_AT]]
        section.table(["circuit (dialler -> listener)", "relay", "cut because", "at",
                       "after living", "connected again after",
                       "messages between them while apart: arrived"], rows)
        if len(cuts) > AGGREGATE_AT:
            section.paragraph(f"... and {len(cuts) - AGGREGATE_AT} more in summary.json.")
    return section


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


def traffic_sections(summary: dict[str, Any]) -> list[Section]:
    out = []
    prop = summary.get("propagation", {})
    if prop.get("messages"):
        out.append(Section("Propagation").table(
            ["share of subscribers", "median time (ms)", "messages that got there"],
            [[f"{level} %", prop.get(f"t{level}_ms_median"),
              f"{prop.get(f't{level}_ms_reached')}/{prop['messages']}"]
             for level in (50, 90, 99, 100)]))
    flows = summary["delivery"].get("per_flow", {})
    if len(flows) > 1 or any(k != "(unnamed)" for k in flows):
        out.append(Section("Traffic flows").table(
            ["flow", "messages", "delivered", "ratio", "reachable ratio",
             "latency p50 / p99"],
            [[name, f["messages_published"], f"{f['deliveries']}/{f['deliveries_expected']}",
              _ratio(f["delivery_ratio"]), _ratio(f["reachable_delivery_ratio"]),
              f"{_ms(f['latency_ms']['p50'])} / {_ms(f['latency_ms']['p99'])}"]
             for name, f in flows.items()]))
    if summary.get("recovery"):
        out.append(Section("Faults and recovery").paragraph(
            "Recovery: from the fault until a message published after it reached every "
            "live, reachable subscriber.").table(
            ["fault", "recovery (ms)", "messages after it", "short before recovery"],
            [[r["fault"], r["recovery_ms"], r["messages_after"], r["short_before_recovery"]]
             for r in summary["recovery"]]))
    return out


def links_section(manifest: dict[str, Any], summary: dict[str, Any]) -> Section | None:
    shaping = manifest.get("link_shaping") or {}
    if not shaping.get("links"):
        return None
    same: dict[tuple[Any, ...], list[str]] = {}
    for node, link in shaping["links"].items():
        key = (link["latency_ms"], link["jitter_ms"], link["loss_pct"], link["bandwidth_kbit"])
        same.setdefault(key, []).append(node)
    rows = [[", ".join(nodes[:6]) + (f" and {len(nodes) - 6} more" if len(nodes) > 6 else ""),
             lat, jit, loss, bw or "-"] for (lat, jit, loss, bw), nodes in same.items()]
    section = Section("Links").paragraph(
        f"Impairment applied by **{shaping.get('mechanism')}** ({shaping.get('why')}).").table(
        ["nodes", "latency ms", "jitter ms", "loss %", "bandwidth kbit/s"], rows)
    rtt = summary.get("link_rtt", {})
    if rtt.get("pairs"):
        section.paragraph("Round trips measured with UDP echoes before the timeline (median "
                          "of 20), against the configured 2 x (latency of both access "
                          "links):").table(
            ["path", "configured ms", "measured ms (min / median / max)", "error %",
             "echoes back"],
            [[r["pair"], r["configured_ms"],
              f"{r.get('min_ms')} / {r['measured_ms']} / {r.get('max_ms')}", r["error_pct"],
              f"{r.get('received', 0)}/{r.get('sent', 0)}"] for r in rtt["pairs"]])
    return section


def machine_load_section(cpu: dict[str, Any]) -> Section | None:
    """Who used the CPU, per message, and when the machine was saturated."""
    if not cpu:
        return None
    sat = cpu["saturated"]
    per_msg = cpu.get("cpu_ms_per_message") or {}
    items = [
        f"host CPU busy: mean {cpu['host_busy_pct_mean']} %, max {cpu['host_busy_pct_max']} % "
        f"of {cpu['cores']} cores over {cpu['sampled_s']} s (kernel softirq, where NAT and "
        f"bridging run: {cpu['host_softirq_pct_mean']} %)",
        f"saturated (>= {sat['threshold_pct']:g} % busy): {sat['seconds']} s "
        f"({100 * sat['fraction_of_run']:.0f} % of the run); messages in flight then: "
        f"{sat.get('messages_in_flight', 0)} of {sat.get('messages', 0)}"
        + (" — their latency and propagation are partly the machine's CPU queue"
           if sat.get("messages_in_flight") else "")]
    items += [f"{group}: {v['cpu_s']} CPU-s, {v['share_pct']} % of the machine"
              + (" (their NAT runs in the kernel: in softirq above, not in their processes)"
                 if group == "routers" else "")
              for group, v in sorted(cpu["groups"].items(), key=lambda kv: -kv[1]["share_pct"])]
    if per_msg.get("p50") is not None:
        items.append(f"CPU per message per node: median {per_msg['p50']} ms, max "
                     f"{per_msg['max']} ms, all nodes together {per_msg['all_nodes']} ms "
                     f"({per_msg['messages']} messages over {per_msg['window_s']} s"
                     + (", idle CPU subtracted)" if per_msg["idle_subtracted"] else ")"))
    elif per_msg.get("unmeasured"):
        items.append(f"CPU per message per node: not measured ({per_msg['unmeasured']})")
    top = sorted(cpu["share_pct"].items(), key=lambda kv: -kv[1])[:5]
    items.append("busiest: " + ", ".join(f"{k} {v} %" for k, v in top))
    return Section("Machine load").bullets(items)


def _offset(measured: dict[str, float] | None) -> str:
    if not measured:
        return "not measured"
    return f"{measured['offset_ms']:+.3f} ± {measured['uncertainty_ms']:.3f}"


def cluster_section(manifest: dict[str, Any]) -> Section | None:
    """Where hosts ran and how far each engine's clock was from the runner's (a lab
    over several engines: event times were corrected by the offsets at the start)."""
    # "swarm": what results folders made before the key was named for what it holds say.
    cluster: dict[str, Any] = manifest.get("cluster") or manifest.get("swarm") or {}
    if not cluster.get("engines"):
        return None
    per_engine = cluster.get("hosts_per_engine") or {}
    start: dict[str, Any] = cluster.get("clock_offsets") or {}
    end: dict[str, Any] = cluster.get("clock_offsets_end") or {}
    samples = next((o.get("samples", "?") for o in start.values()), "?")
    return Section("Engines and clocks").paragraph(
        f"{len(cluster['engines'])} engines of the cluster at `{cluster.get('manager')}`, "
        f"image from `{cluster.get('registry')}`. Event times are on the runner's clock: "
        f"each engine's offset, measured at the start (best of {samples} round trips), was "
        "subtracted; the end measurement shows the drift over the run.").table(
        ["engine", "address", "hosts", "clock offset at start (ms)", "at end (ms)"],
        [[e["hostname"], e["address"], per_engine.get(e["hostname"], 0),
          _offset(start.get(e["hostname"])), _offset(end.get(e["hostname"]))]
         for e in cluster["engines"]])


def node_sections(summary: dict[str, Any]) -> list[Section]:
    out = []
    mesh = summary.get("mesh") or {}
    if mesh.get("at_first_publish"):
        out.append(Section("Gossipsub mesh").bullets([
            f"mesh size at the first publish: median {mesh['at_first_publish_median']}, "
            f"min {mesh['at_first_publish_min']} (a node below D_lo gets messages late, "
            "by gossip at heartbeat pace)",
            "nodes without a mesh then: "
            + (", ".join(mesh["nodes_without_mesh_at_first_publish"]) or "none")]))
    p = summary["ping"]
    nodes = Section("Ping, start-up and memory").bullets([
        f"{p['count']} pings, {p['failed']} failed, RTT p50 {p['rtt_ms_p50']} ms, max "
        f"{p['rtt_ms_max']} ms" if p["count"] else
        "no pings (the scenario's ping_interval is 0)"])
    if summary.get("startup"):
        st = summary["startup"]
        nodes.paragraph(f"All nodes ready {st['all_ready_s']} s after the run started; "
                        f"slowest node start-up {st.get('node_startup_s_max')} s.")
    rss = {k: v for k, v in summary.get("node_rss_mb", {}).items() if v is not None}
    if rss:
        nodes.paragraph("Resident memory per node at the end of the timeline (MB): "
                        + ", ".join(f"{k} {v}" for k, v in rss.items()))
    out.append(nodes)
    return out


def report_model(manifest: dict[str, Any], summary: dict[str, Any], verdicts: list[Verdict],
                 figures: dict[str, Path], description: str,
                 classes: dict[str, str] | None = None) -> Report:
    d = summary["delivery"]
    lat, prop = d["latency_ms"], summary.get("propagation", {})
    notes = []
    if manifest.get("overrides"):
        # A suite --impls row or a --set run: the description is the file's, not this run's.
        notes.append("Run with overrides (the description above is the scenario file as "
                     "written, before them): " + ", ".join(manifest["overrides"]) + ".")
    if summary.get("not_checked"):
        notes.append("Not checked on this backend: " + "; ".join(summary["not_checked"]) + ".")
    if manifest.get("sim_warnings"):
        notes.append("The simulator ignored: " + "; ".join(manifest["sim_warnings"]) + ".")
    sections: list[Section | None] = [
        delivery_section(summary), *connection_sections(summary, classes),
        theory_section(summary), field_section(summary), relay_section(summary),
        *traffic_sections(summary),
        links_section(manifest, summary), machine_load_section(summary.get("cpu") or {}),
        cluster_section(manifest), *node_sections(summary)]
    return Report(
        scenario=manifest["scenario"], status=summary["status"],
        meta=[("backend", f"`{manifest['backend']}`"), ("kernel", f"`{manifest['kernel']}`"),
              ("seed", manifest["seed"]), ("p2plab", manifest["p2plab_version"]),
              ("wall time", f"{summary['wall_time_s']} s")],
        implementations=implementations_line(manifest), description=description.strip(),
        link_mechanism=(manifest.get("link_shaping") or {}).get("mechanism") or "none",
        headline=[
            ("verdict", summary["status"]),
            ("delivery ratio", f"{_ratio(d['delivery_ratio'])} "
                               f"({d['deliveries']}/{d['deliveries_expected']})"),
            ("latency p50 / p99", f"{_ms(lat['p50'])} / {_ms(lat['p99'])}"),
            ("time to 90 % of subscribers (median)", _ms(prop.get("t90_ms_median"))),
            ("wall time", f"{summary['wall_time_s']} s")],
        verdicts=[VerdictRow(v.name, str(v.expected), str(v.observed), v.caveat, v.passed)
                  for v in verdicts],
        notes=notes, sections=[s for s in sections if s is not None],
        plots=[(k, v.name) for k, v in figures.items()])
