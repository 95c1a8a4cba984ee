"""CPU accounting for one run: who used the machine, and when it was saturated.

Once a second the sampler records the cumulative CPU time of every lab process (each
node's and router's process tree, each userspace link stage, the runner itself) and
the host's CPU split, as a ``cpu`` event in the lab's own event log. Analysis turns
these into CPU-ms per message per node, each process's share of the machine and the
intervals in which the host was saturated, from events alone (``analysis/cpu.py``).

NAT and bridging are kernel work done in softirq context, charged to no process: the
host's ``softirq`` share is where routers show up.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable

import psutil

SAMPLE_S = 1.0


class _Tree:
    """Cumulative CPU seconds of a host's main process (with its waited-for children),
    across restarts: when the main process changes (a node killed and started again),
    the CPU of the old one is kept and the new one's is added. Live descendants are not
    walked: that scans every process of the host, and for hundreds of accounted
    processes a second it made the sampler the busiest process of a 200-node lab."""

    def __init__(self) -> None:
        self.pid: int | None = None
        self.proc: psutil.Process | None = None
        self.carried = 0.0  # CPU of earlier incarnations
        self.last = 0.0  # the current incarnation's CPU at the last sample

    def seconds(self, lookup: Callable[[], int | None]) -> float:
        alive = self.proc is not None and self.proc.is_running()
        pid = self.pid if alive else lookup()  # ask the backend only after a change
        if pid != self.pid:
            self.carried += self.last
            self.last = 0.0
            self.pid = pid
            self.proc = psutil.Process(pid) if pid else None
        if self.proc is not None:
            try:
                t = self.proc.cpu_times()
                total = t.user + t.system + t.children_user + t.children_system
                self.last = max(self.last, total)
            except psutil.Error:
                self.proc = None
        return round(self.carried + self.last, 3)


class CpuSampler:
    """Samples in a thread of its own until stopped. ``keys`` lists the accounted
    processes (``node:NAME``, ``router:NAME``, ``link:NAME``); ``lookup`` gives one's
    current main pid (asked only when the process it had is gone)."""

    def __init__(self, keys: Callable[[], list[str]], lookup: Callable[[str], int | None],
                 emit: Callable[..., None], interval: float = SAMPLE_S) -> None:
        self._keys = keys
        self._lookup = lookup
        self._emit = emit
        self._interval = interval
        self._trees: dict[str, _Tree] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="cpu-sampler", daemon=True)
        self._runner = psutil.Process(os.getpid())

    def start(self) -> None:
        psutil.cpu_times_percent(interval=None)  # the first interval starts now
        self._thread.start()

    def stop(self) -> None:
        if self._thread.is_alive():
            self._stop.set()
            self._thread.join(5)
            self.sample()  # the last interval, up to the end of the timeline

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            self.sample()

    def sample(self) -> None:
        split = psutil.cpu_times_percent(interval=None)
        idle = split.idle + getattr(split, "iowait", 0.0)
        host = {"busy_pct": round(100.0 - idle, 1), "user_pct": round(split.user, 1),
                "system_pct": round(split.system, 1),
                "softirq_pct": round(getattr(split, "softirq", 0.0), 1),
                "steal_pct": round(getattr(split, "steal", 0.0), 1)}
        cpu_s: dict[str, float] = {}
        for key in self._keys():
            tree = self._trees.setdefault(key, _Tree())
            cpu_s[key] = tree.seconds(functools.partial(self._lookup, key))
        runner = self._runner.cpu_times()
        cpu_s["runner"] = round(runner.user + runner.system, 3)
        self._emit("cpu", cores=psutil.cpu_count(), host=host, cpu_s=cpu_s,
                   load_avg_1m=round(os.getloadavg()[0], 2))
