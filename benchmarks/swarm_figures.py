"""Swarm figures, the local cluster against one engine in the same run (prints numbers).

    python benchmarks/swarm_figures.py [--scenario gossip-50] [--engines 2] [--repeat 1]

Runs the scenario on the single-engine Docker backend and on the swarm backend (the
local cluster of make cluster, made here if none is up and removed again), alternating
when repeated, and prints for each run, from its results folder:
- deploy: from the run's start to its first node started (networks, routers and node
  containers made; on swarm also the agents and the clock measurement),
- ready: from the run's start to the last node's node_started event,
- wall time and verdict; and for swarm runs, hosts per engine and the measured clock
  offsets; with swarm/docker ratios of the medians. Publishing the image to the registry
  happens before a run starts and is printed apart (the manifest's swarm.timings_s).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def run(scenario: str, backend: str, results: Path) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("DOCKER_HOST", "P2PLAB_REGISTRY", "P2PLAB_ENGINE_SOCKET")}
    done = subprocess.run([sys.executable, "-m", "p2plab.cli", "run", scenario, "--backend",
                           backend, "--results", str(results)], capture_output=True,
                          text=True, env=env)
    run_dir = sorted(results.glob(f"{scenario}-*"), key=lambda p: p.stat().st_mtime)[-1]
    manifest = json.loads((run_dir / "manifest.json").read_text())
    started = manifest["started"]
    ready = max(json.loads(line)["t"] for path in (run_dir / "events").glob("*.jsonl")
                if not path.name.startswith("_")
                for line in path.read_text().splitlines()
                if '"node_started"' in line)
    figures = {
        "backend": backend, "exit": done.returncode,
        "deploy_s": round(min(manifest["node_spawned"].values()) - started, 2),
        "ready_s": round(ready - started, 2),
        "wall_s": round(manifest["ended"] - started, 1),
    }
    swarm = (manifest.get("cluster") or manifest.get("swarm"))
    if swarm:
        figures["per_engine"] = swarm["hosts_per_engine"]
        figures["image_publish_s"] = swarm["timings_s"].get("image_s")
        figures["offsets"] = {e: f"{o['offset_ms']:+.3f} ± {o['uncertainty_ms']:.3f} ms"
                              for e, o in swarm["clock_offsets"].items()}
        figures["offsets_end"] = {e: f"{o['offset_ms']:+.3f} ± {o['uncertainty_ms']:.3f} ms"
                                  for e, o in swarm["clock_offsets_end"].items()}
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="gossip-50")
    parser.add_argument("--engines", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    from p2plab.compose.backends.swarm import cluster

    made = cluster.load() is None
    cluster.up(args.engines, log=lambda m: print(m, file=sys.stderr))
    rows: list[dict[str, Any]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="p2plab-swarm-figures-") as tmp:
            for _ in range(args.repeat):
                for backend in ("docker", "swarm"):
                    rows.append(run(args.scenario, backend, Path(tmp)))
                    print(json.dumps(rows[-1]), flush=True)
    finally:
        if made:
            cluster.down(log=lambda m: None)
    for key in ("deploy_s", "ready_s", "wall_s"):
        medians = {b: statistics.median(r[key] for r in rows if r["backend"] == b)
                   for b in ("docker", "swarm")}
        print(f"{key:9} docker {medians['docker']:7.2f}  swarm {medians['swarm']:7.2f}  "
              f"swarm/docker {medians['swarm'] / medians['docker']:.2f}x")
    return 0 if all(r["exit"] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
