//! The event log: schema v1 JSON lines (p2plab/events.py), flushed line by line so a
//! node killed with SIGKILL still leaves a readable log up to its last event.
//!
//! Every event the node writes is a variant of [`Event`]: its name (snake_case) is the
//! line's `type` and its fields are the line's fields, so a renamed or missing field is
//! a compile error here rather than a failed Python test. The writer adds the envelope
//! (`v`, `t`, `node`).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::Value;

pub const SCHEMA_VERSION: u64 = 1;

/// One contract event. Fields are written in declaration order: the fields
/// p2plab/events.py requires first, then the extra ones.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    NodeStarted {
        peer_id: String,
        listen_addrs: Vec<String>,
        announced_addrs: Vec<String>,
        role: &'static str,
        topic: String,
        topics: Vec<String>,
        nick: String,
        #[serde(rename = "impl")]
        implementation: &'static str,
        impl_version: &'static str,
        libp2p: String,
        msg_id_fn: Option<String>,
    },
    NodeStopped {
        reason: String,
    },
    PeerDiscovered {
        peer: String,
        via: &'static str,
        addrs: Vec<String>,
    },
    Dial {
        target: String,
        outcome: &'static str,
        elapsed_ms: f64,
        reason: String,
        attempts: u32,
        /// `mdns` for a dial of a discovered peer; absent otherwise.
        #[serde(skip_serializing_if = "Option::is_none")]
        via: Option<&'static str>,
    },
    ConnectionOpened(Connection),
    ConnectionClosed(Connection),
    RelayReservation {
        relay: String,
        outcome: &'static str,
        elapsed_ms: f64,
        reason: String,
    },
    HolePunch(HolePunch),
    /// What a relay hop (`--role relay`) did: `action` is `reservation-accepted`,
    /// `reservation-denied`, `circuit-accepted`, `circuit-denied` or `circuit-closed`;
    /// a closed circuit's `reason` is `duration` or `bytes` (the relay cut it at its
    /// limit), `ended` (both ends finished), `connection-lost`, or the error.
    RelayHop {
        action: &'static str,
        src_peer: String,
        /// Empty for a reservation.
        dst_peer: String,
        reason: String,
    },
    TopicPeers {
        topic: String,
        peers: Vec<String>,
        mesh: Vec<String>,
    },
    MessagePublished {
        msg_id: String,
        origin: String,
        seq: Option<u64>,
        size: usize,
        topic: String,
        /// The publish plan's flow; null for chat lines and plans without one.
        flow: Option<String>,
        /// Why gossipsub refused the message (still counted: the network should have
        /// carried it); absent when it was accepted.
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    MessageReceived {
        msg_id: String,
        origin: String,
        seq: Option<u64>,
        size: usize,
        topic: String,
        /// The peer it came from (the origin, a mesh peer, or one answering IWANT).
        via_peer: String,
        /// Pushed by a mesh peer, or from outside the mesh (IWANT answer, flood publish).
        via_mesh: bool,
    },
    Ping {
        peer: String,
        rtt_ms: Option<f64>,
        outcome: &'static str,
        reason: String,
    },
    Command {
        cmd: &'static str,
        outcome: &'static str,
        reason: String,
        /// The command as received: its JSON object, or the raw line when it was not one.
        args: Value,
    },
}

/// The fields of `connection_opened` and `connection_closed`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Connection {
    pub peer: String,
    pub remote_addr: String,
    /// `direct` or `relayed`.
    pub kind: &'static str,
    /// `tcp`, `quic` or `circuit`.
    pub transport: &'static str,
    /// `outbound` or `inbound`.
    pub direction: &'static str,
}

/// The fields of `hole_punch`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HolePunch {
    pub peer: String,
    pub attempt: u32,
    /// `success` or `failure`.
    pub outcome: &'static str,
    pub elapsed_ms: f64,
    pub reason: String,
    /// The direct connection's transport (on failure: the one that was tried).
    pub transport: &'static str,
    /// `initiator` (accepted the relayed connection) or `responder`.
    pub role: &'static str,
    /// What `elapsed_ms` counts from.
    pub since: &'static str,
}

