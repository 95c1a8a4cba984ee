"""Lab figures, measured side by side in one run (not a test: it prints numbers).

    python benchmarks/lab_figures.py [--cold] [--scenario nat-relay]

- image build: cold (with --cold: base image, wheels and image all removed first) and
  a rebuild after a one-line change to node/ (in a throwaway copy of the project);
- image size;
- the scenario on docker and on netns: seconds from `p2plab run` to all nodes ready,
  total wall time, and resident memory per node; docker/netns ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def timed(argv: list[str],
          **kwargs: Any) -> tuple[float, subprocess.CompletedProcess[str]]:
    start = time.perf_counter()
    result = subprocess.run(argv, capture_output=True, text=True, **kwargs)
    return time.perf_counter() - start, result


def build_in(project: Path) -> tuple[float, str]:
    code = "from compose.images import ensure_image; print(ensure_image(log=lambda m: None))"
    seconds, result = timed([sys.executable, "-c", code], cwd=project,
                            env=dict(os.environ, PYTHONPATH=str(project)))
    if result.returncode != 0:
        raise SystemExit(result.stderr)
    return seconds, result.stdout.strip().splitlines()[-1]


def remove_images() -> None:
    from p2plab.compose.images import BUILD_DIR, LOCAL_BASE

    out = subprocess.run(["docker", "images", "--format", "{{.Repository}}:{{.Tag}}"],
                         capture_output=True, text=True).stdout.split()
    tags = [t for t in out if t.startswith("p2plab-node:")] + [LOCAL_BASE]
    subprocess.run(["docker", "rmi", "-f", *tags], capture_output=True)
    shutil.rmtree(BUILD_DIR / "wheels", ignore_errors=True)


def run_scenario(name: str, backend: str, results: Path) -> dict[str, float | str]:
    seconds, result = timed([sys.executable, "-m", "p2plab.cli", "run", name, "--backend", backend,
                             "--results", str(results / backend)], cwd=ROOT)
    run_dir = next((results / backend).iterdir())
    summary = json.loads((run_dir / "summary.json").read_text())
    manifest = json.loads((run_dir / "manifest.json").read_text())
    rss = [v for v in manifest.get("node_rss_mb", {}).values() if v]
    return {
        "exit": result.returncode,
        "ready_s": summary["startup"]["all_ready_s"],
        "node_startup_max_s": summary["startup"].get("node_startup_s_max", float("nan")),
        "run_wall_s": summary["wall_time_s"],
        "cli_wall_s": round(seconds, 2),
        "rss_mb_mean": round(sum(rss) / len(rss), 1) if rss else float("nan"),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cold", action="store_true", help="also time a build from nothing")
    parser.add_argument("--scenario", default="nat-relay")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    if args.cold:
        remove_images()
        cold, tag = build_in(ROOT)
        print(f"cold image build (base + wheels + image): {cold:.1f} s")
    warm, tag = build_in(ROOT)
    print(f"image already built (tag check only):      {warm:.2f} s")
    with tempfile.TemporaryDirectory(prefix="p2plab-bench-") as tmp:
        copy = Path(tmp) / "p2plab"
        shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns(
            ".venv", "results", "build", ".git", "__pycache__", "*.egg-info"))
        (copy / "build").symlink_to(ROOT / "build")  # share the wheel cache
        with open(copy / "node" / "chat.py", "a") as fh:
            fh.write("\n# benchmark: a one-line change\n")
        rebuild, new_tag = build_in(copy)
        print(f"rebuild after a change in node/:           {rebuild:.1f} s ({new_tag})")
        subprocess.run(["docker", "rmi", new_tag], capture_output=True)
    size = subprocess.run(["docker", "image", "inspect", tag, "--format", "{{.Size}}"],
                          capture_output=True, text=True).stdout.strip()
    print(f"image size: {int(size) / 1e6:.0f} MB ({tag})")
    with tempfile.TemporaryDirectory(prefix="p2plab-bench-runs-") as tmp:
        rows = {b: run_scenario(args.scenario, b, Path(tmp)) for b in ("docker", "netns")}
    keys = ["exit", "ready_s", "node_startup_max_s", "run_wall_s", "cli_wall_s", "rss_mb_mean"]
    print(f"\n{args.scenario}: {'figure':<20} {'docker':>10} {'netns':>10} {'docker/netns':>13}")
    for key in keys:
        d, n = rows["docker"][key], rows["netns"][key]
        ratio = f"{d / n:.2f}" if isinstance(d, float) and isinstance(n, float) and n else ""
        print(f"{'':<{len(args.scenario) + 2}}{key:<20} {d!s:>10} {n!s:>10} {ratio:>13}")


if __name__ == "__main__":
    main()
