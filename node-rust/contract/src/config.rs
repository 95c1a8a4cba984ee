//! Command-line flags of the node contract (docs/reference/node-contract.md), checked up front.
//!
//! A bad flag is one line on stderr and exit code 2, as for every implementation.

use std::path::PathBuf;

use clap::{Parser, ValueEnum};
use multiaddr::{Multiaddr, Protocol};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Role {
    Peer,
    Relay,
}

/// How gossipsub names a message; every node of one network must use the same function,
/// or IHAVE/IWANT gossip never matches across nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum MsgIdFn {
    /// The origin's peer id bytes followed by the 8-byte big-endian sequence number.
    OriginSeq,
    /// SHA-256 of the payload, as the proof of concept's content-addressed ids.
    Content,
}

#[derive(Parser, Debug)]
#[command(name = "p2plab-node", version = None, disable_version_flag = true,
          about = "a libp2p chat node following the p2plab node contract")]
pub struct Flags {
    /// Print the implementation and libp2p versions, then exit.
    #[arg(long)]
    pub version: bool,
    /// Node name used in event logs.
    #[arg(long)]
    pub name: Option<String>,
    /// Chat nickname (default: the name).
    #[arg(long)]
    pub nick: Option<String>,
    /// relay: act as a circuit relay v2 hop and do not chat.
    #[arg(long, value_enum, default_value = "peer")]
    pub role: Role,
    /// With --role relay: unlimited, or KEY=VALUE,... overriding the library's defaults.
    #[arg(long = "relay-limits", value_parser = crate::relay_limits::parse)]
    pub relay_limits: Option<crate::relay_limits::RelayLimits>,
    /// Subscribe (repeatable; default chat). The first topic is where chat lines go.
    #[arg(long = "topic")]
    pub topics: Vec<String>,
    /// Address to listen on (repeatable; default every address of the host).
    #[arg(long = "listen-ip")]
    pub listen_ips: Vec<std::net::IpAddr>,
    #[arg(long, default_value_t = 4001, value_parser = clap::value_parser!(u16).range(1..))]
    pub port: u16,
    /// Listen and dial QUIC as well as TCP.
    #[arg(long)]
    pub quic: bool,
    /// With --quic: listen on QUIC only.
    #[arg(long)]
    pub no_tcp: bool,
    /// Discover LAN peers with mDNS and connect to them.
    #[arg(long)]
    pub mdns: bool,
    /// A persistent peer to dial (repeatable).
    #[arg(long = "dial", value_parser = parse_dial)]
    pub dial: Vec<String>,
    /// A circuit relay v2 to reserve a slot on (needs /p2p/ID; repeatable).
    #[arg(long = "relay", value_parser = parse_relay)]
    pub relays: Vec<String>,
    /// Derive the identity from this seed (ed25519 secret = SHA-256 of its UTF-8 bytes).
    #[arg(long, conflicts_with = "key_file")]
    pub key_seed: Option<String>,
    /// 32 raw bytes or 64 hex characters of ed25519 secret.
    #[arg(long)]
    pub key_file: Option<PathBuf>,
    /// JSON-lines event log.
    #[arg(long)]
    pub events: Option<PathBuf>,
    /// FIFO to read JSON-line commands from (created if missing).
    #[arg(long)]
    pub control: Option<PathBuf>,
    /// Do not read chat lines from standard input.
    #[arg(long)]
    pub no_stdin: bool,
    /// Seconds between pings to each connected peer (0: off).
    #[arg(long, default_value_t = 5.0)]
    pub ping_interval: f64,
    /// Do not run DCUtR (relayed connections stay relayed).
    #[arg(long)]
    pub no_holepunch: bool,
    /// Keep retrying each --dial for this many seconds.
    #[arg(long, default_value_t = 30.0)]
    pub dial_timeout: f64,
    #[arg(long, default_value_t = 6)]
    pub degree: usize,
    #[arg(long, default_value_t = 4)]
    pub degree_low: usize,
    #[arg(long, default_value_t = 12)]
    pub degree_high: usize,
    #[arg(long, default_value_t = 1.0)]
    pub heartbeat: f64,
    /// Gossipsub message-id function, the same on every node of the network.
    #[arg(long, value_enum, default_value = "origin-seq")]
    pub msg_id: MsgIdFn,
}

