"""Write ``summary.json`` and ``report.md`` into a results folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from analysis.expectations import Verdict, check
from analysis.metrics import summarize
from topology.scenario import load_scenario


def build_report(run_dir: Path) -> tuple[dict[str, Any], list[Verdict]]:
    """Recompute everything from the folder's own files (scenario as run, manifest, events)."""
    manifest = json.loads((run_dir / "manifest.json").read_text())
    scenario = load_scenario(run_dir / "scenario.yaml")
    summary = summarize(run_dir / "events", until=manifest.get("timeline_end"),
                        run_started=manifest.get("started"),
                        spawned=manifest.get("node_spawned"))
    summary["node_rss_mb"] = manifest.get("node_rss_mb", {})
    probe_file = run_dir / "nat_probe.json"
    summary["nat_probe"] = json.loads(probe_file.read_text()) if probe_file.exists() else {}
    verdicts = check(scenario.expect, summary, manifest.get("timeline_error"))
    summary["verdicts"] = [v.as_dict() for v in verdicts]
    summary["passed"] = all(v.passed for v in verdicts)
    summary["wall_time_s"] = (round(manifest["ended"] - manifest["started"], 2)
                              if "ended" in manifest and "started" in manifest else None)
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (run_dir / "report.md").write_text(render_markdown(manifest, summary, verdicts))
    return summary, verdicts


def render_markdown(manifest: dict[str, Any], summary: dict[str, Any],
                    verdicts: list[Verdict]) -> str:
    d = summary["delivery"]
    lat = d["latency_ms"]
    out = [
        f"# {manifest['scenario']}: {'PASS' if summary['passed'] else 'FAIL'}",
        "",
        f"backend `{manifest['backend']}` · kernel `{manifest['kernel']}` · seed "
        f"{manifest['seed']} · p2plab {manifest['p2plab_version']} · libp2p "
        f"{manifest['libp2p_version']} · wall time {summary['wall_time_s']} s",
        "",
        "## Expectations",
        "",
        "| expectation | expected | observed | verdict |",
        "|---|---|---|---|",
    ]
    out += [f"| {v.name} | {v.expected} | {v.observed} | {'pass' if v.passed else '**FAIL**'} |"
            for v in verdicts]
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
