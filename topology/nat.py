"""NAT behaviour: presets and parts in RFC 4787's vocabulary (mapping, filtering,
hairpinning, port preservation, timeouts). What a NAT does, not how a router does it:
``nat_rules`` renders a behaviour as nftables rules and sysctls.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

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


def resolve(preset: str, **overrides: Any) -> tuple[NatBehaviour | None, NatBehaviour | None]:
    """(this router's behaviour, the carrier NAT's behaviour or None) for a preset + parts.

    ``overrides`` are NatBehaviour fields; NatSpec has checked their values."""
    if preset not in PRESETS:
        raise ValueError(f"unknown NAT preset {preset!r}; known: {', '.join(PRESETS)}")
    entry = PRESETS[preset]
    if entry.behaviour is None:
        if overrides:
            raise ValueError(f"preset {preset!r} does no NAT: it takes no {sorted(overrides)}")
        return None, None
    return replace(entry.behaviour, **overrides), entry.cgnat


# How much a NAT's choice depends on the remote endpoint, least first.
DEPENDENCE: tuple[Mapping, ...] = ("endpoint-independent", "address-dependent",
                                   "address-and-port-dependent")


def chain_behaviour(chain: Sequence[NatBehaviour]) -> NatBehaviour | None:
    """What a host behind a chain of NATs (innermost first) sees of them all, as one
    NAT: the most destination-dependent mapping (exact: an inner NAT that maps per
    destination hands the outer one a new source per destination), the most restrictive
    filtering (never predicts a packet that would be dropped; a hole punch is judged
    hop by hop, ``punch_works``), the shortest timeouts, port preservation only if every
    NAT preserves, UDP blocked if any NAT blocks it. Hairpinning back to the outermost
    address is the outermost NAT's, and only through inner NATs that filter nothing
    (its hairpin rewrites the source to its own LAN address)."""
    if not chain:
        return None
    return NatBehaviour(
        mapping=max((b.mapping for b in chain), key=DEPENDENCE.index),
        filtering=max((b.filtering for b in chain), key=DEPENDENCE.index),
        hairpin=chain[-1].hairpin and all(b.filtering == "endpoint-independent"
                                          for b in chain[:-1]),
        udp_timeout=min(b.udp_timeout for b in chain),
        tcp_timeout=min(b.tcp_timeout for b in chain),
        port_preservation=all(b.port_preservation for b in chain),
        udp_blocked=any(b.udp_blocked for b in chain),
    )


def _mapping_upto(chain: Sequence[NatBehaviour], hop: int) -> Mapping:
    return max((b.mapping for b in chain[:hop + 1]), key=DEPENDENCE.index)


def admits_punch(receiver: Sequence[NatBehaviour], sender: Sequence[NatBehaviour]) -> bool:
    """Whether the sender's punch packet, sent to the receiver's address as the relay
    observed it while the receiver sends towards the sender's, passes every NAT of the
    receiver (innermost first). At each NAT the packet arrives at the relay
    connection's mapping; that mapping also carried the receiver's own punch only if
    every NAT up to this one maps independently of the destination. It admits the
    packet if it filters nothing; or if that mapping did carry the punch and it filters
    on the address only, or the sender's packet comes from the address the relay saw
    (the sender's NATs map independently of the destination)."""
    sender_mapping = (max((b.mapping for b in sender), key=DEPENDENCE.index)
                      if sender else "endpoint-independent")
    for hop, nat in enumerate(receiver):
        if nat.filtering == "endpoint-independent":
            continue
        shared = _mapping_upto(receiver, hop) == "endpoint-independent"
        if not (shared and (nat.filtering == "address-dependent"
                            or sender_mapping == "endpoint-independent")):
            return False
    return True


def punch_works(a: Sequence[NatBehaviour], b: Sequence[NatBehaviour]) -> bool:
    """DCUtR between hosts behind the NAT chains ``a`` and ``b`` (innermost first; empty
    for a public host): both send at once, and the punch works if either packet gets
    in (the answer then goes back through the mappings it opened)."""
    return admits_punch(a, b) or admits_punch(b, a)


def quic_punch_works(listener: Sequence[NatBehaviour], dialler: Sequence[NatBehaviour]) -> bool:
    """DCUtR over QUIC, whose roles are fixed (libp2p/specs#487): the relayed connection's
    dialler sends the ClientHello and the listener only sprays packets to open its own
    NATs, so the punch works only if the dialler's packet gets into the listener."""
    return admits_punch(listener, dialler)


def punch_transport(listener: Sequence[NatBehaviour], dialler: Sequence[NatBehaviour],
                    tcp: bool, quic: bool) -> str | None:
    """The transport theory says a DCUtR punch ends on between the relayed connection's
    listener and dialler, given which transports both sides run; None: no punch works.
    QUIC first when both would: its handshake needs one round trip where TCP's
    simultaneous open is followed by a security and multiplexer upgrade."""
    udp_blocked = any(n.udp_blocked for n in (*listener, *dialler))
    if quic and not udp_blocked and quic_punch_works(listener, dialler):
        return "quic"
    if tcp and punch_works(listener, dialler):
        return "tcp"
    return None


def preset_chain(preset: str) -> list[NatBehaviour]:
    """A preset's NATs, innermost first (its own, then the carrier's)."""
    own, carrier = resolve(preset)
    return [x for x in (own, carrier) if x is not None]
