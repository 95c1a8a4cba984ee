"""Run a hole-punch matrix: its generated labs one after another, then the grid."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable

from p2plab.analysis.matrix import cell_results, write_matrix_report
from p2plab.analysis.metrics import summarize
from p2plab.compose import ownership
from p2plab.compose.backend import make_backend
from p2plab.compose.ownership import RunRecord
from p2plab.compose.run_folder import new_run_dir, new_run_id
from p2plab.compose.runner import execute
from p2plab.topology.matrix import MatrixFile, lab_scenarios
from p2plab.topology.plan import build_plan


def run_matrix(matrix: MatrixFile, matrix_path: Path, backend_name: str, results_root: Path,
               progress: Callable[[str], None]) -> tuple[Path, list[dict[str, Any]]]:
    """Run every lab of the matrix; return the matrix folder and one result per cell."""
    started = time.time()
    labs = lab_scenarios(matrix)
    run_id = new_run_id()
    out = results_root / f"{matrix.name}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{run_id}"
    out.mkdir(parents=True)
    (out / "matrix.yaml").write_text(matrix_path.read_text())
    rows: list[dict[str, Any]] = []
    for index, (scenario, cells) in enumerate(labs):
        progress(f"lab {index + 1}/{len(labs)}: {len(cells)} cells "
                 f"({', '.join(f'{c.a}/{c.b}/{c.transport}' for c in cells)})")
        lab_id = new_run_id()
        backend = make_backend(backend_name, lab_id, log=progress)
        backend.check_environment()
        lab_dir = new_run_dir(out / "labs", scenario, lab_id)
        scenario_file = lab_dir / "scenario.yaml"
        scenario_file.write_text(json.dumps(scenario.model_dump(mode="json", by_alias=True,
                                                                exclude_defaults=True)))
        plan_subnets = [str(seg.subnet) for seg in build_plan(scenario).segments.values()]
        with ownership.owned(RunRecord(lab_id, backend_name, scenario.name, str(lab_dir),
                                       subnets=plan_subnets)):
            outcome = execute(scenario_file, scenario, backend, lab_id, lab_dir,
                              lambda m: progress(f"  {m}"))
        summary = summarize(lab_dir / "events", until=outcome.timeline_end)
        rows += cell_results(cells, summary, lab_dir.name)
    manifest = json.loads((sorted((out / "labs").iterdir())[0] / "manifest.json").read_text())
    meta = {"matrix": matrix.name, "seed": matrix.seed, "backend": backend_name,
            "labs": len(labs), "cells": len(rows), "wall_time_s": round(time.time() - started, 1),
            "p2plab_version": manifest["p2plab_version"],
            "libp2p_version": ", ".join(manifest["node_implementations"].values()),
            "kernel": manifest["kernel"]}
    write_matrix_report(out, matrix, rows, meta)
    return out, rows
