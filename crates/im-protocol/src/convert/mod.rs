//! Conversion between the wire messages of both generations and the
//! generation-independent command model of `im_core::command`.
//!
//! Server side: [`decode_request`], [`encode_reply`], [`encode_event`].
//! Client side (the Rust test client): [`encode_request`],
//! [`decode_server_frame`].
//!
//! Bodies are bare protobuf (what goes into the TCP packet or into
//! `WebSocketMessage.body`); the functions that encode return the command
//! number to send the body with. Messages common to both generations are
//! byte-identical, so they are handled here with the `pb::v2` types; the
//! generation-specific ones live in the `v1` and `v2` submodules.
//!
//! Command numbers the contract defines but nobody uses (0 from a client,
//! 1–4, 102, 103, 302) and 303/304 on v1 are [`DecodeError::UnknownCommand`];
//! responses and pushes arriving from a client are
//! [`DecodeError::NotServerBound`]. Decoding never panics on any input.

pub mod size;
mod v1;
mod v2;

use std::collections::BTreeMap;

use bytes::BytesMut;
use im_core::command::{Event, Reply, Request, UserStatus, cmd};
use im_core::{ConversationType, ErrorCode, Generation};
use prost::Message;

use crate::error::DecodeError;
use crate::pb::v2 as common;

/// What a client receives: a reply to one of its requests, a push, or a
/// batch of message pushes (BATCH_MSG 204).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerFrame {
    /// A response (6, 101, 201, 206, 301, 304, 401, 501) or an
    /// `ErrorResponse` on command 0 (`Reply::Error { request_cmd: 0, .. }`).
    Reply(Reply),
    /// A push (104, 202, 207, 402, 502, 601).
    Event(Event),
    /// BATCH_MSG (204): one `Event::Message` per element.
    Batch(Vec<Event>),
}

// ---- server side -------------------------------------------------------------

/// Decodes the body of a client frame that arrived with `command`.
///
/// `sender_id` of a send request is dropped on purpose: the sender is always
/// the authenticated user. A v1 `extra` map becomes a JSON object string
/// (`""` when empty).
pub fn decode_request(
    generation: Generation,
    command: i32,
    body: &[u8],
) -> Result<Request, DecodeError> {
    let specific = match generation {
        Generation::V1 => v1::decode_request(command, body),
        Generation::V2 => v2::decode_request(command, body),
    };
    if let Some(r) = specific {
        return r;
    }
    match command {
        cmd::HEARTBEAT_REQ => {
            let m: common::HeartbeatRequest = decode(command, body)?;
            Ok(Request::Heartbeat {
                client_time: m.client_time,
            })
        }
        cmd::AUTH_REQ => {
            let m: common::AuthRequest = decode(command, body)?;
            Ok(Request::Auth {
                user_id: m.user_id,
                token: m.token,
                platform: m.platform,
            })
        }
        cmd::ONLINE_STATUS_REQ => {
            let m: common::OnlineStatusRequest = decode(command, body)?;
            Ok(Request::OnlineStatus {
                user_ids: m.user_ids,
            })
        }
        cmd::TYPING_STATUS_REQ => {
            let m: common::TypingStatusRequest = decode(command, body)?;
            Ok(Request::Typing {
                conversation_id: m.conversation_id,
                status: m.status,
            })
        }
        c if is_client_bound(generation, c) => Err(DecodeError::NotServerBound(c)),
        c => Err(DecodeError::UnknownCommand(c)),
    }
}

