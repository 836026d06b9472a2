//! Generation v1: flat `SendMessageRequest`/`PushMessage`, `extra` as a map,
//! one `message_id` per message that depends on who looks at it.
//!
//! Every function returns `None` for commands or variants that are not
//! specific to v1; the caller then handles the common ones.

use std::sync::Arc;

use bytes::BytesMut;
use im_core::ErrorCode;
use im_core::command::{Event, Reply, Request, SendRequest, cmd};
use im_core::model::{MessageView, StoredMessage};

use super::{
    ServerFrame, conversation_type, decode, extra_json_to_map, extra_map_to_json, put, v1_public_id,
};
use crate::error::DecodeError;
use crate::pb::v1 as pb;

pub(super) fn decode_request(command: i32, body: &[u8]) -> Option<Result<Request, DecodeError>> {
    let r = match command {
        cmd::SEND_MSG_REQ => decode::<pb::SendMessageRequest>(command, body).map(|m| {
            Request::Send(SendRequest {
                extra: extra_map_to_json(&m.extra),
                client_msg_id: m.client_msg_id,
                conversation_id: m.conversation_id,
                receiver_id: m.receiver_id,
                group_id: m.group_id,
                message_type: m.message_type,
                content: m.content,
                send_time: m.send_time,
            })
        }),
        cmd::MSG_ACK => decode::<pb::MessageAck>(command, body).map(|m| Request::Ack {
            message_id: m.message_id,
            seq: m.seq,
        }),
        cmd::REVOKE_MSG_REQ => {
            decode::<pb::RevokeMessageRequest>(command, body).map(|m| Request::Revoke {
                message_id: m.message_id,
                conversation_id: m.conversation_id,
            })
        }
        cmd::SYNC_REQ => decode::<pb::SyncRequest>(command, body).map(|m| Request::SyncInbox {
            min_seq: m.min_seq,
            max_seq: m.max_seq,
            limit: m.limit,
        }),
        cmd::READ_RECEIPT_REQ => {
            decode::<pb::ReadReceiptRequest>(command, body).map(|m| Request::ReadReceipt {
                message_ids: m.message_ids,
                conversation_id: m.conversation_id,
            })
        }
        _ => return None,
    };
    Some(r)
}

pub(super) fn encode_reply(reply: &Reply, viewer: &str, dst: &mut BytesMut) -> Option<i32> {
    match reply {
        // Contract §7.1: the SDK matches the response by message_id == its client_msg_id.
        Reply::Send {
            code,
            msg,
            client_msg_id,
            seq,
            server_time,
            ..
        } => {
            let m = pb::SendMessageResponse {
                error_code: code.code(),
                error_msg: msg.clone(),
                message_id: client_msg_id.clone(),
                seq: *seq,
                server_time: *server_time,
            };
            put(&m, dst);
            Some(cmd::SEND_MSG_RSP)
        }
        Reply::SyncInbox {
            code,
            msg,
            messages,
            server_max_seq,
            has_more,
        } => {
            let m = pb::SyncResponse {
                error_code: code.code(),
                error_msg: msg.clone(),
                messages: messages
                    .iter()
                    .map(|v| push_message(&v.message, viewer))
                    .collect(),
                server_max_seq: *server_max_seq,
                has_more: *has_more,
            };
            put(&m, dst);
            Some(cmd::SYNC_RSP)
        }
        _ => None,
    }
}

/// Error form of the v1-specific responses; false if `rsp` has none in v1.
pub(super) fn encode_error(rsp: i32, error_code: i32, error_msg: &str, dst: &mut BytesMut) -> bool {
    let error_msg = error_msg.to_owned();
    match rsp {
        cmd::SEND_MSG_RSP => put(
            &pb::SendMessageResponse {
                error_code,
                error_msg,
                ..Default::default()
            },
            dst,
        ),
        cmd::SYNC_RSP => put(
            &pb::SyncResponse {
                error_code,
                error_msg,
                ..Default::default()
            },
            dst,
        ),
        _ => return false,
    }
    true
}

pub(super) fn encode_event(event: &Event, viewer: &str, dst: &mut BytesMut) -> Option<i32> {
    match event {
        Event::Message(m) => {
            put(&push_message(m, viewer), dst);
            Some(cmd::PUSH_MSG)
        }
        Event::Revoked {
            server_msg_id,
            client_msg_id,
            sender_id,
            conversation_id,
            revoked_by,
            revoked_time,
        } => {
            let m = pb::RevokeMessagePush {
                message_id: v1_public_id(viewer, sender_id, client_msg_id, server_msg_id)
                    .to_owned(),
                conversation_id: conversation_id.clone(),
                revoked_by: revoked_by.clone(),
                revoked_time: *revoked_time,
            };
            put(&m, dst);
            Some(cmd::REVOKE_MSG_PUSH)
        }
        Event::ReadReceipt {
            server_msg_ids,
            client_msg_ids,
            sender_id,
            conversation_id,
            user_id,
            read_time,
        } => {
            let m = pb::ReadReceiptPush {
                message_ids: server_msg_ids
                    .iter()
                    .enumerate()
                    .map(|(i, server_msg_id)| {
                        let client_msg_id = client_msg_ids.get(i).map_or("", String::as_str);
                        v1_public_id(viewer, sender_id, client_msg_id, server_msg_id).to_owned()
                    })
                    .collect(),
                conversation_id: conversation_id.clone(),
                user_id: user_id.clone(),
                read_time: *read_time,
            };
            put(&m, dst);
            Some(cmd::READ_RECEIPT_PUSH)
        }
        _ => None,
    }
}

