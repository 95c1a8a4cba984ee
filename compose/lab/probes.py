"""The NAT probe: every LAN's NAT classified by the probe's reflectors and compared
with what the scenario declared, into nat_probe.json."""

from __future__ import annotations

import json
import threading
from typing import TYPE_CHECKING, Any

from p2plab.topology.natcheck import declared_view, mismatches
from p2plab.topology.plan import REFLECTORS, combined_behaviour

from p2plab.files import write_atomic

if TYPE_CHECKING:
    from p2plab.compose.lab.runner import Runner


def probe_nats(runner: Runner) -> dict[str, Any]:
    """Classify every LAN's NAT with the probe and compare with what was declared."""
    for name in runner.plan.probes:
        if not runner.backend.node_running(name):
            runner.backend.start_node(name)
    runner.captures.start(list(runner.plan.probes))
    ready = runner.run_dir / "probe"
    runner.waits.wait_until("the NAT probe's reflectors",
                            lambda: all((ready / f"{r}.ready").exists() for r in REFLECTORS), 20)
    stuns = [str(runner.plan.probes[r].ip) for r in REFLECTORS]
    lans = [h.segment for h in runner.plan.probes.values() if h.role == "probe"]
    results: dict[str, Any] = {}

    def classify(lan: str) -> None:
        argv = [runner.backend.python, "-m", "p2plab.natprobe", "classify",
                "--stun", stuns[0], "--stun", stuns[1]]
        done = runner[f"probe.{lan}"].exec(argv)
        behaviour = combined_behaviour(runner.plan, lan)
        try:
            observed = json.loads(done.stdout)
        except ValueError:
            observed = {"error": (done.stderr or done.stdout).strip()[-500:]}
        problems = (mismatches(behaviour, observed) if "error" not in observed
                    else [f"probe failed: {observed['error']}"])
        router = runner.plan.router_for(lan)
        results[lan] = {"router": router.name,
                        "nat": f"{router.nat} ({behaviour.short() if behaviour else 'no NAT'})",
                        "declared": declared_view(behaviour), "observed": observed,
                        "matches": not problems, "mismatches": problems}

    runner.progress(f"probing the NAT of {', '.join(lans)}")
    threads = [threading.Thread(target=classify, args=(lan,)) for lan in lans]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    write_atomic(runner.run_dir / "nat_probe.json", json.dumps(results, indent=2) + "\n")
    for lan, r in results.items():
        if not r["matches"]:
            runner.progress(f"NAT of {lan} does not behave as declared: "
                            + "; ".join(r["mismatches"]))
    return results
