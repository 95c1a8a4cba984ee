"""The node contract (docs/reference/node-contract.md) against every built-in
implementation and across them: a thin caller of the checks ``p2plab conform`` runs
(orchestrate/conformance/clauses.py), so the tests and the users' tool cannot drift apart.
Loopback only."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from p2plab.compose.impls.registry import Registry
from p2plab.orchestrate.conformance.checker import Case, cases, run_case

REGISTRY = Registry.load()
# Every built-in implementation is a subject; its cases with the others are shared.
SUBJECTS = ["py", "rust", "rust@0.53"]
CASES = list({case.id: case for subject in SUBJECTS
              for case in cases(subject, REGISTRY)}.values())


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_contract_clause(case: Case) -> None:
    outcome = run_case(case, REGISTRY)
    assert outcome.passed, outcome.detail


def test_every_built_in_is_a_subject() -> None:
    assert {REGISTRY.resolve(s).key for s in SUBJECTS} == set(REGISTRY.declarations)


@pytest.mark.parametrize("key", ["rust@0.57.1", "rust@0.53.2"])
def test_declared_library_is_the_one_cargo_locks(key: str) -> None:
    """The declaration, the manifest's exact pin and the lock file name one release."""
    declaration = REGISTRY.declarations[key]
    assert declaration.file.build.cargo is not None
    manifest = declaration.folder / declaration.file.build.cargo.manifest
    pinned = tomllib.loads(manifest.read_text())["dependencies"]["libp2p"]["version"]
    library = declaration.file.library.version
    assert pinned == f"={library}"
    lock = (manifest.parent / "Cargo.lock").read_text()
    assert f'name = "libp2p"\nversion = "{library}"' in lock


def test_a_failing_clause_is_reported(tmp_path: Path) -> None:
    """The checker fails an implementation that breaks a clause and passes the clauses it
    keeps: the py node behind a --version that names another library release."""
    fake = tmp_path / "p2plab-impl.yaml"
    fake.write_text("name: liar\nversion: '1'\nlibrary: {name: py-libp2p, version: 0.8.1}\n"
                    "build: {python: {module: tests.lying_node, package: libp2p}}\n")
    registry = Registry.load(extra=[fake])
    by_name = {c.clause.name: c for c in cases("liar", registry) if c.clause.arity == 1}
    lying = run_case(by_name["version-line"], registry)
    assert not lying.passed and "py-libp2p 0.0.1" in lying.detail, lying
    assert run_case(by_name["bad-flags"], registry).passed
