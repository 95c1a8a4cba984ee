//! Circuit relay v2 reservations (--relay): one listener per relay, reported once as a
//! `relay_reservation`, reserved again after a pause whenever it is refused or lost.

use std::collections::HashMap;
use std::fmt::Display;
use std::time::Instant;

use libp2p::relay as relay_proto;
use libp2p::{core::transport::ListenerId, multiaddr::Protocol, Multiaddr, PeerId};

use super::connections::is_circuit;
use super::dialing::last_peer;
use super::{ms, Input, Node, REDIAL_PAUSE};
use crate::config::Role;
use crate::events::Event;

pub(super) struct Reservation {
    /// The index of the relay in --relay.
    pub(super) relay: usize,
    pub(super) started: Instant,
    pub(super) accepted: bool,
}

/// Why a reservation's listener closed, as its `reason`.
fn why_closed<E: Display>(reason: &Result<(), E>) -> String {
    match reason {
        Err(e) => e.to_string(),
        Ok(()) => "the relay closed the reservation".into(),
    }
}

/// The listener of the not yet accepted reservation on the relay with this peer id.
fn awaiting(
    reservations: &HashMap<ListenerId, Reservation>,
    relays: &[Multiaddr],
    relay_peer: PeerId,
) -> Option<ListenerId> {
    reservations
        .iter()
        .find(|(_, r)| !r.accepted && last_peer(&relays[r.relay]) == Some(relay_peer))
        .map(|(id, _)| *id)
}

/// Why the relay hop closed a circuit, as the `relay_hop` event's reason: rust-libp2p's
/// copy loop ends with `TimedOut` at the duration limit and "Max circuit bytes reached."
/// at the byte limit (libp2p-relay's copy_future.rs, both releases the lab pins).
fn why_circuit_closed(error: Option<&std::io::Error>) -> String {
    match error {
        None => "ended".into(),
        Some(e) if e.kind() == std::io::ErrorKind::TimedOut => "duration".into(),
        Some(e) if e.to_string().contains("Max circuit bytes") => "bytes".into(),
        Some(e) if e.kind() == std::io::ErrorKind::ConnectionAborted => "connection-lost".into(),
        Some(e) => format!("error: {e}"),
    }
}

/// The status a denial carried (0.53's events carry none).
#[cfg(not(feature = "libp2p-053"))]
fn denial(status: &relay_proto::StatusCode) -> String {
    format!("{status:?}")
}

impl Node {
    /// Record what the relay hop did: reservations and circuits accepted, denied, closed.
    pub(super) fn on_relay_hop(&mut self, event: relay_proto::Event) {
        use relay_proto::Event as Hop;
        let none = String::new();
        let (action, src, dst, reason) = match event {
            Hop::ReservationReqAccepted { renewed: true, .. } => return,
            Hop::ReservationReqAccepted { src_peer_id, .. } => (
                "reservation-accepted",
                src_peer_id.to_base58(),
                none.clone(),
                none,
            ),
            #[cfg(not(feature = "libp2p-053"))]
            Hop::ReservationReqDenied {
                src_peer_id,
                status,
            } => (
                "reservation-denied",
                src_peer_id.to_base58(),
                none,
                denial(&status),
            ),
            #[cfg(feature = "libp2p-053")]
            Hop::ReservationReqDenied { src_peer_id } => (
                "reservation-denied",
                src_peer_id.to_base58(),
                none.clone(),
                none,
            ),
            Hop::CircuitReqAccepted {
                src_peer_id,
                dst_peer_id,
            } => (
                "circuit-accepted",
                src_peer_id.to_base58(),
                dst_peer_id.to_base58(),
                none,
            ),
            #[cfg(not(feature = "libp2p-053"))]
            Hop::CircuitReqDenied {
                src_peer_id,
                dst_peer_id,
                status,
            } => (
                "circuit-denied",
                src_peer_id.to_base58(),
                dst_peer_id.to_base58(),
                denial(&status),
            ),
            #[cfg(feature = "libp2p-053")]
            Hop::CircuitReqDenied {
                src_peer_id,
                dst_peer_id,
            } => (
                "circuit-denied",
                src_peer_id.to_base58(),
                dst_peer_id.to_base58(),
                none,
            ),
            Hop::CircuitClosed {
                src_peer_id,
                dst_peer_id,
                error,
            } => (
                "circuit-closed",
                src_peer_id.to_base58(),
                dst_peer_id.to_base58(),
                why_circuit_closed(error.as_ref()),
            ),
            _ => return,
        };
        self.emit(Event::RelayHop {
            action,
            src_peer: src,
            dst_peer: dst,
            reason,
        });
    }

