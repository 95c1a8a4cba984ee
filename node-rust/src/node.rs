//! The node's event loop: one task owns the swarm; timers, the control FIFO, standard
//! input and publish plans send it `Input`s, and every outcome becomes a contract event.
//!
//! This module holds the state, start-up and the dispatch of inputs and swarm events;
//! each concern handles its own events in a submodule (as rust-libp2p's examples give
//! each composed behaviour its own handler): `dialing` (--dial targets, dial commands,
//! mDNS), `connections`, `relay` (reservations), `holepunch` (DCUtR), `publishing`
//! (publish plans), `gossip` (received messages, topic peers), `ping`, `commands` (the
//! control channel) and `stdin` (typed lines).

mod commands;
mod connections;
mod dialing;
mod gossip;
mod holepunch;
mod ping;
mod publishing;
mod relay;
mod stdin;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use clap::ValueEnum;
use futures::StreamExt;
use libp2p::{
    core::transport::ListenerId,
    dcutr, gossipsub, identify, mdns,
    multiaddr::Protocol,
    noise, relay as relay_proto,
    swarm::{ConnectionId, SwarmEvent},
    tcp, yamux, Multiaddr, PeerId, Swarm,
};
use tokio::sync::mpsc;

use crate::behaviour::{self, ChatBehaviour, ChatBehaviourEvent, LastOwnSeq};
use crate::config::{Flags, Role};
use crate::control;
use crate::events::{Event, EventLog, HolePunch};

use dialing::{DialOrigin, PendingDial};
use publishing::Plan;
use relay::Reservation;

/// After losing a persistent peer or a relay: wait this long, then dial again.
const REDIAL_PAUSE: Duration = Duration::from_secs(2);
/// Between two attempts of one dial while --dial-timeout has not passed.
const RETRY_PAUSE: Duration = Duration::from_secs(1);
const TOPIC_PEERS_EVERY: Duration = Duration::from_millis(200);

enum Input {
    Control(String),
    Stdin(String),
    Publish {
        text: String,
        size: usize,
        topic: Option<String>,
        flow: Option<String>,
    },
    PlanDone {
        plan: u64,
    },
    Dial {
        target: usize,
    },
    Retry {
        addr: Multiaddr,
        origin: DialOrigin,
        started: Instant,
        attempts: u32,
    },
    Reserve {
        relay: usize,
    },
}

struct Node {
    swarm: Swarm<ChatBehaviour>,
    log: EventLog,
    flags: Flags,
    name: String,
    nick: String,
    topics: Vec<String>,
    local: PeerId,
    last_own: LastOwnSeq,
    inputs: mpsc::UnboundedSender<Input>,
    targets: Vec<Multiaddr>,
    target_peer: HashMap<usize, PeerId>,
    dials: HashMap<ConnectionId, PendingDial>,
    dialing: HashSet<usize>,
    relays: Vec<Multiaddr>,
    reservations: HashMap<ListenerId, Reservation>,
    /// Per peer: (our relayed connection to it is inbound, when it opened).
    relayed: HashMap<PeerId, (bool, Instant)>,
    punch_attempts: HashMap<PeerId, u32>,
    transports: HashMap<ConnectionId, &'static str>,
    /// A hole punch that succeeded before its direct connection was reported.
    punch_waiting: HashMap<ConnectionId, HolePunch>,
    pings: HashMap<PeerId, Vec<ping::Waiting>>,
    plans: HashMap<u64, Plan>,
    next_plan: u64,
    sent: u64,
    topic_state: HashMap<String, (Vec<String>, Vec<String>)>,
}

/// Milliseconds since `since`, to 0.01 ms.
fn ms(since: Instant) -> f64 {
    round_ms(since.elapsed())
}

fn round_ms(elapsed: Duration) -> f64 {
    (elapsed.as_secs_f64() * 100_000.0).round() / 100.0
}

/// The last six characters of a peer id: how chat lines name their sender.
fn short(peer: &PeerId) -> String {
    let text = peer.to_base58();
    text[text.len().saturating_sub(6)..].to_string()
}

