//! The control channel's commands: each ends with a `command` event (cmd, outcome,
//! reason, args), a line that is not a command with one for cmd "?".

use std::time::Instant;

use libp2p::PeerId;
use serde_json::Value;

use super::dialing::DialOrigin;
use super::Node;
use crate::control::{self, Command, Request};
use crate::events::Event;

/// `ok` with no reason, or `failed` with one.
fn outcome(result: Result<(), String>) -> (&'static str, String) {
    match result {
        Ok(()) => ("ok", String::new()),
        Err(reason) => ("failed", reason),
    }
}

/// How many pings a ping command waits for: `count`, at least one (1 when absent).
fn ping_count(count: Option<u64>) -> u32 {
    count.unwrap_or(1).max(1) as u32
}

impl Node {
    /// One line from the control FIFO; Some(reason) ends the node.
    pub(super) fn on_control(&mut self, line: String) -> Option<String> {
        if line.trim().is_empty() {
            return None;
        }
        match control::parse(&line) {
            Ok(request) => return self.execute(request),
            Err(reason) => self.emit(Event::Command {
                cmd: "?",
                outcome: "failed",
                reason,
                args: Value::String(line),
            }),
        }
        None
    }

    pub(super) fn command_result(
        &mut self,
        cmd: &'static str,
        result: Result<(), String>,
        args: &Value,
    ) {
        let (outcome, reason) = outcome(result);
        self.emit(Event::Command {
            cmd,
            outcome,
            reason,
            args: args.clone(),
        });
    }

    /// Run one command; Some(reason) ends the node.
    pub(super) fn execute(&mut self, request: Request) -> Option<String> {
        let Request { command, args } = request;
        let cmd = command.name();
        match command {
            Command::Quit => {
                self.command_result(cmd, Ok(()), &args);
                return Some("quit".into());
            }
            Command::Publish(publish) => {
                // Its `command` event comes when the plan ends or is stopped.
                let result = self.start_plan(&publish, &args);
                if result.is_err() {
                    self.command_result(cmd, result, &args);
                }
            }
            Command::StopTraffic { flow } => {
                self.stop_plans(&flow);
                self.command_result(cmd, Ok(()), &args);
            }
            Command::Say { text } => {
                let result = if self.swarm.behaviour().gossipsub.is_enabled() {
                    self.publish(&text, 0, None, None);
                    Ok(())
                } else {
                    Err("a relay does not publish".to_string())
                };
                self.command_result(cmd, result, &args);
            }
            Command::Dial { addr } => match crate::config::parse_dial(&addr)
                .and_then(|text| text.parse().map_err(|e| format!("{text}: {e}")))
            {
                Ok(addr) => self.dial(addr, DialOrigin::Command(args), Instant::now(), 0),
                Err(reason) => self.command_result(cmd, Err(reason), &args),
            },
            Command::Ping { peer, count } => {
                let count = ping_count(count);
                match peer.parse::<PeerId>() {
                    Ok(peer)
                        if self.swarm.is_connected(&peer) && self.flags.ping_interval > 0.0 =>
                    {
                        // rust-libp2p pings every connection on its interval; the command
                        // completes with the next `count` pings of that peer.
                        self.pings.entry(peer).or_default().push((count, args));
                    }
                    Ok(peer) if self.swarm.is_connected(&peer) => self.command_result(
                        cmd,
                        Err("pings are off (--ping-interval 0)".into()),
                        &args,
                    ),
                    Ok(peer) => {
                        self.command_result(cmd, Err(format!("not connected to {peer}")), &args)
                    }
                    Err(e) => self.command_result(cmd, Err(format!("not a peer id: {e}")), &args),
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes() {
        assert_eq!(outcome(Ok(())), ("ok", String::new()));
        assert_eq!(outcome(Err("no".into())), ("failed", "no".to_string()));
    }

    #[test]
    fn a_ping_command_waits_for_at_least_one_ping() {
        assert_eq!(ping_count(None), 1);
        assert_eq!(ping_count(Some(0)), 1);
        assert_eq!(ping_count(Some(5)), 5);
    }

    #[test]
    fn a_bad_peer_id_is_the_ping_commands_own_failure() {
        // The control channel accepts it (peer is there); execute reports the parse error.
        let request = control::parse(r#"{"cmd":"ping","peer":"nope"}"#).unwrap();
        let Command::Ping { peer, .. } = request.command else {
            panic!("not a ping");
        };
        assert!(peer.parse::<PeerId>().is_err());
    }
}
