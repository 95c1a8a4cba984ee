"""Run a hole-punch matrix: its generated labs one after another, then the grid."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from p2plab.analysis.matrix import cell_results, write_matrix_report
from p2plab.compose.impls.registry import Registry
from p2plab.compose.run_folder import new_run_id
from p2plab.orchestrate.generated_lab import run_generated_lab
from p2plab.topology.matrix import MatrixFile, lab_scenarios


def run_matrix(matrix: MatrixFile, matrix_path: Path, backend_name: str, results_root: Path,
               progress: Callable[[str], None]) -> tuple[Path, list[dict[str, Any]]]:
    """Run every lab of the matrix; return the matrix folder and one result per cell."""
    started = time.time()
    labs = lab_scenarios(matrix)
    # The implementations beside the matrix file (the labs' own files are in the results).
    registry = Registry.load(scenario=matrix_path)
    run_id = new_run_id()
    out = results_root / f"{matrix.name}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{run_id}"
    out.mkdir(parents=True)
    (out / "matrix.yaml").write_text(matrix_path.read_text())
    rows: list[dict[str, Any]] = []
    for index, (scenario, cells) in enumerate(labs):
        progress(f"lab {index + 1}/{len(labs)}: {len(cells)} cells "
                 f"({', '.join(f'{c.a}/{c.b}/{c.transport}' for c in cells)})")
        data = scenario.model_dump(mode="json", by_alias=True, exclude_defaults=True)
        run = run_generated_lab(scenario, data, out / "labs" / f"lab-{index + 1}.yaml",
                                backend_name, out / "labs", registry,
                                lambda m: progress(f"  {m}"))
        rows += cell_results(cells, run.summary, run.run_dir.name)
    first_lab = sorted(p for p in (out / "labs").iterdir() if p.is_dir())[0]
    manifest = json.loads((first_lab / "manifest.json").read_text())
    meta = {"matrix": matrix.name, "seed": matrix.seed, "backend": backend_name,
            "labs": len(labs), "cells": len(rows), "wall_time_s": round(time.time() - started, 1),
            "p2plab_version": manifest["p2plab_version"],
            "libp2p_version": ", ".join(manifest["node_implementations"].values()),
            "kernel": manifest["kernel"]}
    write_matrix_report(out, matrix, rows, meta)
    return out, rows
