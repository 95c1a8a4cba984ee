"""NAT behaviour: presets and parts in RFC 4787's vocabulary (mapping, filtering,
hairpinning, port preservation, timeouts). What a NAT does, not how a router does it:
``nat_rules`` renders a behaviour as nftables rules and sysctls.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

Mapping = Literal["endpoint-independent", "address-dependent", "address-and-port-dependent"]
Filtering = Literal["endpoint-independent", "address-dependent", "address-and-port-dependent"]


@dataclass(frozen=True)
class NatBehaviour:
    mapping: Mapping = "endpoint-independent"
    filtering: Filtering = "address-and-port-dependent"
    hairpin: bool = False
    udp_timeout: int = 120
    tcp_timeout: int = 7440
    port_preservation: bool = True
    udp_blocked: bool = False

    def short(self) -> str:
        abbrev = {"endpoint-independent": "EI", "address-dependent": "AD",
                  "address-and-port-dependent": "APD"}
        text = f"{abbrev[self.mapping]}M+{abbrev[self.filtering]}F"
        if self.udp_blocked:
            text += ", UDP blocked"
        if self.hairpin:
            text += ", hairpin"
        return text


@dataclass(frozen=True)
class Preset:
    behaviour: NatBehaviour | None  # None: no translation at all
    description: str
    cgnat: NatBehaviour | None = None  # double NAT: the carrier's NAT above this one


PRESETS: dict[str, Preset] = {
    "public": Preset(None, "no NAT: the LAN's addresses are routed as they are"),
    "full-cone": Preset(
        NatBehaviour("endpoint-independent", "endpoint-independent"),
        "full cone: one public port per socket, anyone may send to it"),
    "restricted-cone": Preset(
        NatBehaviour("endpoint-independent", "address-dependent"),
        "restricted cone: one public port per socket, open to addresses it has sent to"),
    "port-restricted": Preset(
        NatBehaviour("endpoint-independent", "address-and-port-dependent"),
        "home router: one public port per socket, open only to the exact address:port "
        "it has sent to"),
    "symmetric": Preset(
        NatBehaviour("address-and-port-dependent", "address-and-port-dependent",
                     port_preservation=False),
        "carrier/cloud NAT: a new public port for every destination; hole punching "
        "cannot predict it"),
    "double-nat": Preset(
        NatBehaviour("endpoint-independent", "address-and-port-dependent"),
        "a home router behind a carrier-grade NAT (symmetric) on a 100.64.0.0/10 segment",
        cgnat=NatBehaviour("address-and-port-dependent", "address-and-port-dependent",
                           port_preservation=False)),
    "udp-blocked": Preset(
        NatBehaviour("endpoint-independent", "address-and-port-dependent", udp_blocked=True),
        "a home router that drops all outbound UDP (QUIC cannot leave)"),
}


def resolve(preset: str, **overrides: object) -> tuple[NatBehaviour | None, NatBehaviour | None]:
    """(this router's behaviour, the carrier NAT's behaviour or None) for a preset + parts."""
    if preset not in PRESETS:
        raise ValueError(f"unknown NAT preset {preset!r}; known: {', '.join(PRESETS)}")
    entry = PRESETS[preset]
    if entry.behaviour is None:
        if overrides:
            raise ValueError(f"preset {preset!r} does no NAT: it takes no {sorted(overrides)}")
        return None, None
    return replace(entry.behaviour, **overrides), entry.cgnat  # type: ignore[arg-type]
