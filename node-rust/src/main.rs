//! p2plab chat node on rust-libp2p: the node contract (docs/reference/node-contract.md) in Rust.
//!
//! The proof of concept's chat (mDNS, gossipsub with signed messages, --dial, --quic,
//! circuit relay v2 client and hop, DCUtR, identify, ping) plus the contract's event log
//! and control channel, so a lab drives it exactly as it drives the Python node.

mod behaviour;
mod identity;
mod node;

// The contract's flags, event log and control channel come from the kit
// (contract/, shared by every release this node is built at and by other nodes).
pub use p2plab_contract::{config, control, events};

use std::process::ExitCode;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The exact rust-libp2p version pinned in Cargo.toml (a test compares the two).
#[cfg(not(feature = "libp2p-053"))]
pub const LIBP2P_VERSION: &str = "0.57.1";
#[cfg(feature = "libp2p-053")]
pub const LIBP2P_VERSION: &str = "0.53.2";

const PROGRAM: &str = "p2plab-node-rs";

fn usage_error(message: &str) -> ExitCode {
    p2plab_contract::usage_error(PROGRAM, message)
}

fn main() -> ExitCode {
    let flags = match p2plab_contract::parse_flags(PROGRAM) {
        Ok(flags) => flags,
        Err(code) => return code,
    };
    if flags.version {
        println!("{PROGRAM} {VERSION} rust-libp2p {LIBP2P_VERSION}");
        return ExitCode::SUCCESS;
    }
    let key = match (&flags.key_file, &flags.key_seed) {
        (Some(path), _) => match identity::from_file(path) {
            Ok(key) => key,
            Err(message) => return usage_error(&message),
        },
        (None, Some(seed)) => identity::from_seed(seed),
        (None, None) => libp2p::identity::Keypair::generate_ed25519(),
    };
    // One thread: a lab runs many nodes on few cores, and a node's work is sequential.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let code = match runtime.block_on(node::run(flags, key)) {
        Ok(()) => 0,
        Err(message) => {
            eprintln!("p2plab-node-rs: {message}");
            1
        }
    };
    // Exit now: dropping the runtime would wait for the thread blocked reading stdin.
    use std::io::Write;
    let _ = std::io::stdout().flush();
    std::process::exit(code)
}
