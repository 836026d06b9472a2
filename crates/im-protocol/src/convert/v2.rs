//! Generation v2: `MessageInfo` wrapper, `server_msg_id` everywhere, batch
//! sync (300/301) and range sync (303/304).
//!
//! Every function returns `None` for commands or variants that are not
//! specific to v2; the caller then handles the common ones.

use std::sync::Arc;

use bytes::BytesMut;
use im_core::ErrorCode;
use im_core::command::{ConversationBatch, Event, Reply, Request, SendRequest, SyncState, cmd};
use im_core::model::{MessageView, Revocation, StoredMessage};

use super::{ServerFrame, conversation_type, decode, missing, put};
use crate::error::DecodeError;
use crate::pb::v2 as pb;

/// `MessageInfo.status` of every message we send: 1 = sent. Never 4, which
/// the SDK reads as "failed"; recalls use `is_revoked`.
const STATUS_SENT: i32 = 1;

pub(super) fn decode_request(command: i32, body: &[u8]) -> Option<Result<Request, DecodeError>> {
    let r = match command {
        cmd::SEND_MSG_REQ => decode::<pb::SendMessageRequest>(command, body).and_then(|m| {
            let info = m.message.ok_or_else(|| missing(command, "message"))?;
            Ok(Request::Send(SendRequest {
                client_msg_id: info.client_msg_id,
                conversation_id: info.conversation_id,
                receiver_id: info.receiver_id,
                group_id: info.group_id,
                message_type: info.message_type,
                content: info.content,
                send_time: info.send_time,
                extra: info.extra,
            }))
        }),
        cmd::MSG_ACK => decode::<pb::MessageAck>(command, body).map(|m| Request::Ack {
            message_id: m.server_msg_id,
            seq: m.seq,
        }),
        cmd::REVOKE_MSG_REQ => {
            decode::<pb::RevokeMessageRequest>(command, body).map(|m| Request::Revoke {
                message_id: m.server_msg_id,
                conversation_id: m.conversation_id,
            })
        }
        cmd::SYNC_REQ => {
            decode::<pb::BatchSyncRequest>(command, body).map(|m| Request::BatchSync {
                states: m
                    .conversation_states
                    .into_iter()
                    .map(|s| SyncState {
                        conversation_id: s.conversation_id,
                        last_seq: s.last_seq,
                    })
                    .collect(),
                max_per_conversation: m.max_count_per_conversation,
            })
        }
        cmd::SYNC_RANGE_REQ => {
            decode::<pb::SyncRangeRequest>(command, body).map(|m| Request::SyncRange {
                request_id: m.request_id,
                conversation_id: m.conversation_id,
                start_seq: m.start_seq,
                end_seq: m.end_seq,
                count: m.count,
            })
        }
        cmd::READ_RECEIPT_REQ => {
            decode::<pb::ReadReceiptRequest>(command, body).map(|m| Request::ReadReceipt {
                message_ids: m.server_msg_ids,
                conversation_id: m.conversation_id,
            })
        }
        _ => return None,
    };
    Some(r)
}

pub(super) fn encode_reply(reply: &Reply, dst: &mut BytesMut) -> Option<i32> {
    match reply {
        // Contract §7.2: client_msg_id is always echoed.
        Reply::Send {
            code,
            msg,
            server_msg_id,
            client_msg_id,
            seq,
            server_time,
        } => {
            let m = pb::SendMessageResponse {
                error_code: code.code(),
                error_msg: msg.clone(),
                server_msg_id: server_msg_id.clone(),
                client_msg_id: client_msg_id.clone(),
                seq: *seq,
                server_time: *server_time,
            };
            put(&m, dst);
            Some(cmd::SEND_MSG_RSP)
        }
        Reply::BatchSync {
            code,
            msg,
            conversations,
            server_time,
            total,
        } => {
            let m = pb::BatchSyncResponse {
                error_code: code.code(),
                error_msg: msg.clone(),
                conversation_messages: conversations.iter().map(conversation_messages).collect(),
                server_time: *server_time,
                total_message_count: *total,
            };
            put(&m, dst);
            Some(cmd::SYNC_RSP)
        }
        Reply::SyncRange {
            code,
            msg,
            request_id,
            conversation_id,
            messages,
            start_seq,
            end_seq,
            has_more,
        } => {
            let m = pb::SyncRangeResponse {
                error_code: code.code(),
                error_msg: msg.clone(),
                request_id: request_id.clone(),
                conversation_id: conversation_id.clone(),
                messages: messages
                    .iter()
                    .map(|v| message_info(&v.message, v.is_read))
                    .collect(),
                start_seq: *start_seq,
                end_seq: *end_seq,
                has_more: *has_more,
            };
            put(&m, dst);
            Some(cmd::SYNC_RANGE_RSP)
        }
        _ => None,
    }
}

