"""The node contract kit for a Python node (docs/reference/node-contract.md): what our py
node follows the contract with, in one import, for a node of your own on any py-libp2p
or other Python libp2p.

- ``parse_args(argv)``: the contract's flags, checked (``UsageError``: print it as one
  line on stderr and exit 2; ``VersionRequested``: print your ``--version`` line);
- ``key_pair_from_seed`` / ``key_pair_from_file`` / ``peer_id_for_seed``: the identity
  every implementation derives (ed25519 secret = SHA-256 of the seed);
- ``EventWriter``: the schema-v1 event log, each line checked and flushed;
- ``open_fifo``, ``lines``, ``parse_command``: the control FIFO's JSON-line commands
  (trio), with ``CommandError`` for a bad one (answer it with a ``command`` event).

The kit is these modules of the py node, gathered: it is what that node itself uses.
"""

from p2plab.node.config import NodeConfig, UsageError, VersionRequested, parse_args
from p2plab.node.control import CommandError, lines, open_fifo, parse_command
from p2plab.node.identity import key_pair_from_file, key_pair_from_seed, peer_id_for_seed

from p2plab.events import SCHEMA_VERSION, EventWriter

__all__ = [
    "SCHEMA_VERSION", "CommandError", "EventWriter", "NodeConfig", "UsageError",
    "VersionRequested", "key_pair_from_file", "key_pair_from_seed", "lines", "open_fifo",
    "parse_args", "parse_command", "peer_id_for_seed",
]
