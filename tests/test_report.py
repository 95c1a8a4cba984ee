"""Reports: tidy tables, propagation, plots with content, the HTML page in a real
browser, `p2plab compare` flagging a worsened run, and suites with JUnit XML."""

from __future__ import annotations

import json
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest
from p2plab.analysis import compare as compare_module
from p2plab.analysis.compare import compare
from p2plab.analysis.event_log import read_event_log
from p2plab.analysis.metrics import summarize
from p2plab.analysis.tables import build_tables

from tests.conftest import P2PLAB, ROOT
from tests.test_analysis import _msg, _started, _write


def _colour_share(png: Path) -> tuple[float, int]:
    """(share of pixels that are not white or grey, number of distinct colours)."""
    img = mpimg.imread(png)[..., :3]
    spread = img.max(axis=2) - img.min(axis=2)
    colours = len(np.unique((img * 255).astype(np.uint8).reshape(-1, 3), axis=0))
    return float((spread > 0.15).mean()), colours


@pytest.mark.quick
def test_propagation_and_per_node_delivery(tmp_path: Path) -> None:
    events = [_started("a"), _started("b"), _started("c"),
              _msg("message_published", "a", "a", 1, 10.0),
              _msg("message_received", "b", "a", 1, 10.010),
              _msg("message_received", "c", "a", 1, 10.030),
              _msg("message_published", "b", "b", 1, 20.0),
              _msg("message_received", "a", "b", 1, 20.005)]
    summary = summarize(_write(tmp_path, events))
    prop = summary["propagation"]
    first = prop["per_message"][0]
    assert (first["t50_ms"], first["t90_ms"], first["t100_ms"]) == pytest.approx((10.0, 30.0, 30.0))
    second = prop["per_message"][1]
    assert second["t50_ms"] == pytest.approx(5.0) and second["t100_ms"] is None
    assert prop["t100_ms_reached"] == 1 and prop["curve"]["share"][-1] == pytest.approx(0.75)
    d = summary["delivery"]
    assert d["per_publisher"] == {"a": 1.0, "b": 0.5}
    assert d["per_receiver"] == {"a": 1.0, "b": 1.0, "c": 0.5}
    tables = build_tables(read_event_log(tmp_path / "events"))
    deliveries = tables["deliveries"]
    assert len(deliveries) == 3 and set(deliveries["origin_node"]) == {"a", "b"}
    assert deliveries["latency_ms"].round(3).tolist() == [10.0, 30.0, 5.0]


@pytest.mark.quick
def test_tables_and_summary_of_a_run_without_messages(tmp_path: Path) -> None:
    events_dir = _write(tmp_path, [_started("a"), _started("r", "relay")])
    tables = build_tables(read_event_log(events_dir))
    assert all(frame.empty for frame in tables.values())
    summary = summarize(events_dir)
    assert summary["propagation"]["messages"] == 0 and summary["delivery"]["deliveries"] == 0


@pytest.mark.quick
def test_compare_flags_regressions(tmp_path: Path) -> None:
    base = {"delivery": {"delivery_ratio": 1.0, "latency_ms": {"p50": 10, "p95": 20, "p99": 30}},
            "propagation": {"t90_ms_median": 40, "t100_ms_median": 50,
                            "curve": {"t_ms": [0, 20, 40], "share": [0, 0.5, 1.0]}},
            "hole_punch": {}, "verdicts": [{"passed": True}], "status": "PASS"}
    worse = json.loads(json.dumps(base))
    worse["delivery"]["delivery_ratio"] = 0.9
    worse["delivery"]["latency_ms"]["p99"] = 45
    for name, summary in (("a", base), ("b", worse), ("c", base)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "summary.json").write_text(json.dumps(summary))
    rows = {r.figure: r for r in compare(tmp_path / "a", tmp_path / "b")}
    assert rows["delivery ratio"].regression and rows["latency p99 (ms)"].regression
    assert not rows["latency p50 (ms)"].regression
    assert not any(r.regression for r in compare(tmp_path / "a", tmp_path / "c"))
    (tmp_path / "b" / "tables").mkdir()
    (tmp_path / "b" / "tables" / "deliveries.csv").write_text(
        "msg_id,latency_ms,duplicate\nm1,12.5,False\nm1,99,True\nm2,30,False\n")
    page = tmp_path / "compare.html"
    result = subprocess.run([*P2PLAB, "compare", str(tmp_path / "a"), str(tmp_path / "b"),
                             "--html", str(page)], capture_output=True, text=True)
    assert result.returncode == 1 and "REGRESSION" in result.stdout
    html = page.read_text()
    assert "data:image/png;base64," in html and html.count("class=regression") == 2
    assert str(tmp_path / "a") in html and str(tmp_path / "b") in html
    assert compare_module._latencies(tmp_path / "b") == [12.5, 30.0]  # first copies only


