//! Dialling: persistent --dial targets (retried until --dial-timeout, dialled again when
//! lost), dial commands and peers found by mDNS. Every dial ends in one `dial` event.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use libp2p::{
    multiaddr::Protocol,
    swarm::{dial_opts::DialOpts, ConnectionId},
    Multiaddr, PeerId,
};
use serde_json::Value;

use super::{ms, Input, Node, REDIAL_PAUSE, RETRY_PAUSE};
use crate::events::Event;

/// Why a dial was made, so its outcome reaches the right place.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum DialOrigin {
    /// The --dial target with this index.
    Persistent(usize),
    /// A dial command, with its args.
    Command(Value),
    Mdns,
}

pub(super) struct PendingDial {
    pub(super) target: String,
    pub(super) origin: DialOrigin,
    pub(super) started: Instant,
    pub(super) attempts: u32,
}

/// The peer id an address ends with (for a circuit address: the target, not the relay).
pub(super) fn last_peer(addr: &Multiaddr) -> Option<PeerId> {
    addr.iter()
        .filter_map(|p| {
            if let Protocol::P2p(id) = p {
                Some(id)
            } else {
                None
            }
        })
        .last()
}

/// The peer behind a --dial target: learnt from its handshake, else named by its address.
fn target_peer(learnt: Option<PeerId>, addr: &Multiaddr) -> Option<PeerId> {
    learnt.or_else(|| last_peer(addr))
}

/// Whether a failed attempt is tried again: every dial but mDNS's, until the timeout.
fn retries(origin: &DialOrigin, elapsed: Duration, timeout: Duration) -> bool {
    !matches!(origin, DialOrigin::Mdns) && elapsed <= timeout
}

/// The --dial targets that lead to `peer`.
fn targets_of(targets: &[Multiaddr], learnt: &HashMap<usize, PeerId>, peer: PeerId) -> Vec<usize> {
    (0..targets.len())
        .filter(|t| target_peer(learnt.get(t).copied(), &targets[*t]) == Some(peer))
        .collect()
}

/// mDNS's (peer, address) pairs grouped by peer, without this node itself.
fn by_peer(found: Vec<(PeerId, Multiaddr)>, local: PeerId) -> HashMap<PeerId, Vec<Multiaddr>> {
    let mut grouped: HashMap<PeerId, Vec<Multiaddr>> = HashMap::new();
    for (peer, addr) in found {
        grouped.entry(peer).or_default().push(addr);
    }
    grouped.remove(&local);
    grouped
}

impl Node {
    pub(super) fn dial(
        &mut self,
        addr: Multiaddr,
        origin: DialOrigin,
        started: Instant,
        attempts: u32,
    ) {
        let target = addr.to_string();
        let opts = DialOpts::from(addr);
        let id = opts.connection_id();
        let pending = PendingDial {
            target,
            origin,
            started,
            attempts: attempts + 1,
        };
        match self.swarm.dial(opts) {
            Ok(()) => {
                self.dials.insert(id, pending);
            }
            Err(e) => self.dial_failed(pending, e.to_string()),
        }
    }

    /// Dial a --dial target unless it is connected or being dialled.
    pub(super) fn dial_target(&mut self, target: usize) {
        if let Some(peer) = target_peer(
            self.target_peer.get(&target).copied(),
            &self.targets[target],
        ) {
            if self.swarm.is_connected(&peer) {
                return;
            }
        }
        if self.dialing.insert(target) {
            self.dial(
                self.targets[target].clone(),
                DialOrigin::Persistent(target),
                Instant::now(),
                0,
            );
        }
    }

    /// A connection opened: if it was one of our dials, that dial succeeded.
    pub(super) fn dial_connected(&mut self, peer: PeerId, id: ConnectionId) {
        if let Some(pending) = self.dials.remove(&id) {
            if let DialOrigin::Persistent(target) = pending.origin {
                self.target_peer.insert(target, peer);
            }
            self.dial_done(pending, "ok", String::new());
        }
    }

    /// Every connection to `peer` is gone: a persistent peer is dialled again.
    pub(super) fn redial_lost(&mut self, peer: PeerId) {
        for target in targets_of(&self.targets, &self.target_peer, peer) {
            self.later(REDIAL_PAUSE, Input::Dial { target });
        }
    }

    pub(super) fn dial_failed(&mut self, pending: PendingDial, reason: String) {
        let timeout = Duration::from_secs_f64(self.flags.dial_timeout);
        if retries(&pending.origin, pending.started.elapsed(), timeout) {
            let addr: Multiaddr = pending.target.parse().expect("dialled before");
            let (origin, started, attempts) = (pending.origin, pending.started, pending.attempts);
            self.later(
                RETRY_PAUSE,
                Input::Retry {
                    addr,
                    origin,
                    started,
                    attempts,
                },
            );
            return;
        }
        self.dial_done(pending, "failed", reason);
    }

