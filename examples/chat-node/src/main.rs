//! A chat node in the shape of rust-libp2p's `examples/chat` (gossipsub on a topic, mDNS
//! for the LAN, lines from stdin published, messages printed), written afresh for p2plab.
//! It gains the node contract through the kit (`p2plab-contract`): flags, identity, the
//! event log and the control FIFO come from there; what is here is the node itself.
//! It chats only (no relay, no hole punching) and pings its peers on its own.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::core::ConnectedPoint;
use libp2p::swarm::dial_opts::DialOpts;
use libp2p::swarm::{behaviour::toggle::Toggle, ConnectionId, NetworkBehaviour, SwarmEvent};
use libp2p::{
    gossipsub, identity::Keypair, mdns, noise, ping, tcp, yamux, Multiaddr, PeerId, Swarm,
};
use p2plab_contract::config::{Flags, MsgIdFn, Role};
use p2plab_contract::control::{self, Command, Publish};
use p2plab_contract::events::{Connection, Event, EventLog};
use p2plab_contract::identity::{secret_from_file, secret_from_seed};
use p2plab_contract::messages::{
    at_offsets, event_msg_id, gossip_message_id, message_text, payload, schedule, Schedule,
};
use p2plab_contract::usage_error;
use serde_json::Value;
use tokio::io::AsyncBufReadExt;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

const PROGRAM: &str = "p2plab-chat-example";
const VERSION: &str = env!("CARGO_PKG_VERSION");
const LIBP2P: &str = "0.57.1";

#[derive(NetworkBehaviour)]
struct ChatBehaviour {
    gossipsub: gossipsub::Behaviour,
    mdns: Toggle<mdns::tokio::Behaviour>,
    ping: ping::Behaviour,
}

/// What reaches the event loop besides the swarm's events.
enum Input {
    Stdin(String),
    Publish {
        text: String,
        size: usize,
        topic: Option<String>,
        flow: Option<String>,
    },
    PlanDone(u64),
    Redial(usize),
}

struct Dialling {
    addr: Multiaddr,
    started: Instant,
    attempts: u32,
}

struct Node {
    swarm: Swarm<ChatBehaviour>,
    log: EventLog,
    flags: Flags,
    name: String,
    topics: Vec<String>,
    local: PeerId,
    last_own: Arc<Mutex<Option<u64>>>,
    inputs: mpsc::UnboundedSender<Input>,
    sent: u64,
    next_plan: u64,
    plans: HashMap<u64, (String, Value, AbortHandle)>,
    targets: Vec<Dialling>,
    pending: HashMap<ConnectionId, usize>,
    topic_state: HashMap<String, (Vec<String>, Vec<String>)>,
}

