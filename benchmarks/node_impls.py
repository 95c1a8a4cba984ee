"""The node implementations side by side, measured in one run (it prints numbers).

    python benchmarks/node_impls.py [--nodes 10] [--messages 200] [--crosscheck netns|docker]

- Loopback mesh (no root): N nodes, each dialling the 3 before it; one publisher sends
  M messages of 200 B at 20/s. For ``py-stock`` (py-libp2p as shipped:
  P2PLAB_PY_TUNING=0), ``py`` (our node, node/libp2p_tuning.py) and ``rust``: start-up
  (spawn to node_started),
  resident memory per node, and CPU-ms per message per receiving node with each
  node's idle CPU (measured just before, over the same length of time) subtracted;
  py/rust ratios. Loopback, so the figures are the nodes' own cost, not a network's.
- With --crosscheck: sim-check-30 emulated with every node py, then every node rust,
  each against the simulator's network-only model (no CPU model): median latency and
  time to 90 % of subscribers, and how far emulation is from the network model.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# E402: imported after the checkout is on sys.path (run from a checkout, not installed).
from p2plab.node.identity import peer_id_for_seed  # noqa: E402
from p2plab.orchestrate.conformance.nodes import node_program  # noqa: E402

from p2plab.control import send_command  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# py-stock: the py node without its py-libp2p tuning; then every registered built-in.
VARIANTS = ("py-stock", "py", "rust", "rust@0.53")


def program(variant: str) -> list[str]:
    return node_program("py" if variant == "py-stock" else variant)


def environment(variant: str) -> dict[str, str]:
    return {**os.environ, "P2PLAB_PY_TUNING": "0" if variant == "py-stock" else "1"}


class Node:
    def __init__(self, impl: str, index: int, port: int, dials: list[str], work: Path) -> None:
        self.name = f"{impl}{index}"
        self.events = work / f"{self.name}.jsonl"
        self.control = work / f"{self.name}.fifo"
        self.spawned = time.time()
        argv = [*program(impl), "--name", self.name, "--key-seed", self.name,
                "--listen-ip", "127.0.0.1", "--port", str(port), "--no-stdin",
                "--ping-interval", "0", "--events", str(self.events),
                "--control", str(self.control)]
        for addr in dials:
            argv += ["--dial", addr]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     cwd=ROOT, env=environment(impl))
        self.ps = psutil.Process(self.proc.pid)

    def of(self, type_: str) -> list[dict[str, Any]]:
        if not self.events.exists():
            return []
        lines = self.events.read_text().splitlines()
        return [e for e in (json.loads(line) for line in lines if line.endswith("}"))
                if e["type"] == type_]

    def cpu_s(self) -> float:
        t = self.ps.cpu_times()
        return t.user + t.system

    def send(self, command: dict[str, Any]) -> None:
        send_command(self.control, command)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def wait(what: str, condition: Callable[[], object], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.2)


def measure(impl: str, n: int, messages: int, rate: float) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix=f"p2plab-bench-{impl}-"))
    ports = [free_port() for _ in range(n)]
    nodes: list[Node] = []
    try:
        for i in range(n):
            dials = [f"/ip4/127.0.0.1/tcp/{ports[j]}/p2p/{peer_id_for_seed(f'{impl}{j}')}"
                     for j in range(max(0, i - 3), i)]
            nodes.append(Node(impl, i, ports[i], dials, work))
        wait("every node to start", lambda: all(x.of("node_started") for x in nodes), 120)
        startup = [x.of("node_started")[0]["t"] - x.spawned for x in nodes]
        wait("every mesh", lambda: all(any(e["mesh"] for e in x.of("topic_peers")) for x in nodes),
             60)
        time.sleep(3)  # heartbeats settle the meshes
        receivers = nodes[1:]
        duration = messages / rate
        idle0 = [x.cpu_s() for x in receivers]
        time.sleep(duration)
        idle_rate = [(x.cpu_s() - c) / duration for x, c in zip(receivers, idle0, strict=True)]
        busy0 = [x.cpu_s() for x in receivers]
        start = time.monotonic()
        nodes[0].send({"cmd": "publish", "count": messages, "size": 200, "rate": rate})
        wait("every message everywhere",
             lambda: all(len(x.of("message_received")) >= messages for x in receivers),
             duration + 60)
        time.sleep(1.0)  # late duplicates and their processing
        elapsed = time.monotonic() - start
        cpu_ms = [1000 * ((x.cpu_s() - c) - r * elapsed) / messages
                  for x, c, r in zip(receivers, busy0, idle_rate, strict=True)]
        rss = [x.ps.memory_info().rss / 2**20 for x in nodes]
        return {"impl": impl, "nodes": n, "messages": messages,
                "startup_s_p50": statistics.median(startup), "startup_s_max": max(startup),
                "rss_mb_p50": statistics.median(rss),
                "cpu_ms_per_msg_p50": statistics.median(cpu_ms),
                "cpu_ms_per_msg_min": min(cpu_ms), "cpu_ms_per_msg_max": max(cpu_ms),
                "idle_cpu_pct_p50": 100 * statistics.median(idle_rate)}
    finally:
        for x in nodes:
            x.stop()


def crosscheck(impl: str, backend: str, results: Path) -> dict[str, Any]:
    """sim-check-30 with every node ``impl``, against the network-only simulation."""
    spec = yaml.safe_load((ROOT / "scenarios" / "sim-check-30.yaml").read_text())
    spec.update(name=f"sim-check-30-{impl}", impl=impl, sim={"receive_ms": 0, "send_ms": 0})
    path = results / f"sim-check-30-{impl}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    out = subprocess.run([sys.executable, "-m", "p2plab.cli", "crosscheck", str(path),
                          "--backend", backend, "--results", str(results)],
                         capture_output=True, text=True, cwd=ROOT)
    if out.returncode != 0:
        raise SystemExit(out.stdout + out.stderr)
    found = sorted(results.glob(f"crosscheck-sim-check-30-{impl}-*/crosscheck.json"))
    rows = {r["figure"]: r for r in json.loads(found[-1].read_text())["rows"]}
    return {"impl": impl, "rows": rows, "folder": str(found[-1].parent)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=10)
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--crosscheck", choices=("netns", "docker"), default=None)
    parser.add_argument("--results", default=str(ROOT / "results" / "bench"))
    args = parser.parse_args()
    load = os.getloadavg()
    print(f"machine: {os.cpu_count()} cores, load average {load[0]:.2f} at start")
    figures = [measure(v, args.nodes, args.messages, args.rate) for v in VARIANTS]
    print(f"\nloopback mesh, {args.nodes} nodes (each dials the 3 before it), "
          f"{args.messages} x 200 B at {args.rate:g}/s from one node")
    print(f"{'impl':<10}{'start-up s (p50/max)':>22}{'RSS MB':>9}"
          f"{'CPU ms/msg/node p50 (min-max)':>32}"
          f"{'idle CPU %':>12}")
    for f in figures:
        print(f"{f['impl']:<10}{f['startup_s_p50']:>12.2f} / {f['startup_s_max']:<7.2f}"
              f"{f['rss_mb_p50']:>9.1f}{f['cpu_ms_per_msg_p50']:>14.2f} "
              f"({f['cpu_ms_per_msg_min']:.2f}-{f['cpu_ms_per_msg_max']:.2f}){'':>4}"
              f"{f['idle_cpu_pct_p50']:>10.2f}")
    stock, py, rust, rust_053 = figures
    print(f"py-stock/py (our py-libp2p changes): CPU per message "
          f"x{stock['cpu_ms_per_msg_p50'] / py['cpu_ms_per_msg_p50']:.2f}")
    print(f"py/rust: CPU per message x{py['cpu_ms_per_msg_p50'] / rust['cpu_ms_per_msg_p50']:.1f}, "
          f"RSS x{py['rss_mb_p50'] / rust['rss_mb_p50']:.1f}, "
          f"start-up x{py['startup_s_p50'] / rust['startup_s_p50']:.1f}")
    print(f"rust@0.53/rust@0.57.1: CPU per message "
          f"x{rust_053['cpu_ms_per_msg_p50'] / rust['cpu_ms_per_msg_p50']:.2f}, "
          f"RSS x{rust_053['rss_mb_p50'] / rust['rss_mb_p50']:.2f}, "
          f"start-up x{rust_053['startup_s_p50'] / rust['startup_s_p50']:.2f}")
    if args.crosscheck:
        results = Path(args.results)
        results.mkdir(parents=True, exist_ok=True)
        print(f"\nsim-check-30 emulated on {args.crosscheck} vs the network-only simulation")
        for impl in ("py", "rust"):
            found = crosscheck(impl, args.crosscheck, results)
            for key, row in found["rows"].items():
                if any(word in key for word in ("p50", "90 %", "delivery")):
                    emu, sim = row["emulated"], row["simulated"]
                    gap = (f"{100 * (emu - sim) / sim:+.0f} %" if isinstance(emu, (int, float))
                           and isinstance(sim, (int, float)) and sim else "")
                    print(f"  {impl:<5}{key:<38}emulated {emu!s:>10}  simulated {sim!s:>10}  {gap}")
            print(f"  {impl:<5}folder {found['folder']}")
    print(f"load average {os.getloadavg()[0]:.2f} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
