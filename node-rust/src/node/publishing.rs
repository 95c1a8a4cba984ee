//! Publishing: publish plans (a task that sends the event loop one `Input::Publish` at
//! each offset), `stop-traffic`, and the publishing itself (`message_published`).

use std::time::Duration;

use libp2p::gossipsub;
use serde_json::Value;
use tokio::task::AbortHandle;

use super::{Input, Node};
use crate::control::Publish;
use crate::events::Event;

/// A running publish plan.
pub(super) struct Plan {
    pub(super) flow: String,
    /// The publish command's args, echoed when the plan ends.
    pub(super) args: Value,
    pub(super) abort: AbortHandle,
}

/// What a publish command asks for, checked.
#[derive(Debug, PartialEq)]
struct Schedule {
    /// Seconds from receipt, one per message.
    offsets: Vec<f64>,
    size: usize,
    topic: Option<String>,
    flow: Option<String>,
}

/// Check a publish command: the given offsets (a non-empty list), else `count` messages
/// `1/rate` seconds apart. The lab computes the offsets from its seed, so the schedule
/// is the same on every backend.
fn schedule(publish: &Publish) -> Result<Schedule, String> {
    let count = publish.count.ok_or("count must be a whole number")?;
    let rate = publish
        .rate
        .filter(|r| *r > 0.0)
        .ok_or("rate must be a positive number")?;
    let size = publish.size.ok_or("size must be a whole number")? as usize;
    let offsets: Vec<f64> = match &publish.offsets {
        Some(list) if !list.is_empty() => list
            .iter()
            .map(|v| v.ok_or("offsets must be numbers"))
            .collect::<Result<_, _>>()?,
        _ => (0..count).map(|i| i as f64 / rate).collect(),
    };
    Ok(Schedule {
        offsets,
        size,
        topic: publish.topic.clone(),
        flow: publish.flow.clone(),
    })
}

/// The text of a plan's `n`th message of this node (counted from 1 over all messages).
fn message_text(name: &str, n: u64) -> String {
    format!("{name} message {n}")
}

/// A chat payload: the text, padded with spaces to `size` bytes.
fn payload(text: &str, size: usize) -> Vec<u8> {
    let mut data = text.as_bytes().to_vec();
    if data.len() < size {
        data.resize(size, b' ');
    }
    data
}

/// The network-wide message id as events name it: origin/seq (`None` without a seq).
pub(super) fn msg_id(origin: &str, seq: Option<u64>) -> String {
    format!(
        "{origin}/{}",
        seq.map(|s| s.to_string()).unwrap_or_else(|| "None".into())
    )
}

/// The plans a `stop-traffic` of `flow` ends (`all`: every one), in start order.
fn plans_of_flow<'a>(plans: impl Iterator<Item = (&'a u64, &'a String)>, flow: &str) -> Vec<u64> {
    let mut keys: Vec<u64> = plans
        .filter(|(_, f)| flow == "all" || f.as_str() == flow)
        .map(|(k, _)| *k)
        .collect();
    keys.sort_unstable();
    keys
}

impl Node {
    /// Start a publish plan; its `command` event comes when it ends or is stopped.
    pub(super) fn start_plan(&mut self, publish: &Publish, args: &Value) -> Result<(), String> {
        if !self.swarm.behaviour().gossipsub.is_enabled() {
            return Err("a relay does not publish".into());
        }
        let Schedule {
            offsets,
            size,
            topic,
            flow,
        } = schedule(publish)?;
        let plan = self.next_plan;
        self.next_plan += 1;
        let inputs = self.inputs.clone();
        let (t, f) = (topic, flow.clone());
        let name = self.name.clone();
        let first = self.sent;
        let task = tokio::spawn(async move {
            let start = tokio::time::Instant::now();
            for (i, offset) in offsets.into_iter().enumerate() {
                tokio::time::sleep_until(start + Duration::from_secs_f64(offset.max(0.0))).await;
                let text = message_text(&name, first + i as u64 + 1);
                let _ = inputs.send(Input::Publish {
                    text,
                    size,
                    topic: t.clone(),
                    flow: f.clone(),
                });
            }
            let _ = inputs.send(Input::PlanDone { plan });
        });
        self.plans.insert(
            plan,
            Plan {
                flow: flow.unwrap_or_default(),
                args: args.clone(),
                abort: task.abort_handle(),
            },
        );
        Ok(())
    }

    /// A plan sent its last message: its publish command is done.
    pub(super) fn plan_done(&mut self, plan: u64) {
        if let Some(plan) = self.plans.remove(&plan) {
            self.command_result("publish", Ok(()), &plan.args);
        }
    }

    /// End the plans of `flow` (`all`: every plan): each one's publish command is done.
    pub(super) fn stop_plans(&mut self, flow: &str) {
        let stopped = plans_of_flow(self.plans.iter().map(|(k, p)| (k, &p.flow)), flow);
        for key in stopped {
            let plan = self.plans.remove(&key).expect("listed");
            plan.abort.abort();
            self.command_result("publish", Ok(()), &plan.args);
        }
    }