fn main() -> ExitCode {
    let flags = match p2plab_contract::parse_flags(PROGRAM) {
        Ok(flags) => flags,
        Err(code) => return code,
    };
    if flags.version {
        println!("{PROGRAM} {VERSION} rust-libp2p {LIBP2P}");
        return ExitCode::SUCCESS;
    }
    if flags.role != Role::Peer || !flags.relays.is_empty() {
        return usage_error(
            PROGRAM,
            "this node only chats: no --role relay and no --relay",
        );
    }
    let secret = match (&flags.key_file, &flags.key_seed) {
        (Some(path), _) => match secret_from_file(path) {
            Ok(secret) => Some(secret),
            Err(message) => return usage_error(PROGRAM, &message),
        },
        (None, Some(seed)) => Some(secret_from_seed(seed)),
        (None, None) => None,
    };
    let key = match secret {
        Some(secret) => Keypair::ed25519_from_bytes(secret).expect("an ed25519 secret"),
        None => Keypair::generate_ed25519(),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let code = match runtime.block_on(run(flags, key)) {
        Ok(()) => 0,
        Err(message) => {
            eprintln!("{PROGRAM}: {message}");
            1
        }
    };
    std::process::exit(code) // not waiting for the thread blocked on stdin
}

fn message_id(kind: MsgIdFn, message: &gossipsub::Message) -> gossipsub::MessageId {
    let source = message.source.map(|p| p.to_bytes());
    let id = gossip_message_id(
        kind,
        source.as_deref(),
        message.sequence_number,
        &message.data,
    );
    gossipsub::MessageId::new(&id)
}

async fn run(flags: Flags, key: Keypair) -> Result<(), String> {
    let local = key.public().to_peer_id();
    let name = flags.name();
    let log =
        EventLog::open(&name, flags.events.as_deref()).map_err(|e| format!("--events: {e}"))?;
    let last_own: Arc<Mutex<Option<u64>>> = Arc::default();
    let (kind, seen) = (flags.msg_id, last_own.clone());
    let config = gossipsub::ConfigBuilder::default()
        .heartbeat_interval(Duration::from_secs_f64(flags.heartbeat))
        .mesh_n(flags.degree)
        .mesh_n_low(flags.degree_low)
        .mesh_n_high(flags.degree_high)
        .mesh_outbound_min(
            (flags.degree / 2)
                .min(flags.degree_low.saturating_sub(1))
                .min(2),
        )
        .validation_mode(gossipsub::ValidationMode::Strict)
        .message_id_fn(move |message: &gossipsub::Message| {
            if message.source == Some(local) {
                *seen.lock().expect("not poisoned") = message.sequence_number;
            }
            message_id(kind, message)
        })
        .build()
        .map_err(|e| format!("gossipsub: {e}"))?;
    let ping_every = if flags.ping_interval > 0.0 {
        flags.ping_interval
    } else {
        86_400.0
    };
    let mdns_on = flags.mdns;
    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .map_err(|e| format!("tcp: {e}"))?
        .with_quic()
        .with_behaviour(
            |key| -> Result<ChatBehaviour, Box<dyn std::error::Error + Send + Sync>> {
                let mdns = if mdns_on {
                    Some(mdns::tokio::Behaviour::new(mdns::Config::default(), local)?)
                } else {
                    None
                };
                Ok(ChatBehaviour {
                    gossipsub: gossipsub::Behaviour::new(
                        gossipsub::MessageAuthenticity::Signed(key.clone()),
                        config,
                    )?,
                    mdns: Toggle::from(mdns),
                    ping: ping::Behaviour::new(
                        ping::Config::new().with_interval(Duration::from_secs_f64(ping_every)),
                    ),
                })
            },
        )
        .map_err(|e| format!("behaviour: {e}"))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(3600)))
        .build();
    let topics = flags.topics();
    for topic in &topics {
        swarm
            .behaviour_mut()
            .gossipsub
            .subscribe(&gossipsub::IdentTopic::new(topic.clone()))
            .map_err(|e| format!("subscribe {topic}: {e}"))?;
    }
    let ips: Vec<IpAddr> = if flags.listen_ips.is_empty() {
        vec![Ipv4Addr::UNSPECIFIED.into()]
    } else {
        flags.listen_ips.clone()
    };
    let mut listeners = 0;
    for ip in &ips {
        let family = if ip.is_ipv4() { "ip4" } else { "ip6" };
        let mut addrs = Vec::new();
        if !flags.no_tcp {
            addrs.push(format!("/{family}/{ip}/tcp/{}", flags.port));
        }
        if flags.quic {
            addrs.push(format!("/{family}/{ip}/udp/{}/quic-v1", flags.port));
        }
        for addr in addrs {
            let addr: Multiaddr = addr.parse().map_err(|e| format!("{addr}: {e}"))?;
            swarm
                .listen_on(addr.clone())
                .map_err(|e| format!("listen on {addr}: {e}"))?;
            listeners += 1;
        }
    }
    let mut listening = Vec::new();
    while listening.len() < listeners {
        match tokio::time::timeout(Duration::from_secs(10), swarm.select_next_some()).await {
            Ok(SwarmEvent::NewListenAddr { address, .. }) => listening.push(address.to_string()),
            Ok(SwarmEvent::ListenerError { error, .. }) => return Err(format!("listen: {error}")),
            Ok(_) => {}
            Err(_) => return Err("no listen address within 10 s".into()),
        }
    }
    let (inputs, mut input_rx) = mpsc::unbounded_channel();
    let (lines, mut line_rx) = mpsc::unbounded_channel();
    if let Some(path) = flags.control.clone() {
        tokio::spawn(control::read_fifo(path, lines));
    }
    if !flags.no_stdin {
        let to_loop = inputs.clone();
        tokio::spawn(async move {
            let mut stdin = tokio::io::BufReader::new(tokio::io::stdin()).lines();
            while let Ok(Some(line)) = stdin.next_line().await {
                if to_loop.send(Input::Stdin(line)).is_err() {
                    break;
                }
            }
        });
    }
    let targets = flags
        .dial
        .iter()
        .map(|t| {
            t.parse().map(|addr| Dialling {
                addr,
                started: Instant::now(),
                attempts: 0,
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("--dial: {e}"))?;
    let mut node = Node {
        swarm,
        log,
        name,
        topics,
        local,
        last_own,
        inputs,
        sent: 0,
        next_plan: 0,
        plans: HashMap::new(),
        targets,
        pending: HashMap::new(),
        topic_state: HashMap::new(),
        flags,
    };
    node.log.emit(&Event::NodeStarted {
        peer_id: local.to_base58(),
        listen_addrs: listening.clone(),
        announced_addrs: listening.clone(),
        role: "peer",
        topic: node.topics[0].clone(),
        topics: node.topics.clone(),
        nick: node.flags.nick.clone().unwrap_or_else(|| node.name.clone()),
        implementation: "example-chat",
        impl_version: VERSION,
        libp2p: format!("rust-libp2p {LIBP2P}"),
        msg_id_fn: Some(match node.flags.msg_id {
            MsgIdFn::OriginSeq => "origin-seq".into(),
            MsgIdFn::Content => "content".into(),
        }),
    });
    println!("peer id: {local}");
    for target in 0..node.targets.len() {
        node.dial_target(target);
    }
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| format!("SIGTERM handler: {e}"))?;
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let reason = loop {
        tokio::select! {
            event = node.swarm.select_next_some() => node.on_swarm(event),
            Some(input) = input_rx.recv() => node.on_input(input),
            Some(line) = line_rx.recv() => {
                if node.on_command(&line) {
                    break "quit";
                }
            }
            _ = tick.tick() => {}
            _ = terminate.recv() => break "SIGTERM",
            _ = tokio::signal::ctrl_c() => break "SIGINT",
        }
        node.report_topic_peers();
    };
    node.log.emit(&Event::NodeStopped {
        reason: reason.into(),
    });
    Ok(())
}

impl Node {
    fn dial_target(&mut self, index: usize) {
        let target = &mut self.targets[index];
        target.attempts += 1;
        let opts = DialOpts::from(target.addr.clone());
        let id = opts.connection_id();
        if let Err(e) = self.swarm.dial(opts) {
            self.dial_failed(index, e.to_string());
        } else {
            self.pending.insert(id, index);
        }
    }

    /// Retry each second until --dial-timeout, then give up with a failed `dial`.
    fn dial_failed(&mut self, index: usize, reason: String) {
        let target = &self.targets[index];
        if target.started.elapsed().as_secs_f64() < self.flags.dial_timeout {
            let inputs = self.inputs.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let _ = inputs.send(Input::Redial(index));
            });
            return;
        }
        let event = self.dial_event(index, "failed", reason);
        self.log.emit(&event);
    }

    fn dial_event(&self, index: usize, outcome: &'static str, reason: String) -> Event {
        let target = &self.targets[index];
        Event::Dial {
            target: target.addr.to_string(),
            outcome,
            elapsed_ms: target.started.elapsed().as_secs_f64() * 1000.0,
            reason,
            attempts: target.attempts,
            via: None,
        }
    }

    fn on_swarm(&mut self, event: SwarmEvent<ChatBehaviourEvent>) {
        match event {
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                ..
            } => {
                if let Some(index) = self.pending.remove(&connection_id) {
                    let event = self.dial_event(index, "ok", String::new());
                    self.log.emit(&event);
                }
                self.log
                    .emit(&Event::ConnectionOpened(connection(peer_id, &endpoint)));
            }
            SwarmEvent::ConnectionClosed {
                peer_id, endpoint, ..
            } => {
                self.log
                    .emit(&Event::ConnectionClosed(connection(peer_id, &endpoint)));
            }
            SwarmEvent::OutgoingConnectionError {
                connection_id,
                error,
                ..
            } => {
                if let Some(index) = self.pending.remove(&connection_id) {
                    self.dial_failed(index, error.to_string());
                }
            }
            SwarmEvent::Behaviour(ChatBehaviourEvent::Gossipsub(gossipsub::Event::Message {
                propagation_source,
                message,
                ..
            })) => self.received(propagation_source, message),
            SwarmEvent::Behaviour(ChatBehaviourEvent::Mdns(mdns::Event::Discovered(found))) => {
                let mut by_peer: HashMap<PeerId, Vec<Multiaddr>> = HashMap::new();
                for (peer, addr) in found {
                    by_peer.entry(peer).or_default().push(addr);
                }
                for (peer, addrs) in by_peer {
                    self.log.emit(&Event::PeerDiscovered {
                        peer: peer.to_base58(),
                        via: "mdns",
                        addrs: addrs.iter().map(|a| a.to_string()).collect(),
                    });
                    if !self.swarm.is_connected(&peer) {
                        // A new port: housemates dial each other at the same moment.
                        let opts = DialOpts::peer_id(peer).addresses(addrs).allocate_new_port();
                        let _ = self.swarm.dial(opts.build());
                    }
                }
            }
            SwarmEvent::Behaviour(ChatBehaviourEvent::Ping(ping::Event {
                peer, result, ..
            })) => {
                let (rtt_ms, outcome, reason) = match result {
                    Ok(rtt) => (Some(rtt.as_secs_f64() * 1000.0), "ok", String::new()),
                    Err(e) => (None, "failed", e.to_string()),
                };
                self.log.emit(&Event::Ping {
                    peer: peer.to_base58(),
                    rtt_ms,
                    outcome,
                    reason,
                });
            }
            _ => {}
        }
    }

    fn received(&mut self, from: PeerId, message: gossipsub::Message) {
        let origin = message.source.map(|p| p.to_base58()).unwrap_or_default();
        let via_mesh = self
            .swarm
            .behaviour()
            .gossipsub
            .mesh_peers(&message.topic)
            .any(|p| *p == from);
        let text = String::from_utf8_lossy(&message.data)
            .trim_end()
            .to_string();
        let short = &origin[origin.len().saturating_sub(6)..];
        println!("{short}: {text}");
        self.log.emit(&Event::MessageReceived {
            msg_id: event_msg_id(&origin, message.sequence_number),
            origin: origin.clone(),
            seq: message.sequence_number,
            size: message.data.len(),
            topic: message.topic.to_string(),
            via_peer: from.to_base58(),
            via_mesh,
        });
    }

    /// `topic_peers` for each topic whose subscribed peers or mesh changed.
    fn report_topic_peers(&mut self) {
        for topic in self.topics.clone() {
            let hash = gossipsub::IdentTopic::new(topic.clone()).hash();
            let g = &self.swarm.behaviour().gossipsub;
            let mut peers: Vec<String> = g
                .all_peers()
                .filter(|(_, ts)| ts.contains(&&hash))
                .map(|(p, _)| p.to_base58())
                .collect();
            let mut mesh: Vec<String> = g.mesh_peers(&hash).map(|p| p.to_base58()).collect();
            peers.sort();
            mesh.sort();
            if self.topic_state.get(&topic) != Some(&(peers.clone(), mesh.clone())) {
                self.log.emit(&Event::TopicPeers {
                    topic: topic.clone(),
                    peers: peers.clone(),
                    mesh: mesh.clone(),
                });
                self.topic_state.insert(topic, (peers, mesh));
            }
        }
    }

    fn on_input(&mut self, input: Input) {
        match input {
            Input::Stdin(line) if !line.trim().is_empty() => {
                let size = line.len();
                self.publish(line, size, None, None);
            }
            Input::Stdin(_) => {}
            Input::Publish {
                text,
                size,
                topic,
                flow,
            } => self.publish(text, size, topic, flow),
            Input::PlanDone(plan) => {
                if let Some((_, args, _)) = self.plans.remove(&plan) {
                    self.command("publish", Ok(()), args);
                }
            }
            Input::Redial(index) => self.dial_target(index),
        }
    }

    /// One control line; true when the node is to stop (quit).
    fn on_command(&mut self, line: &str) -> bool {
        let request = match control::parse(line) {
            Ok(request) => request,
            Err(reason) => {
                self.log.emit(&Event::Command {
                    cmd: "?",
                    outcome: "failed",
                    reason,
                    args: Value::String(line.to_string()),
                });
                return false;
            }
        };
        let (cmd, args) = (request.command.name(), request.args.clone());
        let result = match request.command {
            Command::Publish(publish) => match self.start_plan(&publish, args.clone()) {
                Ok(()) => return false, // its command event comes when the plan ends
                Err(reason) => Err(reason),
            },
            Command::StopTraffic { flow } => {
                let mut stopped: Vec<u64> = self
                    .plans
                    .iter()
                    .filter(|(_, (f, _, _))| flow == "all" || *f == flow)
                    .map(|(k, _)| *k)
                    .collect();
                stopped.sort_unstable();
                for key in stopped {
                    let (_, plan_args, abort) = self.plans.remove(&key).expect("listed");
                    abort.abort();
                    self.command("publish", Ok(()), plan_args);
                }
                Ok(())
            }
            Command::Say { text } => {
                let size = text.len();
                self.publish(text, size, None, None);
                Ok(())
            }
            Command::Dial { addr } => p2plab_contract::config::parse_dial(&addr)
                .and_then(|text| text.parse::<Multiaddr>().map_err(|e| e.to_string()))
                .and_then(|addr| self.swarm.dial(addr).map_err(|e| e.to_string())),
            Command::Ping { .. } => {
                Err("this node pings every connected peer on its own (--ping-interval)".into())
            }
            Command::Quit => {
                self.command(cmd, Ok(()), args);
                return true;
            }
        };
        self.command(cmd, result, args);
        false
    }

    fn command(&mut self, cmd: &'static str, result: Result<(), String>, args: Value) {
        let (outcome, reason) = match result {
            Ok(()) => ("ok", String::new()),
            Err(reason) => ("failed", reason),
        };
        self.log.emit(&Event::Command {
            cmd,
            outcome,
            reason,
            args,
        });
    }

    /// A publish plan: the given offsets, else `count` messages `1/rate` s apart.
    fn start_plan(&mut self, publish: &Publish, args: Value) -> Result<(), String> {
        let Schedule {
            offsets,
            size,
            topic,
            flow,
        } = schedule(publish)?;
        let plan = self.next_plan;
        self.next_plan += 1;
        let (inputs, name, first) = (self.inputs.clone(), self.name.clone(), self.sent);
        let flow_name = flow.clone().unwrap_or_default();
        let task = tokio::spawn(async move {
            at_offsets(&offsets, |i| {
                let _ = inputs.send(Input::Publish {
                    text: message_text(&name, first + i as u64 + 1),
                    size,
                    topic: topic.clone(),
                    flow: flow.clone(),
                });
            })
            .await;
            let _ = inputs.send(Input::PlanDone(plan));
        });
        self.plans
            .insert(plan, (flow_name, args, task.abort_handle()));
        Ok(())
    }

    /// Publish one message, padded with spaces to `size`, and write its event.
    fn publish(&mut self, text: String, size: usize, topic: Option<String>, flow: Option<String>) {
        let topic = topic.unwrap_or_else(|| self.topics[0].clone());
        let data = payload(&text, size);
        let size = data.len();
        self.sent += 1;
        let result = self
            .swarm
            .behaviour_mut()
            .gossipsub
            .publish(gossipsub::IdentTopic::new(topic.clone()), data);
        let seq = self.last_own.lock().expect("not poisoned").take();
        let origin = self.local.to_base58();
        self.log.emit(&Event::MessagePublished {
            msg_id: event_msg_id(&origin, seq),
            origin,
            seq,
            size,
            topic,
            flow,
            error: result.err().map(|e| e.to_string()),
        });
    }
}

fn connection(peer: PeerId, endpoint: &ConnectedPoint) -> Connection {
    let addr = endpoint.get_remote_address().to_string();
    Connection {
        peer: peer.to_base58(),
        kind: if addr.contains("/p2p-circuit") {
            "relayed"
        } else {
            "direct"
        },
        transport: if addr.contains("/quic") {
            "quic"
        } else {
            "tcp"
        },
        direction: if endpoint.is_dialer() {
            "outbound"
        } else {
            "inbound"
        },
        remote_addr: addr,
    }
}
