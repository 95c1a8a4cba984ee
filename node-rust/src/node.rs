//! The node's event loop: one task owns the swarm; timers, the control FIFO, standard
//! input and publish plans send it `Input`s, and every outcome becomes a contract event.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::{
    core::ConnectedPoint,
    dcutr, gossipsub, identify, mdns, multiaddr::Protocol, noise, ping, relay,
    core::transport::ListenerId,
    swarm::{dial_opts::DialOpts, ConnectionId, SwarmEvent},
    tcp, yamux, Multiaddr, PeerId, Swarm,
};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use crate::behaviour::{self, ChatBehaviour, ChatBehaviourEvent, LastOwnSeq};
use crate::config::{Flags, Role};
use clap::ValueEnum;
use crate::control;
use crate::events::EventLog;

/// After losing a persistent peer or a relay: wait this long, then dial again.
const REDIAL_PAUSE: Duration = Duration::from_secs(2);
/// Between two attempts of one dial while --dial-timeout has not passed.
const RETRY_PAUSE: Duration = Duration::from_secs(1);
const TOPIC_PEERS_EVERY: Duration = Duration::from_millis(200);

enum Input {
    Control(String),
    Stdin(String),
    Publish { text: String, size: usize, topic: Option<String>, flow: Option<String> },
    PlanDone { plan: u64 },
    Dial { target: usize },
    Retry { addr: Multiaddr, origin: DialOrigin, started: Instant, attempts: u32 },
    Reserve { relay: usize },
}

/// Why a dial was made, so its outcome reaches the right place.
#[derive(Clone)]
enum DialOrigin {
    Persistent(usize),
    Command(Value),
    Mdns,
}

struct PendingDial {
    target: String,
    origin: DialOrigin,
    started: Instant,
    attempts: u32,
}

struct Reservation {
    relay: usize,
    started: Instant,
    accepted: bool,
}

struct Plan {
    flow: String,
    args: Value,
    abort: AbortHandle,
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
    punch_waiting: HashMap<ConnectionId, Value>,
    pings: HashMap<PeerId, Vec<(u32, Value)>>,
    plans: HashMap<u64, Plan>,
    next_plan: u64,
    sent: u64,
    topic_state: HashMap<String, (Vec<String>, Vec<String>)>,
}

fn ms(since: Instant) -> f64 {
    (since.elapsed().as_secs_f64() * 100_000.0).round() / 100.0
}

fn is_circuit(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| matches!(p, Protocol::P2pCircuit))
}

/// (direct|relayed, tcp|quic|circuit) of a connection. An inbound relayed connection
/// shows the circuit only in its local (listen) address; its remote one is `/p2p/SRC`.
fn kind_of(endpoint: &ConnectedPoint) -> (&'static str, &'static str) {
    let addr = endpoint.get_remote_address();
    let relayed = is_circuit(addr)
        || matches!(endpoint, ConnectedPoint::Listener { local_addr, .. } if is_circuit(local_addr));
    if relayed {
        ("relayed", "circuit")
    } else if addr.iter().any(|p| matches!(p, Protocol::QuicV1)) {
        ("direct", "quic")
    } else {
        ("direct", "tcp")
    }
}

fn last_peer(addr: &Multiaddr) -> Option<PeerId> {
    addr.iter().filter_map(|p| if let Protocol::P2p(id) = p { Some(id) } else { None }).last()
}

/// A chat payload: the text, padded with spaces to `size` bytes.
fn payload(text: &str, size: usize) -> Vec<u8> {
    let mut data = text.as_bytes().to_vec();
    if data.len() < size {
        data.resize(size, b' ');
    }
    data
}

fn short(peer: &PeerId) -> String {
    let text = peer.to_base58();
    text[text.len().saturating_sub(6)..].to_string()
}

