"""JUnit XML for a suite: one test case per scenario expectation, so CI shows exactly
which expectation of which scenario regressed."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any


def write_junit(path: Path, runs: list[dict[str, Any]]) -> None:
    """``runs``: [{scenario, run_dir, wall_time_s, verdicts: [...], error: str|None}]."""
    suites = ET.Element("testsuites", name="p2plab")
    for run in runs:
        verdicts = run.get("verdicts") or []
        failures = sum(not v["passed"] for v in verdicts) + (1 if run.get("error") else 0)
        suite = ET.SubElement(suites, "testsuite", name=run["scenario"],
                              tests=str(max(1, len(verdicts))), failures=str(failures),
                              time=f"{run.get('wall_time_s') or 0:.2f}")
        if run.get("error"):
            case = ET.SubElement(suite, "testcase", classname=f"p2plab.{run['scenario']}",
                                 name="run")
            ET.SubElement(case, "error", message=run["error"][:500]).text = run["error"]
        for v in verdicts:
            case = ET.SubElement(suite, "testcase", classname=f"p2plab.{run['scenario']}",
                                 name=v["name"])
            if v.get("caveat"):
                props = ET.SubElement(case, "properties")
                ET.SubElement(props, "property", name="machine_saturated", value=v["caveat"])
            if not v["passed"]:
                ET.SubElement(case, "failure",
                              message=f"expected {v['expected']}, observed {v['observed']}"
                              + (f" ({v['caveat']})" if v.get("caveat") else ""))
            first = run.get("first_attempt")
            ET.SubElement(case, "system-out").text = (
                f"results: {run.get('run_dir')}"
                + (f"\nmeasured while the {v['caveat']}" if v.get("caveat") else "")
                + (f"\nsecond attempt: the first ({first.get('run_dir')}) failed only timing "
                   "figures measured on a saturated host" if first else ""))
    tree = ET.ElementTree(suites)
    ET.indent(tree)
    tree.write(path, encoding="utf-8", xml_declaration=True)
