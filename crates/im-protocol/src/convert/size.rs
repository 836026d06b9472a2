//! Exact encoded sizes of what sync replies and BATCH_MSG frames are made
//! of, so the service can fill a frame up to a byte budget (issue 18,
//! item 8: the SDK treats a packet body over 1 MiB as fatal,
//! `IMPacketCodec.swift:44` @07bf3fe).
//!
//! Every length here is what [`super::encode_reply`] and [`encode_batch`]
//! write for the same values (the same conversion functions build the
//! prost messages; `encoded_len` is prost's), not an estimate. The tests
//! check the sums against real encodings.

use bytes::BytesMut;
use im_core::Generation;
use im_core::command::{ConversationBatch, Reply, cmd};
use im_core::model::{MessageView, StoredMessage};
use prost::Message;
use prost::encoding::encoded_len_varint;

use super::{put, v1, v2};

/// The most bytes a transport adds around a body of up to 2^28 bytes: the
/// 16-byte TCP header, or the `WebSocketMessage` envelope (command and
/// sequence varints, the body's key and length prefix; no timestamp is
/// sent), whichever is larger.
pub const FRAME_OVERHEAD_MAX: usize = 16;

/// The frame a message is an element of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// `ConversationMessages.messages` of a v2 BATCH_SYNC reply.
    BatchSync,
    /// `SyncRangeResponse.messages` (v2).
    SyncRange,
    /// `SyncResponse.messages` (v1 SYNC_RSP).
    SyncInbox,
    /// `BatchMessages.messages` (BATCH_MSG 204).
    BatchMsg,
}

/// Bytes of a length-delimited field with a one-byte key and a body of `len`.
fn field(len: usize) -> usize {
    1 + encoded_len_varint(len as u64) + len
}

/// The bytes `m` adds to a body of `slot` in `generation` as `viewer`
/// sees it (`is_read` as the reply carries it): its key, length prefix and
/// message.
pub fn message_len(
    generation: Generation,
    slot: Slot,
    m: &StoredMessage,
    is_read: bool,
    viewer: &str,
) -> usize {
    match generation {
        Generation::V2 => {
            let info = v2::message_info(m, is_read).encoded_len();
            match slot {
                Slot::BatchMsg => field(field(info)),
                Slot::BatchSync | Slot::SyncRange | Slot::SyncInbox => field(info),
            }
        }
        Generation::V1 => field(v1::push_message(m, viewer).encoded_len()),
    }
}

/// The bytes one BATCH_SYNC conversation entry adds to the reply when its
/// messages (the elements of `c.messages` are ignored) take `messages_len`
/// bytes ([`message_len`] with [`Slot::BatchSync`], summed).
pub fn conversation_len(c: &ConversationBatch, messages_len: usize) -> usize {
    let head = v2::conversation_messages(&ConversationBatch {
        conversation_id: c.conversation_id.clone(),
        messages: Vec::new(),
        max_seq: c.max_seq,
        synced_seq: c.synced_seq,
        has_more: c.has_more,
    })
    .encoded_len();
    field(head + messages_len)
}

/// The encoded body length of `reply` for `viewer` (used on replies without
/// messages, to size their fixed fields).
pub fn reply_len(generation: Generation, reply: &Reply, viewer: &str) -> usize {
    let mut b = BytesMut::new();
    super::encode_reply(generation, reply, viewer, &mut b);
    b.len()
}

/// Appends the body of a BATCH_MSG (204) carrying `messages` as `viewer`
/// sees them and returns its command. Each element is the generation's
/// `PushMessage`, as PUSH_MSG would carry it (v2 with `is_read` of the view).
pub fn encode_batch(
    generation: Generation,
    messages: &[MessageView],
    viewer: &str,
    dst: &mut BytesMut,
) -> i32 {
    match generation {
        Generation::V2 => put(
            &crate::pb::v2::BatchMessages {
                messages: messages
                    .iter()
                    .map(|v| crate::pb::v2::PushMessage {
                        message: Some(v2::message_info(&v.message, v.is_read)),
                    })
                    .collect(),
            },
            dst,
        ),
        Generation::V1 => put(
            &crate::pb::v1::BatchMessages {
                messages: messages
                    .iter()
                    .map(|v| v1::push_message(&v.message, viewer))
                    .collect(),
            },
            dst,
        ),
    }
    cmd::BATCH_MSG
}