    fn dial_done(&mut self, pending: PendingDial, outcome: &'static str, reason: String) {
        let elapsed_ms = ms(pending.started);
        let mut via = None;
        match &pending.origin {
            DialOrigin::Mdns => via = Some("mdns"),
            DialOrigin::Command(args) => {
                let ok = outcome == "ok";
                self.emit(Event::Command {
                    cmd: "dial",
                    outcome: if ok { "ok" } else { "failed" },
                    reason: reason.clone(),
                    args: args.clone(),
                });
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
        self.emit(Event::Dial {
            target: pending.target,
            outcome,
            elapsed_ms,
            reason,
            attempts: pending.attempts,
            via,
        });
    }

    /// Peers found by mDNS: report each, and dial those not connected (once).
    pub(super) fn on_discovered(&mut self, found: Vec<(PeerId, Multiaddr)>) {
        for (peer, addrs) in by_peer(found, self.local) {
            let listed: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
            self.emit(Event::PeerDiscovered {
                peer: peer.to_base58(),
                via: "mdns",
                addrs: listed,
            });
            if self.swarm.is_connected(&peer) {
                continue;
            }
            // A new port, not the listener's: both housemates hear each other's mDNS
            // answer at once and dial at once, and two dials from port 4001 to port 4001
            // cross as one TCP simultaneous open, where both sides start Noise as the
            // initiator and the handshake fails ("input error"; 74 of 120 housemate
            // dials in gossip-50 on a busy host). Port reuse matters only through NATs.
            let opts = DialOpts::peer_id(peer).addresses(addrs);
            // Not from the listening port: housemates hear each other at once and would
            // dial port to port (TCP simultaneous open). 0.53 cannot choose per dial.
            #[cfg(not(feature = "libp2p-053"))]
            let opts = opts.allocate_new_port();
            let opts = opts.build();
            let id = opts.connection_id();
            let pending = PendingDial {
                target: format!("/p2p/{peer}"),
                origin: DialOrigin::Mdns,
                started: Instant::now(),
                attempts: 1,
            };
            match self.swarm.dial(opts) {
                Ok(()) => {
                    self.dials.insert(id, pending);
                }
                Err(e) => self.dial_done(pending, "failed", e.to_string()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(seed: &str) -> PeerId {
        crate::identity::from_seed(seed).public().to_peer_id()
    }

    fn addr(text: &str) -> Multiaddr {
        text.parse().expect("a multiaddr")
    }

    #[test]
    fn the_last_peer_of_an_address() {
        let (relay, target) = (peer("relay"), peer("target"));
        assert_eq!(last_peer(&addr("/ip4/10.0.0.1/tcp/4001")), None);
        assert_eq!(
            last_peer(&addr(&format!("/ip4/10.0.0.1/tcp/4001/p2p/{target}"))),
            Some(target)
        );
        let circuit = format!("/ip4/10.0.0.1/tcp/4001/p2p/{relay}/p2p-circuit/p2p/{target}");
        assert_eq!(last_peer(&addr(&circuit)), Some(target));
        let reservation = format!("/ip4/10.0.0.1/tcp/4001/p2p/{relay}/p2p-circuit");
        assert_eq!(last_peer(&addr(&reservation)), Some(relay));
    }

    #[test]
    fn a_learnt_peer_id_wins_over_the_address() {
        let (named, learnt) = (peer("named"), peer("learnt"));
        let with_id = addr(&format!("/ip4/10.0.0.1/tcp/4001/p2p/{named}"));
        let without = addr("/ip4/10.0.0.1/tcp/4001");
        assert_eq!(target_peer(None, &with_id), Some(named));
        assert_eq!(target_peer(Some(learnt), &with_id), Some(learnt));
        assert_eq!(target_peer(None, &without), None);
        assert_eq!(target_peer(Some(learnt), &without), Some(learnt));
    }

    #[test]
    fn failed_dials_retry_until_the_timeout_except_mdns() {
        let timeout = Duration::from_secs(30);
        let early = Duration::from_secs(1);
        let late = Duration::from_secs(31);
        for origin in [DialOrigin::Persistent(0), DialOrigin::Command(Value::Null)] {
            assert!(retries(&origin, early, timeout));
            assert!(retries(&origin, timeout, timeout));
            assert!(!retries(&origin, late, timeout));
        }
        assert!(!retries(&DialOrigin::Mdns, early, timeout));
        // --dial-timeout 0: one attempt (unless it fails at once).
        assert!(!retries(&DialOrigin::Persistent(0), early, Duration::ZERO));
    }

    #[test]
    fn a_lost_peer_names_its_targets() {
        let (a, b) = (peer("a"), peer("b"));
        let targets = vec![
            addr(&format!("/ip4/10.0.0.1/tcp/1/p2p/{a}")),
            addr("/ip4/10.0.0.2/tcp/1"),
            addr(&format!("/dns4/a.example/tcp/1/p2p/{a}")),
            addr("/ip4/10.0.0.3/tcp/1"),
        ];
        let mut learnt = HashMap::new();
        assert_eq!(targets_of(&targets, &learnt, a), vec![0, 2]);
        assert_eq!(targets_of(&targets, &learnt, b), Vec::<usize>::new());
        learnt.insert(1, b);
        learnt.insert(2, b);
        assert_eq!(targets_of(&targets, &learnt, a), vec![0]);
        assert_eq!(targets_of(&targets, &learnt, b), vec![1, 2]);
    }

    #[test]
    fn mdns_finds_are_grouped_by_peer_without_ourselves() {
        let (me, a, b) = (peer("me"), peer("a"), peer("b"));
        let found = vec![
            (a, addr("/ip4/10.0.0.1/tcp/1")),
            (me, addr("/ip4/10.0.0.9/tcp/1")),
            (b, addr("/ip4/10.0.0.2/tcp/1")),
            (a, addr("/ip4/10.0.0.1/udp/1/quic-v1")),
        ];
        let grouped = by_peer(found, me);
        assert_eq!(grouped.len(), 2);
        assert_eq!(
            grouped[&a],
            vec![
                addr("/ip4/10.0.0.1/tcp/1"),
                addr("/ip4/10.0.0.1/udp/1/quic-v1")
            ]
        );
        assert_eq!(grouped[&b], vec![addr("/ip4/10.0.0.2/tcp/1")]);
    }
}
