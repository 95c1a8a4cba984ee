//! Gossipsub as seen from here: received messages (`message_received`, and the chat
//! line on stdout) and each topic's peers and mesh (`topic_peers`, when they change).

use std::collections::HashMap;

use libp2p::{gossipsub, PeerId};

use super::{short, Node};
use crate::config::Flags;
use crate::events::Event;
use p2plab_contract::messages::event_msg_id;

/// Peers and mesh peers of one topic, sorted.
type TopicView = (Vec<String>, Vec<String>);

/// The topics whose view differs from the last one reported.
fn changed_topics(
    reported: &HashMap<String, TopicView>,
    now: Vec<(String, TopicView)>,
) -> Vec<(String, TopicView)> {
    now.into_iter()
        .filter(|(topic, view)| reported.get(topic) != Some(view))
        .collect()
}

/// Chat lines go to stdout for a person (stdin open) or when no lab drives the node.
fn shows_chat(flags: &Flags) -> bool {
    !flags.no_stdin || flags.control.is_none()
}

impl Node {
    pub(super) fn on_message(&mut self, message: gossipsub::Message, from: PeerId) {
        let Some(origin) = message.source else { return };
        if origin == self.local {
            return;
        }
        let seq = message.sequence_number;
        // Pushed by a mesh peer, or from outside the mesh (an IWANT answer, a
        // publisher's flood publish): how the message travelled.
        let via_mesh = self
            .swarm
            .behaviour()
            .gossipsub
            .as_ref()
            .map(|g| g.mesh_peers(&message.topic).any(|p| *p == from))
            .unwrap_or(false);
        let origin_text = origin.to_base58();
        self.emit(Event::MessageReceived {
            msg_id: event_msg_id(&origin_text, seq),
            origin: origin_text,
            seq,
            size: message.data.len(),
            topic: message.topic.as_str().to_string(),
            via_peer: from.to_base58(),
            via_mesh,
        });
        if shows_chat(&self.flags) {
            self.say(&format!(
                "{}: {}",
                short(&origin),
                String::from_utf8_lossy(&message.data).trim_end()
            ));
        }
    }

    /// Write `topic_peers` for each topic whose peers or mesh changed.
    pub(super) fn report_topic_peers(&mut self) {
        let Some(g) = self.swarm.behaviour().gossipsub.as_ref() else {
            return;
        };
        let mut now = Vec::new();
        for topic in &self.topics {
            let hash = gossipsub::IdentTopic::new(topic.clone()).hash();
            let mut peers: Vec<String> = g
                .all_peers()
                .filter(|(_, ts)| ts.contains(&&hash))
                .map(|(p, _)| p.to_base58())
                .collect();
            let mut mesh: Vec<String> = g.mesh_peers(&hash).map(|p| p.to_base58()).collect();
            peers.sort();
            mesh.sort();
            now.push((topic.clone(), (peers, mesh)));
        }
        for (topic, (peers, mesh)) in changed_topics(&self.topic_state, now) {
            self.emit(Event::TopicPeers {
                topic: topic.clone(),
                peers: peers.clone(),
                mesh: mesh.clone(),
            });
            self.topic_state.insert(topic, (peers, mesh));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn view(peers: &[&str], mesh: &[&str]) -> TopicView {
        (
            peers.iter().map(|s| s.to_string()).collect(),
            mesh.iter().map(|s| s.to_string()).collect(),
        )
    }

    #[test]
    fn only_changed_topics_are_reported() {
        let mut reported = HashMap::new();
        let now = vec![
            ("a".to_string(), view(&[], &[])),
            ("b".to_string(), view(&["p"], &[])),
        ];
        // Nothing reported yet: every topic, even an empty one.
        assert_eq!(changed_topics(&reported, now.clone()), now);
        reported.insert("a".to_string(), view(&[], &[]));
        reported.insert("b".to_string(), view(&["p"], &[]));
        assert!(changed_topics(&reported, now.clone()).is_empty());
        let later = vec![
            ("a".to_string(), view(&[], &[])),
            ("b".to_string(), view(&["p"], &["p"])),
        ];
        assert_eq!(
            changed_topics(&reported, later),
            vec![("b".to_string(), view(&["p"], &["p"]))]
        );
    }

    #[test]
    fn chat_lines_show_unless_only_a_lab_listens() {
        let flags = |args: &[&str]| {
            Flags::try_parse_from(std::iter::once("p2plab-node-rs").chain(args.iter().copied()))
                .expect("flags")
        };
        assert!(shows_chat(&flags(&[])));
        assert!(shows_chat(&flags(&["--control", "/tmp/c"])));
        assert!(shows_chat(&flags(&["--no-stdin"])));
        assert!(!shows_chat(&flags(&["--no-stdin", "--control", "/tmp/c"])));
    }
}