/// Appends the body of `reply` to `dst` and returns the command to send it
/// with. `viewer` is the user of the receiving session (v1 message ids are
/// per viewer).
///
/// `Reply::Error` becomes the response message of `request_cmd` with
/// `error_code`/`error_msg` set when that command has a response carrying an
/// error code in this generation, else command 0 with an `ErrorResponse`.
/// A reply kind that does not exist in `generation` (SyncInbox on v2,
/// BatchSync/SyncRange on v1) is encoded the same way as an
/// `ERR_INVALID_PARAM` error of its request command.
pub fn encode_reply(
    generation: Generation,
    reply: &Reply,
    viewer: &str,
    dst: &mut BytesMut,
) -> i32 {
    let specific = match generation {
        Generation::V1 => v1::encode_reply(reply, viewer, dst),
        Generation::V2 => v2::encode_reply(reply, dst),
    };
    if let Some(c) = specific {
        return c;
    }
    match reply {
        Reply::Heartbeat { server_time } => {
            put(
                &common::HeartbeatResponse {
                    server_time: *server_time,
                },
                dst,
            );
            cmd::HEARTBEAT_RSP
        }
        Reply::Auth { code, msg, max_seq } => {
            put(
                &common::AuthResponse {
                    error_code: code.code(),
                    error_msg: msg.clone(),
                    max_seq: *max_seq,
                },
                dst,
            );
            cmd::AUTH_RSP
        }
        Reply::Revoke { code, msg } => {
            put(
                &common::RevokeMessageResponse {
                    error_code: code.code(),
                    error_msg: msg.clone(),
                },
                dst,
            );
            cmd::REVOKE_MSG_RSP
        }
        Reply::ReadReceipt { code, msg } => {
            put(
                &common::ReadReceiptResponse {
                    error_code: code.code(),
                    error_msg: msg.clone(),
                },
                dst,
            );
            cmd::READ_RECEIPT_RSP
        }
        Reply::OnlineStatus {
            code,
            msg,
            statuses,
        } => {
            let m = common::OnlineStatusResponse {
                error_code: code.code(),
                error_msg: msg.clone(),
                statuses: statuses.iter().map(status_to_pb).collect(),
            };
            put(&m, dst);
            cmd::ONLINE_STATUS_RSP
        }
        Reply::Error {
            request_cmd,
            code,
            msg,
        } => encode_error(generation, *request_cmd, *code, msg, dst),
        // Only reached when `generation` lacks this reply kind.
        Reply::Send { .. }
        | Reply::BatchSync { .. }
        | Reply::SyncRange { .. }
        | Reply::SyncInbox { .. } => {
            let msg = "not available in this protocol generation";
            encode_error(
                generation,
                request_cmd_of(reply),
                ErrorCode::InvalidParam,
                msg,
                dst,
            )
        }
    }
}

/// Appends the body of `event` as seen by `viewer` to `dst` and returns the
/// command to send it with.
///
/// Message pushes carry `is_read = (viewer == sender)` in v2; in v1 the
/// `message_id` of PUSH_MSG and REVOKE_MSG_PUSH, and each of the
/// `message_ids` of READ_RECEIPT_PUSH, is the viewer's public id: the
/// `client_msg_id` for the sender's own sessions, the `server_msg_id` for
/// everyone else.
pub fn encode_event(
    generation: Generation,
    event: &Event,
    viewer: &str,
    dst: &mut BytesMut,
) -> i32 {
    let specific = match generation {
        Generation::V1 => v1::encode_event(event, viewer, dst),
        Generation::V2 => v2::encode_event(event, viewer, dst),
    };
    if let Some(c) = specific {
        return c;
    }
    match event {
        Event::Typing {
            conversation_id,
            user_id,
            status,
        } => {
            let m = common::TypingStatusPush {
                conversation_id: conversation_id.clone(),
                user_id: user_id.clone(),
                status: *status,
            };
            put(&m, dst);
            cmd::TYPING_STATUS_PUSH
        }
        Event::KickOut { reason, message } => {
            put(
                &common::KickOutNotification {
                    reason: *reason,
                    message: message.clone(),
                },
                dst,
            );
            cmd::KICK_OUT
        }
        Event::StatusChange(s) => {
            put(
                &common::StatusChangePush {
                    status: Some(status_to_pb(s)),
                },
                dst,
            );
            cmd::STATUS_CHANGE_PUSH
        }
        // Every generation module encodes these; kept total without panicking.
        Event::Message(_) | Event::Revoked { .. } | Event::ReadReceipt { .. } => encode_error(
            generation,
            cmd::UNKNOWN,
            ErrorCode::Unknown,
            "unencodable event",
            dst,
        ),
    }
}

// ---- client side -------------------------------------------------------------

