"""The nftables rules and conntrack sysctls that make a Linux router behave as a NAT
``nat.NatBehaviour`` describes.

Every backend loads the same generated text with ``nft -f`` inside its router, so a
router behaves the same on netns and on Docker. Unsolicited inbound traffic is
dropped (policy drop), never answered: a Linux router without such a rule answers a
stray SYN with RST, and every TCP hole punch then fails.

How each part is built:
- mapping: endpoint-independent = ``snat`` to the public address (conntrack keeps the
  source port when it can, and a second flow from the same socket reuses it);
  address-dependent = the external port is a hash of the internal address and port and
  the destination address; address-and-port-dependent = ``snat ... random`` (a fresh
  port per flow). With port preservation off, endpoint-independent mapping also
  hashes the port (same external port for every destination, but not the internal one).
- filtering: every outbound flow records its external port in a dynamic map (external
  port -> internal address and port) and, for address-dependent filtering, which remote
  address it was sent to. Inbound packets to the public address are translated through
  that map; the forward chain then admits them from anyone (endpoint-independent), only
  from a recorded address (address-dependent), or only as part of an existing flow
  (address-and-port-dependent, plain conntrack).
- hairpinning: packets from the LAN to the public address go through the same map and
  are masqueraded back into the LAN; without it they are dropped.
- timeouts: the router's conntrack UDP/TCP timeouts (sysctls) and the map entries' TTL.
"""

from __future__ import annotations

from p2plab.topology.nat import NatBehaviour

TABLE = "p2plab"


def conntrack_sysctls(behaviour: NatBehaviour | None) -> dict[str, str]:
    """Per-router conntrack timeouts (net.netfilter sysctls are per network namespace)."""
    if behaviour is None:
        return {}
    return {
        "net.netfilter.nf_conntrack_udp_timeout": str(behaviour.udp_timeout),
        "net.netfilter.nf_conntrack_udp_timeout_stream": str(behaviour.udp_timeout),
        "net.netfilter.nf_conntrack_tcp_timeout_established": str(behaviour.tcp_timeout),
    }


def _snat(b: NatBehaviour, wan_ip: str) -> list[str]:
    def hashed(proto: str, extra: str) -> str:
        return (f"meta l4proto {proto} snat ip to {wan_ip} : jhash ip saddr . {proto} sport"
                f"{extra} mod 16384 offset 32768")

    if b.mapping == "address-and-port-dependent":
        return [f"snat ip to {wan_ip} random"]
    if b.mapping == "address-dependent":
        return [hashed(p, " . ip daddr") for p in ("udp", "tcp")]
    if not b.port_preservation:
        return [hashed(p, "") for p in ("udp", "tcp")]
    return [f"snat ip to {wan_ip}"]


def nat_ruleset(behaviour: NatBehaviour | None, *, lan_if: str, wan_if: str,
                lan_subnet: str, wan_ip: str, name: str = "") -> str:
    """The nftables script for one router (``nft -f``-ready, replaces any earlier one)."""
    header = f"# p2plab router {name}: {behaviour.short() if behaviour else 'no NAT'}\n"
    reset = f"table ip {TABLE}\ndelete table ip {TABLE}\n"
    if behaviour is None:
        return header + reset + f"""\
table ip {TABLE} {{
    chain forward {{
        type filter hook forward priority filter; policy accept;
    }}
}}
"""
    b = behaviour
    ttl = f"{b.udp_timeout}s"
    snat = "\n".join(f'        oifname "{wan_if}" ip saddr {lan_subnet} {rule}'
                     for rule in _snat(b, wan_ip))
    inbound_dnat = "" if b.filtering == "address-and-port-dependent" else (
        f'        iifname "{wan_if}" ip daddr {wan_ip} meta l4proto {{ tcp, udp }} '
        "dnat ip to meta l4proto . th dport map @mapping\n")
    hairpin_dnat = (
        f'        iifname "{lan_if}" ip daddr {wan_ip} meta l4proto {{ tcp, udp }} '
        "dnat ip to meta l4proto . th dport map @mapping\n") if b.hairpin else ""
    admit = {
        "endpoint-independent": f'        iifname "{wan_if}" ct status dnat accept\n',
        "address-dependent": f'        iifname "{wan_if}" ct status dnat meta mark 0x1 accept\n',
        "address-and-port-dependent": "",
    }[b.filtering]
    return header + reset + f"""\
table ip {TABLE} {{
    # external (protocol, port) -> internal address . port, learnt from outbound flows
    map mapping {{
        type inet_proto . inet_service : ipv4_addr . inet_service
        flags dynamic,timeout
        timeout {ttl}
    }}
    # remote address . protocol . external port: who may answer (address-dependent)
    set contacted {{
        type ipv4_addr . inet_proto . inet_service
        flags dynamic,timeout
        timeout {ttl}
    }}
    chain mark_inbound {{
        type filter hook prerouting priority dstnat - 10; policy accept;
        iifname "{wan_if}" ip daddr {wan_ip} ip saddr . meta l4proto . th dport @contacted \
meta mark set 0x1
    }}
    chain prerouting {{
        type nat hook prerouting priority dstnat; policy accept;
{inbound_dnat}{hairpin_dnat}    }}
    chain postrouting {{
        type nat hook postrouting priority srcnat; policy accept;
{snat}
        oifname "{lan_if}" ip saddr {lan_subnet} ct status dnat masquerade
    }}
    chain record {{
        type filter hook postrouting priority srcnat + 10; policy accept;
        oifname "{wan_if}" meta l4proto {{ tcp, udp }} update @mapping {{ meta l4proto . th sport \
: ct original ip saddr . ct original proto-src }}
        oifname "{wan_if}" meta l4proto {{ tcp, udp }} update @contacted \
{{ ip daddr . meta l4proto . th sport }}
    }}
    chain forward {{
        type filter hook forward priority filter; policy drop;
{'        iifname "' + lan_if + '" meta l4proto udp drop' + chr(10) if b.udp_blocked else ''}\
        ct state established,related accept
        iifname "{lan_if}" oifname "{wan_if}" ip saddr {lan_subnet} accept
{admit}{'        iifname "' + lan_if + '" oifname "' + lan_if + '" ct status dnat accept' + chr(10)
         if b.hairpin else ''}    }}
    chain input {{
        type filter hook input priority filter; policy drop;
        iifname "lo" accept
        ct state established,related accept
        iifname "{lan_if}" ip daddr != {wan_ip} accept
    }}
}}
"""