def _chromium() -> str:
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("chromium missing: make test installs it (apt-get install chromium)")
    return chromium


def _browser_shot(page: Path, shot: Path) -> tuple[float, int]:
    """A page rendered by headless Chromium: the screenshot's colour share and colours."""
    subprocess.run([_chromium(), "--headless", "--no-sandbox", "--disable-gpu",
                    "--hide-scrollbars", "--window-size=1200,3000", f"--screenshot={shot}",
                    f"file://{page}"], capture_output=True, timeout=120)
    return _colour_share(shot)


@pytest.mark.netns
@pytest.mark.usefixtures("no_leftovers")
def test_suite_report_browser_and_compare(tmp_path: Path) -> None:
    results = tmp_path / "suite"
    done = subprocess.run([*P2PLAB, "suite", "lan", "nat-holepunch", "--backend", "netns",
                           "--results", str(results)], capture_output=True, text=True,
                          timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith("suite: 2 of 2 runs passed; expectations: "), last
    assert last.endswith(" passed, 0 failed"), last
    tree = ET.parse(results / "junit.xml")
    cases = tree.getroot().findall(".//testcase")
    suite = json.loads((results / "suite.json").read_text())
    assert len(cases) == sum(len(r["verdicts"]) for r in suite["runs"]) >= 6
    assert {c.get("classname") for c in cases} == {"p2plab.lan", "p2plab.nat-holepunch"}
    assert not tree.getroot().findall(".//failure")

    lan = Path(next(r["run_dir"] for r in suite["runs"] if r["scenario"] == "lan"))
    # Tables reload, and plots have content.
    import pandas as pd

    deliveries = pd.read_csv(lan / "tables" / "deliveries.csv")
    assert len(deliveries) == 200 and deliveries["latency_ms"].gt(0).all()
    for plot in ("propagation", "latency_cdf", "delivery_heatmap", "connections", "topology"):
        share, colours = _colour_share(lan / "plots" / f"{plot}.png")
        assert share > 0.002 and colours > 50, (plot, share, colours)
    summary = json.loads((lan / "summary.json").read_text())
    assert 0 < summary["propagation"]["t90_ms_median"] <= summary["propagation"]["t100_ms_median"]

    # The HTML report renders in a real browser, images included.
    share, colours = _browser_shot(lan / "report.html", tmp_path / "report.png")
    assert share > 0.02 and colours > 200, (share, colours)
    chromium = _chromium()
    text_only = tmp_path / "text.html"
    text_only.write_text((lan / "report.html").read_text().split("<h2>Topology")[0])
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu",
                    "--window-size=1200,3000", f"--screenshot={tmp_path / 'text.png'}",
                    f"file://{text_only}"], capture_output=True, timeout=120)
    assert _colour_share(tmp_path / "text.png")[0] < share / 2  # the images made the colour

    # A deliberately worsened copy: n5 loses a quarter of what it received.
    worse = tmp_path / "worse"
    shutil.copytree(lan, worse, ignore=shutil.ignore_patterns("*.fifo"))
    log = worse / "events" / "n5.jsonl"
    lines = log.read_text().splitlines()
    received = [i for i, line in enumerate(lines) if '"message_received"' in line]
    drop = set(received[::4])
    log.write_text("".join(line + "\n" for i, line in enumerate(lines) if i not in drop))
    assert subprocess.run([*P2PLAB, "report", str(worse)], capture_output=True).returncode == 1
    cmp = subprocess.run([*P2PLAB, "compare", str(lan), str(worse)], capture_output=True, text=True)
    assert cmp.returncode == 1
    assert any("delivery ratio" in line and "REGRESSION" in line
               for line in cmp.stdout.splitlines())


