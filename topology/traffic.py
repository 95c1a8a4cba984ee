"""Traffic schedules: when each publisher sends, drawn from the scenario's seed.

The runner hands every publisher its list of send offsets, so the choices are made
once, here, and are the same on every backend and in every repeat of a seed.
"""

from __future__ import annotations

import random

from p2plab.topology.scenario import Scenario
from p2plab.topology.schema import Publish


def send_offsets(step: Publish, scenario: Scenario, step_index: int, publisher: str) -> list[float]:
    """Seconds after the step starts at which ``publisher`` sends each message.

    constant: evenly spaced at ``rate``; poisson: exponential gaps with mean 1/rate;
    burst: ``burst`` messages back to back, bursts spaced so the mean rate holds.
    """
    rng = random.Random(f"{scenario.seed}:traffic:{step_index}:{publisher}")
    if step.pattern == "constant":
        return [round(i / step.rate, 6) for i in range(step.count)]
    if step.pattern == "poisson":
        t, out = 0.0, []
        for _ in range(step.count):
            out.append(round(t, 6))
            t += rng.expovariate(step.rate)
        return out
    gap = step.burst / step.rate
    start = rng.uniform(0, min(gap, 1.0))  # publishers' bursts do not all line up
    return [round(start + (i // step.burst) * gap + (i % step.burst) * 0.001, 6)
            for i in range(step.count)]


def publishers(step: Publish, scenario: Scenario) -> list[str]:
    return scenario.match_nodes(step.publish)


def topic_for(step: Publish, scenario: Scenario, publisher: str) -> str:
    return step.topic or scenario.topics_of(scenario.node(publisher))[0]
