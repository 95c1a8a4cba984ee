"""The report's hole-punch sections beside theory and the field: each NAT pair's punches
against what theory predicts for it, and a population's figures beside a published
campaign's, with what the difference points at."""

from __future__ import annotations

from typing import Any

from p2plab.analysis.grouping import AGGREGATE_AT
from p2plab.analysis.report_parts import Section


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f} %"


def theory_section(summary: dict[str, Any]) -> Section | None:
    """Punches by NAT pair against theory, and each disagreement with what the routers
    recorded about it (or that nothing explains it)."""
    theory = summary.get("punch_theory") or {}
    if not theory:
        return None
    rows = [[c["nats"], c["theory"], c["pairs"], c["direct"], f"{c['agree']}/{c['pairs']}"]
            for c in theory["by_class"]]
    section = Section("Hole punches against NAT theory").paragraph(
        f"{theory['agree']} of {theory['pairs']} pairs did what NAT theory predicts for "
        "their two NATs and common transports (the hole-punch grid's rule; over QUIC the "
        "relayed connection's dialler's ClientHello must get in).").table(
        ["NATs", "theory", "pairs", "pairs direct", "as theory says"], rows)
    disagreements = theory["disagreements"]
    if disagreements:
        section.bullets([
            f"**{d['pair']}** ({d['nats']}): {d['observed']}, theory {d['theory']}; "
            + (f"explained ({d['explained']}): {d['recorded']}" if d["explained"] else
               f"unexplained; the routers recorded: {d['recorded']}" if d["recorded"] else
               "unexplained (forensics: true records the routers)")
            for d in disagreements[:AGGREGATE_AT]])
    return section


def field_section(summary: dict[str, Any]) -> Section | None:
    """The population beside the campaign, and what a difference points at."""
    field = summary.get("punch_field") or {}
    if not field:
        return None
    theory = summary.get("punch_theory") or {}
    ours = field["success"]
    by = field["by_transport"]

    def rate(entry: dict[str, Any]) -> str:
        if not entry["attempts"]:
            return "no attempts"
        low, high = entry["ci95"]
        return (f"{_pct(entry['rate'])} (95 % CI {_pct(low)}-{_pct(high)}; "
                f"{entry['successes']}/{entry['attempts']})")

    measured = [rate(ours), _pct(field["first_attempt_share"]), rate(by["tcp"]),
                rate(by["quic"]), _pct(field["final_transport_quic_share"])]
    rows = [[p["figure"], value, p["value"], p["source"]]
            for p, value in zip(field["published"], measured, strict=True)]
    section = Section("Hole punching beside the field").paragraph(
        f"{field['pairs']} pairs, {ours['attempts']} DCUtR runs (the initiators' "
        "hole_punch events; a run holds the library's own retries, so 'first attempt' "
        "here is the first run of a pair, not the first round inside it).").table(
        ["figure", "this run", "published", "source"], rows)
    predicted = (theory["theory_direct"] / theory["pairs"]) if theory.get("pairs") else None
    overlap = ("overlaps" if field["overlaps_published_range"] else "does not overlap")
    section.paragraph(
        f"This run's success interval {overlap} the campaign's "
        f"{field['published'][0]['value']}. NAT theory "
        f"predicts {_pct(predicted)} of pairs direct for this NAT mix and these transports; "
        f"{theory.get('agree', 0)} of {theory.get('pairs', 0)} pairs did as it says. "
        "Where the run follows theory, a difference from the field is the mix's; where "
        "it does not, see the theory section above. What the lab does not model and the "
        "field has: packet loss and timing on access links (the field's 2.4 % of "
        "successes after the first attempt), NATs that mishandle TCP simultaneous open "
        "(Ford et al. 2005: 64 % of NATs punched TCP against 82 % UDP), IPv6 (half the "
        "campaign's attempts) and peers that leave mid-punch.")
    return section
