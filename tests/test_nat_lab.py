"""NAT behaviour on real routers: the probe sees every preset as declared, on both
backends, and a NAT changed mid-run behaves as its new declaration."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import P2PLAB, ROOT

BACKENDS = [pytest.param("netns", marks=pytest.mark.netns),
            pytest.param("docker", marks=pytest.mark.docker)]
pytestmark = pytest.mark.usefixtures("no_leftovers")


@pytest.mark.parametrize("backend", BACKENDS)
def test_probe_sees_every_preset_as_declared(backend: str, tmp_path: Path) -> None:
    result = subprocess.run([*P2PLAB, "run", "nat-presets", "--backend", backend,
                             "--results", str(tmp_path)], capture_output=True, text=True,
                            timeout=600, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    probe = json.loads(next(tmp_path.iterdir()).joinpath("nat_probe.json").read_text())
    assert len(probe) == 9 and all(r["matches"] for r in probe.values()), probe
    seen = {lan: r["observed"] for lan, r in probe.items()}
    # The classes really differ: the probe is not answering the same thing everywhere.
    assert seen["full-cone"]["udp"]["filtering"] == "endpoint-independent"
    assert seen["restricted"]["tcp"]["filtering"] == "address-dependent"
    assert seen["home"]["udp"]["filtering"] == "address-and-port-dependent"
    assert seen["carrier"]["tcp"]["mapping"] == "address-and-port-dependent"
    assert seen["addr-dependent"]["udp"]["mapping"] == "address-dependent"
    assert seen["no-udp"]["udp"]["blocked"] and not seen["no-udp"]["tcp"]["blocked"]
    assert seen["hairpin-home"]["udp"]["hairpin"] and not seen["home"]["udp"]["hairpin"]
    assert not seen["public-lan"]["udp"]["translated"]
    assert seen["double"]["udp"]["mapping"] == "address-and-port-dependent"


@pytest.mark.parametrize("backend", BACKENDS)
def test_set_nat_switches_behaviour_mid_run(p2plab_lab, backend: str) -> None:
    lab = p2plab_lab("nat-relay", backend=backend, probe=True)
    before = lab.probe_nats()["home-a"]
    assert before["matches"] and before["observed"]["udp"]["mapping"] == "endpoint-independent"
    lab.step({"set-nat": "home-a", "nat": "symmetric"})
    assert lab.runner.timeline.steps[-1]["step"]["set-nat"] == "home-a"
    after = lab.probe_nats()["home-a"]["observed"]
    assert after["udp"]["mapping"] == "address-and-port-dependent"
    assert after["tcp"]["mapping"] == "address-and-port-dependent"
    # The other LAN kept its NAT.
    assert lab.probe_nats()["home-b"]["observed"]["udp"]["mapping"] == "endpoint-independent"
