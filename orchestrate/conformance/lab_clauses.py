"""The contract's relay v2 and DCUtR clauses, checked where they mean something: behind
NATs in a lab, not over loopback (where a node can simply dial its peer directly).

Every case of a conformance run is one cell of a single generated netns lab: a relay of
one implementation on the public network, and two chat nodes of the others, each behind
its own port-restricted NAT (a home router: hole punching works through it), with a topic
of their own. The listening node reserves on the relay and the dialling one reaches it
through the circuit. In ``relay`` cells hole punching is off, so chat must go through the
relay; in ``dcutr`` cells the pair must turn direct by DCUtR. Each cell's verdict is read
from the lab's summary, the same figures a run's report gives.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from p2plab.analysis.metrics import pair_key
from p2plab.compose.impls.declaration import Capability
from p2plab.compose.impls.registry import Registry
from p2plab.orchestrate.generated_lab import run_generated_lab
from p2plab.topology.loading import scenario_from_data

ROLES = ("listener", "dialler", "relay")
DIRECT_TIMEOUT_S = 45.0  # py-libp2p first waits out a 10 s dial to private addresses


@dataclass(frozen=True)
class LabClause:
    name: str
    says: str
    holepunch: bool  # DCUtR on: the pair must turn direct; off: chat stays relayed

    def needs(self, role: str) -> set[Capability]:
        """The capabilities an implementation claims to play ``role`` in this clause."""
        if role == "relay":
            return {"relay-hop"}
        return {"relay-client", "holepunch"} if self.holepunch else {"relay-client"}


LAB_CLAUSES = [
    LabClause("relay", "circuit relay v2 through each other: the listener reserves on the "
              "relay, the dialler reaches it through the circuit, and chat goes both ways "
              "over it (DCUtR off; listener, dialler, relay)", holepunch=False),
    LabClause("dcutr", "DCUtR through each other: the relayed pair turns direct by a hole "
              "punch through port-restricted NATs, and chat goes both ways "
              "(listener, dialler, relay)", holepunch=True),
]


def triples(subject: str, others: Sequence[str]) -> list[tuple[str, str, str]]:
    """(listener, dialler, relay) with the subject in every role beside each partner:
    all three itself; a partner pair through the subject's relay; the subject listening
    and dialling through a partner's relay, with that partner opposite."""
    out = [(subject, subject, subject)]
    for partner in others:
        out += [(partner, partner, subject), (subject, partner, partner),
                (partner, subject, partner)]
    return out


def unclaimed(clause: LabClause, impls: Sequence[str], subject: str,
              registry: Registry) -> str:
    """Why the case cannot be asked of the subject (its declaration leaves out what a
    role needs), or "" when it can."""
    declaration = registry.resolve(subject)
    missing = sorted({c for role, spec in zip(ROLES, impls, strict=True) if spec == subject
                      for c in declaration.lacks(clause.needs(role))})
    if not missing:
        return ""
    return (f"not claimed: its declaration leaves out {', '.join(missing)} (capabilities "
            f"in {declaration.path})")


def can_build_labs() -> str:
    """Why this machine cannot run the lab clauses, or ""."""
    if os.geteuid() != 0 or not (shutil.which("ip") and shutil.which("nft")):
        return ("the relay and DCUtR clauses run a netns lab, which needs root with ip and "
                "nft: run p2plab conform as root, or leave them out with --clauses")
    return ""