/// The kit checked each address as text; this libp2p parses it.
fn addrs(texts: &[String]) -> Result<Vec<Multiaddr>, String> {
    texts
        .iter()
        .map(|t| t.parse().map_err(|e| format!("{t}: {e}")))
        .collect()
}

pub async fn run(flags: Flags, key: libp2p::identity::Keypair) -> Result<(), String> {
    let name = flags.name();
    let log = EventLog::open(&name, flags.events.as_deref()).map_err(|e| {
        format!(
            "--events {}: {e}",
            flags
                .events
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        )
    })?;
    let last_own = LastOwnSeq::default();
    // Port reuse: a hole punch over TCP dials from the listening port. From 0.54 each dial
    // decides (dialing.rs: mDNS housemates take a new port); 0.53 decides it for every
    // dial in the transport (libp2p-tcp 0.42 moved it, rust-libp2p#4568).
    #[cfg(feature = "libp2p-053")]
    #[allow(deprecated)]
    let tcp_config = tcp::Config::default().nodelay(true).port_reuse(true);
    #[cfg(not(feature = "libp2p-053"))]
    let tcp_config = tcp::Config::default().nodelay(true);
    let swarm = libp2p::SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_tcp(tcp_config, noise::Config::new, yamux::Config::default)
        .map_err(|e| format!("tcp transport: {e}"))?
        .with_quic()
        .with_dns()
        .map_err(|e| format!("dns transport: {e}"))?
        .with_relay_client(noise::Config::new, yamux::Config::default)
        .map_err(|e| format!("relay client transport: {e}"))?
        .with_behaviour(|key, relay_client| {
            behaviour::build(key, relay_client, &flags, last_own.clone())
                .map_err(Box::<dyn std::error::Error + Send + Sync>::from)
        })
        .map_err(|e| format!("{e}"))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(24 * 3600)))
        .build();
    let (inputs, mut rx) = mpsc::unbounded_channel();
    let local = *swarm.local_peer_id();
    let mut node = Node {
        swarm,
        log,
        nick: flags.nick.clone().unwrap_or_else(|| name.clone()),
        name,
        topics: flags.topics(),
        local,
        last_own,
        inputs,
        targets: addrs(&flags.dial)?,
        target_peer: HashMap::new(),
        dials: HashMap::new(),
        dialing: HashSet::new(),
        relays: addrs(&flags.relays)?,
        reservations: HashMap::new(),
        relayed: HashMap::new(),
        punch_attempts: HashMap::new(),
        transports: HashMap::new(),
        punch_waiting: HashMap::new(),
        pings: HashMap::new(),
        plans: HashMap::new(),
        next_plan: 0,
        sent: 0,
        topic_state: HashMap::new(),
        flags,
    };
    node.start_listening().await?;
    node.start_inputs();
    let mut topic_timer = tokio::time::interval(TOPIC_PEERS_EVERY);
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| format!("SIGTERM handler: {e}"))?;
    loop {
        tokio::select! {
            event = node.swarm.select_next_some() => node.on_swarm(event),
            Some(input) = rx.recv() => {
                if let Some(reason) = node.on_input(input) {
                    node.stop(&reason);
                    return Ok(());
                }
            }
            _ = topic_timer.tick() => node.report_topic_peers(),
            _ = sigterm.recv() => { node.stop("SIGTERM"); return Ok(()); }
            _ = tokio::signal::ctrl_c() => { node.stop("SIGINT"); return Ok(()); }
        }
    }
}

impl Node {
    fn emit(&mut self, event: Event) {
        self.log.emit(&event);
    }

    fn say(&self, line: &str) {
        println!("{line}");
    }

    fn stop(&mut self, reason: &str) {
        self.emit(Event::NodeStopped {
            reason: reason.to_string(),
        });
    }

    fn gossip(&mut self) -> Option<&mut gossipsub::Behaviour> {
        self.swarm.behaviour_mut().gossipsub.as_mut()
    }

