"""What every part of the chat node shares: its configuration, host, event log and
output, and the services the parts start (pubsub, relaying). The parts (one module per
concern, as rust-libp2p's examples compose behaviours) each add their own methods."""

from __future__ import annotations

import logging
from typing import Any, TextIO

import trio
from libp2p.abc import IHost
from libp2p.peer.id import ID
from libp2p.pubsub.gossipsub import GossipSub
from libp2p.pubsub.pubsub import Pubsub
from p2plab.node.config import NodeConfig
from p2plab.node.libp2p_tuning import Forwarders
from p2plab.node.relay import Relaying

from p2plab.events import EventWriter

log = logging.getLogger("p2plab.node")
# After losing a persistent peer or a relay: wait this long, then dial again.
REDIAL_PAUSE_S = 2.0


class NodeBase:
    config: NodeConfig
    host: IHost
    peer_id: ID
    events: EventWriter | None
    out: TextIO
    sent: int  # lab messages published, for unique texts (content ids)
    pubsub: Pubsub | None
    gossipsub: GossipSub | None
    forwarders: Forwarders | None
    relaying: Relaying | None
    quit: trio.Event
    _flows: dict[str, list[trio.CancelScope]]  # running publish plans

    def _connected_to(self, peer: ID) -> bool:
        return peer in self.host.get_network().connections

    def emit(self, type_: str, **fields: Any) -> None:
        if self.events is not None:
            self.events.emit(type_, **fields)

    def say(self, line: str) -> None:
        self.out.write(line + "\n")
        self.out.flush()
