"""Start a p2plab lab from your own pytest suite.

    pytest_plugins = ["p2plab.testing"]

    def test_my_relay(p2plab_lab):
        lab = p2plab_lab("nat-relay", backend="docker")   # nodes up, timeline not run
        # probe=True adds the NAT probe's hosts: lab.probe_nats() classifies every NAT
        lab.play()                                          # or drive it yourself:
        lab["alice"].send({"cmd": "say", "text": "hi"})
        lab.wait_for("bob got it", lambda: lab["bob"].events("message_received"))
        lab.step({"set-nat": "home-a", "nat": "symmetric"})  # any timeline step
        print(lab["home-a-gw"].exec(["nft", "list", "ruleset"]).stdout)

Every lab the fixture starts is torn down when the test ends, pass or fail.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from p2plab.compose.backends.registry import DEFAULT
from p2plab.compose.lab.lifecycle import Lab
from p2plab.resources import scenarios_dir
from p2plab.topology.loading import find_scenario

SCENARIOS_DIR = scenarios_dir()


def start_lab(scenario: str, backend: str, results: Path, probe: bool = False) -> Lab:
    """A lab opened and started (the CLI's own lifecycle, checks included), its
    timeline not run: ``lab.play()`` runs it (a step that fails raises StepFailed, so
    the test fails), or drive it step by step."""
    lab = Lab(find_scenario(scenario, SCENARIOS_DIR), backend, results, probe=probe or None,
              raise_step_failures=True)
    lab.open()
    try:
        lab.start()
    except BaseException as exc:
        lab.close(exc)
        raise
    return lab


@pytest.fixture
def p2plab_lab(tmp_path: Path) -> Iterator[Callable[..., Lab]]:
    labs: list[Lab] = []

    def start(scenario: str, backend: str = DEFAULT, probe: bool = False) -> Lab:
        lab = start_lab(scenario, backend, tmp_path / f"results-{len(labs)}", probe)
        labs.append(lab)
        return lab

    yield start
    _close_all(list(reversed(labs)))  # last opened, first closed: each restores its own


def _close_all(labs: list[Lab]) -> None:
    """Close every lab even if one fails (the first failure is raised after)."""
    if not labs:
        return
    try:
        labs[0].close()
    finally:
        _close_all(labs[1:])