    /// Listen on every address, subscribe, then announce readiness (node_started).
    async fn start_listening(&mut self) -> Result<(), String> {
        for topic in self.topics.clone() {
            if let Some(g) = self.gossip() {
                g.subscribe(&gossipsub::IdentTopic::new(topic.clone()))
                    .map_err(|e| format!("subscribe {topic}: {e}"))?;
            }
        }
        let ips: Vec<std::net::IpAddr> = if self.flags.listen_ips.is_empty() {
            vec![std::net::Ipv4Addr::UNSPECIFIED.into()]
        } else {
            self.flags.listen_ips.clone()
        };
        let mut waiting: HashSet<ListenerId> = HashSet::new();
        for ip in ips {
            let base = Multiaddr::from(ip);
            let mut addrs = Vec::new();
            if !self.flags.no_tcp {
                addrs.push(base.clone().with(Protocol::Tcp(self.flags.port)));
            }
            if self.flags.quic {
                addrs.push(
                    base.clone()
                        .with(Protocol::Udp(self.flags.port))
                        .with(Protocol::QuicV1),
                );
            }
            for addr in addrs {
                let id = self
                    .swarm
                    .listen_on(addr.clone())
                    .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
                waiting.insert(id);
            }
        }
        let mut listening = Vec::new();
        while !waiting.is_empty() {
            match self.swarm.select_next_some().await {
                SwarmEvent::NewListenAddr {
                    listener_id,
                    address,
                } => {
                    waiting.remove(&listener_id);
                    if self.flags.role == Role::Relay {
                        // A relay hop serves reservations only with a confirmed address.
                        self.swarm.add_external_address(address.clone());
                    }
                    listening.push(address);
                }
                SwarmEvent::ListenerClosed {
                    addresses, reason, ..
                } => {
                    return Err(format!("cannot listen on {addresses:?}: {reason:?}"));
                }
                SwarmEvent::ListenerError { error, .. } => {
                    return Err(format!("listener failed: {error}"))
                }
                other => self.on_swarm(other),
            }
        }
        let own = self.local.to_base58();
        let listen: Vec<String> = listening.iter().map(|a| a.to_string()).collect();
        let announced: Vec<String> = listening
            .iter()
            .map(|a| a.clone().with(Protocol::P2p(self.local)).to_string())
            .collect();
        let role = if self.flags.role == Role::Relay {
            "relay"
        } else {
            "peer"
        };
        self.emit(Event::NodeStarted {
            peer_id: own.clone(),
            listen_addrs: listen,
            announced_addrs: announced.clone(),
            role,
            topic: self.topics[0].clone(),
            topics: self.topics.clone(),
            nick: self.nick.clone(),
            implementation: "rust",
            impl_version: crate::VERSION,
            libp2p: format!("rust-libp2p {}", crate::LIBP2P_VERSION),
            msg_id_fn: self
                .flags
                .msg_id
                .to_possible_value()
                .map(|v| v.get_name().to_string()),
        });
        self.say(&format!("peer id: {own}"));
        for addr in &announced {
            self.say(&format!("listening on: {addr}"));
        }
        Ok(())
    }

    fn start_inputs(&mut self) {
        if let Some(path) = self.flags.control.clone() {
            let (tx, mut lines) = mpsc::unbounded_channel();
            let inputs = self.inputs.clone();
            tokio::spawn(async move {
                if let Err(e) = control::read_fifo(path.clone(), tx).await {
                    eprintln!("p2plab-node-rs: control channel {}: {e}", path.display());
                }
            });
            tokio::spawn(async move {
                while let Some(line) = lines.recv().await {
                    let _ = inputs.send(Input::Control(line));
                }
            });
        }
        if !self.flags.no_stdin {
            stdin::spawn_reader(self.inputs.clone());
        }
        for relay in 0..self.relays.len() {
            self.reserve(relay);
        }
        for target in 0..self.targets.len() {
            self.dial_target(target);
        }
    }

