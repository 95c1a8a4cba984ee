//! Identity from a seed or a key file, derived exactly as every implementation does, so
//! a lab knows each node's peer id before it starts. The result is the ed25519 secret;
//! a node makes its keypair with its libp2p (`Keypair::ed25519_from_bytes`).

use std::path::Path;

use sha2::{Digest, Sha256};

/// ed25519 secret = SHA-256 of the seed's UTF-8 bytes.
pub fn secret_from_seed(seed: &str) -> [u8; 32] {
    Sha256::digest(seed.as_bytes()).into()
}

/// A key file holds 32 raw bytes or 64 hex characters of ed25519 secret.
pub fn secret_from_file(path: &Path) -> Result<[u8; 32], String> {
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
    secret
        .try_into()
        .map_err(|_| format!("--key-file {}: not 32 bytes", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_and_file_agree() {
        let dir = std::env::temp_dir().join(format!("p2plab-kit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("key");
        std::fs::write(&file, hex::encode(secret_from_seed("a")) + "\n").unwrap();
        assert_eq!(secret_from_file(&file).unwrap(), secret_from_seed("a"));
        std::fs::write(&file, "short").unwrap();
        assert!(secret_from_file(&file)
            .unwrap_err()
            .contains("64 hex characters"));
    }
}
