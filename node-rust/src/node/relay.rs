//! Circuit relay v2 reservations (--relay): one listener per relay, reported once as a
//! `relay_reservation`, reserved again after a pause whenever it is refused or lost.

use std::collections::HashMap;
use std::fmt::Display;
use std::time::Instant;

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

impl Node {
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
