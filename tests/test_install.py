"""p2plab installed as a wheel, away from the checkout: one package (``p2plab``), the
shipped scenarios, the image's build context and the Rust node's sources inside it, and
a shipped scenario run from another directory."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.docker


def _run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, capture_output=True, text=True, **kwargs)
    assert done.returncode == 0, f"{argv}:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done


def test_a_wheel_install_runs_a_shipped_scenario_from_elsewhere(tmp_path: Path) -> None:
    # Built from a copy: setuptools writes build/ next to the sources it builds.
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "results", "target", "__pycache__", "*.egg-info"))
    dist = tmp_path / "dist"
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dist), str(source)],
         timeout=600)
    wheel = next(dist.glob("p2plab-*.whl"))
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)])
    # Dependencies come from the package index (pip's cache makes it quick after `make setup`).
    _run([str(venv / "bin" / "pip"), "install", "-q", str(wheel)], timeout=900)

    purelib = Path(_run([str(venv / "bin" / "python"), "-c",
                         "import sysconfig; print(sysconfig.get_paths()['purelib'])"])
                   .stdout.strip())
    top = {p.name for p in purelib.iterdir() if p.is_dir() and not p.name.endswith("-info")}
    assert "p2plab" in top
    assert not top & {"node", "topology", "compose", "analysis", "orchestrate"}, top
    package = purelib / "p2plab"
    for data in ("scenarios/nat-relay.yaml", "compose/image/Dockerfile",
                 "compose/image/router.sh", "node_rust/Cargo.toml", "node_rust/Cargo.lock",
                 "node_rust/src/main.rs", "analysis/templates/report.html.j2",
                 "analysis/templates/report.md.j2"):
        assert (package / data).is_file(), data
    # Every built-in declaration, and every file its build reads (cargo builds from these).
    from p2plab.compose.impls.builds import cargo_sources
    from p2plab.compose.impls.registry import Registry

    from p2plab.resources import rust_crate_dir

    crate = rust_crate_dir()
    missing = []
    for declaration in Registry.load().declarations.values():
        files = [declaration.path]
        if declaration.file.build.cargo is not None:
            files += cargo_sources(declaration, declaration.file.build.cargo)
        for f in files:
            inside = (package / "node_rust" / f.relative_to(crate) if f.is_relative_to(crate)
                      else package / "node" / f.name)
            if not inside.is_file():
                missing.append(str(f))
    assert not missing, missing
    assert sysconfig.get_paths()["purelib"] != str(purelib)

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv / 'bin'}:{env['PATH']}"
    _run([str(venv / "bin" / "p2plab-node"), "--help"], cwd=elsewhere, env=env)
    listed = _run([str(venv / "bin" / "p2plab"), "validate", "nat-relay"], cwd=elsewhere, env=env)
    assert "nat-relay" in listed.stdout + listed.stderr
    done = _run([str(venv / "bin" / "p2plab"), "run", "nat-relay", "--results", "results"],
                cwd=elsewhere, env=env, timeout=600)
    assert "nat-relay: PASS" in done.stdout, done.stdout[-3000:]
    run_dir = next((elsewhere / "results").iterdir())
    assert (run_dir / "report.html").is_file() and (run_dir / "topology.json").is_file()
    # Nothing was written into the installed package or the checkout.
    assert not (package / "build").exists() and not (package / "results").exists()