    /// Reserve a slot on a relay: listen on its circuit address.
    pub(super) fn reserve(&mut self, relay: usize) {
        let addr = self.relays[relay].clone().with(Protocol::P2pCircuit);
        match self.swarm.listen_on(addr) {
            Ok(id) => {
                self.reservations.insert(
                    id,
                    Reservation {
                        relay,
                        started: Instant::now(),
                        accepted: false,
                    },
                );
            }
            Err(e) => {
                self.emit(Event::RelayReservation {
                    relay: self.relays[relay].to_string(),
                    outcome: "failed",
                    elapsed_ms: 0.0,
                    reason: e.to_string(),
                });
                self.later(REDIAL_PAUSE, Input::Reserve { relay });
            }
        }
    }

    pub(super) fn on_reservation_accepted(&mut self, relay_peer: PeerId, renewal: bool) {
        if renewal {
            return;
        }
        let Some(id) = awaiting(&self.reservations, &self.relays, relay_peer) else {
            return;
        };
        let r = self.reservations.get_mut(&id).expect("found");
        r.accepted = true;
        let (relay, started) = (r.relay, r.started);
        self.emit(Event::RelayReservation {
            relay: self.relays[relay].to_string(),
            outcome: "ok",
            elapsed_ms: ms(started),
            reason: String::new(),
        });
    }

    pub(super) fn on_new_listen_addr(&mut self, listener: ListenerId, address: Multiaddr) {
        if self.reservations.contains_key(&listener) {
            self.say(&format!("reachable via relay: {address}"));
        }
        if self.flags.role == Role::Relay && !is_circuit(&address) {
            self.swarm.add_external_address(address);
        }
    }

    /// A listener closed: if a reservation, report it unless it was accepted, and
    /// reserve again after a pause (lost or refused).
    pub(super) fn on_listener_closed(
        &mut self,
        listener: ListenerId,
        reason: Result<(), std::io::Error>,
    ) {
        let Some(r) = self.reservations.remove(&listener) else {
            return;
        };
        if !r.accepted {
            self.emit(Event::RelayReservation {
                relay: self.relays[r.relay].to_string(),
                outcome: "failed",
                elapsed_ms: ms(r.started),
                reason: why_closed(&reason),
            });
        }
        self.later(REDIAL_PAUSE, Input::Reserve { relay: r.relay });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(seed: &str) -> PeerId {
        crate::identity::from_seed(seed).public().to_peer_id()
    }

    #[test]
    fn a_closed_circuit_is_named_by_the_limit_that_cut_it() {
        use std::io::{Error, ErrorKind};
        assert_eq!(why_circuit_closed(None), "ended");
        let timed_out: Error = ErrorKind::TimedOut.into();
        assert_eq!(why_circuit_closed(Some(&timed_out)), "duration");
        let bytes = Error::other("Max circuit bytes reached.");
        assert_eq!(why_circuit_closed(Some(&bytes)), "bytes");
        let aborted: Error = ErrorKind::ConnectionAborted.into();
        assert_eq!(why_circuit_closed(Some(&aborted)), "connection-lost");
        let other = Error::other("stream reset");
        assert_eq!(why_circuit_closed(Some(&other)), "error: stream reset");
    }

    #[test]
    fn a_closed_reservation_says_why() {
        let refused: Result<(), std::io::Error> = Err(std::io::Error::other("NO_RESERVATION"));
        assert_eq!(why_closed(&refused), "NO_RESERVATION");
        assert_eq!(
            why_closed::<std::io::Error>(&Ok(())),
            "the relay closed the reservation"
        );
    }

    #[test]
    fn an_acceptance_completes_the_reservation_on_that_relay() {
        let (r1, r2) = (peer("r1"), peer("r2"));
        let relays: Vec<Multiaddr> = [r1, r2]
            .iter()
            .map(|p| format!("/ip4/10.0.0.1/tcp/4001/p2p/{p}").parse().unwrap())
            .collect();
        let (l1, l2) = (ListenerId::next(), ListenerId::next());
        let mut reservations = HashMap::new();
        for (id, relay) in [(l1, 0), (l2, 1)] {
            reservations.insert(
                id,
                Reservation {
                    relay,
                    started: Instant::now(),
                    accepted: false,
                },
            );
        }
        assert_eq!(awaiting(&reservations, &relays, r2), Some(l2));
        assert_eq!(awaiting(&reservations, &relays, r1), Some(l1));
        reservations.get_mut(&l1).unwrap().accepted = true;
        assert_eq!(awaiting(&reservations, &relays, r1), None);
        assert_eq!(awaiting(&reservations, &relays, peer("other")), None);
    }
}
