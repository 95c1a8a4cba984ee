"""Stopping processes, one way everywhere: a signal, a grace period for all of them
together, then SIGKILL for whoever is left; children are reaped. Built on psutil."""

from __future__ import annotations

import signal
import subprocess
from typing import Iterable

import psutil


def stop_children(procs: Iterable[subprocess.Popen], grace: float = 5.0,
                  sig: int = signal.SIGTERM) -> None:
    """Our own children: ``sig``, up to ``grace`` seconds for all, then SIGKILL; each is
    reaped, so its ``returncode`` is set."""
    live = [p for p in procs if p.poll() is None]
    for proc in live:
        try:
            proc.send_signal(sig)
        except ProcessLookupError:
            pass
    _, alive = psutil.wait_procs([_handle(p.pid) for p in live], timeout=grace)
    for proc in live:
        if proc.pid in {a.pid for a in alive if a is not None}:
            proc.kill()
        proc.wait()


def stop_pids(pids: Iterable[int], grace: float = 5.0, sig: int = signal.SIGTERM) -> None:
    """Any processes by pid (not necessarily ours): ``sig`` (skipped when ``grace`` is 0),
    the grace period, then SIGKILL, waiting up to 5 s for them to go."""
    procs = [p for p in (_handle(pid) for pid in pids) if p is not None]
    if grace > 0:
        for proc in procs:
            _send(proc, sig)
        _, procs = psutil.wait_procs(procs, timeout=grace)
    for proc in procs:
        _send(proc, signal.SIGKILL)
    psutil.wait_procs(procs, timeout=5)


def _handle(pid: int) -> psutil.Process | None:
    try:
        return psutil.Process(pid)
    except psutil.Error:
        return None


def _send(proc: psutil.Process, sig: int) -> None:
    try:
        proc.send_signal(sig)
    except psutil.Error:
        pass
