"""Check a scenario's expectations against a run's summary: one verdict each."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, replace
from typing import Any

from p2plab.analysis.cpu import caveat
from p2plab.analysis.metrics import pair_key
from p2plab.analysis.relay_circuits import LIMIT_REASONS
from p2plab.topology.schema import Expectations, RelayCutExpectation


@dataclass(frozen=True)
class Verdict:
    name: str
    expected: str
    observed: str
    passed: bool
    # For a timing figure measured while the host was saturated: the figure is partly
    # the machine's, whatever the verdict (analysis/cpu.py).
    caveat: str = ""
    # The figure and its bound as numbers (ms for times, a ratio for delivery), where
    # the expectation is a bound on one figure: benchmarks/suite_under_load.py reads
    # them to compare each bound with the spread measured under load.
    value: float | None = None
    bound: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def check(expect: Expectations, summary: dict[str, Any],
          timeline_error: str | None) -> list[Verdict]:
    verdicts = [Verdict("timeline completed", "every step done",
                        timeline_error or "every step done", timeline_error is None)]
    for probe in summary.get("nat_probe", {}).values():
        verdicts.append(Verdict(f"NAT {probe['router']} behaves as declared", probe["nat"],
                                "as declared" if probe["matches"]
                                else "; ".join(probe["mismatches"]), probe["matches"]))
    delivery = summary["delivery"]
    if expect.delivery_ratio_min is not None:
        verdicts.append(_ratio("delivery ratio", expect.delivery_ratio_min, delivery))
    if expect.reachable_delivery_ratio_min is not None:
        verdicts.append(_ratio("delivery ratio among reachable receivers",
                               expect.reachable_delivery_ratio_min, delivery, reachable=True))
    for level, limit in (("p50", expect.latency_p50_ms_max), ("p99", expect.latency_p99_ms_max)):
        if limit is not None:
            value = delivery["latency_ms"][level]
            verdicts.append(Verdict(f"latency {level}", f"<= {limit} ms",
                                    "no deliveries" if value is None else f"{value} ms",
                                    value is not None and value <= limit,
                                    value=value, bound=limit))
    prop = summary.get("propagation", {})
    for item in expect.propagation:
        value = prop.get(f"t{item.percent}_ms_median")
        reached = f"{prop.get(f't{item.percent}_ms_reached')}/{prop.get('messages')}"
        verdicts.append(Verdict(f"time to {item.percent} % of subscribers (median message)",
                                f"<= {item.max_ms} ms",
                                f"never (reached by {reached} messages)" if value is None
                                else f"{value} ms (reached by {reached} messages)",
                                value is not None and value <= item.max_ms,
                                value=value, bound=item.max_ms))
    for flow_exp in expect.flows:
        flow = delivery.get("per_flow", {}).get(flow_exp.flow)
        if flow is None:
            verdicts.append(Verdict(f"flow {flow_exp.flow}", "messages published",
                                    "no message of this flow was published", False))
            continue
        if flow_exp.delivery_ratio_min is not None:
            verdicts.append(_ratio(f"flow {flow_exp.flow}: delivery ratio",
                                   flow_exp.delivery_ratio_min, flow))
        if flow_exp.delivery_ratio_max is not None:
            ratio = flow["delivery_ratio"]
            verdicts.append(Verdict(f"flow {flow_exp.flow}: delivery ratio at most",
                                    f"<= {flow_exp.delivery_ratio_max}", _ratio_text(flow),
                                    ratio is not None and ratio <= flow_exp.delivery_ratio_max,
                                    value=ratio, bound=flow_exp.delivery_ratio_max))
        if flow_exp.reachable_delivery_ratio_min is not None:
            verdicts.append(_ratio(f"flow {flow_exp.flow}: delivery ratio among reachable",
                                   flow_exp.reachable_delivery_ratio_min, flow, reachable=True))
        if flow_exp.latency_p99_ms_max is not None:
            p99 = flow["latency_ms"]["p99"]
            verdicts.append(Verdict(f"flow {flow_exp.flow}: latency p99",
                                    f"<= {flow_exp.latency_p99_ms_max} ms",
                                    "no deliveries" if p99 is None else f"{p99} ms",
                                    p99 is not None and p99 <= flow_exp.latency_p99_ms_max,
                                    value=p99, bound=flow_exp.latency_p99_ms_max))
    for rec_exp in expect.recovery:
        faults = [r for r in summary.get("recovery", []) if r["action"] == rec_exp.after]
        for r in faults or [None]:
            if r is None:
                verdicts.append(Verdict(f"recovery after {rec_exp.after}",
                                        f"<= {rec_exp.max_s} s",
                                        "the fault was never applied", False))
                continue
            ms = r["recovery_ms"]
            verdicts.append(Verdict(
                f"recovery after {r['fault']}", f"<= {rec_exp.max_s} s",
                f"not recovered ({r['messages_after']} messages after it)" if ms is None
                else f"{ms / 1000:.2f} s", ms is not None and ms <= rec_exp.max_s * 1000,
                value=ms, bound=rec_exp.max_s * 1000))
    if expect.link_rtt_tolerance_pct is not None and not summary.get("packets", True):
        summary.setdefault("not_checked", []).append(
            "link_rtt_tolerance_pct: the simulator has no packets to measure")
    elif expect.link_rtt_tolerance_pct is not None:
        rows = summary.get("link_rtt", {}).get("pairs", [])
        tol = expect.link_rtt_tolerance_pct
        bad = [r for r in rows if r["measured_ms"] is None or abs(
            r["measured_ms"] - r["configured_ms"]) > r["configured_ms"] * tol / 100 + 2.0]
        verdicts.append(Verdict("measured RTT matches the configured links",
                                f"within {tol} % + 2 ms, {len(rows)} paths",
                                "no impaired link was measured" if not rows else
                                (f"all {len(rows)} within" if not bad else
                                 "; ".join(f"{r['pair']} {r['measured_ms']} vs "
                                           f"{r['configured_ms']} ms" for r in bad[:5])),
                                bool(rows) and not bad,
                                value=max((abs(r["measured_ms"] - r["configured_ms"]) * 100
                                           / r["configured_ms"] for r in rows
                                           if r["measured_ms"] is not None), default=None),
                                bound=tol))
    for conn_exp in expect.connections:
        key = pair_key(*conn_exp.between)[0]
        final = summary["connections"].get(key, {}).get("final", "none")
        verdicts.append(Verdict(f"connection {key}", f"ends {conn_exp.final}", f"ends {final}",
                                final == conn_exp.final))
    for punch_exp in expect.hole_punch:
        key = pair_key(*punch_exp.between)[0]
        punch = summary["hole_punch"].get(key)
        outcome = punch["outcome"] if punch else "no attempt"
        direct = (f", {punch['time_to_direct_ms']} ms to direct"
                  if punch and punch["time_to_direct_ms"] is not None else "")
        anyway = "; DCUtR failed, but a direct connection opened" if (
            punch and punch.get("direct_anyway")) else ""
        detail = (f"{outcome} ({punch['successes']}/{punch['attempts']} attempts{direct}"
                  f"{anyway})" if punch else outcome)
        verdicts.append(Verdict(f"hole punch {key}", punch_exp.outcome, detail,
                                outcome == punch_exp.outcome))
    if expect.hole_punch_success_min is not None:
        verdicts.append(_punch_share(expect.hole_punch_success_min, summary["hole_punch"]))
    if expect.punch_theory_agreement_min is not None:
        verdicts.append(_theory_agreement(expect.punch_theory_agreement_min,
                                          summary.get("punch_theory") or {}))
    if expect.relay_cuts and not summary.get("packets", True):
        summary.setdefault("not_checked", []).append(
            "relay_cuts: the simulator's relays have no limits to cut circuits at")
    else:
        for cut_exp in expect.relay_cuts:
            verdicts.append(_relay_cuts(cut_exp, summary.get("relay_circuits", {})))
    return _with_caveats(verdicts, summary)


def _theory_agreement(bound: float, theory: dict[str, Any]) -> Verdict:
    """Pairs whose punch theory predicts, or whose disagreement the routers explain: a
    shipped scenario's punches that differ from theory with no explanation fail it."""
    tried = theory.get("pairs", 0)
    unexplained = [d for d in theory.get("disagreements", []) if not d["explained"]]
    share = (tried - len(unexplained)) / tried if tried else None
    examples = "; ".join(f"{d['pair']} ({d['nats']}): {d['observed']}, theory "
                         f"{d['theory']}" for d in unexplained[:3])
    causes = Counter(d["explained"] for d in theory.get("disagreements", []) if d["explained"])
    observed = ("no pair tried" if share is None else
                f"{share:.1%} ({tried - len(unexplained)}/{tried} pairs: "
                f"{theory.get('agree', 0)} as theory says"
                + "".join(f", {n} {cause}" for cause, n in causes.most_common()) + ")"
                + (f"; unexplained: {examples}" if examples else ""))
    return Verdict("hole punches as NAT theory predicts (or explained)",
                   f">= {bound:.0%} of pairs that tried", observed,
                   share is not None and share >= bound, value=share, bound=bound)


