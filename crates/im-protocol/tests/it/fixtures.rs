//! Shared builders.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use im_core::command::{Event, Reply, Request};
use im_core::model::{MessageView, Revocation, StoredMessage};
use im_core::{ConversationType, Generation};
use im_protocol::{
    ServerFrame, decode_request, decode_server_frame, encode_event, encode_reply, encode_request,
};

pub const GENS: [Generation; 2] = [Generation::V1, Generation::V2];

/// A 1:1 message from alice to bob.
pub fn single(seq: i64) -> StoredMessage {
    StoredMessage {
        server_msg_id: format!("srv{seq}"),
        client_msg_id: format!("cli{seq}"),
        conversation_id: "single_alice_bob".into(),
        conversation_type: ConversationType::Single,
        sender_id: "alice".into(),
        receiver_id: "bob".into(),
        group_id: String::new(),
        message_type: 1,
        content: Bytes::from(format!("hello {seq}")),
        send_time: 1_732_000_000_000 + seq,
        server_time: 1_732_000_000_500 + seq,
        seq,
        extra: String::new(),
        revoked: None,
    }
}

/// A group message from carol in group g1, with a JSON `extra`.
pub fn group(seq: i64) -> StoredMessage {
    StoredMessage {
        server_msg_id: format!("gsrv{seq}"),
        client_msg_id: format!("gcli{seq}"),
        conversation_id: "group_g1".into(),
        conversation_type: ConversationType::Group,
        sender_id: "carol".into(),
        receiver_id: String::new(),
        group_id: "g1".into(),
        message_type: 2,
        content: Bytes::from_static(br#"{"url":"http://x/y.png","width":10}"#),
        send_time: 1_000 + seq,
        server_time: 2_000 + seq,
        seq,
        extra: r#"{"k":"v","z":"1"}"#.into(),
        revoked: None,
    }
}

/// A recalled message (only representable in v2).
pub fn revoked(seq: i64) -> StoredMessage {
    StoredMessage {
        revoked: Some(Revocation {
            by: "alice".into(),
            time: 99_000,
        }),
        ..single(seq)
    }
}

pub fn view(message: StoredMessage, is_read: bool) -> MessageView {
    MessageView { message, is_read }
}

pub fn event_msg(m: StoredMessage) -> Event {
    Event::Message(Arc::new(m))
}

pub fn req_roundtrip(generation: Generation, req: &Request) -> Request {
    let mut buf = BytesMut::new();
    let command = encode_request(generation, req, &mut buf);
    assert_eq!(command, req.command());
    decode_request(generation, command, &buf).unwrap()
}

pub fn reply_bytes(generation: Generation, reply: &Reply, viewer: &str) -> (i32, BytesMut) {
    let mut buf = BytesMut::new();
    let command = encode_reply(generation, reply, viewer, &mut buf);
    (command, buf)
}

pub fn reply_roundtrip(generation: Generation, reply: &Reply, viewer: &str) -> (i32, ServerFrame) {
    let (command, buf) = reply_bytes(generation, reply, viewer);
    (
        command,
        decode_server_frame(generation, command, &buf).unwrap(),
    )
}

pub fn event_bytes(generation: Generation, event: &Event, viewer: &str) -> (i32, BytesMut) {
    let mut buf = BytesMut::new();
    let command = encode_event(generation, event, viewer, &mut buf);
    (command, buf)
}

pub fn event_roundtrip(generation: Generation, event: &Event, viewer: &str) -> (i32, ServerFrame) {
    let (command, buf) = event_bytes(generation, event, viewer);
    (
        command,
        decode_server_frame(generation, command, &buf).unwrap(),
    )
}
