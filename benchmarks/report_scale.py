"""The report of a big run: time and peak memory, and the columnar reader against the
line-by-line one it replaced, measured in the same run.

  python benchmarks/report_scale.py                     # simulates gossip-10k first (~1 min)
  python benchmarks/report_scale.py --run-dir results/gossip-10k-...   # an existing run

Each measurement runs in a fresh process (peak memory is per process). Printed:
- ``p2plab report`` on the run: wall time and peak RSS (target: <= 10 s, <= 1 GB for
  gossip-10k on a 2-core machine);
- reading the events alone, columnar (``analysis.event_log``) against the validating
  line reader into one pandas frame (how reports read them before), with the ratio.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

READ_COLUMNAR = r"""
import json, resource, sys, time
from pathlib import Path
t0 = time.perf_counter()
from p2plab.analysis.event_log import read_event_log
log = read_event_log(Path(sys.argv[1]))
print(json.dumps({"rows": len(log), "s": time.perf_counter() - t0,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

READ_LINES = r"""
import json, resource, sys, time
from pathlib import Path
t0 = time.perf_counter()
import pandas as pd
from p2plab.events import read_events
rows = [e for p in sorted(Path(sys.argv[1]).glob("*.jsonl")) for e in read_events(p)]
frame = pd.DataFrame(rows).sort_values("t", kind="stable")
print(json.dumps({"rows": len(frame), "s": time.perf_counter() - t0,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def child(code: str, events: Path) -> dict:
    out = subprocess.run([sys.executable, "-c", code, str(events)], capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout)


def timed_report(run_dir: Path) -> dict:
    """``p2plab report`` in a fresh process, peak RSS from the kernel's accounting."""
    code = ("import resource, sys, time; from p2plab.cli import main; t0 = time.perf_counter(); "
            "rc = main(['report', sys.argv[1]]); "
            "print('FIGURES', time.perf_counter() - t0, "
            "resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024); sys.exit(rc)")
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code, str(run_dir)], capture_output=True,
                         text=True)
    wall = time.perf_counter() - started
    line = next((line for line in out.stdout.splitlines() if line.startswith("FIGURES")), None)
    if line is None:
        raise SystemExit(f"p2plab report failed:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    _, inner, peak = line.split()
    return {"wall_s": wall, "in_process_s": float(inner), "peak_rss_mb": float(peak)}


def simulate(results: Path) -> Path:
    print("simulating gossip-10k (about a minute)", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "p2plab.cli", "run", "gossip-10k", "--backend",
                    "sim", "--results", str(results)], check=False,
                   stdout=subprocess.DEVNULL)
    runs = sorted(results.glob("gossip-10k-*"))
    if not runs:
        raise SystemExit("the simulation left no results folder")
    return runs[-1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", type=Path, help="a results folder (default: simulate "
                        "gossip-10k into a temporary folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="p2plab-report-bench-") as tmp:
        run_dir = args.run_dir or simulate(Path(tmp))
        events = run_dir / "events"
        size_mb = sum(p.stat().st_size for p in events.glob("*.jsonl")) / 2**20
        report = timed_report(run_dir)
        columnar = child(READ_COLUMNAR, events)
        lines = child(READ_LINES, events)
    print(f"run: {run_dir.name}, {columnar['rows']:,} events, {size_mb:.0f} MB of logs")
    print(f"p2plab report: {report['wall_s']:.1f} s wall ({report['in_process_s']:.1f} s "
          f"after start-up), peak {report['peak_rss_mb']:.0f} MB")
    print(f"reading the events: columnar {columnar['s']:.1f} s, peak "
          f"{columnar['peak_rss_mb']:.0f} MB; line by line into pandas {lines['s']:.1f} s, "
          f"peak {lines['peak_rss_mb']:.0f} MB")
    print(f"ratio line-by-line / columnar: time {lines['s'] / columnar['s']:.1f}x, "
          f"peak memory {lines['peak_rss_mb'] / columnar['peak_rss_mb']:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
