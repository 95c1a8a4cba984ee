"""``p2plab conform IMPL``: every clause of the node contract against a registered
implementation, alone and paired with each built-in one, as a table (and JSON).

The gossip clauses put a built-in ``rust`` node in the middle as the hub that must send
IHAVE (py-libp2p 0.8.1 as a hub with D=1 sends none; docs/reference/known-limits.md),
with the implementation under test publishing, receiving, or both. The relay and DCUtR
clauses (lab_clauses.py) run last, every case a cell of one netns lab behind NATs; a case
whose role needs a capability the implementation's declaration leaves out is listed as
not claimed, and fails nothing.
"""

from __future__ import annotations

import tempfile
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from p2plab.compose.impls.registry import Registry
from p2plab.orchestrate.conformance.clauses import CLAUSES, Clause
from p2plab.orchestrate.conformance.lab_clauses import (
    LAB_CLAUSES,
    LabClause,
    can_build_labs,
    run_lab_cells,
    triples,
    unclaimed,
)

# What every implementation is paired with, and the gossip clauses' hub.
PARTNERS = ("py", "rust")
HUB = "rust"


CLAUSE_NAMES = [c.name for c in CLAUSES] + [c.name for c in LAB_CLAUSES]


@dataclass(frozen=True)
class Case:
    clause: Clause | LabClause
    # specs, in the clause's order: (publisher, receiver, hub); (listener, dialler, relay)
    impls: tuple[str, ...]
    subject: str = ""  # whose conformance the case checks (a lab case's capabilities)

    @property
    def id(self) -> str:
        return f"{self.clause.name}[{'-'.join(self.impls)}]"


@dataclass(frozen=True)
class Outcome:
    clause: str
    impls: list[str]
    passed: bool
    seconds: float
    detail: str
    claimed: bool = True  # False: the declaration leaves out what the case needs

    @property
    def failed(self) -> bool:
        return self.claimed and not self.passed

    @property
    def result(self) -> str:
        return "pass" if self.passed else ("FAIL" if self.claimed else "not claimed")


def cases(subject: str, registry: Registry, partners: Sequence[str] = PARTNERS,
          only: Sequence[str] = ()) -> list[Case]:
    """The cases for ``subject``: each one-implementation clause alone, each pair clause
    with itself and both ways with every partner, each gossip clause the same around the
    hub. Partners that resolve to the subject itself are not paired twice."""
    key = registry.resolve(subject).key
    others = [p for p in partners if registry.resolve(p).key != key]
    out: list[Case] = []
    for clause in CLAUSES:
        if only and clause.name not in only:
            continue
        if clause.arity == 1:
            out.append(Case(clause, (subject,), subject))
            continue
        pairs = [(subject, subject)] + [pair for p in others
                                        for pair in ((subject, p), (p, subject))]
        for pair in pairs:
            out.append(Case(clause, pair if clause.arity == 2 else (*pair, HUB), subject))
    for lab_clause in LAB_CLAUSES:
        if not only or lab_clause.name in only:
            out += [Case(lab_clause, triple, subject) for triple in triples(subject, others)]
    return out


def run_case(case: Case, registry: Registry) -> Outcome:
    """One loopback clause's case (lab cases run together: ``run_lab_cases``)."""
    assert isinstance(case.clause, Clause), "lab cases run together: run_lab_cases"
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="p2plab-conform-") as tmp:
        try:
            case.clause.run(*case.impls, registry, Path(tmp))
            passed, detail = True, ""
        except AssertionError as exc:
            passed, detail = False, str(exc).strip()
        except Exception as exc:  # a crash of the check is a failure of the clause too
            passed = False
            detail = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=3)}"
    return Outcome(case.clause.name, list(case.impls), passed,
                   round(time.monotonic() - started, 1), detail)


def run_lab_cases(lab_cases: Sequence[Case], registry: Registry,
                  log: Callable[[str], None] = lambda message: None) -> list[Outcome]:
    """Every claimed lab case as a cell of one netns lab; the others not claimed."""
    outcomes: dict[int, Outcome] = {}
    runnable: list[tuple[int, Case]] = []
    for index, case in enumerate(lab_cases):
        assert isinstance(case.clause, LabClause)
        why = unclaimed(case.clause, case.impls, case.subject, registry)
        if why:
            outcomes[index] = Outcome(case.clause.name, list(case.impls), False, 0.0, why,
                                      claimed=False)
        else:
            runnable.append((index, case))
    cannot = can_build_labs() if runnable else ""
    if cannot:
        for index, case in runnable:
            outcomes[index] = Outcome(case.clause.name, list(case.impls), False, 0.0, cannot)
    elif runnable:
        cells = [(case.clause, case.impls) for _, case in runnable
                 if isinstance(case.clause, LabClause)]
        try:
            verdicts, seconds, kept = run_lab_cells(cells, registry, log)
        except Exception as exc:  # the lab itself failed: every cell fails with it
            detail = f"the lab failed: {type(exc).__name__}: {exc}"
            verdicts, seconds, kept = [[detail]] * len(cells), 0.0, None
        where = (f" (the lab's results: {kept}; p2plab report {kept} renders them)"
                 if kept else "")
        for (index, case), wrong in zip(runnable, verdicts, strict=True):
            detail = "; ".join(wrong) + where if wrong else ""
            outcomes[index] = Outcome(case.clause.name, list(case.impls), not wrong,
                                      round(seconds, 1), detail)
    return [outcomes[i] for i in range(len(lab_cases))]


def conform(subject: str, registry: Registry, only: Sequence[str] = (),
            progress: Callable[[Outcome], None] = lambda outcome: None,
            log: Callable[[str], None] = lambda message: None) -> list[Outcome]:
    """Every case for ``subject``: the loopback ones one by one, then the lab ones
    together (their seconds are the whole lab's)."""
    outcomes = []
    every = cases(subject, registry, only=only)
    for case in every:
        if isinstance(case.clause, Clause):
            outcome = run_case(case, registry)
            progress(outcome)
            outcomes.append(outcome)
    lab_cases = [case for case in every if isinstance(case.clause, LabClause)]
    if lab_cases:
        for outcome in run_lab_cases(lab_cases, registry, log):
            progress(outcome)
            outcomes.append(outcome)
    return outcomes


def table(outcomes: Sequence[Outcome]) -> Iterator[str]:
    """Markdown: clause x implementations -> result (the first line of what failed)."""
    yield "| clause | implementations | result | s | why |"
    yield "|---|---|---|---|---|"
    for o in outcomes:
        why = o.detail.splitlines()[0][:160] if o.detail else ""
        yield f"| {o.clause} | {' / '.join(o.impls)} | {o.result} | {o.seconds} | {why} |"


def as_json(subject: str, registry: Registry, outcomes: Sequence[Outcome]) -> dict[str, object]:
    declaration = registry.resolve(subject)
    return {"implementation": declaration.key, "library": declaration.library_text(),
            "declaration": str(declaration.path), "passed": not any(o.failed for o in outcomes),
            "outcomes": [asdict(o) for o in outcomes]}