def _punch_share(bound: float, punches: dict[str, Any]) -> Verdict:
    """The share of pairs that tried DCUtR and punched, with the commonest reasons of
    the others: a red hole-punch strip no expectation looked at passed gossip-200."""
    tried = len(punches)
    punched = sum(1 for p in punches.values() if p["outcome"] == "success")
    share = punched / tried if tried else None
    reasons: dict[str, int] = {}
    for p in punches.values():
        if p["outcome"] != "success":
            for failure in p["failures"][-1:]:
                reasons[failure["reason"]] = reasons.get(failure["reason"], 0) + 1
    why = "; ".join(f"{n} x {reason}" for reason, n in
                    sorted(reasons.items(), key=lambda item: -item[1])[:3])
    observed = ("no pair tried" if share is None else
                f"{share:.1%} ({punched}/{tried} pairs){'; failed: ' + why if why else ''}")
    return Verdict("hole punches succeeded", f">= {bound:.0%} of pairs that tried",
                   observed, share is not None and share >= bound, value=share, bound=bound)


def _relay_cuts(expect: RelayCutExpectation, circuits: dict[str, Any]) -> Verdict:
    """Circuits the relays closed for a reason, counted from their own events only: a
    relay that writes none cannot pass ``max: 0`` by saying nothing."""
    least = expect.at_least
    bound = (f">= {least}" if expect.max is None else
             f"{least}..{expect.max}" if expect.max != least else f"== {least}")
    name = (f"circuits cut by relay {expect.relay} ({expect.reason})" if expect.relay
            else f"circuits cut by relays ({expect.reason})")
    if not circuits:
        return Verdict(name, bound, "no relay reported its circuits (its implementation "
                       "writes no relay_hop events)", False)
    reasons = LIMIT_REASONS if expect.reason == "limit" else (expect.reason,)
    cuts = [c for c in circuits["cuts"] if c["reason"] in reasons
            and expect.relay in (None, c["relay"])]
    shown = ", ".join(f"{c['src']}->{c['dst']} at {c['at_s']:g} s" for c in cuts[:3])
    observed = f"{len(cuts)} cut" + (f" ({shown}{', ...' if len(cuts) > 3 else ''})"
                                     if cuts else "")
    passed = len(cuts) >= least and (expect.max is None or len(cuts) <= expect.max)
    return Verdict(name, bound, observed, passed, value=len(cuts), bound=least)


# Verdicts on timing: what CPU queueing on a saturated host moves.
TIMED = ("latency", "time to ", "recovery after", "flow ")


def _with_caveats(verdicts: list[Verdict], summary: dict[str, Any]) -> list[Verdict]:
    note = caveat(summary)
    if not note:
        return verdicts
    return [replace(v, caveat=note) if v.name.startswith(TIMED) and
            (not v.name.startswith("flow ") or "latency" in v.name) else v for v in verdicts]


def _ratio_text(figures: dict[str, Any], reachable: bool = False) -> str:
    key = "reachable_delivery_ratio" if reachable else "delivery_ratio"
    got, of = (("reachable_deliveries", "reachable_expected") if reachable
               else ("deliveries", "deliveries_expected"))
    ratio = figures[key]
    return ("no message was published" if ratio is None
            else f"{ratio:.4f} ({figures[got]}/{figures[of]})")


def _ratio(name: str, minimum: float, figures: dict[str, Any], reachable: bool = False) -> Verdict:
    ratio = figures["reachable_delivery_ratio" if reachable else "delivery_ratio"]
    return Verdict(name, f">= {minimum}", _ratio_text(figures, reachable),
                   ratio is not None and ratio >= minimum, value=ratio, bound=minimum)
