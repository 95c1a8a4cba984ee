"""Whether a lab's subnets are free on this machine, checked before anything is made.

netns labs have their own routes; the Docker backend puts bridges in the host's own
network namespace, where a subnet must overlap neither a Docker network that is not
p2plab's nor one of the host's routes. (Overlaps with other live p2plab runs are
``ownership.claim``'s check, under its lock.)
"""

from __future__ import annotations

import ipaddress
import json
import re
import subprocess

from p2plab.compose.backend import BackendError


def check_address_space(backend_name: str, subnets: list[str]) -> None:
    """The Docker backend puts bridges in the host's own network namespace: a lab subnet
    that overlaps one of the host's routes (its LAN, a VPN, another bridge) would
    capture the host's traffic to it. Network namespaces have their own routes; a swarm
    lab's overlays live in the engines' namespaces, clear of the local cluster's own."""
    if backend_name == "swarm":
        from p2plab.compose.swarm.cluster import CLUSTER_NET

        for subnet in subnets:
            if ipaddress.IPv4Network(subnet).overlaps(CLUSTER_NET):
                raise BackendError(f"subnet {subnet} overlaps {CLUSTER_NET}, which the local "
                                   "cluster (make cluster) uses: give the scenario another "
                                   "subnet")
        return
    if backend_name != "docker":
        return
    # A Docker network first: its bridge is also a host route, but its name says more.
    from p2plab.compose.docker_backend import foreign_network_overlap

    taken = foreign_network_overlap(subnets)
    if taken:
        subnet, name, theirs = taken
        raise BackendError(f"subnet {subnet} overlaps Docker network {name!r} ({theirs}), "
                           "which is not p2plab's: give the scenario another subnet, remove "
                           "that network, or run with --backend netns")
    clash = host_route_overlaps(subnets)
    if clash:
        subnet, route, dev = clash
        raise BackendError(f"subnet {subnet} overlaps the host's route {route} (dev {dev}): "
                           "give the scenario a subnet this machine does not use, or run it "
                           "with --backend netns")


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