/// Appends the body of `req` to `dst` and returns its command number.
///
/// A request kind that does not exist in `generation` (BatchSync/SyncRange
/// on v1, SyncInbox on v2) is encoded with the other generation's body under
/// its usual command number, so a test client can exercise the server's
/// rejection of it.
pub fn encode_request(generation: Generation, req: &Request, dst: &mut BytesMut) -> i32 {
    let (first, second): (EncodeReq, EncodeReq) = match generation {
        Generation::V1 => (v1::encode_request, v2::encode_request),
        Generation::V2 => (v2::encode_request, v1::encode_request),
    };
    if let Some(c) = first(req, dst).or_else(|| second(req, dst)) {
        return c;
    }
    match req {
        Request::Heartbeat { client_time } => {
            put(
                &common::HeartbeatRequest {
                    client_time: *client_time,
                },
                dst,
            );
        }
        Request::Auth {
            user_id,
            token,
            platform,
        } => {
            let m = common::AuthRequest {
                user_id: user_id.clone(),
                token: token.clone(),
                platform: platform.clone(),
            };
            put(&m, dst);
        }
        Request::OnlineStatus { user_ids } => {
            put(
                &common::OnlineStatusRequest {
                    user_ids: user_ids.clone(),
                },
                dst,
            );
        }
        Request::Typing {
            conversation_id,
            status,
        } => {
            put(
                &common::TypingStatusRequest {
                    conversation_id: conversation_id.clone(),
                    status: *status,
                },
                dst,
            );
        }
        // Encoded by one of the generation modules above.
        Request::Send(_)
        | Request::Ack { .. }
        | Request::Revoke { .. }
        | Request::BatchSync { .. }
        | Request::SyncRange { .. }
        | Request::SyncInbox { .. }
        | Request::ReadReceipt { .. } => {}
    }
    req.command()
}

type EncodeReq = fn(&Request, &mut BytesMut) -> Option<i32>;

/// Decodes a frame received by a client.
///
/// Error codes map through `ErrorCode::from_code` (unknown values become
/// `ErrorCode::Unknown`). Pushed messages get `conversation_type` from the
/// wire, or Group/Single by whether `group_id` is set when it is 0 or
/// unknown (always, in v1). A v1 push's `message_id` becomes
/// `server_msg_id`; ids and sender of `Event::Revoked` that are not on the
/// wire are left empty, and so are the client ids and sender of
/// `Event::ReadReceipt`.
pub fn decode_server_frame(
    generation: Generation,
    command: i32,
    body: &[u8],
) -> Result<ServerFrame, DecodeError> {
    let specific = match generation {
        Generation::V1 => v1::decode_server_frame(command, body),
        Generation::V2 => v2::decode_server_frame(command, body),
    };
    if let Some(r) = specific {
        return r;
    }
    let frame = match command {
        cmd::UNKNOWN => {
            let m: common::ErrorResponse = decode(command, body)?;
            ServerFrame::Reply(Reply::Error {
                request_cmd: cmd::UNKNOWN,
                code: ErrorCode::from_code(m.error_code),
                msg: m.error_msg,
            })
        }
        cmd::HEARTBEAT_RSP => {
            let m: common::HeartbeatResponse = decode(command, body)?;
            ServerFrame::Reply(Reply::Heartbeat {
                server_time: m.server_time,
            })
        }
        cmd::AUTH_RSP => {
            let m: common::AuthResponse = decode(command, body)?;
            ServerFrame::Reply(Reply::Auth {
                code: ErrorCode::from_code(m.error_code),
                msg: m.error_msg,
                max_seq: m.max_seq,
            })
        }
        cmd::KICK_OUT => {
            let m: common::KickOutNotification = decode(command, body)?;
            ServerFrame::Event(Event::KickOut {
                reason: m.reason,
                message: m.message,
            })
        }
        cmd::REVOKE_MSG_RSP => {
            let m: common::RevokeMessageResponse = decode(command, body)?;
            ServerFrame::Reply(Reply::Revoke {
                code: ErrorCode::from_code(m.error_code),
                msg: m.error_msg,
            })
        }
        cmd::ONLINE_STATUS_RSP => {
            let m: common::OnlineStatusResponse = decode(command, body)?;
            ServerFrame::Reply(Reply::OnlineStatus {
                code: ErrorCode::from_code(m.error_code),
                msg: m.error_msg,
                statuses: m.statuses.into_iter().map(status_from_pb).collect(),
            })
        }
        cmd::STATUS_CHANGE_PUSH => {
            let m: common::StatusChangePush = decode(command, body)?;
            let status = m.status.ok_or_else(|| missing(command, "status"))?;
            ServerFrame::Event(Event::StatusChange(status_from_pb(status)))
        }
        cmd::READ_RECEIPT_RSP => {
            let m: common::ReadReceiptResponse = decode(command, body)?;
            ServerFrame::Reply(Reply::ReadReceipt {
                code: ErrorCode::from_code(m.error_code),
                msg: m.error_msg,
            })
        }
        cmd::TYPING_STATUS_PUSH => {
            let m: common::TypingStatusPush = decode(command, body)?;
            ServerFrame::Event(Event::Typing {
                conversation_id: m.conversation_id,
                user_id: m.user_id,
                status: m.status,
            })
        }
        c if is_server_bound(generation, c) => return Err(DecodeError::NotClientBound(c)),
        c => return Err(DecodeError::UnknownCommand(c)),
    };
    Ok(frame)
}

