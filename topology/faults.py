"""Fault filters, computed once from the plan and loaded into a host's namespace.

A cut link and a partition are both packet filters in the node's own network
namespace (an nftables table of its own, ahead of everything else), so every backend
applies them the same way and a restarted container gets them back.
"""

from __future__ import annotations

from p2plab.topology.plan import LabPlan

TABLE = "p2plab_fault"


def partition_blocks(plan: LabPlan, groups: list[list[str]]) -> dict[str, list[str]]:
    """For each node, the addresses it must not exchange packets with.

    A node is seen by its own LAN at its IP and by everyone else at its outermost NAT's
    public address (or its IP when nothing NATs it); nodes not in any group form one
    more group. The scenario model has checked that nodes sharing a NAT share a group.
    """
    group_of = {n: i for i, members in enumerate(groups) for n in members}
    rest = len(groups)
    seen_as: dict[int, set[str]] = {}
    for name, node in plan.nodes.items():
        g = group_of.get(name, rest)
        seen_as.setdefault(g, set()).update({str(node.ip), str(plan.public_ip(name))})
    return {name: sorted(a for g, addrs in seen_as.items()
                         if g != group_of.get(name, rest) for a in addrs)
            for name in plan.nodes}


def fault_ruleset(link_down: bool, blocked: list[str]) -> str:
    """The node's fault table: drop everything but loopback, or traffic with ``blocked``."""
    rules: tuple[list[str], list[str]]  # (inbound, outbound)
    if link_down:
        rules = ['iifname != "lo" drop'], ['oifname != "lo" drop']
    elif blocked:
        addrs = ", ".join(blocked)
        rules = [f"ip saddr {{ {addrs} }} drop"], [f"ip daddr {{ {addrs} }} drop"]
    else:
        rules = [], []
    inbound, outbound = rules
    lines = [f"table inet {TABLE}", f"delete table inet {TABLE}", f"table inet {TABLE} {{",
             "  chain input {", "    type filter hook input priority -300; policy accept;",
             *[f"    {r}" for r in inbound], "  }",
             "  chain output {", "    type filter hook output priority -300; policy accept;",
             *[f"    {r}" for r in outbound], "  }", "}"]
    return "\n".join(lines) + "\n"
