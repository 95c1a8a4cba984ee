"""Declared versus observed NAT behaviour, from the NAT probe's classification."""

from __future__ import annotations

from typing import Any

from p2plab.topology.nat import NatBehaviour


def declared_view(behaviour: NatBehaviour | None) -> dict[str, Any]:
    """The probe's vocabulary for a declared behaviour (None: no translation)."""
    if behaviour is None:
        return {"translated": False}
    view: dict[str, Any] = {"translated": True, "mapping": behaviour.mapping,
                            "filtering": behaviour.filtering, "hairpin": behaviour.hairpin}
    if behaviour.udp_blocked:
        view["udp_blocked"] = True
    return view


def mismatches(behaviour: NatBehaviour | None, observed: dict[str, Any]) -> list[str]:
    """Every way the observed behaviour differs from the declared one (empty: it matches)."""
    out = []
    for proto in ("udp", "tcp"):
        seen = observed.get(proto, {})
        if proto == "udp" and behaviour is not None and behaviour.udp_blocked:
            if not seen.get("blocked"):
                out.append("udp: declared blocked, but UDP got through")
            continue
        if seen.get("blocked"):
            out.append(f"{proto}: blocked, but declared open")
            continue
        if behaviour is None:
            if seen.get("translated"):
                out.append(f"{proto}: translated ({seen.get('mapped')}), but declared no NAT")
            continue
        if not seen.get("translated"):
            out.append(f"{proto}: not translated, but declared NAT")
        for part in ("mapping", "filtering", "hairpin"):
            want = getattr(behaviour, part)
            if seen.get(part) != want:
                out.append(f"{proto} {part}: declared {want}, observed {seen.get(part)}")
    return out
