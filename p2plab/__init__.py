"""p2plab: a multi-node testbed and simulator for decentralised chat on libp2p."""

__version__ = "0.1.0"
