"""Runs interrupted at seeded random moments leave nothing behind, on both backends.

Each case starts `p2plab run nat-relay`, waits a drawn delay (anywhere from start-up
through lab creation, the timeline and teardown), then stops it one way: SIGINT,
SIGTERM, SIGHUP, SIGINT twice (the second during teardown), or SIGKILL followed by
`p2plab clean` (those runs also capture packets, so tcpdump helpers are left to find).
Afterwards nothing of the run may exist (namespaces, containers,
networks, firewall rules, helpers, node processes, its ownership record), and its
results folder, if it got one, says INTERRUPTED (never PASS); a killed Docker run's
node logs are kept. Concurrent runs of others are not counted (tests/conftest.py).
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest
from p2plab.compose.lab.ownership import RUNS_DIR

from tests.conftest import P2PLAB, ROOT, leftovers

SEED = 20261127
HOW = ["SIGINT", "SIGTERM", "SIGHUP", "SIGINT twice", "SIGKILL + clean"]
# (backend, cases, latest delay): the horizon covers start-up, creation and the timeline.
PLAN = [("netns", 12, 9.0), ("docker", 8, 13.0)]


def _cases() -> list[tuple[str, float, str]]:
    rng = random.Random(SEED)
    cases = []
    for backend, count, horizon in PLAN:
        for k in range(count):
            how = HOW[k % len(HOW)] if k < len(HOW) else rng.choice(HOW)
            cases.append((backend, round(rng.uniform(0.5, horizon), 2), how))
    return cases


CASES = _cases()


def _mark(backend: str) -> pytest.MarkDecorator:
    return getattr(pytest.mark, backend)


@pytest.mark.parametrize(
    "backend, delay, how",
    [pytest.param(b, d, h, marks=_mark(b), id=f"{b}-{i:02d}-{h.replace(' ', '')}-at-{d}s")
     for i, (b, d, h) in enumerate(CASES)])
def test_interrupted_run_leaves_nothing(tmp_path: Path, backend: str, delay: float,
                                        how: str, no_leftovers: None) -> None:
    # Killed runs capture packets too: their tcpdump helpers must be found by `clean`.
    capture = ["--capture"] if how == "SIGKILL + clean" else []
    proc = subprocess.Popen([*P2PLAB, "run", "nat-relay", "--backend", backend,
                             "--results", str(tmp_path), *capture], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        finished_first = _sleep_unless_done(proc, delay)
        if not finished_first:
            if how == "SIGKILL + clean":
                proc.kill()
            else:
                sig = getattr(signal, how.split()[0])
                proc.send_signal(sig)
                if how.endswith("twice"):
                    time.sleep(0.3)
                    if proc.poll() is None:
                        proc.send_signal(sig)
        _out, err = proc.communicate(timeout=120)
        # The signal can land as the run exits on its own (it had finished): that is
        # a finished run, judged as one below.
        finished_first = finished_first or proc.returncode in (0, 1)
    except BaseException:
        proc.kill()
        proc.communicate()
        subprocess.run([*P2PLAB, "clean"], capture_output=True)
        raise
    if how == "SIGKILL + clean" and not finished_first:
        assert proc.returncode == -signal.SIGKILL
        cleaned = subprocess.run([*P2PLAB, "clean"], capture_output=True, text=True)
        assert cleaned.returncode == 0, cleaned.stderr
    elif finished_first:
        assert proc.returncode in (0, 1), err[-2000:]
    else:
        # 130 once p2plab's handlers are in place; a signal's own code before that
        # (Python still importing), when nothing can have been made yet.
        assert proc.returncode in (130, -signal.SIGINT, -signal.SIGTERM, -signal.SIGHUP), \
            f"exit {proc.returncode}: {err[-2000:]}"
    left = leftovers()
    assert left == [], f"left behind after {how} at {delay} s: {left}; stderr: {err[-1500:]}"
    runs = list(tmp_path.glob("nat-relay-*"))
    assert len(runs) <= 1
    if not runs:
        return
    run_dir = runs[0]
    run_id = run_dir.name.rsplit("-", 1)[-1]
    assert not (RUNS_DIR / f"{run_id}.json").exists(), "the run's ownership record is stale"
    if not (run_dir / "manifest.json").exists():
        return  # stopped before the manifest: an empty folder shell, nothing to report
    # An interrupted run reports itself on the way out; a killed one (or one whose
    # report was cut short) is reported by `p2plab report`, as a user would.
    code = None
    if how == "SIGKILL + clean" or not (run_dir / "summary.json").exists():
        report = subprocess.run([*P2PLAB, "report", str(run_dir)], capture_output=True,
                                text=True, cwd=ROOT)
        code = report.returncode
    status = json.loads((run_dir / "summary.json").read_text())["status"]
    manifest = json.loads((run_dir / "manifest.json").read_text())
    if finished_first or ("ended" in manifest and not manifest.get("interrupted")):
        # The lab had run its timeline and been torn down: only the report was cut
        # short, and `p2plab report` rebuilds it from a complete run.
        assert status in ("PASS", "FAIL")
        return
    assert code in (None, 130) and status == "INTERRUPTED", (
        code, status, manifest.get("interrupted"), "ended" in manifest, err[-1500:])
    report_md = (run_dir / "report.md").read_text()
    assert report_md.startswith("# nat-relay: INTERRUPTED")
    if backend == "docker" and how == "SIGKILL + clean":
        started = [p.stem for p in (run_dir / "events").glob("*.jsonl")
                   if p.stem != "_lab" and p.stat().st_size > 0]
        missing = [n for n in started if not (run_dir / "logs" / f"{n}.log").exists()]
        assert not missing, f"node logs of the killed run were not kept: {missing}"


def _sleep_unless_done(proc: subprocess.Popen[str], delay: float) -> bool:
    """Sleep ``delay`` seconds; True if the run finished on its own before that."""
    deadline = time.monotonic() + delay
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return True
        time.sleep(0.05)
    return proc.poll() is not None
