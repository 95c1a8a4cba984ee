"""The hole-punch matrix: theory for every cell, generation, and a real (small) grid
whose cells must agree with theory."""

from __future__ import annotations

import csv
import json
import subprocess
from pathlib import Path

import pytest
from p2plab.topology.matrix import MatrixSpec, cells, lab_scenarios, load_matrix, theory
from p2plab.topology.plan import build_plan

from tests.conftest import P2PLAB, ROOT


@pytest.mark.quick
def test_theory_cells() -> None:
    assert theory("full-cone", "full-cone", "tcp") == "direct"
    assert theory("symmetric", "symmetric", "tcp") == "relayed"
    assert theory("symmetric", "port-restricted", "tcp") == "relayed"
    assert theory("restricted-cone", "symmetric", "tcp") == "direct"
    assert theory("double-nat", "double-nat", "quic") == "relayed"
    assert theory("udp-blocked", "full-cone", "quic") == "failed"
    assert theory("udp-blocked", "full-cone", "tcp") == "direct"
    assert theory("public", "symmetric", "tcp") == "direct"
    # Over TCP both sides' packets count: symmetric in its arguments.
    presets = MatrixSpec().presets
    assert all(theory(a, b, "tcp") == theory(b, a, "tcp") for a in presets for b in presets)
    # Over QUIC only the dialler's ClientHello counts (libp2p/specs#487): a symmetric NAT
    # may dial a cone but not be dialled by one.
    one_way = {(a, b) for a in presets for b in presets
               if theory(a, b, "quic") != theory(b, a, "quic")}
    assert one_way == {(a, b) for a in ("full-cone", "restricted-cone")
                       for b in ("symmetric", "double-nat")} | {
        (b, a) for a in ("full-cone", "restricted-cone") for b in ("symmetric", "double-nat")}
    assert theory("full-cone", "symmetric", "quic") == "direct"
    assert theory("symmetric", "full-cone", "quic") == "relayed"


@pytest.mark.quick
def test_shipped_matrix_expands_into_valid_labs() -> None:
    matrix = load_matrix(ROOT / "scenarios" / "nat-matrix.yaml")
    all_cells = cells(matrix.matrix)
    assert len(all_cells) == 2 * 7 * 8 // 2
    labs = lab_scenarios(matrix)
    assert sum(len(c) for _, c in labs) == len(all_cells)
    for scenario, mine in labs:
        plan = build_plan(scenario)
        assert len(plan.nodes) == 2 * len(mine) + 1
        for c in mine:
            flags = plan.nodes[c.node_b].args
            assert ("--no-tcp" in flags) == (c.transport == "quic")


def run_grid(tmp_path: Path, matrix_yaml: str) -> tuple[Path, list[dict[str, str]]]:
    """Run a matrix file on netns; its results folder and matrix.csv rows."""
    path = tmp_path / "grid.yaml"
    path.write_text(matrix_yaml)
    result = subprocess.run([*P2PLAB, "run", str(path), "--backend", "netns",
                             "--results", str(tmp_path / "r")],
                            capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    out = next((tmp_path / "r").iterdir())
    rows = list(csv.DictReader(open(out / "matrix.csv")))
    return out, rows


@pytest.mark.netns
@pytest.mark.usefixtures("no_leftovers")
def test_small_grid_agrees_with_theory(tmp_path: Path) -> None:
    out, rows = run_grid(tmp_path, """
name: grid
seed: 21
matrix:
  presets: [full-cone, port-restricted, symmetric]
  transports: [tcp]
  direct_timeout: 30
""")
    assert len(rows) == 6
    by = {(r["a"], r["b"]): r for r in rows}
    assert by[("full-cone", "full-cone")]["outcome"] == "direct"
    assert by[("full-cone", "symmetric")]["outcome"] == "direct"
    assert by[("symmetric", "symmetric")]["outcome"] == "relayed"
    assert by[("port-restricted", "symmetric")]["outcome"] == "relayed"
    assert all(r["agrees"] == "True" for r in rows)
    summary = json.loads((out / "matrix.json").read_text())["summary"]
    assert summary["passed"] and summary["figures"]["tcp"]["direct"] == 4
    page = (out / "matrix.html").read_text()
    assert "data:image/png;base64," in page and "port-restricted" in page
    assert (out / "matrix.png").stat().st_size > 10_000


@pytest.mark.quick
def test_both_directions_add_the_reversed_pairs() -> None:
    spec = MatrixSpec(presets=["full-cone", "symmetric", "public"], transports=["quic"],
                      directions="both")
    pairs = [(c.a, c.b) for c in cells(spec)]
    assert len(pairs) == 6 + 3 and len(set(pairs)) == len(pairs)
    assert ("full-cone", "symmetric") in pairs and ("symmetric", "full-cone") in pairs


@pytest.mark.netns
@pytest.mark.usefixtures("no_leftovers")
def test_over_quic_the_grid_depends_on_who_dials(tmp_path: Path) -> None:
    _, rows = run_grid(tmp_path, """
name: directions
seed: 487
matrix:
  presets: [restricted-cone, symmetric]
  transports: [quic]
  impls: [rust@0.53/rust@0.53]
  relay: rust
  directions: both
  direct_timeout: 30
""")
    by = {(r["a"], r["b"]): r for r in rows}
    assert len(rows) == 4
    # (dialled NAT, dialling NAT): on 0.53 only the dialler sends a ClientHello, and it
    # must get into the dialled side's NAT (libp2p/specs#487).
    assert by[("restricted-cone", "symmetric")]["outcome"] == "direct"
    assert by[("symmetric", "restricted-cone")]["outcome"] == "relayed"
    assert all(r["agrees"] == "True" for r in rows), rows


@pytest.mark.netns
@pytest.mark.usefixtures("no_leftovers")
def test_interop_grid_across_implementations(tmp_path: Path) -> None:
    """py and rust nodes in every pairing, TCP and QUIC, behind real NATs: each cell
    agrees with theory or is explained (py-libp2p cannot punch over QUIC)."""
    # One NAT pair keeps CI short; interop-matrix runs every pair
    # (docs/reference/shipped-scenarios.md).
    out, rows = run_grid(tmp_path, """
name: igrid
seed: 23
matrix:
  presets: [port-restricted]
  transports: [tcp, quic]
  impls: [py-rust, rust-py, rust-rust]
  relay: rust
  direct_timeout: 30
""")
    assert len(rows) == 6
    by = {(r["impls"], r["transport"], r["a"], r["b"]): r for r in rows}
    for impls in ("py-rust", "rust-py", "rust-rust"):
        assert by[(impls, "tcp", "port-restricted", "port-restricted")]["outcome"] == "direct"
    # rust-libp2p punches over QUIC; a cell with a py node stays relayed, explained.
    assert by[("rust-rust", "quic", "port-restricted", "port-restricted")]["outcome"] == "direct"
    for impls in ("py-rust", "rust-py"):
        cell = by[(impls, "quic", "port-restricted", "port-restricted")]
        assert cell["outcome"] == "relayed" and "py-libp2p" in cell["known_cause"]
    assert all(r["agrees"] == "True" or r["known_cause"] for r in rows)
    manifests = [json.loads(p.read_text()) for p in (out / "labs").glob("*/manifest.json")]
    assert {m["nodes"]["relay"]["impl"] for m in manifests} == {"rust"}
    assert json.loads((out / "matrix.json").read_text())["summary"]["passed"]
    page = (out / "matrix.html").read_text()
    assert "py node dialled by a rust node" in page
