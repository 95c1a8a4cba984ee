//! Publishing: publish plans (a task that sends the event loop one `Input::Publish` at
//! each offset), `stop-traffic`, and the publishing itself (`message_published`). The
//! schedule, texts, padding and ids are the contract kit's (`p2plab_contract::messages`).

use libp2p::gossipsub;
use serde_json::Value;
use tokio::task::AbortHandle;

use super::{Input, Node};
use crate::control::Publish;
use crate::events::Event;
use p2plab_contract::messages::{
    at_offsets, event_msg_id, message_text, payload, schedule, Schedule,
};

/// A running publish plan.
pub(super) struct Plan {
    pub(super) flow: String,
    /// The publish command's args, echoed when the plan ends.
    pub(super) args: Value,
    pub(super) abort: AbortHandle,
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
            at_offsets(&offsets, |i| {
                let _ = inputs.send(Input::Publish {
                    text: message_text(&name, first + i as u64 + 1),
                    size,
                    topic: t.clone(),
                    flow: f.clone(),
                });
            })
            .await;
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
            msg_id: event_msg_id(&origin, seq),
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
