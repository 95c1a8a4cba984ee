//! The p2plab node contract (docs/reference/node-contract.md) for a Rust node on any
//! rust-libp2p release: what every implementation needs besides libp2p itself.
//!
//! - [`config::Flags`]: the contract's flags, parsed and checked (a bad one is one line on
//!   stderr and exit code 2: [`usage_error`]);
//! - [`identity`]: the ed25519 secret from `--key-seed` or `--key-file`, as 32 bytes;
//! - [`events`]: the schema-v1 event log ([`events::EventLog`], [`events::Event`]);
//! - [`control`]: the JSON-line commands of the control FIFO ([`control::read_fifo`],
//!   [`control::parse`]);
//! - [`relay_limits`]: the `--relay-limits` value a relay hop is started with;
//! - [`messages`]: what every node computes alike about messages (a publish command's
//!   schedule, texts and padding, the gossipsub and event message ids).

pub mod config;
pub mod control;
pub mod events;
pub mod identity;
pub mod messages;
pub mod relay_limits;

use std::process::ExitCode;

/// A bad flag: one line on stderr naming the program, exit code 2.
pub fn usage_error(program: &str, message: &str) -> ExitCode {
    eprintln!("{program}: {message}");
    ExitCode::from(2)
}

/// Parse the contract's flags; `Err` is the exit code to return (help printed: 0, a bad
/// flag reported on one line: 2). `--version` is left to the caller (its libp2p).
pub fn parse_flags(program: &str) -> Result<config::Flags, ExitCode> {
    use clap::Parser;

    let flags = match config::Flags::try_parse() {
        Ok(flags) => flags,
        Err(e) if e.kind() == clap::error::ErrorKind::DisplayHelp => {
            print!("{e}");
            return Err(ExitCode::SUCCESS);
        }
        Err(e) => {
            let text = e.to_string();
            let first = text.lines().next().unwrap_or("bad arguments");
            return Err(usage_error(program, first.trim_start_matches("error: ")));
        }
    };
    if flags.version {
        return Ok(flags);
    }
    flags
        .check()
        .map_err(|message| usage_error(program, &message))?;
    Ok(flags)
}