@pytest.mark.quick
def test_html_pages_escape_what_scenarios_and_nodes_wrote(tmp_path: Path) -> None:
    """Text from a scenario file or a node (a description, a failure reason) reaches the
    page escaped by the template engine, never as markup."""
    from p2plab.analysis.expectations import Verdict
    from p2plab.analysis.report import render_html
    from p2plab.analysis.report_model import report_model

    events_dir = _write(tmp_path, [_started("a"), _started("b"),
                                   _msg("message_published", "a", "a", 1, 10.0)])
    summary = summarize(events_dir)
    summary.update(status="FAIL", wall_time_s=1.0, passed=False)
    hostile = "<script>alert('x')</script>"
    verdict = Verdict(name="delivery ratio", expected=">= 1", observed=f"0 {hostile}",
                      passed=False)
    manifest = {"scenario": "s", "backend": "netns", "kernel": "k", "seed": 1,
                "p2plab_version": "0", "timeline_error": hostile}
    page = render_html(report_model(manifest, summary, [verdict], {}, f"about {hostile}"), {})
    assert "<script>" not in page
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in page
    assert page.count("<tr class=fail>") == 1


@pytest.mark.quick
def test_markdown_and_html_say_the_same_from_one_model(tmp_path: Path) -> None:
    """One report model, two templates: a notice the HTML page used to drop is on both,
    the details are real tables on the page, and a ``|`` in a value stays in its cell."""
    from p2plab.analysis.expectations import Verdict
    from p2plab.analysis.report import render_html, render_markdown
    from p2plab.analysis.report_model import report_model

    events_dir = _write(tmp_path, [_started("a"), _started("b"),
                                   _msg("message_published", "a", "a", 1, 10.0),
                                   _msg("message_received", "b", "a", 1, 10.2)])
    summary = summarize(events_dir)
    summary.update(status="FAIL", wall_time_s=1.0, passed=False,
                   not_checked=["link_rtt_tolerance_pct: no packets"])
    verdict = Verdict(name="punch a|b", expected="direct", observed="relayed | failed",
                      passed=False)
    manifest = {"scenario": "s", "backend": "sim", "kernel": "k", "seed": 1,
                "p2plab_version": "0", "sim_warnings": ["quic: simulated as TCP"],
                "overrides": ["nodes.0.impl=rust@0.53"]}
    report = report_model(manifest, summary, [verdict], {}, "two nodes")
    markdown, page = render_markdown(report), render_html(report, {})
    assert "| punch a\\|b | direct | relayed \\| failed | **FAIL** |" in markdown
    for text in ("Not checked on this backend: link_rtt_tolerance_pct: no packets.",
                 "The simulator ignored: quic: simulated as TCP.", "two nodes",
                 "Run with overrides (the description above is the scenario file as "
                 "written, before them): nodes.0.impl=rust@0.53."):
        assert text in markdown and text in page, text
    assert "<pre>" not in page and "<h3>Connections at the end of the timeline</h3>" in page
    assert markdown.count("\n## ") == 1 + len(report.sections)  # Expectations, then each


BIG = """
name: big-report
seed: 5
ping_interval: 0
public: {subnet: 198.18.0.0/15}
lans:
  - {name: home, count: 150, subnet: 10.0.0.0/8, nat: port-restricted, link: {latency_ms: 20}}
  - {name: cgn, count: 50, subnet: 172.16.0.0/12, nat: symmetric, link: {latency_ms: 30}}
nodes:
  - {name: server, count: 200, lan: public, link: {latency_ms: 5}}
  - {name: peer, count: 600, lan: [home-*], mdns: true,
     connect: {to: random, k: 3, among: ["server-*"]}}
  - {name: mobile, count: 200, lan: [cgn-*], mdns: true,
     connect: {to: random, k: 3, among: ["server-*"]}}
connect: {graph: random-regular, degree: 6, among: ["server-*"]}
timeline:
  - {wait: topic-peers, nodes: ["*"], min: 2, timeout: 60}
  - {publish: ["server-00?"], count: 3, size: 256, rate: 2, name: gossip}
  - {sleep: 5}
expect:
  delivery_ratio_min: 0.9
"""


