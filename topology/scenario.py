"""The scenario as it runs: the file's settings with groups expanded into LANs and
nodes and connection strategies turned into dials; what every later stage reads.

Made by ``loading.parse_scenario`` (file -> ``ScenarioFile`` -> ``expansion.expand`` ->
``checks.cross_check``), so a ``Scenario`` is always one that passed every check.
"""

from __future__ import annotations

import fnmatch
import ipaddress
from dataclasses import dataclass, field
from typing import Any, Literal

from p2plab.topology import groups
from p2plab.topology.schema import Lan, LinkSpec, NodeSpec, Publish, ScenarioFile


@dataclass
class Scenario:
    """A checked, expanded scenario. The file's own fields (``name``, ``seed``,
    ``timeline``, ``expect`` ...) read through to ``file``."""

    file: ScenarioFile
    expanded_lans: list[Lan]
    expanded_nodes: list[NodeSpec]
    lan_origin: dict[str, int]  # LAN name -> index of its spec in the file's lans
    origin: dict[str, int]  # node name -> index of its spec in the file's nodes
    _lan_by_name: dict[str, Lan] = field(default_factory=dict, repr=False)
    # The scenario as it runs (the file, or with --set overrides the document they made)
    # and the overrides, for the results folder; set by loading.parse_scenario.
    text: str = ""
    overrides: tuple[str, ...] = ()
    # Where each field came from (loading.Origins), for errors found after loading (an
    # implementation no registry knows); None for a scenario built in code.
    origins: Any = None

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name == "file":
            raise AttributeError(name)
        return getattr(self.file, name)

    # -- the expanded scenario -----------------------------------------------------
    @property
    def lans(self) -> list[Lan]:
        """Every LAN, with ``count`` expanded."""
        return self.expanded_lans

    @property
    def nodes(self) -> list[NodeSpec]:
        """Every node, with groups expanded and connection strategies turned into dials."""
        return self.expanded_nodes

    def node(self, name: str) -> NodeSpec:
        return next(n for n in self.nodes if n.name == name)

    def peers(self) -> list[NodeSpec]:
        """Nodes that chat (peers and bootstrap nodes)."""
        return [n for n in self.nodes if n.chats]

    def impl_of(self, node: NodeSpec) -> str:
        return node.impl or self.impl

    def topics_of(self, node: NodeSpec) -> list[str]:
        return list(node.topics) if node.topics else [self.topic]

    def match_nodes(self, patterns: list[str] | Literal["all"]) -> list[str]:
        """Node names matching the patterns ("all": every chatting node)."""
        if patterns == "all":
            return [n.name for n in self.peers()]
        return groups.match(patterns, [n.name for n in self.nodes])

    def match_chatting(self, patterns: list[str]) -> list[str]:
        """Matching nodes that chat: what a topic-peers wait means by ``["*"]`` (a relay
        subscribes to nothing, so waiting for its mesh could only time out)."""
        relays = {n.name for n in self.nodes if not n.chats}
        return [n for n in self.match_nodes(patterns) if n not in relays]

    def match_link_targets(self, patterns: list[str]) -> list[str]:
        """Nodes named, and every node on a LAN named, by the patterns."""
        lans = set(groups.match(patterns, [lan.name for lan in self.lans]))
        return [n.name for n in self.nodes
                if n.lan in lans or any(fnmatch.fnmatchcase(n.name, p) for p in patterns)]

    def link_of(self, node: NodeSpec) -> LinkSpec | None:
        """The node's own link, or its LAN's."""
        if node.link is not None:
            return node.link
        if len(self._lan_by_name) != len(self.expanded_lans):
            self._lan_by_name = {lan.name: lan for lan in self.expanded_lans}
        lan = self._lan_by_name.get(node.lan_name)
        return lan.link if lan is not None else None

    def node_origin(self, name: str) -> int:
        """Index in the file's ``nodes`` list of the spec a node came from."""
        return self.origin[name]

    def flows(self) -> list[str]:
        return [s.name for s in self.timeline if isinstance(s, Publish) and s.name]

    def carrier_subnets(self) -> dict[str, ipaddress.IPv4Network]:
        """The 100.64.0.0/10 segment between each double-NAT LAN's two routers."""
        out: dict[str, ipaddress.IPv4Network] = {}
        for lan in self.lans:
            spec = lan.nat_spec
            if spec is not None and spec.preset == "double-nat":
                out[lan.name] = ipaddress.IPv4Network(f"100.64.{len(out) + 1}.0/24")
        return out

