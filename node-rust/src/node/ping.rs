//! Pings: every ping of rust-libp2p's schedule is a `ping` event, and a ping command
//! completes with the next `count` pings of its peer (or the first failure).

use std::time::Duration;

use libp2p::{ping, PeerId};
use serde_json::Value;

use super::Node;
use crate::events::Event;

/// A ping command waiting for pings: how many are left, and its args.
pub(super) type Waiting = (u32, Value);

/// A round-trip time in milliseconds, to a microsecond.
fn rtt_ms(rtt: Duration) -> f64 {
    (rtt.as_secs_f64() * 1_000_000.0).round() / 1000.0
}

/// Count one ping (`ok` or not) against the commands waiting for it; the args of those
/// it completes (every one, on a failure), in the order they came.
fn count_ping(waiting: &mut Vec<Waiting>, ok: bool) -> Vec<Value> {
    let mut finished = Vec::new();
    for (left, args) in waiting.iter_mut() {
        *left -= 1;
        if *left == 0 || !ok {
            finished.push(args.clone());
        }
    }
    waiting.retain(|(left, _)| *left > 0 && ok);
    finished
}

impl Node {
    pub(super) fn on_ping(&mut self, peer: PeerId, result: Result<Duration, ping::Failure>) {
        let (event, ok) = match result {
            Ok(rtt) => (
                Event::Ping {
                    peer: peer.to_base58(),
                    rtt_ms: Some(rtt_ms(rtt)),
                    outcome: "ok",
                    reason: String::new(),
                },
                true,
            ),
            Err(e) => (
                Event::Ping {
                    peer: peer.to_base58(),
                    rtt_ms: None,
                    outcome: "failed",
                    reason: e.to_string(),
                },
                false,
            ),
        };
        self.emit(event);
        let finished = match self.pings.get_mut(&peer) {
            Some(waiting) => count_ping(waiting, ok),
            None => Vec::new(),
        };
        for args in finished {
            let result = if ok {
                Ok(())
            } else {
                Err("ping failed".to_string())
            };
            self.command_result("ping", result, &args);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trips_to_a_microsecond() {
        assert_eq!(rtt_ms(Duration::from_nanos(1_234_567)), 1.235);
        assert_eq!(rtt_ms(Duration::from_micros(250)), 0.25);
        assert_eq!(rtt_ms(Duration::from_secs(2)), 2000.0);
    }

    #[test]
    fn commands_complete_after_their_count() {
        let (one, three) = (json!({"n": 1}), json!({"n": 3}));
        let mut waiting = vec![(1, one.clone()), (3, three.clone())];
        assert_eq!(count_ping(&mut waiting, true), vec![one]);
        assert_eq!(waiting, vec![(2, three.clone())]);
        assert_eq!(count_ping(&mut waiting, true), Vec::<Value>::new());
        assert_eq!(count_ping(&mut waiting, true), vec![three]);
        assert!(waiting.is_empty());
        assert_eq!(count_ping(&mut waiting, true), Vec::<Value>::new());
    }

    #[test]
    fn a_failed_ping_completes_every_waiting_command() {
        let (a, b) = (json!("a"), json!("b"));
        let mut waiting = vec![(2, a.clone()), (5, b.clone())];
        assert_eq!(count_ping(&mut waiting, false), vec![a, b]);
        assert!(waiting.is_empty());
    }
}
