"""Link shaping and fault filters as the lab sets them up, over a fake backend whose
"namespace" is a recorder: which commands reach which host, with what input, and when
(a cut link, a partition, a heal, a restart; netem where the kernel has it, the
userspace stage where it does not). The real thing on the wire: tests/test_faults_lab.py."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from p2plab.compose.lab.fault_filters import FaultFilters
from p2plab.compose.lab.links import LinkShaper
from p2plab.topology.loading import parse_scenario
from p2plab.topology.plan import LabPlan, build_plan

pytestmark = pytest.mark.quick

SCENARIO = """
name: shaped
seed: 4
lans:
  - {name: slow, subnet: 10.70.0.0/24, nat: port-restricted,
     link: {latency_ms: 15, jitter_ms: 2}}
nodes:
  - {name: server, lan: public}
  - {name: a, lan: slow, dial: [server]}
  - {name: b, lan: public}
"""

# The "namespace": appends {host, argv, stdin} to a log; fails netem when told to;
# as a link stage, writes its ready file and stays up until stopped.
RECORDER = """
import json, os, sys, time
log, host, netem, *argv = sys.argv[1:]
stdin = "" if sys.stdin.isatty() else sys.stdin.read()
with open(log, "a") as fh:
    fh.write(json.dumps({"host": host, "argv": argv, "stdin": stdin}) + "\\n")
if "netem" in argv and argv[:3] == ["tc", "qdisc", "add"] and netem == "no":
    sys.exit(2)
if "--ready-file" in argv:
    open(argv[argv.index("--ready-file") + 1], "w").close()
    time.sleep(60)
"""


class RecordingBackend:
    """Just what link shaping and fault filters use of a backend."""

    netns_python = sys.executable

    def __init__(self, tmp: Path, netem: bool) -> None:
        self.log = tmp / "commands.jsonl"
        self.script = tmp / "recorder.py"
        self.script.write_text(RECORDER)
        self.netem = "yes" if netem else "no"

    def netns_command(self, host: str) -> list[str]:
        return [sys.executable, str(self.script), str(self.log), host, self.netem]

    def lab_path(self, path: Path) -> str:
        return str(path)

    def commands(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def forget(self) -> None:
        self.log.unlink(missing_ok=True)


@pytest.fixture
def plan() -> LabPlan:
    return build_plan(parse_scenario(SCENARIO, "shaped.yaml"))


def test_fault_filters_follow_the_timeline(plan: LabPlan, tmp_path: Path) -> None:
    backend = RecordingBackend(tmp_path, netem=True)
    faults = FaultFilters(plan, backend)  # type: ignore[arg-type]  # only what it uses
    running = {"server", "a", "b"}
    faults.set_link(["a"], up=False, running=running)
    (load,) = backend.commands()
    assert load["host"] == "a" and load["argv"] == ["nft", "-f", "-"]
    assert 'iifname != "lo" drop' in load["stdin"]
    backend.forget()
    faults.partition([["server"], ["a", "b"]], running - {"b"})  # b is down: not loaded
    loads = {c["host"]: c["stdin"] for c in backend.commands()}
    assert set(loads) == {"server", "a"}
    assert str(plan.public_ip("a")) in loads["server"] and str(plan.nodes["b"].ip) in loads[
        "server"]
    assert 'iifname != "lo" drop' in loads["a"]  # a's link is still down: that wins
    backend.forget()
    faults.restore("b")  # b restarts: it gets its partition back
    (restored,) = backend.commands()
    assert restored["host"] == "b" and str(plan.nodes["server"].ip) in restored["stdin"]
    backend.forget()
    faults.heal(running)
    assert {c["host"] for c in backend.commands()} == {"server", "a", "b"}
    backend.forget()
    faults.set_link(["a"], up=True, running=running)
    (up,) = backend.commands()
    assert "drop" not in up["stdin"]  # an empty table: nothing filtered
    backend.forget()
    faults.restore("a")  # nothing active any more: nothing to load
    assert backend.commands() == []


def test_links_are_shaped_with_netem_where_the_kernel_has_it(plan: LabPlan,
                                                             tmp_path: Path) -> None:
    backend = RecordingBackend(tmp_path, netem=True)
    links = LinkShaper(plan, backend, tmp_path, mechanism="auto")  # type: ignore[arg-type]
    for name in plan.nodes:
        links.apply(name)
    commands = backend.commands()
    assert {c["host"] for c in commands} == {"a"}  # the only impaired node
    argvs = [c["argv"] for c in commands]
    assert argvs[0][:4] == ["tc", "qdisc", "add", "dev"]  # the probe
    shaped = [a for a in argvs if a[:3] == ["tc", "qdisc", "replace"] and "root" in a]
    delays = [a[a.index("delay"):a.index("delay") + 3] for a in shaped]
    assert delays == [["delay", "15.0ms", "2.0ms"]] * 2  # egress, and ingress via the ifb
    assert links.mechanism == "netem" and links.describe()["links"]["a"]["latency_ms"] == 15


def test_links_fall_back_to_the_userspace_stage_without_netem(plan: LabPlan,
                                                              tmp_path: Path) -> None:
    backend = RecordingBackend(tmp_path, netem=False)
    links = LinkShaper(plan, backend, tmp_path, mechanism="auto")  # type: ignore[arg-type]
    try:
        links.apply("a")
        assert links.mechanism == "nfqueue" and "a" in links.stages
        stage = next(c["argv"] for c in backend.commands() if "--ready-file" in c["argv"])
        assert float(stage[stage.index("--latency-ms") + 1]) == 15
        assert stage[stage.index("--seed") + 1] == "4:link:a:0"
        links.apply("a")  # a restart: a new stage, seeded afresh, the old one stopped
        again = [c["argv"] for c in backend.commands() if "--ready-file" in c["argv"]][-1]
        assert again[again.index("--seed") + 1] == "4:link:a:1"
    finally:
        links.stop_all()
    assert links.stages == {}
