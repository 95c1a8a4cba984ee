"""Node identity from a seed or a key file, so a scenario knows peer ids before start."""

from __future__ import annotations

import hashlib
from pathlib import Path

from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.keys import KeyPair
from libp2p.peer.id import ID


def key_pair_from_seed(seed: str) -> KeyPair:
    """A deterministic ed25519 key: the same seed always gives the same peer id."""
    return create_new_key_pair(hashlib.sha256(seed.encode("utf-8")).digest())


def key_pair_from_file(path: Path) -> KeyPair:
    """A key file holds 32 raw bytes or 64 hex characters of ed25519 seed."""
    raw = path.read_bytes()
    text = raw.strip()
    if len(text) == 64:
        try:
            return create_new_key_pair(bytes.fromhex(text.decode("ascii")))
        except ValueError:
            pass
    if len(raw) == 32:
        return create_new_key_pair(raw)
    raise ValueError(f"{path}: expected 32 raw bytes or 64 hex characters")


def peer_id_for_seed(seed: str) -> str:
    return ID.from_pubkey(key_pair_from_seed(seed).public_key).to_base58()