pub async fn run(flags: Flags, key: libp2p::identity::Keypair) -> Result<(), String> {
    let name = flags.name();
    let log = EventLog::open(&name, flags.events.as_deref())
        .map_err(|e| format!("--events {}: {e}", flags.events.as_ref().map(|p| p.display().to_string()).unwrap_or_default()))?;
    let last_own = LastOwnSeq::default();
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
        targets: flags.dial.clone(),
        target_peer: HashMap::new(),
        dials: HashMap::new(),
        dialing: HashSet::new(),
        relays: flags.relays.clone(),
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
    fn emit(&mut self, type_: &str, fields: Value) {
        self.log.emit(type_, fields);
    }

    fn say(&self, line: &str) {
        println!("{line}");
    }

    fn stop(&mut self, reason: &str) {
        self.emit("node_stopped", json!({"reason": reason}));
    }

    fn gossip(&mut self) -> Option<&mut gossipsub::Behaviour> {
        self.swarm.behaviour_mut().gossipsub.as_mut()
    }

    /// Listen on every address, subscribe, then announce readiness (node_started).
    async fn start_listening(&mut self) -> Result<(), String> {
        for topic in self.topics.clone() {
            if let Some(g) = self.gossip() {
                g.subscribe(&gossipsub::IdentTopic::new(topic.clone())).map_err(|e| format!("subscribe {topic}: {e}"))?;
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
                addrs.push(base.clone().with(Protocol::Udp(self.flags.port)).with(Protocol::QuicV1));
            }
            for addr in addrs {
                let id = self.swarm.listen_on(addr.clone()).map_err(|e| format!("cannot listen on {addr}: {e}"))?;
                waiting.insert(id);
            }
        }
        let mut listening = Vec::new();
        while !waiting.is_empty() {
            match self.swarm.select_next_some().await {
                SwarmEvent::NewListenAddr { listener_id, address } => {
                    waiting.remove(&listener_id);
                    if self.flags.role == Role::Relay {
                        // A relay hop serves reservations only with a confirmed address.
                        self.swarm.add_external_address(address.clone());
                    }
                    listening.push(address);
                }
                SwarmEvent::ListenerClosed { addresses, reason, .. } => {
                    return Err(format!("cannot listen on {addresses:?}: {reason:?}"));
                }
                SwarmEvent::ListenerError { error, .. } => return Err(format!("listener failed: {error}")),
                other => self.on_swarm(other),
            }
        }
        let own = self.local.to_base58();
        let listen: Vec<String> = listening.iter().map(|a| a.to_string()).collect();
        let announced: Vec<String> = listening.iter().map(|a| a.clone().with(Protocol::P2p(self.local)).to_string()).collect();
        let role = if self.flags.role == Role::Relay { "relay" } else { "peer" };
        let fields = json!({
            "peer_id": own, "listen_addrs": listen, "announced_addrs": announced, "role": role,
            "topic": self.topics[0], "topics": self.topics, "nick": self.nick,
            "impl": "rust", "impl_version": crate::VERSION, "libp2p": format!("rust-libp2p {}", crate::LIBP2P_VERSION),
            "msg_id_fn": self.flags.msg_id.to_possible_value().map(|v| v.get_name().to_string()),
        });
        self.emit("node_started", fields);
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
            let inputs = self.inputs.clone();
            tokio::spawn(async move {
                use tokio::io::AsyncBufReadExt;
                let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
                // Standard input closed: keep running as a daemon.
                while let Ok(Some(line)) = lines.next_line().await {
                    let _ = inputs.send(Input::Stdin(line));
                }
            });
        }
        for relay in 0..self.relays.len() {
            self.reserve(relay);
        }
        for target in 0..self.targets.len() {
            self.dial_target(target);
        }
    }

    fn later(&self, pause: Duration, input: Input) {
        let inputs = self.inputs.clone();
        tokio::spawn(async move {
            tokio::time::sleep(pause).await;
            let _ = inputs.send(input);
        });
    }

    // -- dialing --------------------------------------------------------------------
    fn dial(&mut self, addr: Multiaddr, origin: DialOrigin, started: Instant, attempts: u32) {
        let target = addr.to_string();
        let opts = DialOpts::from(addr);
        let id = opts.connection_id();
        match self.swarm.dial(opts) {
            Ok(()) => {
                self.dials.insert(id, PendingDial { target, origin, started, attempts: attempts + 1 });
            }
            Err(e) => self.dial_failed(PendingDial { target, origin, started, attempts: attempts + 1 }, e.to_string()),
        }
    }

    fn dial_target(&mut self, target: usize) {
        if let Some(peer) = self.target_peer.get(&target).copied().or_else(|| last_peer(&self.targets[target])) {
            if self.swarm.is_connected(&peer) {
                return;
            }
        }
        if self.dialing.insert(target) {
            self.dial(self.targets[target].clone(), DialOrigin::Persistent(target), Instant::now(), 0);
        }
    }

    fn dial_failed(&mut self, pending: PendingDial, reason: String) {
        let timeout = Duration::from_secs_f64(self.flags.dial_timeout);
        let retry = !matches!(pending.origin, DialOrigin::Mdns) && pending.started.elapsed() <= timeout;
        if retry {
            let addr: Multiaddr = pending.target.parse().expect("dialled before");
            let (origin, started, attempts) = (pending.origin, pending.started, pending.attempts);
            self.later(RETRY_PAUSE, Input::Retry { addr, origin, started, attempts });
            return;
        }
        self.dial_done(pending, "failed", reason);
    }

    fn dial_done(&mut self, pending: PendingDial, outcome: &str, reason: String) {
        let mut fields = json!({
            "target": pending.target, "outcome": outcome, "elapsed_ms": ms(pending.started),
            "reason": reason, "attempts": pending.attempts,
        });
        match &pending.origin {
            DialOrigin::Mdns => fields["via"] = "mdns".into(),
            DialOrigin::Command(args) => {
                let ok = outcome == "ok";
                self.emit("command", json!({"cmd": "dial", "outcome": if ok {"ok"} else {"failed"}, "reason": reason, "args": args}));
            }
            DialOrigin::Persistent(target) => {
                self.dialing.remove(target);
                if outcome != "ok" {
                    self.later(REDIAL_PAUSE, Input::Dial { target: *target });
                }
            }
        }
        if outcome != "ok" {
            self.say(&format!("dial {} failed: {}", pending.target, reason));
        }
        self.emit("dial", fields);
    }

    fn reserve(&mut self, relay: usize) {
        let addr = self.relays[relay].clone().with(Protocol::P2pCircuit);
        match self.swarm.listen_on(addr) {
            Ok(id) => {
                self.reservations.insert(id, Reservation { relay, started: Instant::now(), accepted: false });
            }
            Err(e) => {
                let fields = json!({"relay": self.relays[relay].to_string(), "outcome": "failed", "elapsed_ms": 0.0, "reason": e.to_string()});
                self.emit("relay_reservation", fields);
                self.later(REDIAL_PAUSE, Input::Reserve { relay });
            }
        }
    }

    // -- inputs ---------------------------------------------------------------------
    /// Handle one input; Some(reason) ends the node.
    fn on_input(&mut self, input: Input) -> Option<String> {
        match input {
            Input::Control(line) => {
                if line.trim().is_empty() {
                    return None;
                }
                match control::parse(&line) {
                    Ok(command) => return self.execute(command),
                    Err(reason) => {
                        self.emit("command", json!({"cmd": "?", "outcome": "failed", "reason": reason, "args": line}));
                    }
                }
            }
            Input::Stdin(line) => return self.typed(line.trim()),
            Input::Publish { text, size, topic, flow } => self.publish(&text, size, topic, flow),
            Input::PlanDone { plan } => {
                if let Some(plan) = self.plans.remove(&plan) {
                    self.emit("command", json!({"cmd": "publish", "outcome": "ok", "reason": "", "args": plan.args}));
                }
            }
            Input::Dial { target } => self.dial_target(target),
            Input::Retry { addr, origin, started, attempts } => self.dial(addr, origin, started, attempts),
            Input::Reserve { relay } => self.reserve(relay),
        }
        None
    }

    fn command_result(&mut self, cmd: &str, result: Result<(), String>, args: &Value) {
        let (outcome, reason) = match result {
            Ok(()) => ("ok", String::new()),
            Err(reason) => ("failed", reason),
        };
        self.emit("command", json!({"cmd": cmd, "outcome": outcome, "reason": reason, "args": args}));
    }

    fn execute(&mut self, command: Value) -> Option<String> {
        let cmd = command["cmd"].as_str().unwrap_or("").to_string();
        match cmd.as_str() {
            "quit" => {
                self.command_result("quit", Ok(()), &command);
                return Some("quit".into());
            }
            "publish" => {
                let result = self.start_plan(&command);
                if result.is_err() {
                    self.command_result("publish", result, &command);
                }
            }
            "stop-traffic" => {
                let flow = command["flow"].as_str().unwrap_or("").to_string();
                let stopped: Vec<u64> = self.plans.iter().filter(|(_, p)| flow == "all" || p.flow == flow).map(|(k, _)| *k).collect();
                for key in stopped {
                    let plan = self.plans.remove(&key).expect("listed");
                    plan.abort.abort();
                    self.command_result("publish", Ok(()), &plan.args);
                }
                self.command_result("stop-traffic", Ok(()), &command);
            }
            "say" => {
                let result = if self.swarm.behaviour().gossipsub.is_enabled() {
                    self.publish(command["text"].as_str().unwrap_or(""), 0, None, None);
                    Ok(())
                } else {
                    Err("a relay does not publish".to_string())
                };
                self.command_result("say", result, &command);
            }
            "dial" => match crate::config::parse_dial(command["addr"].as_str().unwrap_or("")) {
                Ok(addr) => self.dial(addr, DialOrigin::Command(command.clone()), Instant::now(), 0),
                Err(reason) => self.command_result("dial", Err(reason), &command),
            },
            "ping" => {
                let count = command.get("count").and_then(Value::as_u64).unwrap_or(1).max(1) as u32;
                match command["peer"].as_str().unwrap_or("").parse::<PeerId>() {
                    Ok(peer) if self.swarm.is_connected(&peer) && self.flags.ping_interval > 0.0 => {
                        // rust-libp2p pings every connection on its interval; the command
                        // completes with the next `count` pings of that peer.
                        self.pings.entry(peer).or_default().push((count, command.clone()));
                    }
                    Ok(peer) if self.swarm.is_connected(&peer) => {
                        self.command_result("ping", Err("pings are off (--ping-interval 0)".into()), &command)
                    }
                    Ok(peer) => self.command_result("ping", Err(format!("not connected to {peer}")), &command),
                    Err(e) => self.command_result("ping", Err(format!("not a peer id: {e}")), &command),
                }
            }
            _ => {}
        }
        None
    }

    /// Publish one message at each offset (seconds from now). The lab computes the
    /// offsets from its seed, so the schedule is the same on every backend.
    fn start_plan(&mut self, command: &Value) -> Result<(), String> {
        if !self.swarm.behaviour().gossipsub.is_enabled() {
            return Err("a relay does not publish".into());
        }
        let count = command["count"].as_u64().ok_or("count must be a whole number")?;
        let rate = command["rate"].as_f64().filter(|r| *r > 0.0).ok_or("rate must be a positive number")?;
        let size = command["size"].as_u64().ok_or("size must be a whole number")? as usize;
        let offsets: Vec<f64> = match command.get("offsets").and_then(Value::as_array) {
            Some(list) if !list.is_empty() => list.iter().map(|v| v.as_f64().ok_or("offsets must be numbers")).collect::<Result<_, _>>()?,
            _ => (0..count).map(|i| i as f64 / rate).collect(),
        };
        let topic = command.get("topic").and_then(Value::as_str).map(str::to_string);
        let flow = command.get("flow").and_then(Value::as_str).map(str::to_string);
        let plan = self.next_plan;
        self.next_plan += 1;
        let inputs = self.inputs.clone();
        let (t, f) = (topic.clone(), flow.clone());
        let name = self.name.clone();
        let first = self.sent;
        let task = tokio::spawn(async move {
            let start = tokio::time::Instant::now();
            for (i, offset) in offsets.into_iter().enumerate() {
                tokio::time::sleep_until(start + Duration::from_secs_f64(offset.max(0.0))).await;
                let text = format!("{name} message {}", first + i as u64 + 1);
                let _ = inputs.send(Input::Publish { text, size, topic: t.clone(), flow: f.clone() });
            }
            let _ = inputs.send(Input::PlanDone { plan });
        });
        self.plans.insert(plan, Plan { flow: flow.unwrap_or_default(), args: command.clone(), abort: task.abort_handle() });
        Ok(())
    }

    fn publish(&mut self, text: &str, size: usize, topic: Option<String>, flow: Option<String>) {
        let topic = topic.unwrap_or_else(|| self.topics[0].clone());
        let data = payload(text, size);
        let size = data.len();
        self.sent += 1;
        let Some(g) = self.swarm.behaviour_mut().gossipsub.as_mut() else { return };
        let result = g.publish(gossipsub::IdentTopic::new(topic.clone()), data);
        let seq = self.last_own.lock().expect("not poisoned").take();
        let origin = self.local.to_base58();
        let seq_value = seq.map(Value::from).unwrap_or(Value::Null);
        let mut fields = json!({
            "msg_id": format!("{origin}/{}", seq.map(|s| s.to_string()).unwrap_or_else(|| "None".into())),
            "origin": origin, "seq": seq_value, "size": size, "topic": topic, "flow": flow,
        });
        if let Err(e) = result {
            // Still a message the network should have carried: analysis counts it.
            fields["error"] = e.to_string().into();
        }
        self.emit("message_published", fields);
    }

    fn typed(&mut self, line: &str) -> Option<String> {
        if line.is_empty() {
            return None;
        }
        if let Some(rest) = line.strip_prefix('/') {
            let (word, arg) = rest.split_once(' ').unwrap_or((rest, ""));
            match word {
                "quit" => return Some("quit".into()),
                "peers" => {
                    let peers: Vec<PeerId> = self.swarm.connected_peers().copied().collect();
                    for peer in peers {
                        self.say(&format!("peer: {peer}"));
                    }
                }
                "dial" => return self.execute(json!({"cmd": "dial", "addr": arg.trim()})),
                "ping" => return self.execute(json!({"cmd": "ping", "peer": arg.trim(), "count": 1})),
                _ => self.say("commands: /dial MULTIADDR, /ping PEER_ID, /peers, /quit"),
            }
            return None;
        }
        if !self.swarm.behaviour().gossipsub.is_enabled() {
            self.say("a relay does not chat");
            return None;
        }
        self.publish(line, 0, None, None);
        None
    }

    fn report_topic_peers(&mut self) {
        let Some(g) = self.swarm.behaviour().gossipsub.as_ref() else { return };
        let mut changed = Vec::new();
        for topic in &self.topics {
            let hash = gossipsub::IdentTopic::new(topic.clone()).hash();
            let mut peers: Vec<String> = g.all_peers().filter(|(_, ts)| ts.contains(&&hash)).map(|(p, _)| p.to_base58()).collect();
            let mut mesh: Vec<String> = g.mesh_peers(&hash).map(|p| p.to_base58()).collect();
            peers.sort();
            mesh.sort();
            if self.topic_state.get(topic) != Some(&(peers.clone(), mesh.clone())) {
                changed.push((topic.clone(), peers, mesh));
            }
        }
        for (topic, peers, mesh) in changed {
            self.emit("topic_peers", json!({"topic": topic, "peers": peers, "mesh": mesh}));
            self.topic_state.insert(topic, (peers, mesh));
        }
    }

    // -- swarm events ---------------------------------------------------------------------
    fn on_swarm(&mut self, event: SwarmEvent<ChatBehaviourEvent>) {
        match event {
            SwarmEvent::ConnectionEstablished { peer_id, connection_id, endpoint, .. } => {
                self.connection_event("connection_opened", peer_id, connection_id, &endpoint);
                if let Some(pending) = self.dials.remove(&connection_id) {
                    if let DialOrigin::Persistent(target) = pending.origin {
                        self.target_peer.insert(target, peer_id);
                    }
                    self.dial_done(pending, "ok", String::new());
                }
            }
            SwarmEvent::ConnectionClosed { peer_id, connection_id, endpoint, num_established, .. } => {
                self.connection_event("connection_closed", peer_id, connection_id, &endpoint);
                self.transports.remove(&connection_id);
                if num_established == 0 {
                    // A persistent peer is dialled again whenever every connection is gone.
                    let lost: Vec<usize> = (0..self.targets.len())
                        .filter(|t| self.target_peer.get(t).copied().or_else(|| last_peer(&self.targets[*t])) == Some(peer_id))
                        .collect();
                    for target in lost {
                        self.later(REDIAL_PAUSE, Input::Dial { target });
                    }
                }
            }
            SwarmEvent::OutgoingConnectionError { connection_id, error, .. } => {
                if let Some(pending) = self.dials.remove(&connection_id) {
                    self.dial_failed(pending, error.to_string());
                }
            }
            SwarmEvent::NewListenAddr { listener_id, address } => {
                if self.reservations.contains_key(&listener_id) {
                    self.say(&format!("reachable via relay: {address}"));
                }
                if self.flags.role == Role::Relay && !is_circuit(&address) {
                    self.swarm.add_external_address(address);
                }
            }
            SwarmEvent::ListenerClosed { listener_id, reason, .. } => {
                if let Some(r) = self.reservations.remove(&listener_id) {
                    if !r.accepted {
                        let why = match reason {
                            Err(e) => e.to_string(),
                            Ok(()) => "the relay closed the reservation".into(),
                        };
                        let fields = json!({"relay": self.relays[r.relay].to_string(), "outcome": "failed", "elapsed_ms": ms(r.started), "reason": why});
                        self.emit("relay_reservation", fields);
                    }
                    // Lost or refused: reserve again after a pause.
                    self.later(REDIAL_PAUSE, Input::Reserve { relay: r.relay });
                }
            }
            SwarmEvent::Behaviour(event) => self.on_behaviour(event),
            _ => {}
        }
    }

    fn connection_event(&mut self, type_: &str, peer: PeerId, id: ConnectionId, endpoint: &ConnectedPoint) {
        let addr = endpoint.get_remote_address();
        let (kind, transport) = kind_of(endpoint);
        let direction = if endpoint.is_dialer() { "outbound" } else { "inbound" };
        if type_ == "connection_opened" {
            self.transports.insert(id, transport);
            if kind == "relayed" {
                self.relayed.insert(peer, (!endpoint.is_dialer(), Instant::now()));
            }
            if let Some(mut punch) = self.punch_waiting.remove(&id) {
                punch["transport"] = transport.into();
                self.emit("hole_punch", punch);
            }
        }
        self.emit(type_, json!({"peer": peer.to_base58(), "remote_addr": addr.to_string(), "kind": kind, "transport": transport, "direction": direction}));
    }

    fn on_behaviour(&mut self, event: ChatBehaviourEvent) {
        match event {
            ChatBehaviourEvent::Gossipsub(gossipsub::Event::Message { message, propagation_source, .. }) => {
                let Some(origin) = message.source else { return };
                if origin == self.local {
                    return;
                }
                let seq = message.sequence_number;
                // Pushed by a mesh peer, or from outside the mesh (an IWANT answer, a
                // publisher's flood publish): how the message travelled.
                let via_mesh = self.swarm.behaviour().gossipsub.as_ref()
                    .map(|g| g.mesh_peers(&message.topic).any(|p| *p == propagation_source))
                    .unwrap_or(false);
                let fields = json!({
                    "msg_id": format!("{}/{}", origin.to_base58(), seq.map(|s| s.to_string()).unwrap_or_else(|| "None".into())),
                    "origin": origin.to_base58(), "seq": seq, "size": message.data.len(), "topic": message.topic.as_str(),
                    // The peer it came from (the origin, a mesh peer, or one answering IWANT).
                    "via_peer": propagation_source.to_base58(),
                    "via_mesh": via_mesh,
                });
                self.emit("message_received", fields);
                if !self.flags.no_stdin || self.flags.control.is_none() {
                    self.say(&format!("{}: {}", short(&origin), String::from_utf8_lossy(&message.data).trim_end()));
                }
            }
            ChatBehaviourEvent::Mdns(mdns::Event::Discovered(found)) => {
                let mut by_peer: HashMap<PeerId, Vec<Multiaddr>> = HashMap::new();
                for (peer, addr) in found {
                    by_peer.entry(peer).or_default().push(addr);
                }
                for (peer, addrs) in by_peer {
                    if peer == self.local {
                        continue;
                    }
                    let listed: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
                    self.emit("peer_discovered", json!({"peer": peer.to_base58(), "via": "mdns", "addrs": listed}));
                    if self.swarm.is_connected(&peer) {
                        continue;
                    }
                    let opts = DialOpts::peer_id(peer).addresses(addrs).build();
                    let id = opts.connection_id();
                    let pending = PendingDial { target: format!("/p2p/{peer}"), origin: DialOrigin::Mdns, started: Instant::now(), attempts: 1 };
                    match self.swarm.dial(opts) {
                        Ok(()) => {
                            self.dials.insert(id, pending);
                        }
                        Err(e) => self.dial_done(pending, "failed", e.to_string()),
                    }
                }
            }
            ChatBehaviourEvent::RelayClient(relay::client::Event::ReservationReqAccepted { relay_peer_id, renewal, .. }) => {
                if renewal {
                    return;
                }
                let found = self.reservations.values_mut().find(|r| !r.accepted && last_peer(&self.relays[r.relay]) == Some(relay_peer_id));
                if let Some(r) = found {
                    r.accepted = true;
                    let (relay, started) = (r.relay, r.started);
                    let fields = json!({"relay": self.relays[relay].to_string(), "outcome": "ok", "elapsed_ms": ms(started), "reason": ""});
                    self.emit("relay_reservation", fields);
                }
            }
            ChatBehaviourEvent::Dcutr(dcutr::Event { remote_peer_id, result }) => {
                let (inbound, opened) = self.relayed.get(&remote_peer_id).copied().unwrap_or((false, Instant::now()));
                let attempt = {
                    let n = self.punch_attempts.entry(remote_peer_id).or_default();
                    *n += 1;
                    *n
                };
                // The side that accepted the relayed connection starts DCUtR: the initiator.
                let role = if inbound { "initiator" } else { "responder" };
                let mut fields = json!({
                    "peer": remote_peer_id.to_base58(), "attempt": attempt, "elapsed_ms": ms(opened),
                    "role": role, "since": "relayed connection opened",
                });
                match result {
                    Ok(connection) => {
                        fields["outcome"] = "success".into();
                        fields["reason"] = "".into();
                        match self.transports.get(&connection) {
                            Some(t) => {
                                fields["transport"] = (*t).into();
                                self.emit("hole_punch", fields);
                            }
                            None => {
                                self.punch_waiting.insert(connection, fields);
                            }
                        }
                    }
                    Err(e) => {
                        fields["outcome"] = "failure".into();
                        let reason = match std::error::Error::source(&e) {
                            Some(cause) => format!("{e}: {cause}"),
                            None => e.to_string(),
                        };
                        fields["reason"] = reason.into();
                        fields["transport"] = (if self.flags.no_tcp { "quic" } else { "tcp" }).into();
                        self.emit("hole_punch", fields);
                    }
                }
            }
            ChatBehaviourEvent::Ping(ping::Event { peer, result, .. }) => {
                let (fields, ok) = match result {
                    Ok(rtt) => (json!({"peer": peer.to_base58(), "rtt_ms": (rtt.as_secs_f64() * 1_000_000.0).round() / 1000.0, "outcome": "ok", "reason": ""}), true),
                    Err(e) => (json!({"peer": peer.to_base58(), "rtt_ms": null, "outcome": "failed", "reason": e.to_string()}), false),
                };
                self.emit("ping", fields);
                let mut finished = Vec::new();
                if let Some(waiting) = self.pings.get_mut(&peer) {
                    for (left, args) in waiting.iter_mut() {
                        *left -= 1;
                        if *left == 0 || !ok {
                            finished.push(args.clone());
                        }
                    }
                    waiting.retain(|(left, _)| *left > 0 && ok);
                }
                for args in finished {
                    let result = if ok { Ok(()) } else { Err("ping failed".to_string()) };
                    self.command_result("ping", result, &args);
                }
            }
            ChatBehaviourEvent::Identify(identify::Event::Received { .. }) => {}
            _ => {}
        }
    }
}

