"""Check a scenario's expectations against a run's summary: one verdict each."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from analysis.metrics import pair_key
from topology.scenario import Expectations


@dataclass(frozen=True)
class Verdict:
    name: str
    expected: str
    observed: str
    passed: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def check(expect: Expectations, summary: dict[str, Any],
          timeline_error: str | None) -> list[Verdict]:
    verdicts = [Verdict("timeline completed", "every step done",
                        timeline_error or "every step done", timeline_error is None)]
    for lan, probe in summary.get("nat_probe", {}).items():
        verdicts.append(Verdict(f"NAT {probe['router']} behaves as declared", probe["nat"],
                                "as declared" if probe["matches"]
                                else "; ".join(probe["mismatches"]), probe["matches"]))
    delivery = summary["delivery"]
    if expect.delivery_ratio_min is not None:
        ratio = delivery["delivery_ratio"]
        observed = ("no message was published" if ratio is None else
                    f"{ratio:.4f} ({delivery['deliveries']}/{delivery['deliveries_expected']})")
        verdicts.append(Verdict("delivery ratio", f">= {expect.delivery_ratio_min}", observed,
                                ratio is not None and ratio >= expect.delivery_ratio_min))
    if expect.latency_p99_ms_max is not None:
        p99 = delivery["latency_ms"]["p99"]
        verdicts.append(Verdict("latency p99", f"<= {expect.latency_p99_ms_max} ms",
                                "no deliveries" if p99 is None else f"{p99} ms",
                                p99 is not None and p99 <= expect.latency_p99_ms_max))
    for item in expect.connections:
        key = pair_key(*item.between)[0]
        final = summary["connections"].get(key, {}).get("final", "none")
        verdicts.append(Verdict(f"connection {key}", f"ends {item.final}", f"ends {final}",
                                final == item.final))
    for item in expect.hole_punch:
        key = pair_key(*item.between)[0]
        punch = summary["hole_punch"].get(key)
        outcome = punch["outcome"] if punch else "no attempt"
        detail = (f"{outcome} ({punch['successes']}/{punch['attempts']} attempts, "
                  f"{punch['time_to_direct_ms']} ms to direct)") if punch else outcome
        verdicts.append(Verdict(f"hole punch {key}", item.outcome, detail,
                                outcome == item.outcome))
    return verdicts