// ---- shared helpers ----------------------------------------------------------

/// Commands a server sends in `generation`.
fn is_client_bound(generation: Generation, command: i32) -> bool {
    matches!(
        command,
        cmd::HEARTBEAT_RSP
            | cmd::AUTH_RSP
            | cmd::KICK_OUT
            | cmd::SEND_MSG_RSP
            | cmd::PUSH_MSG
            | cmd::BATCH_MSG
            | cmd::REVOKE_MSG_RSP
            | cmd::REVOKE_MSG_PUSH
            | cmd::SYNC_RSP
            | cmd::ONLINE_STATUS_RSP
            | cmd::STATUS_CHANGE_PUSH
            | cmd::READ_RECEIPT_RSP
            | cmd::READ_RECEIPT_PUSH
            | cmd::TYPING_STATUS_PUSH
    ) || (generation == Generation::V2 && command == cmd::SYNC_RANGE_RSP)
}

/// Commands a client sends in `generation`.
fn is_server_bound(generation: Generation, command: i32) -> bool {
    matches!(
        command,
        cmd::HEARTBEAT_REQ
            | cmd::AUTH_REQ
            | cmd::SEND_MSG_REQ
            | cmd::MSG_ACK
            | cmd::REVOKE_MSG_REQ
            | cmd::SYNC_REQ
            | cmd::ONLINE_STATUS_REQ
            | cmd::READ_RECEIPT_REQ
            | cmd::TYPING_STATUS_REQ
    ) || (generation == Generation::V2 && command == cmd::SYNC_RANGE_REQ)
}

/// The request command a reply answers (for error fallbacks).
fn request_cmd_of(reply: &Reply) -> i32 {
    match reply {
        Reply::Heartbeat { .. } => cmd::HEARTBEAT_REQ,
        Reply::Auth { .. } => cmd::AUTH_REQ,
        Reply::Send { .. } => cmd::SEND_MSG_REQ,
        Reply::Revoke { .. } => cmd::REVOKE_MSG_REQ,
        Reply::BatchSync { .. } | Reply::SyncInbox { .. } => cmd::SYNC_REQ,
        Reply::SyncRange { .. } => cmd::SYNC_RANGE_REQ,
        Reply::ReadReceipt { .. } => cmd::READ_RECEIPT_REQ,
        Reply::OnlineStatus { .. } => cmd::ONLINE_STATUS_REQ,
        Reply::Error { request_cmd, .. } => *request_cmd,
    }
}

