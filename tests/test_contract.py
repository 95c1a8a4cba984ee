"""The node contract (docs/reference/node-contract.md) against every built-in
implementation and across them: a thin caller of the checks ``p2plab conform`` runs
(orchestrate/conformance/), so the tests and the users' tool cannot drift apart. The
loopback clauses a case each; the relay and DCUtR clauses a netns lab per subject."""

from __future__ import annotations

import shutil
import tomllib
from pathlib import Path

import pytest
from p2plab.compose.impls.registry import Registry
from p2plab.orchestrate.conformance.checker import Case, cases, run_case, run_lab_cases
from p2plab.orchestrate.conformance.clauses import Clause
from p2plab.orchestrate.conformance.lab_clauses import LAB_CLAUSES, judge, run_lab_cells

REGISTRY = Registry.load()
# Every built-in implementation is a subject; its cases with the others are shared.
SUBJECTS = ["py", "rust", "rust@0.53"]
CASES = list({case.id: case for subject in SUBJECTS for case in cases(subject, REGISTRY)
              if isinstance(case.clause, Clause)}.values())


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_contract_clause(case: Case) -> None:
    outcome = run_case(case, REGISTRY)
    assert outcome.passed, outcome.detail


@pytest.mark.netns
@pytest.mark.parametrize("subject", SUBJECTS)
def test_relay_and_dcutr_through_each_other(subject: str, no_leftovers: None) -> None:
    """Every relay and DCUtR case of the subject, as `p2plab conform` runs them: one lab."""
    lab_cases = [c for c in cases(subject, REGISTRY) if not isinstance(c.clause, Clause)]
    assert {c.clause.name for c in lab_cases} == {"relay", "dcutr"}
    outcomes = run_lab_cases(lab_cases, REGISTRY)
    assert all(o.claimed for o in outcomes)
    failed = [f"{o.clause} {o.impls}: {o.detail}" for o in outcomes if not o.passed]
    assert not failed, failed


@pytest.mark.netns
def test_a_pair_that_cannot_punch_fails_dcutr_but_not_relay(no_leftovers: None) -> None:
    """Behind symmetric NATs no hole punch works: the same verdicts fail the dcutr cell
    (with the failure the nodes recorded) and pass the relay cell."""
    relay, dcutr = LAB_CLAUSES
    cells = [(relay, ("rust", "rust", "rust")), (dcutr, ("rust", "rust", "rust"))]
    # rust-libp2p gives up after 3 attempts within seconds: no need to wait 45 s.
    verdicts, _seconds, kept = run_lab_cells(cells, REGISTRY, nat="symmetric",
                                             direct_timeout=15)
    assert verdicts[0] == [], verdicts
    assert len(verdicts[1]) == 1 and "did not turn direct (final connection relayed" in \
        verdicts[1][0], verdicts
    # A failed cell keeps the lab's results for forensics, in a folder of its own.
    assert kept is not None and (kept / "events" / "a1.jsonl").exists()
    shutil.rmtree(kept.parent)


@pytest.mark.quick
def test_lab_verdicts_name_what_went_wrong() -> None:
    """The verdict of a cell from a run's summary, each way it can go wrong."""
    relay, dcutr = LAB_CLAUSES
    good = {"relay_reservations": [{"node": "a0", "outcome": "ok"}],
            "connections": {"a0<->b0": {"ever": ["relayed", "direct"], "final": "direct"}},
            "hole_punch": {"a0<->b0": {"successes": 1, "failures": []}},
            "delivery": {"per_publisher": {"a0": 1.0, "b0": 1.0}}}
    assert judge(dcutr, 0, good) == []
    assert judge(relay, 0, good) == ["a direct connection although hole punching was off"]
    bad = {"relay_reservations": [{"node": "a0", "outcome": "failed", "reason": "no slot"}],
           "connections": {}, "hole_punch": {"a0<->b0": {"failures": [{"reason": "timeout"}]}},
           "delivery": {"per_publisher": {"a0": 0.4}}}
    assert judge(dcutr, 0, bad) == [
        "the listener never held a reservation on the relay (no slot)",
        "no relayed connection between listener and dialler",
        "the pair did not turn direct (final connection none; hole-punch failures: timeout)",
        "listener to dialler: delivery 40%", "dialler to listener: delivery none"]


# Built-ins that are another lock of a subject's sources (same sources, same feature),
# built for the bug gallery: the contract is checked on the subject they re-lock.
LOCK_VARIANTS = {"rust@0.53.2+relay-0.17.1": "rust@0.53.2"}


def test_every_built_in_is_a_subject_or_another_lock_of_one() -> None:
    subjects = {REGISTRY.resolve(s).key for s in SUBJECTS}
    assert subjects | set(LOCK_VARIANTS) == set(REGISTRY.declarations)
    for variant, subject in LOCK_VARIANTS.items():
        mine, theirs = REGISTRY.declarations[variant], REGISTRY.declarations[subject]
        assert mine.file.build.cargo is not None and theirs.file.build.cargo is not None
        assert mine.file.build.cargo.sources == theirs.file.build.cargo.sources
        assert mine.file.library == theirs.file.library
        manifest = tomllib.loads((mine.folder / mine.file.build.cargo.manifest).read_text())
        assert manifest["features"] == tomllib.loads(
            (theirs.folder / theirs.file.build.cargo.manifest).read_text())["features"]


def test_the_february_2024_lock_has_the_relay_before_its_fix() -> None:
    declaration = REGISTRY.declarations["rust@0.53.2+relay-0.17.1"]
    lock = (declaration.folder / "Cargo.lock").read_text()
    assert 'name = "libp2p-relay"\nversion = "0.17.1"' in lock
    today = (REGISTRY.declarations["rust@0.53.2"].folder / "Cargo.lock").read_text()
    assert 'name = "libp2p-relay"\nversion = "0.17.2"' in today


@pytest.mark.parametrize("key", ["rust@0.57.1", "rust@0.53.2", "rust@0.53.2+relay-0.17.1"])
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
    by_name = {c.clause.name: c for c in cases("liar", registry)
               if isinstance(c.clause, Clause) and c.clause.arity == 1}
    lying = run_case(by_name["version-line"], registry)
    assert not lying.passed and "py-libp2p 0.0.1" in lying.detail, lying
    assert run_case(by_name["bad-flags"], registry).passed
