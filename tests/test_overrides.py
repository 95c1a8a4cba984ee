"""``--set PATH=VALUE`` and ``--seed N``: applied before validation, errors that name the
override, the scenario as run written into the results folder's scenario.yaml."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from p2plab.topology.loading import (
    ScenarioError,
    load_scenario,
    parse_scenario_file,
    shipped_files,
)
from p2plab.topology.overrides import OverrideError, parse_override, seed_override

from p2plab.cli import main
from p2plab.resources import scenarios_dir

pytestmark = pytest.mark.quick

NAT_RELAY = scenarios_dir() / "nat-relay.yaml"
GOSSIP = scenarios_dir() / "gossip-50.yaml"


def test_paths_by_name_index_and_brackets() -> None:
    assert parse_override("nodes.peer.count=20").path == ("nodes", "peer", "count")
    assert parse_override("lans[0].link.latency_ms=5").path == ("lans", 0, "link", "latency_ms")
    assert parse_override("lans.0.nat=null").value is None
    assert parse_override("timeline[3].publish=[a, b]").value == ["a", "b"]
    assert parse_override("lans.home.link={latency_ms: 20}").value == {"latency_ms": 20}


@pytest.mark.parametrize("text, message", [
    ("nodes.peer.count", "write PATH=VALUE"),
    ("=3", "write PATH=VALUE"),
    ("nodes..count=3", "not a field path"),
    ("nodes.peer]=3", "not a field path"),
    ("seed=[1, 2", "not valid YAML"),
])
def test_malformed_overrides(text: str, message: str) -> None:
    with pytest.raises(OverrideError, match=message) as caught:
        parse_override(text)
    assert f"--set {text}" in str(caught.value)


def test_overrides_change_the_scenario_and_the_text_as_run() -> None:
    scenario = load_scenario(GOSSIP, [parse_override("nodes.peer.count=12"),
                                      parse_override("lans.home.link.latency_ms=25"),
                                      seed_override(99)])
    assert scenario.seed == 99
    assert len([n for n in scenario.nodes if n.name.startswith("peer-")]) == 12
    assert scenario.overrides == ("nodes.peer.count=12", "lans.home.link.latency_ms=25",
                                  "seed=99")
    assert scenario.text.startswith(f"# {GOSSIP} as run, with:\n#   --set nodes.peer.count=12")
    again = yaml.safe_load(scenario.text)
    assert again["seed"] == 99 and again["lans"][0]["link"]["latency_ms"] == 25
    # Without overrides the file is the text as run, comments and all.
    assert load_scenario(GOSSIP).text == GOSSIP.read_text()


def test_an_override_of_an_aliased_value_changes_only_its_place(tmp_path: Path) -> None:
    text = NAT_RELAY.read_text().replace(
        "{name: home-a, subnet: 10.1.0.0/24, nat: port-restricted}",
        "{name: home-a, subnet: 10.1.0.0/24, nat: port-restricted, link: &l {latency_ms: 10}}"
    ).replace("{name: home-b, subnet: 10.2.0.0/24, nat: port-restricted}",
              "{name: home-b, subnet: 10.2.0.0/24, nat: port-restricted, link: *l}")
    path = tmp_path / "aliased.yaml"
    path.write_text(text)
    scenario = load_scenario(path, [parse_override("lans.home-a.link.latency_ms=50")])
    links = {lan.name: lan.link.latency_ms for lan in scenario.lans if lan.link}
    assert links == {"home-a": 50, "home-b": 10}


def test_a_field_the_file_leaves_out_can_be_set() -> None:
    scenario = load_scenario(NAT_RELAY, [parse_override("settle=5"),
                                         parse_override("lans.home-a.link.loss_pct=2")])
    assert scenario.settle == 5
    assert scenario.lans[0].link is not None and scenario.lans[0].link.loss_pct == 2


@pytest.mark.parametrize("text, message", [
    ("lans.home-z.nat=symmetric", "no item named 'home-z' in lans; named: home-a, home-b"),
    ("lans[7].nat=symmetric", "lans has 2 items (indices 0-1), not 7"),
    ("seed.x=1", "seed is a single value"),
    ("expect.0=1", "expect is a mapping; give a key"),
    ("nodes.alice.count=abc", "--set nodes.alice.count=abc: nodes[1].count: Input should be "
                              "a valid integer"),
    ("nodes.alice.colour=red", "--set nodes.alice.colour=red: nodes[1].colour: unknown field"),
    ("lans.home-a.nat=symetric", "--set lans.home-a.nat=symetric: lans[0].nat: unknown NAT "
                                 "preset 'symetric'"),
    ("expect.delivery_ratio_min=2", "--set expect.delivery_ratio_min=2: "
                                    "expect.delivery_ratio_min: 2 is out of range"),
])
def test_errors_name_the_override(text: str, message: str) -> None:
    with pytest.raises(ScenarioError) as caught:
        load_scenario(NAT_RELAY, [parse_override(text)])
    assert message in str(caught.value)
    assert str(NAT_RELAY) not in str(caught.value).split(message)[0]


def test_cross_check_errors_say_the_overrides_made_the_scenario() -> None:
    with pytest.raises(ScenarioError) as caught:
        load_scenario(NAT_RELAY, [parse_override("nodes.alice.lan=home-z")])
    lines = str(caught.value).splitlines()
    assert lines[0].startswith("--set nodes.alice.lan=home-z: nodes[1].lan: LAN 'home-z' "
                               "does not exist")
    assert lines[-1] == "(the scenario as changed by --set nodes.alice.lan=home-z)"


def test_report_reads_overridden_expectations() -> None:
    text = load_scenario(NAT_RELAY, [parse_override("expect.delivery_ratio_min=0.5")]).text
    file, _origins = parse_scenario_file(text, "scenario.yaml")
    assert file.expect.delivery_ratio_min == 0.5


def test_cli_refuses_overrides_it_cannot_apply(capsys: pytest.CaptureFixture[str],
                                               tmp_path: Path) -> None:
    assert main(["run", "nat-matrix", "--seed", "3", "--results", str(tmp_path)]) == 2
    assert "is a matrix: --set and --seed apply to scenarios" in capsys.readouterr().err
    assert main(["crosscheck", "--run", str(tmp_path), "--seed", "3"]) == 2
    assert "would simulate another scenario" in capsys.readouterr().err
    assert main(["suite", "lan", "nat-relay", "--set", "lans.home-a.nat=none",
                 "--results", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "lan.yaml" in err and "no item named 'home-a' in lans" in err
    assert not any(tmp_path.iterdir())  # nothing ran, nothing was written


def test_show_takes_overrides(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["show", "nat-relay", "--set", "lans.home-a.nat=symmetric", "--seed", "11",
                 "--png", str(tmp_path / "t.png")]) == 0
    out = capsys.readouterr().out
    assert "nat-relay (seed 11)" in out and "behind home-a-gw: symmetric" in out


def test_list_and_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    names = {line.split()[0] for line in lines[1:] if line and not line.startswith("/")}
    assert {p.stem for p in shipped_files(scenarios_dir())} <= names
    gossip_10k = next(line for line in lines if line.startswith("gossip-10k "))
    assert "sim only" in gossip_10k and "10000 nodes" in gossip_10k
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert "rust-libp2p 0.57.1" in capsys.readouterr().out
