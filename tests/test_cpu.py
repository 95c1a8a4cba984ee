"""CPU accounting: figures from `cpu` events alone, saturation, and the caveat it puts
on timing verdicts, JUnit and compare."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pandas as pd
import pytest
from p2plab.analysis.compare import compare
from p2plab.analysis.cpu import cpu_figures, saturated_intervals
from p2plab.analysis.event_log import EventLog
from p2plab.analysis.expectations import check
from p2plab.analysis.junit import write_junit
from p2plab.topology.schema import Expectations

pytestmark = pytest.mark.quick


def cpu_event(t: float, busy: float, cpu_s: dict[str, float]) -> dict:
    return {"v": 1, "t": t, "node": "_lab", "type": "cpu", "cores": 2,
            "host": {"busy_pct": busy, "softirq_pct": 1.0}, "cpu_s": cpu_s}


def run_events(busy: list[float]) -> EventLog:
    """Node a burns 0.1 CPU-s a second at rest and 0.5 while 10 messages go out
    (t = 10..14); node b half that."""
    rows, a, b = [], 0.0, 0.0
    for i, load in enumerate(busy):
        t = float(i)
        rows.append(cpu_event(t, load, {"node:a": round(a, 3), "node:b": round(b, 3),
                                        "link:a": 0.5 * i}))
        traffic = 10 <= t < 14
        a += 0.5 if traffic else 0.1
        b += 0.25 if traffic else 0.05
    return EventLog({"cpu": pd.DataFrame(rows)})


def messages(start: float = 10.0) -> list[dict]:
    return [{"msg_id": f"m{i}", "t": start + 0.4 * i, "delays_ms": {"b": 50.0}}
            for i in range(10)]


def test_cpu_per_message_subtracts_idle_and_groups_processes() -> None:
    figures = cpu_figures(run_events([20.0] * 20), messages())
    per = figures["cpu_ms_per_message"]
    assert per["idle_subtracted"] and per["messages"] == 10
    # a: window 10.0 .. 13.65 s, 0.5 CPU-s/s busy, 0.1 at rest: 0.4 * 3.65 / 10 s = 146 ms
    assert per["per_node"]["a"] == pytest.approx(146.0, rel=0.02)
    assert per["per_node"]["b"] == pytest.approx(73.0, rel=0.02)
    assert figures["groups"]["link stages"]["cpu_s"] == pytest.approx(9.5)
    assert figures["saturated"]["seconds"] == 0 and figures["saturated"]["messages_in_flight"] == 0


def test_cpu_per_message_of_a_short_burst_is_not_a_zero() -> None:
    """nat-relay's 40 messages go out in 2 s: once-a-second samples cannot tell their CPU
    from the nodes' start-up, and the report says so instead of printing 0.0 ms."""
    burst = [{"msg_id": f"m{i}", "t": 10.0 + 0.05 * i, "delays_ms": {"b": 10.0}}
             for i in range(40)]
    per = cpu_figures(run_events([20.0] * 20), burst)["cpu_ms_per_message"]
    assert per["p50"] is None and per["all_nodes"] is None and per["per_node"] == {}
    assert "the traffic lasted 2.0 s" in per["unmeasured"]
    from p2plab.analysis.report_model import machine_load_section

    section = machine_load_section(cpu_figures(run_events([20.0] * 20), burst))
    assert section is not None
    text = " ".join(b for block in section.blocks for b in block.bullets)
    assert "CPU per message per node: not measured (the traffic lasted 2.0 s" in text


def test_saturation_is_found_and_marks_timing_verdicts(tmp_path: Path) -> None:
    busy = [20.0] * 11 + [95.0, 99.0] + [20.0] * 7
    assert saturated_intervals([(float(i), b) for i, b in enumerate(busy)]) == [(10.0, 12.0)]
    figures = cpu_figures(run_events(busy), messages())
    assert figures["saturated"]["messages_in_flight"] == 6  # sent at 10.0 .. 12.0 s
    summary = {"cpu": figures, "delivery": {"latency_ms": {"p50": 50.0, "p99": 50.0},
                                            "delivery_ratio": 1.0, "deliveries": 10,
                                            "deliveries_expected": 10},
               "connections": {}, "hole_punch": {}}
    verdicts = check(Expectations(latency_p50_ms_max=100, delivery_ratio_min=0.9), summary, None)
    by = {v.name: v for v in verdicts}
    assert "6 of 10 messages in flight" in by["latency p50"].caveat
    assert by["delivery ratio"].caveat == "" and by["timeline completed"].caveat == ""
    write_junit(tmp_path / "j.xml", [{"scenario": "s", "run_dir": "r", "wall_time_s": 1,
                                      "verdicts": [v.as_dict() for v in verdicts]}])
    cases = {c.get("name"): c for c in ET.parse(tmp_path / "j.xml").iter("testcase")}
    assert cases["latency p50"].find("properties/property").get("name") == "machine_saturated"
    assert cases["delivery ratio"].find("properties") is None
    quiet = {**summary, "cpu": cpu_figures(run_events([20.0] * 20), messages())}
    for name, s in (("hot", summary), ("quiet", quiet)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "summary.json").write_text(json.dumps(s))
    rows = {r.figure: r for r in compare(tmp_path / "quiet", tmp_path / "hot")}
    assert rows["latency p50 (ms)"].saturated == "B" and rows["delivery ratio"].saturated == ""


def test_no_samples_no_figures() -> None:
    assert cpu_figures(EventLog({}), messages()) == {}
