"""Apply each node's access-link impairment, computed in the plan, on any backend.

Where the kernel has netem, tc netem shapes the node's interface (egress) and an ifb
device fed from its ingress (the other direction). Where it does not (this project's
machines), a userspace stage (compose/lab/linkstage.py) runs in the node's namespace and
holds NFQUEUE'd packets. Either way the impairment sits in the node's own namespace,
both directions, so backends share this code. Which mechanism applied each link goes
into the results manifest.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from p2plab.compose.backends.base import Backend, BackendError
from p2plab.topology.plan import NODE_IF, LabPlan
from p2plab.topology.schema import LinkSpec

from p2plab.processes import stop_children

IFB = "p2pl-ifb"
MECHANISMS = ("auto", "netem", "nfqueue")
READY_TIMEOUT_S = 10.0


def netem_args(link: LinkSpec) -> list[str]:
    args = ["netem", "limit", "1000"]
    if link.latency_ms or link.jitter_ms:
        args += ["delay", f"{link.latency_ms}ms"]
        if link.jitter_ms:
            args += [f"{link.jitter_ms}ms"]
    if link.loss_pct:
        args += ["loss", f"{link.loss_pct}%"]
    if link.bandwidth_kbit:
        args += ["rate", f"{link.bandwidth_kbit}kbit"]
    return args


def netem_commands(link: LinkSpec) -> list[list[str]]:
    """tc commands, run in the node's namespace: egress on its interface, ingress on
    an ifb device that its ingress traffic is redirected to."""
    shape = netem_args(link)
    return [
        ["tc", "qdisc", "replace", "dev", NODE_IF, "root", *shape],
        ["ip", "link", "add", IFB, "type", "ifb"],
        ["ip", "link", "set", IFB, "up"],
        ["tc", "qdisc", "replace", "dev", NODE_IF, "handle", "ffff:", "ingress"],
        ["tc", "filter", "replace", "dev", NODE_IF, "parent", "ffff:", "matchall",
         "action", "mirred", "egress", "redirect", "dev", IFB],
        ["tc", "qdisc", "replace", "dev", IFB, "root", *shape],
    ]


def stage_argv(link: LinkSpec, seed: str, ready: str, stats: str,
               python: str = sys.executable) -> list[str]:
    return [python, "-m", "p2plab.compose.lab.linkstage",
            "--latency-ms", str(link.latency_ms), "--jitter-ms", str(link.jitter_ms),
            "--loss-pct", str(link.loss_pct), "--bandwidth-kbit", str(link.bandwidth_kbit or 0),
            "--seed", seed, "--ready-file", ready, "--stats-file", stats]


class LinkShaper:
    """Owns every link stage process of a run; ``apply`` again after a node restarts."""

    def __init__(self, plan: LabPlan, backend: Backend, run_dir: Path,
                 progress: Callable[[str], None] = lambda m: None,
                 mechanism: str | None = None) -> None:
        self.plan = plan
        self.backend = backend
        self.dir = run_dir / "links"
        self.progress = progress
        self.wanted = mechanism or os.environ.get("P2PLAB_LINK_MECHANISM", "auto")
        if self.wanted not in MECHANISMS:
            raise BackendError(f"P2PLAB_LINK_MECHANISM={self.wanted!r}: use one of "
                               f"{', '.join(MECHANISMS)}")
        self.mechanism: str | None = None  # decided at the first impaired link
        self.why = ""
        self.stages: dict[str, subprocess.Popen[bytes]] = {}
        self.applications: dict[str, int] = {}
        self._choosing = threading.Lock()  # nodes start from several threads

    def shaped(self) -> list[str]:
        return [n for n, node in self.plan.nodes.items() if node.link is not None]

    def apply(self, name: str) -> None:
        link = self.plan.nodes[name].link
        if link is None:
            return
        self.dir.mkdir(exist_ok=True)
        prefix = self.backend.netns_command(name)
        with self._choosing:
            if self.mechanism is None:
                self._choose(prefix, link)
        if self.mechanism == "netem":
            for argv in netem_commands(link):
                done = subprocess.run([*prefix, *argv], capture_output=True, text=True)
                if done.returncode != 0 and "File exists" not in done.stderr:
                    raise BackendError(f"shaping {name}'s link: {' '.join(argv)}: "
                                       f"{done.stderr.strip()}")
        else:
            self._start_stage(name, prefix, link)
        self.applications[name] = self.applications.get(name, 0) + 1

    def _choose(self, prefix: list[str], link: LinkSpec) -> None:
        if self.wanted == "nfqueue":
            self.mechanism, self.why = "nfqueue", "asked for (P2PLAB_LINK_MECHANISM)"
            return
        probe = subprocess.run([*prefix, "tc", "qdisc", "add", "dev", "lo", "root", "netem",
                                "delay", "1ms"], capture_output=True, text=True)
        if probe.returncode == 0:
            subprocess.run([*prefix, "tc", "qdisc", "del", "dev", "lo", "root"],
                           capture_output=True)
            self.mechanism, self.why = "netem", "the kernel has sch_netem"
            return
        if self.wanted == "netem":
            raise BackendError("P2PLAB_LINK_MECHANISM=netem but this kernel has no netem: "
                               f"{probe.stderr.strip()}; unset it to use the userspace stage")
        try:
            import netfilterqueue  # noqa: F401  # whether it imports is the question
        except ImportError:
            raise BackendError("this kernel has no netem and the userspace link stage needs "
                               "the netfilterqueue package: run make setup") from None
        self.mechanism = "nfqueue"
        self.why = f"no netem in this kernel ({probe.stderr.strip() or 'tc failed'})"
        self.progress(f"link impairment: userspace NFQUEUE stage ({self.why})")

    def _start_stage(self, name: str, prefix: list[str], link: LinkSpec) -> None:
        self.release(name)
        n = self.applications.get(name, 0)
        ready = self.dir / f"{name}.{n}.ready"
        stats = self.dir / f"{name}.{n}.stats.json"
        seed = f"{self.plan.scenario.seed}:link:{name}:{n}"
        log = open(self.dir / f"{name}.log", "ab")
        inside = self.backend.lab_path
        argv = stage_argv(link, seed, inside(ready), inside(stats), self.backend.netns_python)
        proc = subprocess.Popen([*prefix, *argv],
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        self.stages[name] = proc
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not ready.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise BackendError(f"the link stage for {name} did not start; see "
                                   f"{self.dir / (name + '.log')}")
            time.sleep(0.05)

    def release(self, name: str) -> None:
        """Stop a node's stage (its rules go with it), e.g. before its container dies."""
        proc = self.stages.pop(name, None)
        if proc is None:
            return
        stop_children([proc])

    def stop_all(self) -> None:
        for name in list(self.stages):
            self.release(name)

    def describe(self) -> dict[str, Any]:
        """For the manifest: what was configured on each link and what applied it."""
        return {
            "mechanism": self.mechanism,
            "why": self.why,
            "links": {name: {**link.model_dump(), "mechanism": self.mechanism}
                      for name in self.shaped()
                      if (link := self.plan.nodes[name].link) is not None},
        }
