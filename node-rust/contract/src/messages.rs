//! What every node must compute alike about chat messages, or the lab's analysis and
//! the nodes themselves disagree: when a `publish` command's messages go out, what they
//! say, how they are padded, and the two message ids (the gossipsub id on the wire, the
//! `origin/seq` id in events).

use crate::config::MsgIdFn;
use crate::control::Publish;
use sha2::{Digest, Sha256};
use std::time::Duration;

/// What a publish command asks for, checked.
#[derive(Debug, PartialEq)]
pub struct Schedule {
    /// Seconds from receipt, one per message.
    pub offsets: Vec<f64>,
    pub size: usize,
    pub topic: Option<String>,
    pub flow: Option<String>,
}

/// Check a publish command: the given offsets (a non-empty list), else `count` messages
/// `1/rate` seconds apart. The lab computes the offsets from its seed, so the schedule
/// is the same on every backend. `Err` is the command's reason, as the lab expects it.
pub fn schedule(publish: &Publish) -> Result<Schedule, String> {
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

/// Call `send(i)` for each offset `i`, at that many seconds after the call (a negative
/// offset: at once): how a publish plan's task paces its messages.
pub async fn at_offsets(offsets: &[f64], mut send: impl FnMut(usize)) {
    let start = tokio::time::Instant::now();
    for (i, offset) in offsets.iter().enumerate() {
        tokio::time::sleep_until(start + Duration::from_secs_f64(offset.max(0.0))).await;
        send(i);
    }
}

/// The text of a node's `n`th published message (counted from 1 over all its plans).
pub fn message_text(name: &str, n: u64) -> String {
    format!("{name} message {n}")
}

/// A chat payload: the text, padded with spaces to `size` bytes (never cut).
pub fn payload(text: &str, size: usize) -> Vec<u8> {
    let mut data = text.as_bytes().to_vec();
    if data.len() < size {
        data.resize(size, b' ');
    }
    data
}

/// The network-wide message id as events name it: `origin/seq` (`origin/None` without
/// a sequence number).
pub fn event_msg_id(origin: &str, seq: Option<u64>) -> String {
    format!(
        "{origin}/{}",
        seq.map(|s| s.to_string()).unwrap_or_else(|| "None".into())
    )
}

/// The gossipsub message id, the same on every node of a network: the origin's peer id
/// bytes then the 8-byte big-endian sequence number (go-libp2p's and py-libp2p's
/// default), or SHA-256 of the payload. Wrap it in your libp2p's `MessageId`.
pub fn gossip_message_id(
    kind: MsgIdFn,
    source: Option<&[u8]>,
    seq: Option<u64>,
    data: &[u8],
) -> Vec<u8> {
    match kind {
        MsgIdFn::OriginSeq => {
            let mut id = source.map(<[u8]>::to_vec).unwrap_or_default();
            id.extend_from_slice(&seq.unwrap_or(0).to_be_bytes());
            id
        }
        MsgIdFn::Content => Sha256::digest(data).to_vec(),
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
    fn bad_fields_fail_in_order_with_the_labs_reasons() {
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

    #[tokio::test]
    async fn at_offsets_paces_in_order_and_sends_late_ones_at_once() {
        let start = std::time::Instant::now();
        let mut sent = Vec::new();
        at_offsets(&[0.0, -1.0, 0.5], |i| sent.push((i, start.elapsed()))).await;
        assert_eq!(
            sent.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
            vec![0, 1, 2]
        );
        assert!(
            sent[1].1 < Duration::from_millis(500),
            "a negative offset waited: {sent:?}"
        );
        assert!(
            sent[2].1 >= Duration::from_millis(500),
            "sent early: {sent:?}"
        );
    }

    #[test]
    fn payloads_are_padded_never_cut() {
        assert_eq!(payload("hi", 0), b"hi".to_vec());
        assert_eq!(payload("hi", 5), b"hi   ".to_vec());
        assert_eq!(payload("hello", 3), b"hello".to_vec());
    }

    #[test]
    fn message_texts_and_event_ids() {
        assert_eq!(message_text("a", 1), "a message 1");
        assert_eq!(event_msg_id("12D3KooW", Some(17)), "12D3KooW/17");
        assert_eq!(event_msg_id("12D3KooW", None), "12D3KooW/None");
    }

    #[test]
    fn gossip_ids_origin_seq_and_content() {
        let id = gossip_message_id(MsgIdFn::OriginSeq, Some(&[1, 2]), Some(258), b"x");
        assert_eq!(id, vec![1, 2, 0, 0, 0, 0, 0, 0, 1, 2]);
        // No source and no seq: an empty origin, then seq 0.
        let id = gossip_message_id(MsgIdFn::OriginSeq, None, None, b"x");
        assert_eq!(id, vec![0; 8]);
        // Content ids ignore origin and seq: SHA-256 of "abc".
        let id = gossip_message_id(MsgIdFn::Content, Some(&[9]), Some(1), b"abc");
        assert_eq!(
            hex::encode(id),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