    /// Send `input` to the event loop after `pause`.
    fn later(&self, pause: Duration, input: Input) {
        let inputs = self.inputs.clone();
        tokio::spawn(async move {
            tokio::time::sleep(pause).await;
            let _ = inputs.send(input);
        });
    }

    /// Handle one input; Some(reason) ends the node.
    fn on_input(&mut self, input: Input) -> Option<String> {
        match input {
            Input::Control(line) => return self.on_control(line),
            Input::Stdin(line) => return self.typed(line.trim()),
            Input::Publish {
                text,
                size,
                topic,
                flow,
            } => self.publish(&text, size, topic, flow),
            Input::PlanDone { plan } => self.plan_done(plan),
            Input::Dial { target } => self.dial_target(target),
            Input::Retry {
                addr,
                origin,
                started,
                attempts,
            } => self.dial(addr, origin, started, attempts),
            Input::Reserve { relay } => self.reserve(relay),
        }
        None
    }

    fn on_swarm(&mut self, event: SwarmEvent<ChatBehaviourEvent>) {
        match event {
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                ..
            } => {
                self.connection_event(true, peer_id, connection_id, &endpoint);
                self.dial_connected(peer_id, connection_id);
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                endpoint,
                num_established,
                ..
            } => {
                self.connection_event(false, peer_id, connection_id, &endpoint);
                self.transports.remove(&connection_id);
                if num_established == 0 {
                    self.redial_lost(peer_id);
                }
            }
            SwarmEvent::OutgoingConnectionError {
                connection_id,
                error,
                ..
            } => {
                if let Some(pending) = self.dials.remove(&connection_id) {
                    self.dial_failed(pending, error.to_string());
                }
            }
            SwarmEvent::NewListenAddr {
                listener_id,
                address,
            } => self.on_new_listen_addr(listener_id, address),
            SwarmEvent::ListenerClosed {
                listener_id,
                reason,
                ..
            } => self.on_listener_closed(listener_id, reason),
            SwarmEvent::Behaviour(event) => self.on_behaviour(event),
            _ => {}
        }
    }

    fn on_behaviour(&mut self, event: ChatBehaviourEvent) {
        match event {
            ChatBehaviourEvent::Gossipsub(gossipsub::Event::Message {
                message,
                propagation_source,
                ..
            }) => self.on_message(message, propagation_source),
            ChatBehaviourEvent::Mdns(mdns::Event::Discovered(found)) => self.on_discovered(found),
            ChatBehaviourEvent::RelayClient(
                relay_proto::client::Event::ReservationReqAccepted {
                    relay_peer_id,
                    renewal,
                    ..
                },
            ) => self.on_reservation_accepted(relay_peer_id, renewal),
            ChatBehaviourEvent::Relay(event) => self.on_relay_hop(event),
            ChatBehaviourEvent::Dcutr(dcutr::Event {
                remote_peer_id,
                result,
            }) => self.on_hole_punch(remote_peer_id, result),
            ChatBehaviourEvent::Ping(libp2p::ping::Event { peer, result, .. }) => {
                self.on_ping(peer, result)
            }
            ChatBehaviourEvent::Identify(identify::Event::Received { .. }) => {}
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milliseconds_are_rounded_to_a_hundredth() {
        assert_eq!(round_ms(Duration::from_micros(1_234_567)), 1234.57);
        assert_eq!(round_ms(Duration::from_nanos(4_999)), 0.0);
        assert_eq!(round_ms(Duration::from_nanos(5_001)), 0.01);
        assert_eq!(round_ms(Duration::ZERO), 0.0);
    }

    #[test]
    fn a_chat_line_names_its_sender_by_six_characters() {
        let peer = crate::identity::from_seed("seed-a").public().to_peer_id();
        let text = peer.to_base58();
        assert_eq!(short(&peer), &text[text.len() - 6..]);
        assert_eq!(short(&peer).len(), 6);
    }
}
