//! The node's keypair from the contract's identity flags (the kit derives the secret).

use std::path::Path;

use libp2p::identity::Keypair;
use p2plab_contract::identity::{secret_from_file, secret_from_seed};

pub fn from_seed(seed: &str) -> Keypair {
    Keypair::ed25519_from_bytes(secret_from_seed(seed)).expect("32 bytes are an ed25519 secret")
}

pub fn from_file(path: &Path) -> Result<Keypair, String> {
    let secret = secret_from_file(path)?;
    Keypair::ed25519_from_bytes(secret).map_err(|e| format!("--key-file {}: {e}", path.display()))
}
