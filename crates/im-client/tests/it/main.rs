//! im-client against fake peers: a TCP listener speaking the 16-byte header
//! and a hyper + fastwebsockets server. The fakes run in the same task as the
//! client (`tokio::join!`), so a failed assertion on either side fails the
//! test at once; no sleeps are used for synchronisation.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod tcp;
mod ws;

use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use im_core::command::{Event, Reply};
use im_core::{ConversationType, ErrorCode, Generation, StoredMessage};

/// Bound of every fake-peer read: a hang fails the test instead of blocking it.
pub const PEER_WAIT: Duration = Duration::from_secs(5);
/// How long to wait when asserting that nothing arrives.
pub const QUIET: Duration = Duration::from_millis(50);

/// A text message from `sender` to `receiver` with `seq`.
pub fn message(
    server_msg_id: &str,
    sender: &str,
    receiver: &str,
    seq: i64,
    text: &str,
) -> Arc<StoredMessage> {
    let (a, b) = if sender <= receiver {
        (sender, receiver)
    } else {
        (receiver, sender)
    };
    Arc::new(StoredMessage {
        server_msg_id: server_msg_id.to_owned(),
        client_msg_id: format!("c-{server_msg_id}"),
        conversation_id: format!("single_{a}_{b}"),
        conversation_type: ConversationType::Single,
        sender_id: sender.to_owned(),
        receiver_id: receiver.to_owned(),
        group_id: String::new(),
        message_type: 1,
        content: Bytes::copy_from_slice(text.as_bytes()),
        send_time: 1_732_000_000_000,
        server_time: 1_732_000_000_001,
        seq,
        extra: String::new(),
        revoked: None,
    })
}

/// `(server_msg_id, seq, content)` of a message event, for comparisons.
pub fn summary(e: &Event) -> (String, i64, Bytes) {
    match e {
        Event::Message(m) => (m.server_msg_id.clone(), m.seq, m.content.clone()),
        other => panic!("expected a message event, got {other:?}"),
    }
}

/// The body and command of `reply` as the server would encode it for `viewer`.
pub fn reply_body(generation: Generation, reply: &Reply, viewer: &str) -> (i32, Vec<u8>) {
    let mut dst = BytesMut::new();
    let command = im_protocol::encode_reply(generation, reply, viewer, &mut dst);
    (command, dst.to_vec())
}

/// The body and command of `event` as the server would encode it for `viewer`.
pub fn event_body(generation: Generation, event: &Event, viewer: &str) -> (i32, Vec<u8>) {
    let mut dst = BytesMut::new();
    let command = im_protocol::encode_event(generation, event, viewer, &mut dst);
    (command, dst.to_vec())
}

/// A BATCH_MSG (204) body: `BatchMessages { repeated PushMessage messages = 1 }`,
/// built from the PUSH_MSG bodies of `messages`.
pub fn batch_body(
    generation: Generation,
    messages: &[Arc<StoredMessage>],
    viewer: &str,
) -> (i32, Vec<u8>) {
    let mut dst = BytesMut::new();
    for m in messages {
        let (command, push) = event_body(generation, &Event::Message(Arc::clone(m)), viewer);
        assert_eq!(command, 202);
        dst.put_u8(0x0A); // field 1, length-delimited
        let mut len = push.len();
        while len >= 0x80 {
            dst.put_u8((len as u8 & 0x7F) | 0x80);
            len >>= 7;
        }
        dst.put_u8(len as u8);
        dst.put_slice(&push);
    }
    (204, dst.to_vec())
}

pub fn auth_ok(max_seq: i64) -> Reply {
    Reply::Auth {
        code: ErrorCode::Success,
        msg: String::new(),
        max_seq,
    }
}