impl Event {
    /// The event's `type`, as written.
    #[cfg(test)]
    pub fn type_name(&self) -> String {
        match serde_json::to_value(self) {
            Ok(Value::Object(map)) => map["type"].as_str().unwrap_or_default().to_string(),
            _ => String::new(),
        }
    }
}

/// The envelope around an event: version, host clock (seconds since the epoch), node.
#[derive(Serialize)]
struct Envelope<'a> {
    v: u64,
    t: f64,
    node: &'a str,
    #[serde(flatten)]
    event: &'a Event,
}

/// One event as one JSON line (with its newline).
pub fn line(node: &str, t: f64, event: &Event) -> String {
    let envelope = Envelope {
        v: SCHEMA_VERSION,
        t,
        node,
        event,
    };
    let mut line = serde_json::to_string(&envelope).expect("an event serialises");
    line.push('\n');
    line
}

pub struct EventLog {
    node: String,
    file: Option<File>,
}

impl EventLog {
    pub fn open(node: &str, path: Option<&Path>) -> std::io::Result<Self> {
        let file = match path {
            Some(p) => {
                if let Some(dir) = p.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                Some(OpenOptions::new().create(true).append(true).open(p)?)
            }
            None => None,
        };
        Ok(Self {
            node: node.to_string(),
            file,
        })
    }