impl Flags {
    /// Checks that span several flags; the message is the whole one-line error.
    pub fn check(&self) -> Result<(), String> {
        if !(0 < self.degree_low
            && self.degree_low <= self.degree
            && self.degree <= self.degree_high)
        {
            return Err("gossipsub degrees must satisfy 0 < D_lo <= D <= D_hi".into());
        }
        if self.relay_limits.is_some() && self.role != Role::Relay {
            return Err("--relay-limits needs --role relay".into());
        }
        if self.no_tcp && !self.quic {
            return Err("--no-tcp needs --quic: a node must listen on something".into());
        }
        if !(self.heartbeat > 0.0 && self.heartbeat.is_finite()) {
            return Err("--heartbeat must be positive".into());
        }
        if !(self.ping_interval >= 0.0 && self.ping_interval.is_finite()) {
            return Err("--ping-interval must be 0 (off) or positive".into());
        }
        if !(self.dial_timeout >= 0.0 && self.dial_timeout.is_finite()) {
            return Err("--dial-timeout must not be negative".into());
        }
        Ok(())
    }

    pub fn name(&self) -> String {
        self.name
            .clone()
            .or_else(|| self.nick.clone())
            .unwrap_or_else(|| "node".into())
    }

    pub fn topics(&self) -> Vec<String> {
        let mut topics: Vec<String> = Vec::new();
        for t in &self.topics {
            if !topics.contains(t) {
                topics.push(t.clone());
            }
        }
        if topics.is_empty() {
            topics.push("chat".into());
        }
        topics
    }
}

fn names(addr: &Multiaddr) -> Vec<&'static str> {
    addr.iter().map(|p| p.tag()).collect()
}

/// A dialable multiaddr: /ip4|/ip6|/dns|/dns4|/dns6 (or /p2p), tcp or udp/quic-v1, or a
/// circuit address through a relay named by its /p2p/ID. Checked here, returned as text:
/// a node parses it with its own libp2p's `Multiaddr` (the kit serves every release).
pub fn parse_dial(text: &str) -> Result<String, String> {
    check_dial(text).map(|addr| addr.to_string())
}

fn check_dial(text: &str) -> Result<Multiaddr, String> {
    let addr: Multiaddr = text
        .parse()
        .map_err(|e| format!("{text:?}: not a multiaddr ({e})"))?;
    let n = names(&addr);
    let first = n.first().copied().unwrap_or("");
    if !["ip4", "ip6", "dns", "dns4", "dns6", "p2p"].contains(&first) {
        return Err(format!(
            "{text:?}: must start with /ip4, /ip6, /dns4, /dns6 or /p2p"
        ));
    }
    if let Some(i) = n.iter().position(|p| *p == "p2p-circuit") {
        if !n[..i].contains(&"p2p") {
            return Err(format!(
                "{text:?}: a circuit address needs the relay's /p2p/ID"
            ));
        }
        if n.last() != Some(&"p2p") {
            return Err(format!(
                "{text:?}: a circuit address must end in /p2p/TARGET_ID"
            ));
        }
        return Ok(addr);
    }
    if first != "p2p" && !(n.contains(&"tcp") || n.contains(&"quic-v1")) {
        return Err(format!("{text:?}: needs /tcp/PORT or /udp/PORT/quic-v1"));
    }
    if n.contains(&"udp") && !n.contains(&"quic-v1") {
        return Err(format!(
            "{text:?}: UDP is only supported as /udp/PORT/quic-v1"
        ));
    }
    Ok(addr)
}

fn parse_relay(text: &str) -> Result<String, String> {
    let addr = check_dial(text)?;
    if !addr.iter().any(|p| matches!(p, Protocol::P2p(_))) {
        return Err(format!("{text:?}: needs the relay's /p2p/ID"));
    }
    Ok(addr.to_string())
}