def scenario_data(cells: Sequence[tuple[LabClause, tuple[str, ...]]],
                  nat: str = "port-restricted",
                  direct_timeout: float = DIRECT_TIMEOUT_S) -> dict[str, Any]:
    """One lab holding every cell: relay rN, listener aN and dialler bN per cell, each
    chat node behind a NAT of the preset ``nat`` (a home router unless a test says)."""
    lans: list[dict[str, Any]] = []
    nodes: list[dict[str, Any]] = []
    pairs: list[list[str]] = []
    punching: list[list[str]] = []
    for n, (clause, (listener, dialler, relay)) in enumerate(cells):
        a, b, r = f"a{n}", f"b{n}", f"r{n}"
        for side in ("a", "b"):
            lans.append({"name": f"{side}{n}-home", "subnet": f"10.{n + 1}.{ord(side) - 96}.0/24",
                         "nat": nat})
        common = {"relay": [r], "holepunch": clause.holepunch, "topics": [f"cell{n}"]}
        nodes += [{"name": r, "lan": "public", "role": "relay", "impl": relay},
                  {"name": a, "lan": f"a{n}-home", "impl": listener, **common},
                  {"name": b, "lan": f"b{n}-home", "impl": dialler, **common,
                   "dial": [{"node": a, "via": r}]}]
        pairs.append([a, b])
        if clause.holepunch:
            punching.append([a, b])
    chatting = [name for pair in pairs for name in pair]
    timeline: list[dict[str, Any]] = [
        {"wait": "reservation", "nodes": chatting, "timeout": 30, "required": False},
        {"wait": "connection", "pairs": pairs, "kind": "relayed", "timeout": 20,
         "required": False}]
    if punching:
        timeline.append({"wait": "connection", "pairs": punching, "kind": "direct",
                         "timeout": direct_timeout, "required": False})
    timeline += [{"wait": "topic-peers", "nodes": chatting, "min": 1, "timeout": 20,
                  "required": False},
                 {"publish": chatting, "count": 5, "size": 100, "rate": 5}]
    return {"name": "conform-nat", "seed": 1, "description": "p2plab conform: relay v2 and "
            "DCUtR across implementations, one cell per case",
            "public": {"subnet": "203.0.113.0/24"}, "lans": lans, "nodes": nodes,
            "timeline": timeline}


def judge(clause: LabClause, n: int, summary: dict[str, Any]) -> list[str]:
    """What cell ``n`` did against its clause; empty when it passed."""
    a, b = f"a{n}", f"b{n}"
    wrong = []
    reserved = {r["node"] for r in summary["relay_reservations"] if r["outcome"] == "ok"}
    if a not in reserved:
        reasons = sorted({r.get("reason") or "" for r in summary["relay_reservations"]
                          if r["node"] == a} - {""})
        wrong.append(f"the listener never held a reservation on the relay"
                     f"{' (' + '; '.join(reasons) + ')' if reasons else ''}")
    key = pair_key(a, b)[0]
    conn = summary["connections"].get(key, {})
    ever, final = conn.get("ever", []), conn.get("final")
    if "relayed" not in ever:
        wrong.append("no relayed connection between listener and dialler")
    punch = summary["hole_punch"].get(key, {})
    if clause.holepunch:
        if final != "direct":
            failures = sorted({f.get("reason") or "" for f in punch.get("failures", [])} - {""})
            wrong.append(f"the pair did not turn direct (final connection {final or 'none'}; "
                         f"hole-punch failures: {'; '.join(failures) or 'none recorded'})")
        elif not punch.get("successes"):
            wrong.append("direct without a hole_punch success event")
    elif "direct" in ever:
        wrong.append("a direct connection although hole punching was off")
    per_publisher = summary["delivery"].get("per_publisher", {})
    for publisher, receiver in ((a, b), (b, a)):
        ratio = per_publisher.get(publisher)
        if ratio != 1.0:
            wrong.append(f"{'listener' if publisher == a else 'dialler'} to "
                         f"{'dialler' if receiver == b else 'listener'}: delivery "
                         f"{'none' if ratio is None else f'{ratio:.0%}'}")
    return wrong


def run_lab_cells(cells: Sequence[tuple[LabClause, tuple[str, ...]]], registry: Registry,
                  progress: Callable[[str], None] = lambda message: None,
                  nat: str = "port-restricted", direct_timeout: float = DIRECT_TIMEOUT_S
                  ) -> tuple[list[list[str]], float, Path | None]:
    """Run every cell in one netns lab; each cell's problems (empty: passed), the lab's
    wall time, and its results folder, kept only when a cell failed (for forensics)."""
    started = time.monotonic()
    keep = Path(tempfile.mkdtemp(prefix="p2plab-conform-lab-"))
    data = scenario_data(cells, nat, direct_timeout)
    run = run_generated_lab(scenario_from_data(data), data, keep / "conform-nat.yaml",
                            "netns", keep, registry, progress)
    verdicts = [judge(clause, n, run.summary) for n, (clause, _) in enumerate(cells)]
    if all(not v for v in verdicts):
        shutil.rmtree(keep, ignore_errors=True)
        return verdicts, time.monotonic() - started, None
    return verdicts, time.monotonic() - started, run.run_dir
