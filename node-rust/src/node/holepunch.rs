//! Hole punching (DCUtR): one `hole_punch` per attempt, timed from the relayed
//! connection's opening. A success is written once its direct connection is known, so the
//! event names that connection's transport.

use std::error::Error;
use std::time::Instant;

use libp2p::{dcutr, swarm::ConnectionId, PeerId};

use super::{ms, Node};
use crate::events::{Event, HolePunch};

const SINCE: &str = "relayed connection opened";

/// The side that accepted the relayed connection starts DCUtR: the initiator.
fn role(inbound: bool) -> &'static str {
    if inbound {
        "initiator"
    } else {
        "responder"
    }
}

/// An error with its first cause, which is where DCUtR says what went wrong.
fn with_cause(e: &dyn Error) -> String {
    match e.source() {
        Some(cause) => format!("{e}: {cause}"),
        None => e.to_string(),
    }
}

/// The transport a failed punch tried: QUIC when the node has no TCP.
fn tried_transport(no_tcp: bool) -> &'static str {
    if no_tcp {
        "quic"
    } else {
        "tcp"
    }
}

impl Node {
    pub(super) fn on_hole_punch(
        &mut self,
        peer: PeerId,
        result: Result<ConnectionId, dcutr::Error>,
    ) {
        let (inbound, opened) = self
            .relayed
            .get(&peer)
            .copied()
            .unwrap_or((false, Instant::now()));
        let attempt = {
            let n = self.punch_attempts.entry(peer).or_default();
            *n += 1;
            *n
        };
        let mut punch = HolePunch {
            peer: peer.to_base58(),
            attempt,
            outcome: "success",
            elapsed_ms: ms(opened),
            reason: String::new(),
            transport: "",
            role: role(inbound),
            since: SINCE,
        };
        match result {
            Ok(connection) => match self.transports.get(&connection) {
                Some(t) => {
                    punch.transport = t;
                    self.emit(Event::HolePunch(punch));
                }
                None => {
                    self.punch_waiting.insert(connection, punch);
                }
            },
            Err(e) => {
                punch.outcome = "failure";
                punch.reason = with_cause(&e);
                punch.transport = tried_transport(self.flags.no_tcp);
                self.emit(Event::HolePunch(punch));
            }
        }
    }

    /// A connection opened: the punch that made it, if waiting for it, is written now.
    pub(super) fn punch_connected(&mut self, id: ConnectionId, transport: &'static str) {
        if let Some(mut punch) = self.punch_waiting.remove(&id) {
            punch.transport = transport;
            self.emit(Event::HolePunch(punch));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Outer(Option<Inner>);
    #[derive(Debug)]
    struct Inner;

    impl std::fmt::Display for Outer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "Failed to hole-punch connection")
        }
    }
    impl std::fmt::Display for Inner {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "no addresses")
        }
    }
    impl Error for Inner {}
    impl Error for Outer {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            self.0.as_ref().map(|e| e as &(dyn Error + 'static))
        }
    }

    #[test]
    fn a_failure_names_its_cause() {
        assert_eq!(
            with_cause(&Outer(Some(Inner))),
            "Failed to hole-punch connection: no addresses"
        );
        assert_eq!(with_cause(&Outer(None)), "Failed to hole-punch connection");
    }

    #[test]
    fn roles_and_transports() {
        assert_eq!(role(true), "initiator");
        assert_eq!(role(false), "responder");
        assert_eq!(tried_transport(false), "tcp");
        assert_eq!(tried_transport(true), "quic");
    }
}
