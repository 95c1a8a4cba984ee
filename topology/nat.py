"""NAT behaviour as nftables rulesets, generated once from the model.

Every backend loads the same text with ``nft -f`` inside its router. Unsolicited
inbound traffic is dropped (policy drop), never answered: a Linux router without such a
rule answers a stray SYN with RST, and every TCP hole punch then fails.
"""

from __future__ import annotations

TABLE = "p2plab"

PRESETS = {
    "port-restricted": "home router: endpoint-independent mapping (conntrack masquerade), "
    "address-and-port-dependent filtering; unsolicited inbound dropped",
}


def nat_ruleset(preset: str, *, lan_if: str, wan_if: str, lan_subnet: str, wan_ip: str) -> str:
    """The nftables script for one router (``nft -f``-ready)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown NAT preset {preset!r}; known: {', '.join(PRESETS)}")
    return f"""\
# p2plab NAT router: {preset} ({PRESETS[preset]})
table ip {TABLE} {{
    chain forward {{
        type filter hook forward priority filter; policy drop;
        ct state established,related accept
        iifname "{lan_if}" oifname "{wan_if}" ip saddr {lan_subnet} accept
    }}
    chain input {{
        type filter hook input priority filter; policy drop;
        iifname "lo" accept
        ct state established,related accept
        iifname "{lan_if}" accept
    }}
    chain postrouting {{
        type nat hook postrouting priority srcnat; policy accept;
        oifname "{wan_if}" ip saddr {lan_subnet} snat to {wan_ip}
    }}
}}
"""
