"""Simulator speed and memory, with figures a reader can compare run to run.

  python benchmarks/sim_scale.py              # gossip-10k (10,000 nodes x 100 messages)
  python benchmarks/sim_scale.py --nodes 100000 --messages 10

Each size runs in a fresh process (peak memory is per process). Printed: time to
build the plan, simulated events per second, wall time of the simulation itself,
peak RSS and RSS per simulated node, and two ratios measured in the same run: the
10,000-node simulation's time against the 1,000-node one's (how it scales), and
memory per simulated node against an emulated py-libp2p node's RSS (measured here by
starting one real node).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CHILD = r"""
import json, resource, sys, time
from pathlib import Path
from p2plab.topology.loading import load_scenario
from p2plab.topology.plan import build_plan
from p2plab.compose.sim.network import SimNetwork
from p2plab.compose.sim.engine import Simulation
t0 = time.perf_counter()
plan = build_plan(load_scenario(Path(sys.argv[1])), probing=False)
net = SimNetwork(plan)
t1 = time.perf_counter()
sim = Simulation(net)
sim.run()
t2 = time.perf_counter()
print(json.dumps({"nodes": len(net.nodes), "messages": len(sim.messages),
                  "received": len(sim.lines), "events": sim.events_processed,
                  "build_s": t1 - t0, "sim_s": t2 - t1, "error": sim.timeline_error,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def scaled(nodes: int, messages: int) -> str:
    """gossip-10k's shape at another size: a fifth servers, the rest 4 per home."""
    text = (ROOT / "scenarios" / "gossip-10k.yaml").read_text()
    servers = nodes // 5
    peers = nodes - servers
    homes = max(1, peers // 4)
    publishers = 10
    per = max(1, messages // publishers)
    width = len(str(servers))
    return (text.replace("count: 2000, subnet", f"count: {homes}, subnet")
            .replace("name: server, count: 2000", f"name: server, count: {servers}")
            .replace("count: 8000", f"count: {peers}")
            .replace('["server-001?"]', f'["server-{"0" * (width - 2)}1?"]')
            .replace("count: 10, size: 512", f"count: {per}, size: 512")
            .replace("public: {subnet: 198.18.0.0/15}", "public: {subnet: 100.0.0.0/12}"))


def run_size(nodes: int, messages: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "scale.yaml"
        path.write_text(scaled(nodes, messages))
        done = subprocess.run([sys.executable, "-c", CHILD, str(path)], capture_output=True,
                              text=True, cwd=ROOT)
        if done.returncode != 0:
            raise SystemExit(done.stderr[-2000:])
        return json.loads(done.stdout.strip().splitlines()[-1])


def emulated_node_rss_mb() -> float:
    """Start one real chat node on loopback and read its resident memory."""
    import psutil

    proc = subprocess.Popen([sys.executable, "-m", "p2plab.node", "--name", "bench", "--no-stdin",
                             "--listen-ip", "127.0.0.1", "--port", "4777"], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(5)
        return psutil.Process(proc.pid).memory_info().rss / 2**20
    finally:
        proc.terminate()
        proc.wait(5)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nodes", type=int, nargs="*", default=[1000, 10000])
    parser.add_argument("--messages", type=int, default=100)
    args = parser.parse_args()
    emulated = emulated_node_rss_mb()
    rows = []
    for n in args.nodes:
        r = run_size(n, args.messages)
        rows.append(r)
        print(f"{r['nodes']:>7} nodes x {r['messages']:>4} messages: build {r['build_s']:6.1f} s, "
              f"simulate {r['sim_s']:6.1f} s ({r['events'] / r['sim_s']:,.0f} events/s, "
              f"{r['received']:,} node events), peak RSS {r['peak_rss_mb']:,.0f} MB "
              f"({1024 * r['peak_rss_mb'] / r['nodes']:.0f} KB per node)"
              + (f", timeline error: {r['error']}" if r["error"] else ""), flush=True)
    print(f"an emulated py-libp2p node: {emulated:.0f} MB RSS")
    for r in rows:
        print(f"  {r['nodes']} nodes: memory per simulated node / emulated node = "
              f"{r['peak_rss_mb'] / r['nodes'] / emulated:.5f} "
              f"(x{emulated * r['nodes'] / r['peak_rss_mb']:,.0f} fewer bytes)")
    if len(rows) >= 2:
        a, b = rows[0], rows[-1]
        print(f"  simulate time ratio {b['nodes']}/{a['nodes']} nodes: "
              f"{b['sim_s'] / a['sim_s']:.1f}x "
              f"for {b['nodes'] / a['nodes']:.0f}x the nodes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
