"""The host's routes a lab subnet must not overlap, for backends whose bridges live in
the host's own network namespace (each says so in ``check_address_space``; overlaps
with other live p2plab runs are ``ownership.claim``'s check, under its lock)."""

from __future__ import annotations

import ipaddress
import json
import re
import subprocess


def host_route_overlaps(subnets: list[str]) -> tuple[str, str, str] | None:
    """(subnet, route, device) for the first lab subnet that overlaps a route of the
    host's main table other than the default route and p2plab's own bridges."""
    out = subprocess.run(["ip", "-j", "route", "show", "table", "main"], capture_output=True,
                         text=True)
    try:
        routes = json.loads(out.stdout or "[]")
    except ValueError:
        return None
    ours = [ipaddress.IPv4Network(s) for s in subnets]
    for route in routes:
        dst, dev = route.get("dst", ""), route.get("dev", "")
        if dst in ("default", "") or re.fullmatch(r"p2[0-9a-f]{6}\d+", dev):
            continue
        try:
            net = ipaddress.IPv4Network(dst, strict=False)
        except ValueError:
            continue
        for subnet in ours:
            if subnet.overlaps(net):
                return str(subnet), dst, dev
    return None