def test_a_report_of_1000_nodes_reads(tmp_path: Path) -> None:
    """At 1,000 nodes the heat map, the hole-punch plot and the tables show classes of
    nodes (group · NAT), and the page renders in a real browser."""
    scenario = tmp_path / "big-report.yaml"
    scenario.write_text(BIG)
    done = subprocess.run([*P2PLAB, "run", str(scenario), "--backend", "sim",
                           "--results", str(tmp_path / "out")], capture_output=True, text=True,
                          timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    (run,) = (tmp_path / "out").glob("big-report-*")
    heat = mpimg.imread(run / "plots" / "delivery_heatmap.png")
    height, width = heat.shape[:2]
    assert 0.4 < height / width < 2.5, (height, width)  # not a strip
    report = (run / "report.md").read_text()
    connections = report.split("## Connections at the end of the timeline")[1].split("\n## ")[0]
    assert "every pair is in tables/connections.csv" in connections
    rows = [line for line in connections.splitlines() if line.startswith("| ")]
    assert 2 <= len(rows) <= 12, rows  # a header and a row per pair of classes
    assert "server · public ↔ server · public" in connections
    assert "mobile · symmetric" in connections and "peer · port-restricted" in connections
    share, colours = _browser_shot(run / "report.html", tmp_path / "big.png")
    assert share > 0.02 and colours > 200, (share, colours)
    assert (run / "report.html").stat().st_size < 3_000_000


@pytest.mark.quick
def test_classes_and_aggregated_punches() -> None:
    from p2plab.analysis.grouping import node_classes, pair_class
    from p2plab.analysis.report import punches_by_class
    from p2plab.analysis.report_model import connection_sections

    manifest = {"nodes": {"peer-01": {"segment": "home-1"}, "peer-02": {"segment": "home-2"},
                          "m-1": {"segment": "cgn-1"}, "relay": {"segment": "public"}},
                "routers": {"home-1-gw": {"lan": "home-1", "nat": "port-restricted"},
                            "home-2-gw": {"lan": "home-2", "nat": "port-restricted"},
                            "cgn-1-gw": {"lan": "cgn-1", "nat": "symmetric"}}}
    classes = node_classes(manifest, list(manifest["nodes"]))
    assert classes == {"peer-01": "peer · port-restricted", "peer-02": "peer · port-restricted",
                       "m-1": "m · symmetric", "relay": "relay · public"}
    assert pair_class("m-1", "peer-02", classes) == "m · symmetric ↔ peer · port-restricted"
    punches = {f"p{i}": {"nodes": ["peer-01", "m-1"] if i % 2 else ["peer-01", "peer-02"],
                         "attempts": 2, "successes": i % 2 == 0, "outcome":
                         "failure" if i % 2 else "success", "time_to_direct_ms": None
                         if i % 2 else 100.0 + i,
                         "failures": [{"attempt": 1, "reason": "Giving up"}] if i % 2 else []}
               for i in range(60)}
    grouped = punches_by_class(punches, classes)
    assert grouped["m · symmetric ↔ peer · port-restricted"] == {
        "attempts": 60, "successes": 0, "time_to_direct_ms": None}
    assert grouped["peer · port-restricted ↔ peer · port-restricted"]["time_to_direct_ms"] == 158.0
    summary = {"connections": {}, "hole_punch": punches}
    (table,) = [s for s in connection_sections(summary, classes) if s.title == "Hole punching"]
    rows = next(b.table.rows for b in table.blocks if b.table)
    assert rows[0][:6] == ["m · symmetric ↔ peer · port-restricted", 30, 0, 60, 0, "0%"]
    assert rows[0][7] == "30x Giving up"
    assert rows[1][:7] == ["peer · port-restricted ↔ peer · port-restricted", 30, 30, 60, 30,
                           "50%", 130.0]


@pytest.mark.quick
def test_plot_subtitles_break_between_parts_to_fit_the_plot() -> None:
    """A lab of several libp2p releases names them all: the subtitle must not run off a
    6-inch plot (it was cut at "rust-libp2p 0.53")."""
    from p2plab.analysis.plots import _subtitle

    meta = {"scenario": "poc-libp2p-053", "backend": "netns", "seed": 53,
            "libp2p_version": "py-libp2p 0.8.1 + rust-libp2p 0.53.2"}
    assert _subtitle(meta).split("\n") == ["poc-libp2p-053 · backend netns · seed 53",
                                           "libp2p py-libp2p 0.8.1 + rust-libp2p 0.53.2"]
    meta.update(scenario="lan", libp2p_version="py-libp2p 0.8.1")
    assert _subtitle(meta) == "lan · backend netns · seed 53 · libp2p py-libp2p 0.8.1"
