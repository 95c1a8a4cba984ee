"""Stopping processes: a grace period shared by all, SIGKILL for whoever ignores the
signal, exit codes kept for our children, other processes never reaped by us."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from p2plab.processes import stop_children, stop_pids

pytestmark = pytest.mark.quick

STUBBORN = [sys.executable, "-c", "import signal, sys, time\n"
            "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
            "print('ready', flush=True)\ntime.sleep(60)"]


def _stubborn() -> subprocess.Popen[str]:
    proc = subprocess.Popen(STUBBORN, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def test_children_get_the_grace_period_together_then_sigkill() -> None:
    polite = subprocess.Popen(["sleep", "60"])
    stubborn = [_stubborn(), _stubborn()]
    started = time.monotonic()
    stop_children([polite, *stubborn], grace=1.0)
    took = time.monotonic() - started
    assert polite.returncode == -signal.SIGTERM
    assert [p.returncode for p in stubborn] == [-signal.SIGKILL, -signal.SIGKILL]
    assert took < 3.0  # one grace period for all, not one each


def test_pids_are_stopped_but_left_for_their_parent_to_reap() -> None:
    polite, stubborn = subprocess.Popen(["sleep", "60"]), _stubborn()
    stop_pids([polite.pid, stubborn.pid], grace=0.5)
    # Their parent (this test) still collects the real exit codes.
    assert polite.wait(5) == -signal.SIGTERM
    assert stubborn.wait(5) == -signal.SIGKILL
    stop_pids([polite.pid], grace=0.5)  # gone already: nothing to do, no error