pub(super) fn encode_request(req: &Request, dst: &mut BytesMut) -> Option<i32> {
    match req {
        Request::Send(s) => {
            let m = pb::SendMessageRequest {
                client_msg_id: s.client_msg_id.clone(),
                conversation_id: s.conversation_id.clone(),
                sender_id: String::new(),
                receiver_id: s.receiver_id.clone(),
                group_id: s.group_id.clone(),
                message_type: s.message_type,
                content: s.content.clone(),
                send_time: s.send_time,
                extra: extra_json_to_map(&s.extra),
            };
            put(&m, dst);
        }
        Request::Ack { message_id, seq } => put(
            &pb::MessageAck {
                message_id: message_id.clone(),
                seq: *seq,
            },
            dst,
        ),
        Request::Revoke {
            message_id,
            conversation_id,
        } => {
            let m = pb::RevokeMessageRequest {
                message_id: message_id.clone(),
                conversation_id: conversation_id.clone(),
            };
            put(&m, dst);
        }
        Request::SyncInbox {
            min_seq,
            max_seq,
            limit,
        } => {
            put(
                &pb::SyncRequest {
                    min_seq: *min_seq,
                    max_seq: *max_seq,
                    limit: *limit,
                },
                dst,
            );
        }
        Request::ReadReceipt {
            message_ids,
            conversation_id,
        } => {
            let m = pb::ReadReceiptRequest {
                message_ids: message_ids.clone(),
                conversation_id: conversation_id.clone(),
            };
            put(&m, dst);
        }
        _ => return None,
    }
    Some(req.command())
}

pub(super) fn decode_server_frame(
    command: i32,
    body: &[u8],
) -> Option<Result<ServerFrame, DecodeError>> {
    let r = match command {
        cmd::SEND_MSG_RSP => decode::<pb::SendMessageResponse>(command, body).map(|m| {
            ServerFrame::Reply(Reply::Send {
                code: ErrorCode::from_code(m.error_code),
                msg: m.error_msg,
                server_msg_id: String::new(),
                client_msg_id: m.message_id,
                seq: m.seq,
                server_time: m.server_time,
            })
        }),
        cmd::PUSH_MSG => decode::<pb::PushMessage>(command, body)
            .map(|m| ServerFrame::Event(Event::Message(Arc::new(stored_message(m))))),
        cmd::BATCH_MSG => decode::<pb::BatchMessages>(command, body).map(|m| {
            ServerFrame::Batch(
                m.messages
                    .into_iter()
                    .map(|p| Event::Message(Arc::new(stored_message(p))))
                    .collect(),
            )
        }),
        cmd::REVOKE_MSG_PUSH => decode::<pb::RevokeMessagePush>(command, body).map(|m| {
            ServerFrame::Event(Event::Revoked {
                server_msg_id: m.message_id,
                client_msg_id: String::new(),
                sender_id: String::new(),
                conversation_id: m.conversation_id,
                revoked_by: m.revoked_by,
                revoked_time: m.revoked_time,
            })
        }),
        cmd::SYNC_RSP => decode::<pb::SyncResponse>(command, body).map(|m| {
            ServerFrame::Reply(Reply::SyncInbox {
                code: ErrorCode::from_code(m.error_code),
                msg: m.error_msg,
                messages: m
                    .messages
                    .into_iter()
                    .map(|p| MessageView {
                        message: stored_message(p),
                        is_read: false,
                    })
                    .collect(),
                server_max_seq: m.server_max_seq,
                has_more: m.has_more,
            })
        }),
        cmd::READ_RECEIPT_PUSH => decode::<pb::ReadReceiptPush>(command, body).map(|m| {
            ServerFrame::Event(Event::ReadReceipt {
                server_msg_ids: m.message_ids,
                client_msg_ids: Vec::new(),
                sender_id: String::new(),
                conversation_id: m.conversation_id,
                user_id: m.user_id,
                read_time: m.read_time,
            })
        }),
        _ => return None,
    };
    Some(r)
}

/// A stored message as `viewer` sees it in v1.
pub(super) fn push_message(m: &StoredMessage, viewer: &str) -> pb::PushMessage {
    pb::PushMessage {
        message_id: v1_public_id(viewer, &m.sender_id, &m.client_msg_id, &m.server_msg_id)
            .to_owned(),
        client_msg_id: m.client_msg_id.clone(),
        conversation_id: m.conversation_id.clone(),
        sender_id: m.sender_id.clone(),
        receiver_id: m.receiver_id.clone(),
        group_id: m.group_id.clone(),
        message_type: m.message_type,
        content: m.content.clone(),
        send_time: m.send_time,
        server_time: m.server_time,
        seq: m.seq,
        extra: extra_json_to_map(&m.extra),
    }
}

/// A v1 push as the model (client side): `message_id` becomes the server id.
fn stored_message(p: pb::PushMessage) -> StoredMessage {
    StoredMessage {
        conversation_type: conversation_type(0, &p.group_id),
        extra: extra_map_to_json(&p.extra),
        server_msg_id: p.message_id,
        client_msg_id: p.client_msg_id,
        conversation_id: p.conversation_id,
        sender_id: p.sender_id,
        receiver_id: p.receiver_id,
        group_id: p.group_id,
        message_type: p.message_type,
        content: p.content,
        send_time: p.send_time,
        server_time: p.server_time,
        seq: p.seq,
        revoked: None,
    }
}
