//! `convert::size` against real encodings (issue 18, item 8): the service
//! fills sync replies and BATCH_MSG frames up to a byte budget with these
//! numbers, so they must be exact, for every generation, slot and viewer.

use bytes::{Bytes, BytesMut};
use im_core::command::{ConversationBatch, Reply, cmd};
use im_core::model::{MessageView, Revocation, StoredMessage};
use im_core::{ConversationType, ErrorCode, Generation};
use im_protocol::convert::size::{
    FRAME_OVERHEAD_MAX, Slot, conversation_len, message_len, reply_len,
};
use im_protocol::{encode_batch, encode_envelope, encode_packet, encode_reply};
use proptest::prelude::*;

fn message() -> impl Strategy<Value = (StoredMessage, bool)> {
    (
        (
            "[a-z0-9]{0,40}",
            "[a-z0-9-]{0,64}",
            "\\PC{0,90}",
            "[a-z]{0,64}",
        ),
        ("[a-z]{0,64}", "[a-z0-9]{0,20}", any::<i32>()),
        prop::collection::vec(any::<u8>(), 0..300),
        (any::<i64>(), any::<i64>(), any::<i64>()),
        (
            "\\PC{0,40}",
            prop::option::of(("[a-z]{0,10}", any::<i64>())),
        ),
        any::<bool>(),
    )
        .prop_map(
            |(
                (sid, cid, conv, sender),
                (receiver, group, ty),
                content,
                (st, sv, seq),
                (extra, rev),
                read,
            )| {
                (
                    StoredMessage {
                        server_msg_id: sid,
                        client_msg_id: cid,
                        conversation_id: conv,
                        conversation_type: if group.is_empty() {
                            ConversationType::Single
                        } else {
                            ConversationType::Group
                        },
                        sender_id: sender,
                        receiver_id: receiver,
                        group_id: group,
                        message_type: ty,
                        content: Bytes::from(content),
                        send_time: st,
                        server_time: sv,
                        seq,
                        extra,
                        revoked: rev.map(|(by, time)| Revocation { by, time }),
                    },
                    read,
                )
            },
        )
}

fn views(ms: &[(StoredMessage, bool)]) -> Vec<MessageView> {
    ms.iter()
        .map(|(m, r)| MessageView {
            message: m.clone(),
            is_read: *r,
        })
        .collect()
}

fn body(generation: Generation, reply: &Reply, viewer: &str) -> usize {
    let mut b = BytesMut::new();
    encode_reply(generation, reply, viewer, &mut b);
    b.len()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn batch_sync_replies_are_the_sum_of_their_parts(
        convs in prop::collection::vec(
            ("[a-z_0-9]{1,80}", prop::collection::vec(message(), 0..4), any::<i64>(), any::<i64>(), any::<bool>()),
            0..5,
        ),
        server_time in any::<i64>(),
        total in any::<i32>(),
    ) {
        let batches: Vec<ConversationBatch> = convs
            .iter()
            .map(|(id, ms, max, synced, more)| ConversationBatch {
                conversation_id: id.clone(),
                messages: views(ms),
                max_seq: *max,
                synced_seq: *synced,
                has_more: *more,
            })
            .collect();
        let empty = Reply::BatchSync {
            code: ErrorCode::Success,
            msg: String::new(),
            conversations: Vec::new(),
            server_time,
            total,
        };
        let mut sum = reply_len(Generation::V2, &empty, "v");
        for c in &batches {
            let msgs: usize = c
                .messages
                .iter()
                .map(|v| message_len(Generation::V2, Slot::BatchSync, &v.message, v.is_read, "v"))
                .sum();
            sum += conversation_len(c, msgs);
        }
        let full = Reply::BatchSync {
            code: ErrorCode::Success,
            msg: String::new(),
            conversations: batches,
            server_time,
            total,
        };
        prop_assert_eq!(sum, body(Generation::V2, &full, "v"));
    }

    #[test]
    fn sync_range_and_inbox_and_batch_msg_are_the_sum_of_their_parts(
        ms in prop::collection::vec(message(), 0..6),
        viewer in "[a-z]{0,64}",
        ends in (any::<i64>(), any::<i64>(), any::<bool>()),
    ) {
        let vs = views(&ms);
        let sum = |generation, slot| -> usize {
            vs.iter().map(|v| message_len(generation, slot, &v.message, v.is_read, &viewer)).sum()
        };
        let range = |messages: Vec<MessageView>| Reply::SyncRange {
            code: ErrorCode::Success,
            msg: String::new(),
            request_id: "R".repeat(36),
            conversation_id: "c".into(),
            messages,
            start_seq: ends.0,
            end_seq: ends.1,
            has_more: ends.2,
        };
        prop_assert_eq!(
            reply_len(Generation::V2, &range(Vec::new()), &viewer) + sum(Generation::V2, Slot::SyncRange),
            body(Generation::V2, &range(vs.clone()), &viewer)
        );
        let inbox = |messages: Vec<MessageView>| Reply::SyncInbox {
            code: ErrorCode::Success,
            msg: String::new(),
            messages,
            server_max_seq: ends.0,
            has_more: ends.2,
        };
        prop_assert_eq!(
            reply_len(Generation::V1, &inbox(Vec::new()), &viewer) + sum(Generation::V1, Slot::SyncInbox),
            body(Generation::V1, &inbox(vs.clone()), &viewer)
        );
        for generation in [Generation::V1, Generation::V2] {
            let mut b = BytesMut::new();
            prop_assert_eq!(encode_batch(generation, &vs, &viewer, &mut b), cmd::BATCH_MSG);
            prop_assert_eq!(sum(generation, Slot::BatchMsg), b.len());
        }
    }
}

/// The transport adds at most [`FRAME_OVERHEAD_MAX`] bytes to a body up to
/// the SDK's 1 MiB limit, on TCP and in the WebSocket envelope.
#[test]
fn frame_overhead_covers_both_transports() {
    for len in [0usize, 1, 127, 128, 16_383, 16_384, 1 << 20, (1 << 21) - 1] {
        let body = vec![7u8; len];
        for command in [cmd::SYNC_RSP, cmd::SYNC_RANGE_RSP, cmd::BATCH_MSG] {
            for seq in [0u32, 1, u32::MAX] {
                let mut tcp = BytesMut::new();
                encode_packet(u16::try_from(command).unwrap(), seq, &body, &mut tcp);
                let mut ws = BytesMut::new();
                encode_envelope(command, seq, &body, 0, &mut ws);
                assert!(tcp.len() <= len + FRAME_OVERHEAD_MAX, "tcp {len}");
                assert!(ws.len() <= len + FRAME_OVERHEAD_MAX, "ws {len} {seq}");
            }
        }
    }
}