/// Error form of the v2-specific responses; false if `rsp` has none in v2.
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
            &pb::BatchSyncResponse {
                error_code,
                error_msg,
                ..Default::default()
            },
            dst,
        ),
        cmd::SYNC_RANGE_RSP => put(
            &pb::SyncRangeResponse {
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
            let is_read = viewer == m.sender_id;
            put(
                &pb::PushMessage {
                    message: Some(message_info(m, is_read)),
                },
                dst,
            );
            Some(cmd::PUSH_MSG)
        }
        Event::Revoked {
            server_msg_id,
            conversation_id,
            revoked_by,
            revoked_time,
            ..
        } => {
            let m = pb::RevokeMessagePush {
                server_msg_id: server_msg_id.clone(),
                conversation_id: conversation_id.clone(),
                revoked_by: revoked_by.clone(),
                revoked_time: *revoked_time,
            };
            put(&m, dst);
            Some(cmd::REVOKE_MSG_PUSH)
        }
        Event::ReadReceipt {
            server_msg_ids,
            conversation_id,
            user_id,
            read_time,
            ..
        } => {
            let m = pb::ReadReceiptPush {
                server_msg_ids: server_msg_ids.clone(),
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
            let info = pb::MessageInfo {
                client_msg_id: s.client_msg_id.clone(),
                conversation_id: s.conversation_id.clone(),
                receiver_id: s.receiver_id.clone(),
                group_id: s.group_id.clone(),
                message_type: s.message_type,
                content: s.content.clone(),
                send_time: s.send_time,
                extra: s.extra.clone(),
                ..Default::default()
            };
            put(
                &pb::SendMessageRequest {
                    message: Some(info),
                },
                dst,
            );
        }
        Request::Ack { message_id, seq } => {
            put(
                &pb::MessageAck {
                    server_msg_id: message_id.clone(),
                    seq: *seq,
                },
                dst,
            );
        }
        Request::Revoke {
            message_id,
            conversation_id,
        } => {
            let m = pb::RevokeMessageRequest {
                server_msg_id: message_id.clone(),
                conversation_id: conversation_id.clone(),
            };
            put(&m, dst);
        }
        Request::BatchSync {
            states,
            max_per_conversation,
        } => {
            let m = pb::BatchSyncRequest {
                conversation_states: states
                    .iter()
                    .map(|s| pb::ConversationSyncState {
                        conversation_id: s.conversation_id.clone(),
                        last_seq: s.last_seq,
                    })
                    .collect(),
                max_count_per_conversation: *max_per_conversation,
            };
            put(&m, dst);
        }
        Request::SyncRange {
            request_id,
            conversation_id,
            start_seq,
            end_seq,
            count,
        } => {
            let m = pb::SyncRangeRequest {
                request_id: request_id.clone(),
                conversation_id: conversation_id.clone(),
                start_seq: *start_seq,
                end_seq: *end_seq,
                count: *count,
            };
            put(&m, dst);
        }
        Request::ReadReceipt {
            message_ids,
            conversation_id,
        } => {
            let m = pb::ReadReceiptRequest {
                server_msg_ids: message_ids.clone(),
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
                server_msg_id: m.server_msg_id,
                client_msg_id: m.client_msg_id,
                seq: m.seq,
                server_time: m.server_time,
            })
        }),
        cmd::PUSH_MSG => decode::<pb::PushMessage>(command, body).and_then(|m| {
            let info = m.message.ok_or_else(|| missing(command, "message"))?;
            Ok(ServerFrame::Event(Event::Message(Arc::new(
                stored_message(info).message,
            ))))
        }),
        cmd::BATCH_MSG => decode::<pb::BatchMessages>(command, body).and_then(|m| {
            let events = m
                .messages
                .into_iter()
                .map(|p| {
                    let info = p
                        .message
                        .ok_or_else(|| missing(command, "messages.message"))?;
                    Ok(Event::Message(Arc::new(stored_message(info).message)))
                })
                .collect::<Result<Vec<_>, DecodeError>>()?;
            Ok(ServerFrame::Batch(events))
        }),
        cmd::REVOKE_MSG_PUSH => decode::<pb::RevokeMessagePush>(command, body).map(|m| {
            ServerFrame::Event(Event::Revoked {
                server_msg_id: m.server_msg_id,
                client_msg_id: String::new(),
                sender_id: String::new(),
                conversation_id: m.conversation_id,
                revoked_by: m.revoked_by,
                revoked_time: m.revoked_time,
            })
        }),
        cmd::SYNC_RSP => decode::<pb::BatchSyncResponse>(command, body).map(|m| {
            ServerFrame::Reply(Reply::BatchSync {
                code: ErrorCode::from_code(m.error_code),
                msg: m.error_msg,
                conversations: m
                    .conversation_messages
                    .into_iter()
                    .map(|c| ConversationBatch {
                        conversation_id: c.conversation_id,
                        messages: c.messages.into_iter().map(stored_message).collect(),
                        max_seq: c.max_seq,
                        synced_seq: c.synced_seq,
                        has_more: c.has_more,
                    })
                    .collect(),
                server_time: m.server_time,
                total: m.total_message_count,
            })
        }),
        cmd::SYNC_RANGE_RSP => decode::<pb::SyncRangeResponse>(command, body).map(|m| {
            ServerFrame::Reply(Reply::SyncRange {
                code: ErrorCode::from_code(m.error_code),
                msg: m.error_msg,
                request_id: m.request_id,
                conversation_id: m.conversation_id,
                messages: m.messages.into_iter().map(stored_message).collect(),
                start_seq: m.start_seq,
                end_seq: m.end_seq,
                has_more: m.has_more,
            })
        }),
        cmd::READ_RECEIPT_PUSH => decode::<pb::ReadReceiptPush>(command, body).map(|m| {
            ServerFrame::Event(Event::ReadReceipt {
                server_msg_ids: m.server_msg_ids,
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

pub(super) fn conversation_messages(c: &ConversationBatch) -> pb::ConversationMessages {
    pb::ConversationMessages {
        conversation_id: c.conversation_id.clone(),
        messages: c
            .messages
            .iter()
            .map(|v| message_info(&v.message, v.is_read))
            .collect(),
        max_seq: c.max_seq,
        synced_seq: c.synced_seq,
        has_more: c.has_more,
    }
}

/// The full `MessageInfo` of a stored message.
pub(super) fn message_info(m: &StoredMessage, is_read: bool) -> pb::MessageInfo {
    let (is_revoked, revoked_by, revoked_time) = match &m.revoked {
        Some(r) => (true, r.by.clone(), r.time),
        None => (false, String::new(), 0),
    };
    pb::MessageInfo {
        server_msg_id: m.server_msg_id.clone(),
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
        status: STATUS_SENT,
        is_read,
        create_time: m.server_time,
        extra: m.extra.clone(),
        read_by: Vec::new(),
        read_time: 0,
        is_deleted: false,
        is_revoked,
        revoked_by,
        revoked_time,
        attached_info: String::new(),
        conversation_type: m.conversation_type.code(),
    }
}

/// A `MessageInfo` as the model (client side).
fn stored_message(i: pb::MessageInfo) -> MessageView {
    let revoked = i.is_revoked.then_some(Revocation {
        by: i.revoked_by,
        time: i.revoked_time,
    });
    MessageView {
        message: StoredMessage {
            conversation_type: conversation_type(i.conversation_type, &i.group_id),
            server_msg_id: i.server_msg_id,
            client_msg_id: i.client_msg_id,
            conversation_id: i.conversation_id,
            sender_id: i.sender_id,
            receiver_id: i.receiver_id,
            group_id: i.group_id,
            message_type: i.message_type,
            content: i.content,
            send_time: i.send_time,
            server_time: i.server_time,
            seq: i.seq,
            extra: i.extra,
            revoked,
        },
        is_read: i.is_read,
    }
}
