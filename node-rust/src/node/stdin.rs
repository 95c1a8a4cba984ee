//! Interactive use: a line typed on standard input is a chat line, or a slash command
//! (`/dial`, `/ping` run as the control channel's commands).

use libp2p::PeerId;
use tokio::sync::mpsc;

use super::{Input, Node};
use crate::control::{Command, Request};

const HELP: &str = "commands: /dial MULTIADDR, /ping PEER_ID, /peers, /quit";

/// One typed line (already trimmed).
#[derive(Debug, PartialEq)]
enum Typed<'a> {
    Nothing,
    Quit,
    Peers,
    Dial(&'a str),
    Ping(&'a str),
    Help,
    Chat(&'a str),
}

fn parse(line: &str) -> Typed<'_> {
    if line.is_empty() {
        return Typed::Nothing;
    }
    let Some(rest) = line.strip_prefix('/') else {
        return Typed::Chat(line);
    };
    let (word, arg) = rest.split_once(' ').unwrap_or((rest, ""));
    match word {
        "quit" => Typed::Quit,
        "peers" => Typed::Peers,
        "dial" => Typed::Dial(arg.trim()),
        "ping" => Typed::Ping(arg.trim()),
        _ => Typed::Help,
    }
}

/// Read standard input line by line into the event loop. When it closes, the node keeps
/// running as a daemon.
pub(super) fn spawn_reader(inputs: mpsc::UnboundedSender<Input>) {
    tokio::spawn(async move {
        use tokio::io::AsyncBufReadExt;
        let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let _ = inputs.send(Input::Stdin(line));
        }
    });
}

impl Node {
    /// One typed line; Some(reason) ends the node.
    pub(super) fn typed(&mut self, line: &str) -> Option<String> {
        match parse(line) {
            Typed::Nothing => {}
            Typed::Quit => return Some("quit".into()),
            Typed::Peers => {
                let peers: Vec<PeerId> = self.swarm.connected_peers().copied().collect();
                for peer in peers {
                    self.say(&format!("peer: {peer}"));
                }
            }
            Typed::Dial(addr) => {
                return self.execute(Request::new(Command::Dial { addr: addr.into() }))
            }
            Typed::Ping(peer) => {
                return self.execute(Request::new(Command::Ping {
                    peer: peer.into(),
                    count: Some(1),
                }))
            }
            Typed::Help => self.say(HELP),
            Typed::Chat(text) => {
                if !self.swarm.behaviour().gossipsub.is_enabled() {
                    self.say("a relay does not chat");
                    return None;
                }
                self.publish(text, 0, None, None);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_lines_and_slash_commands() {
        assert_eq!(parse(""), Typed::Nothing);
        assert_eq!(parse("hello there"), Typed::Chat("hello there"));
        assert_eq!(parse("a /quit"), Typed::Chat("a /quit"));
        assert_eq!(parse("/quit"), Typed::Quit);
        assert_eq!(parse("/quit now"), Typed::Quit);
        assert_eq!(parse("/peers"), Typed::Peers);
        assert_eq!(
            parse("/dial  /ip4/127.0.0.1/tcp/1 "),
            Typed::Dial("/ip4/127.0.0.1/tcp/1")
        );
        assert_eq!(parse("/dial"), Typed::Dial(""));
        assert_eq!(parse("/ping 12D3KooW"), Typed::Ping("12D3KooW"));
        assert_eq!(parse("/"), Typed::Help);
        assert_eq!(parse("/frobnicate x"), Typed::Help);
        assert_eq!(parse("/Quit"), Typed::Help);
    }
}
