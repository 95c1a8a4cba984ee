//! The node's libp2p behaviours, one per concern, composed with #[derive(NetworkBehaviour)].

use std::time::Duration;

use libp2p::{
    dcutr, gossipsub, identify,
    identity::Keypair,
    mdns, ping, relay,
    swarm::{behaviour::toggle::Toggle, NetworkBehaviour},
    PeerId,
};
use p2plab_contract::messages::gossip_message_id;
use p2plab_contract::relay_limits::RelayLimits;
use std::sync::{Arc, Mutex};

use crate::config::{Flags, MsgIdFn, Role};

pub const IDENTIFY_PROTOCOL: &str = "/ipfs/id/1.0.0";

#[derive(NetworkBehaviour)]
pub struct ChatBehaviour {
    pub relay_client: relay::client::Behaviour,
    pub relay: Toggle<relay::Behaviour>,
    pub dcutr: Toggle<dcutr::Behaviour>,
    pub gossipsub: Toggle<gossipsub::Behaviour>,
    pub mdns: Toggle<mdns::tokio::Behaviour>,
    pub identify: identify::Behaviour,
    pub ping: ping::Behaviour,
}

/// The sequence number of the last message this node itself published, as seen by the
/// message-id function: rust-libp2p does not return it from `publish`.
pub type LastOwnSeq = Arc<Mutex<Option<u64>>>;

/// The network-wide message id, as the contract kit computes it for every node.
pub fn message_id(kind: MsgIdFn, message: &gossipsub::Message) -> gossipsub::MessageId {
    let source = message.source.map(|p| p.to_bytes());
    gossipsub::MessageId::new(&gossip_message_id(
        kind,
        source.as_deref(),
        message.sequence_number,
        &message.data,
    ))
}

fn gossipsub(
    key: &Keypair,
    flags: &Flags,
    last_own: LastOwnSeq,
) -> Result<gossipsub::Behaviour, String> {
    let local = key.public().to_peer_id();
    let kind = flags.msg_id;
    let id_fn = move |message: &gossipsub::Message| {
        if message.source == Some(local) {
            *last_own.lock().expect("not poisoned") = message.sequence_number;
        }
        message_id(kind, message)
    };
    let config = gossipsub::ConfigBuilder::default()
        .heartbeat_interval(Duration::from_secs_f64(flags.heartbeat))
        .mesh_n(flags.degree)
        .mesh_n_low(flags.degree_low)
        .mesh_n_high(flags.degree_high)
        // mesh_outbound_min must stay below D_lo and at most D/2.
        .mesh_outbound_min(
            (flags.degree / 2)
                .min(flags.degree_low.saturating_sub(1))
                .min(2),
        )
        .validation_mode(gossipsub::ValidationMode::Strict)
        .message_id_fn(id_fn)
        .build()
        .map_err(|e| format!("gossipsub configuration: {e}"))?;
    gossipsub::Behaviour::new(gossipsub::MessageAuthenticity::Signed(key.clone()), config)
        .map_err(|e| format!("gossipsub: {e}"))
}

/// The relay hop's configuration for `--relay-limits`: the library's defaults (as a relay
/// in the field runs), sized not to limit a lab (`unlimited`), or defaults with overrides.
fn relay_config(limits: Option<&RelayLimits>) -> relay::Config {
    let Some(limits) = limits else {
        return relay::Config::default();
    };
    if limits.unlimited {
        return relay::Config {
            max_reservations: 4096,
            max_reservations_per_peer: 8,
            reservation_duration: Duration::from_secs(3600),
            reservation_rate_limiters: Vec::new(),
            max_circuits: 4096,
            max_circuits_per_peer: 64,
            max_circuit_duration: Duration::from_secs(24 * 3600),
            max_circuit_bytes: 1 << 40,
            circuit_src_rate_limiters: Vec::new(),
        };
    }
    let count = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
    let mut config = relay::Config::default();
    if let Some(n) = limits.reservations {
        config.max_reservations = count(n);
    }
    if let Some(n) = limits.reservations_per_peer {
        config.max_reservations_per_peer = count(n);
    }
    if let Some(s) = limits.reservation_duration {
        config.reservation_duration = Duration::from_secs(s);
    }
    if let Some(n) = limits.circuits {
        config.max_circuits = count(n);
    }
    if let Some(n) = limits.circuits_per_peer {
        config.max_circuits_per_peer = count(n);
    }
    if let Some(s) = limits.circuit_duration {
        config.max_circuit_duration = Duration::from_secs(s);
    }
    if let Some(n) = limits.circuit_bytes {
        config.max_circuit_bytes = n;
    }
    if limits.rate_limits == Some(false) {
        config.reservation_rate_limiters.clear();
        config.circuit_src_rate_limiters.clear();
    }
    config
}

pub fn build(
    key: &Keypair,
    relay_client: relay::client::Behaviour,
    flags: &Flags,
    last_own: LastOwnSeq,
) -> Result<ChatBehaviour, String> {
    let local: PeerId = key.public().to_peer_id();
    let chats = flags.role == Role::Peer;
    let ping_every = if flags.ping_interval > 0.0 {
        flags.ping_interval
    } else {
        24.0 * 3600.0
    };
    let mdns = if flags.mdns {
        Some(
            mdns::tokio::Behaviour::new(mdns::Config::default(), local)
                .map_err(|e| format!("mdns: {e}"))?,
        )
    } else {
        None
    };
    Ok(ChatBehaviour {
        relay_client,
        relay: Toggle::from(
            (flags.role == Role::Relay)
                .then(|| relay::Behaviour::new(local, relay_config(flags.relay_limits.as_ref()))),
        ),
        dcutr: Toggle::from((chats && !flags.no_holepunch).then(|| dcutr::Behaviour::new(local))),
        gossipsub: Toggle::from(if chats {
            Some(gossipsub(key, flags, last_own)?)
        } else {
            None
        }),
        mdns: Toggle::from(mdns),
        identify: identify::Behaviour::new(
            identify::Config::new(IDENTIFY_PROTOCOL.into(), key.public()).with_agent_version(
                format!(
                    "p2plab-node-rs/{} (rust-libp2p {})",
                    crate::VERSION,
                    crate::LIBP2P_VERSION
                ),
            ),
        ),
        ping: ping::Behaviour::new(
            ping::Config::new()
                .with_interval(Duration::from_secs_f64(ping_every))
                .with_timeout(Duration::from_secs(10)),
        ),
    })
}
