"""Nodes in classes, for reports of big labs: a node's group (its name without the
index a ``count`` gave it: ``peer-07`` is a ``peer``) and the NAT in front of its LAN
(``peer · port-restricted``). A table of 1,360 pairs or a heat map of 9 x 199 cells
reads as a handful of classes."""

from __future__ import annotations

import re
from typing import Any

# At or above this many rows (pairs, receivers), a report shows classes, not nodes.
AGGREGATE_AT = 40
_INDEX = re.compile(r"-\d+$")


def group_of(node: str) -> str:
    return _INDEX.sub("", node)


def node_classes(manifest: dict[str, Any], nodes: list[str]) -> dict[str, str]:
    """``node -> "group · NAT"`` for every node named (public nodes: ``· public``)."""
    nat_of_lan = {r["lan"]: r.get("nat") or "no NAT"
                  for r in (manifest.get("routers") or {}).values()}
    placed = manifest.get("nodes") or {}
    out = {}
    for node in nodes:
        segment = (placed.get(node) or {}).get("segment")
        where = "public" if segment in (None, "public") and segment not in nat_of_lan \
            else nat_of_lan.get(segment, "routed")
        if segment is None and not placed:
            where = "?"
        out[node] = f"{group_of(node)} · {where}" if where != "?" else group_of(node)
    return out


def pair_class(a: str, b: str, classes: dict[str, str]) -> str:
    """The unordered pair of two nodes' classes, as one label."""
    x, y = sorted((classes.get(a, group_of(a)), classes.get(b, group_of(b))))
    return f"{x} ↔ {y}"
