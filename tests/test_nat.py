"""NAT presets and the nftables rules generated for them."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from p2plab.topology.nat import PRESETS, NatBehaviour, resolve
from p2plab.topology.nat_rules import nat_ruleset

from tests.conftest import require

pytestmark = pytest.mark.quick


def rules(b: NatBehaviour | None) -> str:
    return nat_ruleset(b, lan_if="lan0", wan_if="wan0", lan_subnet="10.1.0.0/24",
                       wan_ip="203.0.113.2", name="r")


def test_every_preset_has_a_description_and_resolves() -> None:
    for name, preset in PRESETS.items():
        assert preset.description
        resolve(name)
    assert resolve("double-nat")[1] is not None
    assert resolve("public") == (None, None)


def test_overrides_apply_and_bad_ones_are_refused() -> None:
    b, _ = resolve("port-restricted", hairpin=True, udp_timeout=30)
    assert b.hairpin and b.udp_timeout == 30 and b.filtering == "address-and-port-dependent"
    with pytest.raises(ValueError, match="takes no"):
        resolve("public", hairpin=True)
    with pytest.raises(ValueError, match="unknown NAT preset"):
        resolve("magic")


@pytest.mark.parametrize("name", [n for n in PRESETS if n != "public"])
def test_unsolicited_inbound_is_dropped_never_rejected(name: str) -> None:
    text = rules(resolve(name)[0])
    assert "type filter hook forward priority filter; policy drop;" in text
    assert "type filter hook input priority filter; policy drop;" in text
    assert "ct state established,related accept" in text
    assert "reject" not in text


def test_mapping_rules() -> None:
    eim = rules(resolve("port-restricted")[0])
    assert 'ip saddr 10.1.0.0/24 snat ip to 203.0.113.2\n' in eim
    apdm = rules(resolve("symmetric")[0])
    assert "snat ip to 203.0.113.2 random" in apdm
    adm = rules(NatBehaviour(mapping="address-dependent"))
    assert "jhash ip saddr . udp sport . ip daddr" in adm
    no_preserve = rules(NatBehaviour(port_preservation=False))
    assert "jhash ip saddr . tcp sport mod" in no_preserve


def test_filtering_rules() -> None:
    eif = rules(resolve("full-cone")[0])
    assert 'iifname "wan0" ip daddr 203.0.113.2 meta l4proto { tcp, udp } dnat' in eif
    assert 'iifname "wan0" ct status dnat accept' in eif
    adf = rules(resolve("restricted-cone")[0])
    assert 'iifname "wan0" ct status dnat meta mark 0x1 accept' in adf
    apdf = rules(resolve("port-restricted")[0])
    assert 'iifname "wan0" ct status dnat' not in apdf  # only existing flows come in


def test_hairpin_udp_block_and_public() -> None:
    hairpin = rules(resolve("port-restricted", hairpin=True)[0])
    assert 'iifname "lan0" ip daddr 203.0.113.2 meta l4proto { tcp, udp } dnat' in hairpin
    assert 'iifname "lan0" oifname "lan0" ct status dnat accept' in hairpin
    assert 'iifname "lan0" ip daddr 203.0.113.2' not in rules(resolve("port-restricted")[0])
    assert 'iifname "lan0" meta l4proto udp drop' in rules(resolve("udp-blocked")[0])
    public = rules(None)
    assert "snat" not in public and "policy accept" in public


@pytest.mark.parametrize("name", list(PRESETS) + ["hairpin", "address-dependent"])
def test_rulesets_pass_nft_syntax_check(name: str) -> None:
    require(shutil.which("nft") is not None, "needs nft (apt-get install nftables)")
    behaviour = {"hairpin": NatBehaviour(hairpin=True),
                 "address-dependent": NatBehaviour(mapping="address-dependent")}.get(name)
    text = rules(behaviour if behaviour else resolve(name)[0])
    result = subprocess.run(["nft", "-c", "-f", "-"], input=text, capture_output=True, text=True)
    require("Operation not permitted" not in result.stderr, "nft -c needs CAP_NET_ADMIN")
    assert result.returncode == 0, result.stderr
