"""The p2plab chat node: the proof of concept's libp2p chat, rebuilt on py-libp2p."""
