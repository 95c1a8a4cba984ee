//! Identity from a seed or a key file, derived exactly as every implementation does, so
//! a lab knows each node's peer id before it starts.

use std::path::Path;

use libp2p::identity::Keypair;
use sha2::{Digest, Sha256};

/// ed25519 secret = SHA-256 of the seed's UTF-8 bytes.
pub fn from_seed(seed: &str) -> Keypair {
    let secret: [u8; 32] = Sha256::digest(seed.as_bytes()).into();
    Keypair::ed25519_from_bytes(secret).expect("32 bytes are a valid ed25519 secret")
}

/// A key file holds 32 raw bytes or 64 hex characters of ed25519 secret.
pub fn from_file(path: &Path) -> Result<Keypair, String> {
    let raw = std::fs::read(path).map_err(|e| format!("--key-file {}: {e}", path.display()))?;
    let text = String::from_utf8_lossy(&raw).trim().to_string();
    let secret = if text.len() == 64 {
        hex::decode(&text).ok()
    } else {
        None
    };
    let secret = match secret {
        Some(s) => s,
        None if raw.len() == 32 => raw,
        None => {
            return Err(format!(
                "--key-file {}: expected 32 raw bytes or 64 hex characters",
                path.display()
            ))
        }
    };
    Keypair::ed25519_from_bytes(secret).map_err(|e| format!("--key-file {}: {e}", path.display()))
}
