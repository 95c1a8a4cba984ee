"""Run a scenario in the simulator and leave a results folder like an emulated run's:
the scenario as run, a manifest, events in the one schema. analysis/ takes it from
there and never knows which backend ran."""

from __future__ import annotations

import platform
import resource
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from p2plab.compose.backends.registry import SIMULATOR
from p2plab.compose.impls.registry import Registry, resolve_scenario
from p2plab.compose.run_folder import provenance, write_inputs, write_manifest
from p2plab.compose.sim.engine import EPOCH, Simulation
from p2plab.compose.sim.network import SimNetwork
from p2plab.topology.plan import build_plan
from p2plab.topology.scenario import Scenario
from p2plab.topology.schema import LAB_EVENTS

from p2plab.files import write_atomic


def ignored_features(scenario: Scenario) -> list[str]:
    """What the model leaves out of this scenario, said before it runs."""
    out = []
    if any(n.quic for n in scenario.nodes):
        out.append("quic: connections are modelled as TCP; only a hole punch tells QUIC "
                   "apart (its fixed roles, nat.quic_punch_works; QUIC first when both punch)")
    if any(n.mdns for n in scenario.nodes):
        out.append("mdns: nodes on one LAN with mdns connect to each other 1 s after start")
    if scenario.probe_nat:
        out.append("probe_nat: there is nothing to probe; NAT behaviour comes from the "
                   "declared presets")
    if any(step.model_dump(by_alias=True).get("set-nat") for step in scenario.timeline):
        out.append("set-nat: recorded, but connections and hole-punch outcomes are not "
                   "recomputed")
    if scenario.ping_interval:
        out.append("ping: libp2p pings are not simulated (no ping events)")
    if any(n.role == "relay" for n in scenario.nodes):
        out.append("relay limits: the model's relays carry every circuit without limit "
                   "(their library's defaults and relay_limits are not modelled; "
                   "relay_cuts is not checked)")
    if scenario.expect.link_rtt_tolerance_pct is not None:
        out.append("link_rtt_tolerance_pct: no packets to measure; the check fails in "
                   "the simulator")
    return out


def simulate(scenario_path: Path, scenario: Scenario, run_id: str, run_dir: Path,
             progress: Callable[[str], None]) -> dict[str, Any]:
    # What the nodes name is modelled, not run; but it must be registered all the same.
    declarations = resolve_scenario(Registry.load(scenario=scenario_path), scenario)
    warnings = ignored_features(scenario)
    for w in warnings:
        progress(f"simulator ignores {w}")
    started = time.time()
    t0 = time.perf_counter()
    plan = build_plan(scenario, probing=False)
    net = SimNetwork(plan)
    t_built = time.perf_counter()
    progress(f"simulating {len(net.nodes)} nodes")
    sim = Simulation(net, progress)
    sim.run()
    t_run = time.perf_counter()
    events = run_dir / "events"
    events.mkdir(parents=True, exist_ok=True)
    write_atomic(events / "nodes.jsonl", "".join(line + "\n" for line in sim.lines))
    write_atomic(events / f"{LAB_EVENTS}.jsonl", "".join(line + "\n" for line in sim.lab_lines))
    t_written = time.perf_counter()
    write_inputs(run_dir, scenario.text or scenario_path.read_text(), plan)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    manifest = {
        **provenance(scenario, run_id, declarations),
        "backend": SIMULATOR, "kernel": platform.release(), "packets": False,
        "nat_mechanism": "model (NAT presets, hole-punch outcome from theory)",
        "link_shaping": {"mechanism": "model", "why": "simulated",
                         "links": {n: node.link.model_dump()
                                   for n, node in plan.nodes.items() if node.link is not None}},
        "sim_warnings": warnings,
        "sim": {"events_processed": sim.events_processed, "messages": len(sim.messages),
                "simulated_s": round(sim.now, 3), "build_s": round(t_built - t0, 3),
                "run_s": round(t_run - t_built, 3), "write_s": round(t_written - t_run, 3),
                "peak_rss_mb": round(peak_mb, 1)},
        "nodes": {n.name: {"peer_id": n.peer_id, "segment": n.segment, "role": n.role}
                  for n in net.nodes} if len(net.nodes) <= 2000 else {},
        # Each LAN's NAT, for the report's groups (a node's group and its LAN's NAT).
        "routers": {name: {"lan": r.lan, "upstream": r.upstream, "nat": r.nat,
                           "behaviour": r.behaviour.short() if r.behaviour else "no NAT"}
                    for name, r in plan.routers.items()} if len(plan.routers) <= 5000 else {},
        "started": started, "ended": time.time(), "sim_epoch": EPOCH,
        "timeline_end": EPOCH + (sim.timeline_end if sim.timeline_end is not None else sim.now),
        "timeline_error": sim.timeline_error, "steps": sim.timeline.steps,
        "scenario_file": str(scenario_path),
        "overrides": list(scenario.overrides),
    }
    write_manifest(run_dir, manifest)
    progress(f"simulated {sim.now:.1f} s: {sim.events_processed} events in "
             f"{t_run - t_built:.1f} s, {len(sim.lines)} node events")
    return manifest
