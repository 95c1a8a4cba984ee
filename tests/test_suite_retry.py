"""The suite runs a scenario a second time only when every failed expectation is a timing
figure measured on a saturated host; anything else fails at once."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from p2plab.analysis.expectations import Verdict
from p2plab.orchestrate import suite
from p2plab.orchestrate.session import RunResult

pytestmark = pytest.mark.quick

SATURATED = "host was saturated for 12 s (3 messages in flight)"


def _result(tmp: Path, n: int, verdicts: list[Verdict]) -> RunResult:
    passed = all(v.passed for v in verdicts)
    return RunResult("lossy", tmp / f"run-{n}", {"passed": passed, "wall_time_s": 9.0}, verdicts)


def _suite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
           attempts: list[list[Verdict]]) -> tuple[int, dict[str, Any], int]:
    calls: list[int] = []

    def run_scenario(path: Path, backend: str, results: Path, note: Any,
                     overrides: Any = ()) -> RunResult:
        calls.append(1)
        return _result(tmp_path, len(calls), attempts[len(calls) - 1])

    monkeypatch.setattr(suite, "run_scenario", run_scenario)
    scenario = tmp_path / "lossy.yaml"
    scenario.write_text("name: lossy\n")
    code = suite.run_suite([scenario], "netns", tmp_path / "out", None)
    return code, json.loads((tmp_path / "out" / "suite.json").read_text()), len(calls)


ok = Verdict("delivery ratio", ">= 1.0", "1.0", True)
late_saturated = Verdict("latency p99", "<= 2000 ms", "2600 ms", False, caveat=SATURATED)
late_idle = Verdict("latency p99", "<= 2000 ms", "2600 ms", False)
lost = Verdict("delivery ratio", ">= 1.0", "0.9", False)


def test_saturated_timing_failure_is_run_again_and_recorded(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    code, summary, calls = _suite(tmp_path, monkeypatch, [[ok, late_saturated], [ok, ok]])
    assert (code, calls) == (0, 2)
    run = summary["runs"][0]
    assert run["run_dir"].endswith("run-2")
    assert run["first_attempt"]["run_dir"].endswith("run-1")
    table = (tmp_path / "out" / "suite.md").read_text()
    assert "second attempt" in table and "latency p99" in table
    junit = (tmp_path / "out" / "junit.xml").read_text()
    assert "second attempt" in junit and "<failure" not in junit


def test_second_failure_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code, summary, calls = _suite(tmp_path, monkeypatch,
                                  [[late_saturated], [late_saturated]])
    assert (code, calls) == (1, 2)
    assert summary["expectations_failed"] == 1


@pytest.mark.parametrize("verdicts", [[late_idle], [late_saturated, lost], [lost]],
                         ids=["timing-on-idle-host", "also-lost-messages", "lost-messages"])
def test_other_failures_are_not_retried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        verdicts: list[Verdict]) -> None:
    code, summary, calls = _suite(tmp_path, monkeypatch, [verdicts, [ok]])
    assert (code, calls) == (1, 1)
    assert "first_attempt" not in summary["runs"][0]
