"""The link RTT check: UDP round trips over the impaired links, measured against
their configuration into link_rtt.json (one check per distinct link, side by side)."""

from __future__ import annotations

import json
import select
import subprocess
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from p2plab.compose.backends.base import Backend
from p2plab.topology.plan import LabPlan, link_checks

from p2plab.files import write_atomic
from p2plab.processes import stop_children


def measure_links(plan: LabPlan, backend: Backend, run_dir: Path, mechanism: str,
                  progress: Callable[[str], None]) -> None:
    """UDP round trips over the impaired links, against their configuration."""
    checks = link_checks(plan)
    if not checks:
        return
    progress(f"measuring {len(checks)} impaired link(s) with UDP echoes")
    rows: list[dict[str, Any]] = []
    def check(c: Any) -> None:
        target_ip = str(plan.nodes[c.target].ip)
        server = subprocess.Popen(
            [*backend.netns_command(c.target), backend.netns_python, "-m",
             "p2plab.linkcheck", "serve", "--ip", target_ip, "--port", str(c.port),
             "--seconds", "90"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            text=True, start_new_session=True)
        try:
            # On a loaded host the echo server can take seconds to start: wait for it.
            assert server.stdout is not None
            ready = select.select([server.stdout], [], [], 20)[0]
            if not ready or server.stdout.readline().strip() != "listening":
                result: dict[str, Any] = {"error": "the echo server did not start in 20 s"}
            else:
                done = subprocess.run(
                    [*backend.netns_command(c.source), backend.netns_python, "-m",
                     "p2plab.linkcheck", "ping", "--ip", target_ip, "--port", str(c.port)],
                    capture_output=True, text=True, timeout=60)
                result = json.loads(done.stdout) if done.returncode == 0 else {
                    "error": done.stderr.strip()[-300:]}
        except subprocess.TimeoutExpired:
            result = {"error": "no answer within 60 s"}
        finally:
            stop_children([server])
        measured = result.get("median_ms")
        rows.append({"pair": f"{c.source}->{c.target}", "configured_ms": c.configured_rtt_ms,
                     "measured_ms": measured, **result,
                     "error_pct": (round(100 * (measured - c.configured_rtt_ms)
                                         / c.configured_rtt_ms, 1)
                                   if measured is not None and c.configured_rtt_ms else None)})

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(check, checks))
    rows.sort(key=lambda r: r["pair"])
    write_atomic(run_dir / "link_rtt.json", json.dumps(
        {"mechanism": mechanism, "pairs": rows}, indent=2) + "\n")