/// An error reply to `request_cmd` (see [`encode_reply`]).
fn encode_error(
    generation: Generation,
    request_cmd: i32,
    code: ErrorCode,
    msg: &str,
    dst: &mut BytesMut,
) -> i32 {
    let error_code = code.code();
    let error_msg = msg.to_owned();
    let response = cmd::response_of(request_cmd);
    let encoded = match response {
        Some(cmd::AUTH_RSP) => {
            put(
                &common::AuthResponse {
                    error_code,
                    error_msg: error_msg.clone(),
                    max_seq: 0,
                },
                dst,
            );
            true
        }
        Some(cmd::REVOKE_MSG_RSP) => {
            put(
                &common::RevokeMessageResponse {
                    error_code,
                    error_msg: error_msg.clone(),
                },
                dst,
            );
            true
        }
        Some(cmd::READ_RECEIPT_RSP) => {
            put(
                &common::ReadReceiptResponse {
                    error_code,
                    error_msg: error_msg.clone(),
                },
                dst,
            );
            true
        }
        Some(cmd::ONLINE_STATUS_RSP) => {
            let m = common::OnlineStatusResponse {
                error_code,
                error_msg: error_msg.clone(),
                statuses: Vec::new(),
            };
            put(&m, dst);
            true
        }
        Some(rsp @ (cmd::SEND_MSG_RSP | cmd::SYNC_RSP | cmd::SYNC_RANGE_RSP)) => match generation {
            Generation::V1 => v1::encode_error(rsp, error_code, &error_msg, dst),
            Generation::V2 => v2::encode_error(rsp, error_code, &error_msg, dst),
        },
        // No response, or one without an error field (HEARTBEAT_RSP).
        _ => false,
    };
    match response {
        Some(rsp) if encoded => rsp,
        _ => {
            put(
                &common::ErrorResponse {
                    error_code,
                    error_msg,
                },
                dst,
            );
            cmd::UNKNOWN
        }
    }
}

/// Appends `m` to `dst`.
pub(crate) fn put<M: Message>(m: &M, dst: &mut BytesMut) {
    dst.reserve(m.encoded_len());
    // Cannot fail: `BytesMut` grows on demand (and we reserved anyway).
    let _ = m.encode(dst);
}

/// Decodes `body` as `M`, mapping failures to `Malformed`.
pub(crate) fn decode<M: Message + Default>(command: i32, body: &[u8]) -> Result<M, DecodeError> {
    M::decode(body).map_err(|e| DecodeError::malformed(command, &e))
}

pub(crate) fn missing(command: i32, field: &str) -> DecodeError {
    DecodeError::Malformed {
        command,
        reason: format!("missing required field `{field}`"),
    }
}

/// v1 `extra` map -> the JSON object string of the model (`""` when empty).
pub(crate) fn extra_map_to_json(map: &BTreeMap<String, String>) -> String {
    if map.is_empty() {
        return String::new();
    }
    serde_json::to_string(map).unwrap_or_default()
}

/// The model's `extra` -> a v1 map: a JSON object of strings becomes the
/// map, anything else non-empty goes under the key `"extra"`.
pub(crate) fn extra_json_to_map(extra: &str) -> BTreeMap<String, String> {
    if extra.is_empty() {
        return BTreeMap::new();
    }
    match serde_json::from_str::<BTreeMap<String, String>>(extra) {
        Ok(map) => map,
        Err(_) => BTreeMap::from([("extra".to_owned(), extra.to_owned())]),
    }
}

/// The v1 public id of a message as seen by `viewer`: the sender knows its
/// own messages by `client_msg_id`, everyone else by `server_msg_id`.
pub(crate) fn v1_public_id<'a>(
    viewer: &str,
    sender_id: &str,
    client_msg_id: &'a str,
    server_msg_id: &'a str,
) -> &'a str {
    if viewer == sender_id && !client_msg_id.is_empty() {
        client_msg_id
    } else {
        server_msg_id
    }
}

/// `conversation_type` from the wire; 0 or unknown falls back on `group_id`.
pub(crate) fn conversation_type(code: i32, group_id: &str) -> ConversationType {
    ConversationType::from_code(code).unwrap_or(if group_id.is_empty() {
        ConversationType::Single
    } else {
        ConversationType::Group
    })
}

fn status_to_pb(s: &UserStatus) -> common::UserStatus {
    common::UserStatus {
        user_id: s.user_id.clone(),
        online: s.online,
        platforms: s.platforms.clone(),
        last_seen: s.last_seen,
    }
}

fn status_from_pb(s: common::UserStatus) -> UserStatus {
    UserStatus {
        user_id: s.user_id,
        online: s.online,
        platforms: s.platforms,
        last_seen: s.last_seen,
    }
}
