//! Connections: `connection_opened` and `connection_closed`, with how each is carried.

use std::time::Instant;

use libp2p::{core::ConnectedPoint, multiaddr::Protocol, swarm::ConnectionId, Multiaddr, PeerId};

use super::Node;
use crate::events::{Connection, Event};

pub(super) fn is_circuit(addr: &Multiaddr) -> bool {
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

fn direction(endpoint: &ConnectedPoint) -> &'static str {
    if endpoint.is_dialer() {
        "outbound"
    } else {
        "inbound"
    }
}

/// The fields of a connection event.
fn describe(peer: PeerId, endpoint: &ConnectedPoint) -> Connection {
    let (kind, transport) = kind_of(endpoint);
    Connection {
        peer: peer.to_base58(),
        remote_addr: endpoint.get_remote_address().to_string(),
        kind,
        transport,
        direction: direction(endpoint),
    }
}

impl Node {
    /// A connection opened (`opened`) or closed. An opened one is remembered for DCUtR
    /// (its transport; whether a relayed one is inbound) and completes a waiting punch.
    pub(super) fn connection_event(
        &mut self,
        opened: bool,
        peer: PeerId,
        id: ConnectionId,
        endpoint: &ConnectedPoint,
    ) {
        let connection = describe(peer, endpoint);
        if !opened {
            self.emit(Event::ConnectionClosed(connection));
            return;
        }
        self.transports.insert(id, connection.transport);
        if connection.kind == "relayed" {
            self.relayed
                .insert(peer, (!endpoint.is_dialer(), Instant::now()));
        }
        self.punch_connected(id, connection.transport);
        self.emit(Event::ConnectionOpened(connection));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(not(feature = "libp2p-053"))]
    use libp2p::core::transport::PortUse;
    use libp2p::core::Endpoint;

    fn addr(text: &str) -> Multiaddr {
        text.parse().expect("a multiaddr")
    }

    fn dialer(address: &str) -> ConnectedPoint {
        dialer_as(address, Endpoint::Dialer)
    }

    /// A dial's endpoint; 0.53 has no per-dial port use to record.
    fn dialer_as(address: &str, role_override: Endpoint) -> ConnectedPoint {
        ConnectedPoint::Dialer {
            address: addr(address),
            role_override,
            #[cfg(not(feature = "libp2p-053"))]
            port_use: PortUse::Reuse,
        }
    }

    fn listener(local: &str, remote: &str) -> ConnectedPoint {
        ConnectedPoint::Listener {
            local_addr: addr(local),
            send_back_addr: addr(remote),
        }
    }

    fn peer(seed: &str) -> PeerId {
        crate::identity::from_seed(seed).public().to_peer_id()
    }

    #[test]
    fn direct_connections_by_transport() {
        let tcp = dialer("/ip4/127.0.0.1/tcp/4001");
        assert_eq!(kind_of(&tcp), ("direct", "tcp"));
        assert_eq!(direction(&tcp), "outbound");
        let quic = listener(
            "/ip4/0.0.0.0/udp/4001/quic-v1",
            "/ip4/10.0.0.2/udp/5/quic-v1",
        );
        assert_eq!(kind_of(&quic), ("direct", "quic"));
        assert_eq!(direction(&quic), "inbound");
        // A hole punch's dial that acts as listener is still our outbound connection.
        let punched = dialer_as("/ip4/10.0.0.2/udp/5/quic-v1", Endpoint::Listener);
        assert_eq!(kind_of(&punched), ("direct", "quic"));
        assert_eq!(direction(&punched), "outbound");
    }

    #[test]
    fn relayed_connections_either_way() {
        let (relay, target) = (peer("relay"), peer("target"));
        let out = dialer(&format!(
            "/ip4/10.0.0.1/tcp/4001/p2p/{relay}/p2p-circuit/p2p/{target}"
        ));
        assert_eq!(kind_of(&out), ("relayed", "circuit"));
        // Inbound: the circuit shows only in the local (listen) address.
        let inbound = listener(
            &format!("/ip4/10.0.0.1/tcp/4001/p2p/{relay}/p2p-circuit"),
            &format!("/p2p/{target}"),
        );
        assert_eq!(kind_of(&inbound), ("relayed", "circuit"));
        assert_eq!(direction(&inbound), "inbound");
    }

    #[test]
    fn the_event_fields() {
        let p = peer("p");
        let connection = describe(p, &dialer("/ip4/127.0.0.1/tcp/4001"));
        assert_eq!(
            connection,
            Connection {
                peer: p.to_base58(),
                remote_addr: "/ip4/127.0.0.1/tcp/4001".into(),
                kind: "direct",
                transport: "tcp",
                direction: "outbound",
            }
        );
    }
}