    /// Write one event with its envelope (v, t, node).
    pub fn emit(&mut self, event: &Event) {
        let Some(file) = self.file.as_mut() else {
            return;
        };
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        // One write call per line: the line reaches the file whole or not at all.
        let _ = file.write_all(line(&self.node, t, event).as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Required fields per event type, as p2plab/events.py's EVENT_FIELDS says (the
    /// types this node writes). `schema_matches_events_py` checks this copy.
    const REQUIRED: &[(&str, &[&str])] = &[
        (
            "node_started",
            &[
                "peer_id",
                "listen_addrs",
                "announced_addrs",
                "role",
                "topic",
            ],
        ),
        ("node_stopped", &["reason"]),
        ("peer_discovered", &["peer", "via", "addrs"]),
        ("dial", &["target", "outcome", "elapsed_ms", "reason"]),
        (
            "connection_opened",
            &["peer", "remote_addr", "kind", "transport", "direction"],
        ),
        (
            "connection_closed",
            &["peer", "remote_addr", "kind", "transport", "direction"],
        ),
        (
            "relay_reservation",
            &["relay", "outcome", "elapsed_ms", "reason"],
        ),
        (
            "hole_punch",
            &[
                "peer",
                "attempt",
                "outcome",
                "elapsed_ms",
                "reason",
                "transport",
            ],
        ),
        ("topic_peers", &["topic", "peers"]),
        (
            "message_published",
            &["msg_id", "origin", "seq", "size", "topic"],
        ),
        (
            "message_received",
            &["msg_id", "origin", "seq", "size", "topic"],
        ),
        ("ping", &["peer", "rtt_ms", "outcome", "reason"]),
        ("command", &["cmd", "outcome", "reason"]),
    ];

    fn connection() -> Connection {
        Connection {
            peer: "12D3KooWPeer".into(),
            remote_addr: "/ip4/127.0.0.1/tcp/4001".into(),
            kind: "direct",
            transport: "tcp",
            direction: "outbound",
        }
    }

    fn punch() -> HolePunch {
        HolePunch {
            peer: "12D3KooWPeer".into(),
            attempt: 1,
            outcome: "success",
            elapsed_ms: 12.5,
            reason: String::new(),
            transport: "quic",
            role: "initiator",
            since: "relayed connection opened",
        }
    }

    /// One example of every variant.
    fn examples() -> Vec<Event> {
        vec![
            Event::NodeStarted {
                peer_id: "12D3KooWSelf".into(),
                listen_addrs: vec!["/ip4/127.0.0.1/tcp/4001".into()],
                announced_addrs: vec!["/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWSelf".into()],
                role: "peer",
                topic: "chat".into(),
                topics: vec!["chat".into()],
                nick: "a".into(),
                implementation: "rust",
                impl_version: "0.1.0",
                libp2p: "rust-libp2p 0.57.1".into(),
                msg_id_fn: Some("origin-seq".into()),
            },
            Event::NodeStopped {
                reason: "SIGTERM".into(),
            },
            Event::PeerDiscovered {
                peer: "12D3KooWPeer".into(),
                via: "mdns",
                addrs: vec!["/ip4/10.0.0.2/tcp/4001".into()],
            },
            Event::Dial {
                target: "/ip4/127.0.0.1/tcp/4001".into(),
                outcome: "ok",
                elapsed_ms: 3.25,
                reason: String::new(),
                attempts: 1,
                via: None,
            },
            Event::ConnectionOpened(connection()),
            Event::ConnectionClosed(connection()),
            Event::RelayReservation {
                relay: "/ip4/10.0.0.1/tcp/4001/p2p/12D3KooWRelay".into(),
                outcome: "failed",
                elapsed_ms: 0.0,
                reason: "no route".into(),
            },
            Event::HolePunch(punch()),
            Event::TopicPeers {
                topic: "chat".into(),
                peers: vec!["12D3KooWPeer".into()],
                mesh: vec![],
            },
            Event::MessagePublished {
                msg_id: "12D3KooWSelf/7".into(),
                origin: "12D3KooWSelf".into(),
                seq: Some(7),
                size: 300,
                topic: "chat".into(),
                flow: None,
                error: None,
            },
            Event::MessageReceived {
                msg_id: "12D3KooWPeer/7".into(),
                origin: "12D3KooWPeer".into(),
                seq: Some(7),
                size: 300,
                topic: "chat".into(),
                via_peer: "12D3KooWPeer".into(),
                via_mesh: true,
            },
            Event::Ping {
                peer: "12D3KooWPeer".into(),
                rtt_ms: Some(0.123),
                outcome: "ok",
                reason: String::new(),
            },
            Event::Command {
                cmd: "say",
                outcome: "ok",
                reason: String::new(),
                args: json!({"cmd": "say", "text": "hi"}),
            },
        ]
    }

    fn parsed(event: &Event) -> serde_json::Map<String, Value> {
        let text = line("a", 1_700_000_000.25, event);
        assert!(text.ends_with('\n') && text.matches('\n').count() == 1);
        match serde_json::from_str(&text).expect("valid JSON") {
            Value::Object(map) => map,
            other => panic!("not an object: {other}"),
        }
    }

    #[test]
    fn every_variant_has_its_type_the_envelope_and_its_required_fields() {
        let examples = examples();
        assert_eq!(examples.len(), REQUIRED.len(), "one example per event type");
        for (event, (type_, required)) in examples.iter().zip(REQUIRED) {
            let map = parsed(event);
            assert_eq!(map["type"], *type_, "{map:?}");
            assert_eq!(event.type_name(), *type_);
            assert_eq!(map["v"], 1);
            assert_eq!(map["t"], 1_700_000_000.25);
            assert_eq!(map["node"], "a");
            for field in *required {
                assert!(map.contains_key(*field), "{type_} lacks {field}: {map:?}");
            }
        }
    }

    #[test]
    fn the_envelope_comes_first() {
        let text = line(
            "n",
            2.5,
            &Event::NodeStopped {
                reason: "quit".into(),
            },
        );
        assert_eq!(
            text,
            "{\"v\":1,\"t\":2.5,\"node\":\"n\",\"type\":\"node_stopped\",\"reason\":\"quit\"}\n"
        );
    }

    #[test]
    fn node_started_names_the_implementation() {
        let map = parsed(&examples()[0]);
        assert_eq!(map["impl"], "rust");
        assert!(!map.contains_key("implementation"));
        assert_eq!(map["impl_version"], "0.1.0");
        assert_eq!(map["libp2p"], "rust-libp2p 0.57.1");
        assert_eq!(map["msg_id_fn"], "origin-seq");
        assert_eq!(map["topics"], json!(["chat"]));
        assert_eq!(map["nick"], "a");
    }

    #[test]
    fn optional_fields_are_null_or_absent_as_before() {
        // message_published: flow is always written (null without a flow), error only
        // when gossipsub refused the message.
        let mut event = Event::MessagePublished {
            msg_id: "x/None".into(),
            origin: "x".into(),
            seq: None,
            size: 0,
            topic: "chat".into(),
            flow: None,
            error: None,
        };
        let map = parsed(&event);
        assert_eq!(map["flow"], Value::Null);
        assert_eq!(map["seq"], Value::Null);
        assert!(!map.contains_key("error"));
        if let Event::MessagePublished { flow, error, .. } = &mut event {
            *flow = Some("f".into());
            *error = Some("InsufficientPeers".into());
        }
        let map = parsed(&event);
        assert_eq!(map["flow"], "f");
        assert_eq!(map["error"], "InsufficientPeers");

        // dial: via only for mDNS dials.
        let mut dial = examples()[3].clone();
        assert!(!parsed(&dial).contains_key("via"));
        if let Event::Dial { via, .. } = &mut dial {
            *via = Some("mdns");
        }
        let map = parsed(&dial);
        assert_eq!(map["via"], "mdns");
        assert_eq!(map["attempts"], 1);

        // ping: a failed ping has a null rtt.
        let map = parsed(&Event::Ping {
            peer: "p".into(),
            rtt_ms: None,
            outcome: "failed",
            reason: "timeout".into(),
        });
        assert_eq!(map["rtt_ms"], Value::Null);
    }

    #[test]
    fn numbers_keep_their_json_form() {
        let map = parsed(&examples()[6]);
        // An f64 zero stays a float, as json!(0.0) wrote it.
        assert!(map["elapsed_ms"].is_f64());
        let text = line("a", 1.0, &examples()[6]);
        assert!(text.contains("\"elapsed_ms\":0.0"), "{text}");
        let map = parsed(&examples()[7]);
        assert_eq!(map["attempt"], 1);
        assert_eq!(map["elapsed_ms"], 12.5);
        assert_eq!(map["role"], "initiator");
        assert_eq!(map["since"], "relayed connection opened");
        let map = parsed(&examples()[10]);
        assert_eq!(map["via_mesh"], true);
        assert_eq!(map["size"], 300);
        assert_eq!(map["seq"], 7);
    }

    #[test]
    fn command_args_are_written_as_given() {
        let map = parsed(&Event::Command {
            cmd: "?",
            outcome: "failed",
            reason: "not JSON".into(),
            args: Value::String("{oops".into()),
        });
        assert_eq!(map["args"], "{oops");
        let map = parsed(&examples()[12]);
        assert_eq!(map["args"], json!({"cmd": "say", "text": "hi"}));
    }

    /// The copy above against the Python schema itself, so the two cannot drift apart.
    #[test]
    fn schema_matches_events_py() {
        // p2plab/events.py of the checkout (or events.py of an installed p2plab), found
        // from whichever crate runs the test: this kit, or a node built at some release.
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .ancestors()
            .flat_map(|dir| [dir.join("p2plab/events.py"), dir.join("events.py")])
            .find(|candidate| candidate.is_file())
            .expect("p2plab/events.py above the crate");
        let source =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let start = source
            .find("EVENT_FIELDS")
            .expect("events.py defines EVENT_FIELDS");
        let mut python: Vec<(String, Vec<String>)> = Vec::new();
        for raw in source[start..].lines().skip(1) {
            let text = raw.trim();
            if text.starts_with('}') {
                break;
            }
            if text.starts_with('#') || text.is_empty() {
                continue;
            }
            let Some((name, fields)) = text.split_once(':') else {
                continue;
            };
            let words = |s: &str| -> Vec<String> {
                s.split('"')
                    .skip(1)
                    .step_by(2)
                    .map(str::to_string)
                    .collect()
            };
            let name = words(name).into_iter().next().unwrap_or_default();
            python.push((name, words(fields)));
        }
        for (type_, required) in REQUIRED {
            let Some((_, fields)) = python.iter().find(|(n, _)| n == type_) else {
                panic!("events.py has no event type {type_}");
            };
            assert_eq!(fields, required, "required fields of {type_}");
        }
    }
}
