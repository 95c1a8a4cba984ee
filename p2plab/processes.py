"""Stopping processes, one way everywhere: a signal, a grace period for all of them
together, then SIGKILL for whoever is left. Our children are waited for through their
Popen (which reaps them and keeps their exit code); other processes are found and
watched with psutil, never reaped behind their parent's back."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterable

import psutil


def stop_children(procs: Iterable[subprocess.Popen], grace: float = 5.0,
                  sig: int = signal.SIGTERM) -> None:
    """Our own children: ``sig``, up to ``grace`` seconds for all of them together, then
    SIGKILL; each is reaped by its Popen, so its ``returncode`` is the real one."""
    live = [p for p in procs if p.poll() is None]
    for proc in live:
        try:
            proc.send_signal(sig)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    for proc in live:
        try:
            proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def stop_pids(pids: Iterable[int], grace: float = 5.0, sig: int = signal.SIGTERM) -> None:
    """Any processes by pid (not necessarily ours): ``sig`` (skipped when ``grace`` is 0),
    the grace period, then SIGKILL, waiting up to 5 s for them to go. A process that is
    some other object's child is left for its parent to reap (a zombie counts as gone)."""
    procs = [p for p in (_handle(pid) for pid in pids) if p is not None]
    if grace > 0:
        for proc in procs:
            _send(proc, sig)
        procs = _wait_gone(procs, grace)
    for proc in procs:
        _send(proc, signal.SIGKILL)
    _wait_gone(procs, 5)


def _wait_gone(procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Those of ``procs`` still running after up to ``timeout`` seconds (polled, never
    reaped: psutil's own wait would reap our children behind their Popen's back)."""
    deadline = time.monotonic() + timeout
    alive = procs
    while True:
        alive = [p for p in alive if _running(p)]
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(0.05)


def _running(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


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
