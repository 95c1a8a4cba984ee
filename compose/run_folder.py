"""A run's results folder: its name, its sub-folders, and the manifest that records
what produced it (scenario as run, seed, versions, backend, topology), written the
same way by every executor."""

from __future__ import annotations

import json
import platform
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

from p2plab.compose.backends.base import Backend
from p2plab.compose.impls.declaration import Declaration
from p2plab.topology.describe import TOPOLOGY_FILE, picture_json
from p2plab.topology.plan import LabPlan
from p2plab.topology.scenario import Scenario
from pydantic import BaseModel, ConfigDict

import p2plab
from p2plab.files import write_atomic


def new_run_id() -> str:
    """Six hex digits: short enough for interface names, in every name a run creates."""
    return secrets.token_hex(3)


class ResultsFolderError(ValueError):
    """The results folder cannot be written: a usage error (exit 2), found before any
    lab object is made."""


def new_run_dir(results_root: Path, scenario: Scenario, run_id: str) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    run_dir = results_root / f"{scenario.name}-{stamp}-{run_id}"
    try:
        run_dir.mkdir(parents=True)
        for sub in ("events", "logs", "control"):
            (run_dir / sub).mkdir()
    except OSError as exc:
        raise ResultsFolderError(
            f"cannot write results into {results_root} ({exc.strerror}): choose a folder "
            "you can write with --results") from None
    return run_dir


class Manifest(BaseModel):
    """What every results folder's manifest.json says, whichever executor made it; an
    executor adds its own facts (link shaping, engines, the simulator's figures)."""

    model_config = ConfigDict(extra="allow")

    scenario: str
    seed: int
    run_id: str
    p2plab_version: str
    libp2p_version: str
    node_implementations: dict[str, str]
    # Per spec the scenario gives: the implementation, its library, its declaration file.
    implementation_declarations: dict[str, dict[str, str]]
    # Emulated runs: what each was built from (a cache key) and the program that ran.
    implementation_builds: dict[str, dict[str, Any]] = {}
    python: str
    host: str
    backend: str
    kernel: str
    nodes: dict[str, dict[str, Any]]
    # Whether real packets crossed the lab (link checks, captures): not in a model.
    packets: bool = True
    # --set / --seed overrides the scenario ran with (scenario.yaml is the result).
    overrides: list[str] = []


def provenance(scenario: Scenario, run_id: str,
               declarations: Mapping[str, Declaration]) -> dict[str, Any]:
    """What produced a result, whichever backend ran: the manifest's common head, with
    the library of each implementation the nodes name (by the scenario's spec)."""
    return {
        "scenario": scenario.name,
        "seed": scenario.seed,
        "run_id": run_id,
        "p2plab_version": p2plab.__version__,
        "libp2p_version": version("libp2p"),
        "node_implementations": {spec: d.library_text() for spec, d in declarations.items()},
        "implementation_declarations": {
            spec: {"implementation": d.key, "library": d.library_text(),
                   "declaration": str(d.path)} for spec, d in declarations.items()},
        "python": platform.python_version(),
        "host": platform.node(),
    }


def write_inputs(run_dir: Path, scenario_text: str, plan: LabPlan) -> None:
    """The scenario as run and its topology picture, beside the manifest."""
    write_atomic(run_dir / "scenario.yaml", scenario_text)
    write_atomic(run_dir / TOPOLOGY_FILE, picture_json(plan))


def write_manifest(run_dir: Path, fields: dict[str, Any]) -> Manifest:
    """The one manifest writer: ``fields`` merged over what the folder's manifest says
    already, checked against ``Manifest`` and written whole or not at all."""
    path = run_dir / "manifest.json"
    merged = {**json.loads(path.read_text()), **fields} if path.exists() else fields
    manifest = Manifest.model_validate(merged)
    write_atomic(path, json.dumps(manifest.model_dump(mode="json"), indent=2) + "\n")
    return manifest


def lab_manifest(plan: LabPlan, backend: Backend, run_id: str) -> dict[str, Any]:
    """An emulated run's manifest: provenance, the backend's facts, where each host ran."""
    return {
        **provenance(plan.scenario, run_id, backend.declarations),
        **backend.describe(),
        # What each was built from (a cache key: the same hash, the same program).
        "implementation_builds": {spec: {"implementation": b.key, "built_from": b.source_hash,
                                         "program": str(b.program) if b.program else None}
                                  for spec, b in backend.builds.items()},
        "nodes": {
            name: {"peer_id": n.peer_id, "ip": str(n.ip), "segment": n.segment, "role": n.role,
                   "impl": n.impl, "engine": backend.engine_of(name)}
            for name, n in plan.nodes.items()
        },
        "routers": {
            name: {"lan": r.lan, "upstream": r.upstream, "lan_ip": str(r.lan_ip),
                   "wan_ip": str(r.wan_ip), "nat": r.nat,
                   "behaviour": r.behaviour.short() if r.behaviour else "no NAT",
                   "engine": backend.engine_of(name)}
            for name, r in plan.routers.items()
        },
    }
