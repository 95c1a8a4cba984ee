"""``p2plab conform IMPL``: every clause of the node contract against a registered
implementation, alone and paired with each built-in one, as a table (and JSON).

The gossip clauses put a built-in ``rust`` node in the middle as the hub that must send
IHAVE (py-libp2p 0.8.1 as a hub with D=1 sends none; docs/reference/known-limits.md),
with the implementation under test publishing, receiving, or both.
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

# What every implementation is paired with, and the gossip clauses' hub.
PARTNERS = ("py", "rust")
HUB = "rust"


@dataclass(frozen=True)
class Case:
    clause: Clause
    impls: tuple[str, ...]  # specs, in the clause's order (publisher, receiver, hub)

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
            out.append(Case(clause, (subject,)))
            continue
        pairs = [(subject, subject)] + [pair for p in others
                                        for pair in ((subject, p), (p, subject))]
        for pair in pairs:
            out.append(Case(clause, pair if clause.arity == 2 else (*pair, HUB)))
    return out


def run_case(case: Case, registry: Registry) -> Outcome:
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


def conform(subject: str, registry: Registry, only: Sequence[str] = (),
            progress: Callable[[Outcome], None] = lambda outcome: None) -> list[Outcome]:
    outcomes = []
    for case in cases(subject, registry, only=only):
        outcome = run_case(case, registry)
        progress(outcome)
        outcomes.append(outcome)
    return outcomes


def table(outcomes: Sequence[Outcome]) -> Iterator[str]:
    """Markdown: clause x implementations -> result (the first line of what failed)."""
    yield "| clause | implementations | result | s | why |"
    yield "|---|---|---|---|---|"
    for o in outcomes:
        why = o.detail.splitlines()[0][:160] if o.detail else ""
        yield (f"| {o.clause} | {' / '.join(o.impls)} | {'pass' if o.passed else 'FAIL'} | "
               f"{o.seconds} | {why} |")


def as_json(subject: str, registry: Registry, outcomes: Sequence[Outcome]) -> dict[str, object]:
    declaration = registry.resolve(subject)
    return {"implementation": declaration.key, "library": declaration.library_text(),
            "declaration": str(declaration.path), "passed": all(o.passed for o in outcomes),
            "outcomes": [asdict(o) for o in outcomes]}
