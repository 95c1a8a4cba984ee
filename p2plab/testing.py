"""Start a p2plab lab from your own pytest suite.

    pytest_plugins = ["p2plab.testing"]

    def test_my_relay(p2plab_lab):
        lab = p2plab_lab("nat-relay", backend="docker")   # nodes up, timeline not run
        # probe=True adds the NAT probe's hosts: lab.probe_nats() classifies every NAT
        lab.run_timeline()                                  # or drive it yourself:
        lab["alice"].send({"cmd": "say", "text": "hi"})
        lab.wait_for("bob got it", lambda: lab["bob"].events("message_received"))
        lab.step({"set-nat": "home-a", "nat": "symmetric"})  # any timeline step
        print(lab["home-a-gw"].exec(["nft", "list", "ruleset"]).stdout)

Every lab the fixture starts is torn down when the test ends, pass or fail.
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from pydantic import TypeAdapter

from p2plab.compose import ownership
from p2plab.compose.backend import make_backend
from p2plab.compose.hosts import Host
from p2plab.compose.ownership import RunRecord
from p2plab.compose.run_folder import new_run_dir, new_run_id
from p2plab.compose.runner import Runner
from p2plab.resources import scenarios_dir
from p2plab.topology.plan import LabPlan, build_plan
from p2plab.topology.loading import find_scenario, load_scenario
from p2plab.topology.schema import Step

SCENARIOS_DIR = scenarios_dir()


class Lab:
    """A created lab with its nodes started; ``close()`` tears it all down."""

    def __init__(self, scenario: str, backend: str, results: Path, probe: bool = False) -> None:
        path = find_scenario(scenario, SCENARIOS_DIR)
        self.plan: LabPlan = build_plan(load_scenario(path), probing=probe or None)
        self.run_id = run_id = new_run_id()
        self.backend = make_backend(backend, run_id)
        self.backend.check_environment()
        self.run_dir = new_run_dir(results, self.plan.scenario, run_id)
        # Owned like any run: `p2plab clean` elsewhere leaves it alone while we live.
        self._owner = ExitStack()
        self._owner.enter_context(ownership.owned(RunRecord(
            run_id, backend, self.plan.scenario.name, str(self.run_dir),
            subnets=[str(s.subnet) for s in self.plan.segments.values()])))
        self.runner = Runner(self.plan, self.backend, self.run_dir)
        try:
            self.backend.create(self.plan, self.run_dir)
            self.runner.start_nodes()
        except BaseException:
            self.close()
            raise

    def __getitem__(self, host: str) -> Host:
        """A handle on a node or router: ``.exec(argv)``, ``.send(command)``,
        ``.events(type)``, ``.kill()``."""
        return self.runner[host]

    def run_timeline(self) -> None:
        """The scenario's timeline, then until every publish has gone out."""
        self.runner.timeline_start = time.monotonic()
        self.runner.run_timeline()
        self.runner.finish_publishing()

    def step(self, spec: dict[str, Any]) -> None:
        """One timeline step, written as in a scenario file (``{"kill": ["bob"]}``)."""
        self.runner.run_timeline([TypeAdapter(Step).validate_python(spec)])

    def probe_nats(self) -> dict[str, Any]:
        """Classify every LAN's NAT now (the lab must have been started with probe=True)."""
        return self.runner.probe_nats()

    def wait_for(self, what: str, condition: Callable[[], Any], timeout: float = 30) -> None:
        self.runner.wait_until(what, lambda: bool(condition()), timeout)

    def close(self) -> None:
        try:
            self.runner.stop_nodes()
        finally:
            try:
                self.backend.destroy()
            finally:
                self._owner.close()


@pytest.fixture
def p2plab_lab(tmp_path: Path) -> Iterator[Callable[..., Lab]]:
    labs: list[Lab] = []

    def start(scenario: str, backend: str = "docker", probe: bool = False) -> Lab:
        lab = Lab(scenario, backend, tmp_path / f"results-{len(labs)}", probe)
        labs.append(lab)
        return lab

    yield start
    for lab in labs:
        lab.close()