    /// Publish one message (on the first topic unless given) and write its event.
    pub(super) fn publish(
        &mut self,
        text: &str,
        size: usize,
        topic: Option<String>,
        flow: Option<String>,
    ) {
        let topic = topic.unwrap_or_else(|| self.topics[0].clone());
        let data = payload(text, size);
        let size = data.len();
        self.sent += 1;
        let Some(g) = self.swarm.behaviour_mut().gossipsub.as_mut() else {
            return;
        };
        let result = g.publish(gossipsub::IdentTopic::new(topic.clone()), data);
        let seq = self.last_own.lock().expect("not poisoned").take();
        let origin = self.local.to_base58();
        self.emit(Event::MessagePublished {
            msg_id: msg_id(&origin, seq),
            origin,
            seq,
            size,
            topic,
            flow,
            // Still a message the network should have carried: analysis counts it.
            error: result.err().map(|e| e.to_string()),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publish(count: Option<u64>, size: Option<u64>, rate: Option<f64>) -> Publish {
        Publish {
            count,
            size,
            rate,
            offsets: None,
            topic: None,
            flow: None,
        }
    }

    #[test]
    fn count_messages_at_rate() {
        let plan = schedule(&publish(Some(4), Some(300), Some(2.0))).unwrap();
        assert_eq!(plan.offsets, vec![0.0, 0.5, 1.0, 1.5]);
        assert_eq!(plan.size, 300);
        assert_eq!((plan.topic, plan.flow), (None, None));
        let plan = schedule(&publish(Some(0), Some(1), Some(1.0))).unwrap();
        assert!(plan.offsets.is_empty());
    }

    #[test]
    fn given_offsets_win_over_count_and_rate() {
        let mut p = publish(Some(100), Some(10), Some(1.0));
        p.offsets = Some(vec![Some(0.25), Some(3.0), Some(-1.0)]);
        p.topic = Some("t".into());
        p.flow = Some("f".into());
        let plan = schedule(&p).unwrap();
        assert_eq!(plan.offsets, vec![0.25, 3.0, -1.0]);
        assert_eq!(plan.topic.as_deref(), Some("t"));
        assert_eq!(plan.flow.as_deref(), Some("f"));
        // An empty list (or none at all) means count at rate.
        p.offsets = Some(vec![]);
        assert_eq!(schedule(&p).unwrap().offsets.len(), 100);
    }

    #[test]
    fn bad_fields_fail_in_order_with_todays_reasons() {
        let reason = |p: Publish| schedule(&p).unwrap_err();
        assert_eq!(
            reason(publish(None, None, None)),
            "count must be a whole number"
        );
        assert_eq!(
            reason(publish(Some(1), None, None)),
            "rate must be a positive number"
        );
        assert_eq!(
            reason(publish(Some(1), None, Some(0.0))),
            "rate must be a positive number"
        );
        assert_eq!(
            reason(publish(Some(1), None, Some(-2.0))),
            "rate must be a positive number"
        );
        assert_eq!(
            reason(publish(Some(1), None, Some(1.0))),
            "size must be a whole number"
        );
        let mut p = publish(Some(1), Some(1), Some(1.0));
        p.offsets = Some(vec![Some(1.0), None]);
        assert_eq!(reason(p), "offsets must be numbers");
    }

    #[test]
    fn from_a_control_line() {
        let request = crate::control::parse(
            r#"{"cmd":"publish","count":20,"size":300,"rate":40,"flow":"f"}"#,
        )
        .unwrap();
        let crate::control::Command::Publish(p) = request.command else {
            panic!("not a publish");
        };
        let plan = schedule(&p).unwrap();
        assert_eq!(plan.offsets.len(), 20);
        assert_eq!(plan.offsets[1], 1.0 / 40.0);
        assert_eq!(plan.flow.as_deref(), Some("f"));
    }

    #[test]
    fn payloads_are_padded_never_cut() {
        assert_eq!(payload("hi", 0), b"hi".to_vec());
        assert_eq!(payload("hi", 5), b"hi   ".to_vec());
        assert_eq!(payload("hello", 3), b"hello".to_vec());
    }

    #[test]
    fn message_texts_and_ids() {
        assert_eq!(message_text("a", 1), "a message 1");
        assert_eq!(msg_id("12D3KooW", Some(17)), "12D3KooW/17");
        assert_eq!(msg_id("12D3KooW", None), "12D3KooW/None");
    }

    #[test]
    fn stop_traffic_picks_plans_by_flow() {
        let flows: Vec<(u64, String)> = vec![
            (3, "f".into()),
            (1, "g".into()),
            (2, "f".into()),
            (4, String::new()),
        ];
        let pick = |flow: &str| plans_of_flow(flows.iter().map(|(k, f)| (k, f)), flow);
        assert_eq!(pick("f"), vec![2, 3]);
        assert_eq!(pick("g"), vec![1]);
        assert_eq!(pick("all"), vec![1, 2, 3, 4]);
        assert_eq!(pick("h"), Vec::<u64>::new());
        // A plan without a flow is stopped by flow "" (a stop-traffic whose flow is
        // not a string), as before.
        assert_eq!(pick(""), vec![4]);
    }
}
