//! The generation-independent command model: what a client asks (`Request`),
//! what the server answers (`Reply`) and what it pushes (`Event`).
//!
//! `im-protocol` converts both wire generations to and from these types; the
//! service layer only ever sees them.

use std::sync::Arc;

use bytes::Bytes;

use crate::error::ErrorCode;
use crate::model::{MessageView, StoredMessage};

/// Command numbers of the contract (§1.1) that the server handles or emits.
pub mod cmd {
    pub const UNKNOWN: i32 = 0;
    pub const HEARTBEAT_REQ: i32 = 5;
    pub const HEARTBEAT_RSP: i32 = 6;
    pub const AUTH_REQ: i32 = 100;
    pub const AUTH_RSP: i32 = 101;
    pub const KICK_OUT: i32 = 104;
    pub const SEND_MSG_REQ: i32 = 200;
    pub const SEND_MSG_RSP: i32 = 201;
    pub const PUSH_MSG: i32 = 202;
    pub const MSG_ACK: i32 = 203;
    pub const BATCH_MSG: i32 = 204;
    pub const REVOKE_MSG_REQ: i32 = 205;
    pub const REVOKE_MSG_RSP: i32 = 206;
    pub const REVOKE_MSG_PUSH: i32 = 207;
    /// v1: SYNC_REQ; v2: BATCH_SYNC_REQ.
    pub const SYNC_REQ: i32 = 300;
    /// v1: SYNC_RSP; v2: BATCH_SYNC_RSP.
    pub const SYNC_RSP: i32 = 301;
    pub const SYNC_RANGE_REQ: i32 = 303;
    pub const SYNC_RANGE_RSP: i32 = 304;
    pub const ONLINE_STATUS_REQ: i32 = 400;
    pub const ONLINE_STATUS_RSP: i32 = 401;
    pub const STATUS_CHANGE_PUSH: i32 = 402;
    pub const READ_RECEIPT_REQ: i32 = 500;
    pub const READ_RECEIPT_RSP: i32 = 501;
    pub const READ_RECEIPT_PUSH: i32 = 502;
    pub const TYPING_STATUS_REQ: i32 = 600;
    pub const TYPING_STATUS_PUSH: i32 = 601;

    /// The response command for a request command, if that request has one.
    pub const fn response_of(request: i32) -> Option<i32> {
        match request {
            HEARTBEAT_REQ => Some(HEARTBEAT_RSP),
            AUTH_REQ => Some(AUTH_RSP),
            SEND_MSG_REQ => Some(SEND_MSG_RSP),
            REVOKE_MSG_REQ => Some(REVOKE_MSG_RSP),
            SYNC_REQ => Some(SYNC_RSP),
            SYNC_RANGE_REQ => Some(SYNC_RANGE_RSP),
            ONLINE_STATUS_REQ => Some(ONLINE_STATUS_RSP),
            READ_RECEIPT_REQ => Some(READ_RECEIPT_RSP),
            _ => None,
        }
    }
}

/// A message send as the client asked for it (sender_id is not trusted and
/// is therefore not even carried).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SendRequest {
    pub client_msg_id: String,
    pub conversation_id: String,
    pub receiver_id: String,
    pub group_id: String,
    pub message_type: i32,
    pub content: Bytes,
    pub send_time: i64,
    /// v2 `extra` string, or the v1 `extra` map as a JSON object ("" when empty).
    pub extra: String,
}

/// Per-conversation cursor of a v2 batch sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncState {
    pub conversation_id: String,
    pub last_seq: i64,
}

/// A decoded client request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Heartbeat {
        client_time: i64,
    },
    Auth {
        user_id: String,
        token: String,
        platform: String,
    },
    Send(SendRequest),
    /// MSG_ACK: `message_id` is a server id (v2) or the v1 public id.
    Ack {
        message_id: String,
        seq: i64,
    },
    Revoke {
        message_id: String,
        conversation_id: String,
    },
    /// v2 BATCH_SYNC_REQ (300).
    BatchSync {
        states: Vec<SyncState>,
        max_per_conversation: i32,
    },
    /// v2 SYNC_RANGE_REQ (303).
    SyncRange {
        request_id: String,
        conversation_id: String,
        start_seq: i64,
        end_seq: i64,
        count: i32,
    },
    /// v1 SYNC_REQ (300) over the socket: by the per-user (opaque) sync cursor.
    SyncInbox {
        min_seq: i64,
        max_seq: i64,
        limit: i32,
    },
    ReadReceipt {
        message_ids: Vec<String>,
        conversation_id: String,
    },
    Typing {
        conversation_id: String,
        status: i32,
    },
    OnlineStatus {
        user_ids: Vec<String>,
    },
}

impl Request {
    /// The command number this request arrives with.
    pub fn command(&self) -> i32 {
        match self {
            Self::Heartbeat { .. } => cmd::HEARTBEAT_REQ,
            Self::Auth { .. } => cmd::AUTH_REQ,
            Self::Send(_) => cmd::SEND_MSG_REQ,
            Self::Ack { .. } => cmd::MSG_ACK,
            Self::Revoke { .. } => cmd::REVOKE_MSG_REQ,
            Self::BatchSync { .. } | Self::SyncInbox { .. } => cmd::SYNC_REQ,
            Self::SyncRange { .. } => cmd::SYNC_RANGE_REQ,
            Self::ReadReceipt { .. } => cmd::READ_RECEIPT_REQ,
            Self::Typing { .. } => cmd::TYPING_STATUS_REQ,
            Self::OnlineStatus { .. } => cmd::ONLINE_STATUS_REQ,
        }
    }
}

/// Messages of one conversation in a v2 batch sync reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationBatch {
    pub conversation_id: String,
    pub messages: Vec<MessageView>,
    /// The client's next cursor: the last included seq (contract §7.9).
    pub max_seq: i64,
    pub synced_seq: i64,
    pub has_more: bool,
}

/// Presence of one user.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct UserStatus {
    pub user_id: String,
    pub online: bool,
    pub platforms: Vec<String>,
    pub last_seen: i64,
}

/// A reply to a request, sent with the request's sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Heartbeat {
        server_time: i64,
    },
    Auth {
        code: ErrorCode,
        msg: String,
        max_seq: i64,
    },
    Send {
        code: ErrorCode,
        msg: String,
        server_msg_id: String,
        client_msg_id: String,
        seq: i64,
        server_time: i64,
    },
    Revoke {
        code: ErrorCode,
        msg: String,
    },
    BatchSync {
        code: ErrorCode,
        msg: String,
        conversations: Vec<ConversationBatch>,
        server_time: i64,
        total: i32,
    },
    SyncRange {
        code: ErrorCode,
        msg: String,
        request_id: String,
        conversation_id: String,
        messages: Vec<MessageView>,
        start_seq: i64,
        end_seq: i64,
        has_more: bool,
    },
    /// v1 socket sync by the per-user cursor: `server_max_seq` is the next cursor.
    SyncInbox {
        code: ErrorCode,
        msg: String,
        messages: Vec<MessageView>,
        server_max_seq: i64,
        has_more: bool,
    },
    ReadReceipt {
        code: ErrorCode,
        msg: String,
    },
    OnlineStatus {
        code: ErrorCode,
        msg: String,
        statuses: Vec<UserStatus>,
    },
    /// A failure for a frame that could not be decoded or whose command has
    /// no dedicated handling: encoded as the request's response command when
    /// it has one, else as command 0 with an `ErrorResponse` body.
    Error {
        request_cmd: i32,
        code: ErrorCode,
        msg: String,
    },
}

impl Reply {
    pub fn error(request_cmd: i32, code: ErrorCode, msg: impl Into<String>) -> Self {
        Self::Error {
            request_cmd,
            code,
            msg: msg.into(),
        }
    }
}

/// Something the server pushes to a session unprompted (serializable: it
/// crosses the bus between nodes).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Event {
    /// PUSH_MSG (202). `is_read` is derived per viewer when encoding.
    Message(Arc<StoredMessage>),
    /// REVOKE_MSG_PUSH (207).
    Revoked {
        server_msg_id: String,
        client_msg_id: String,
        sender_id: String,
        conversation_id: String,
        revoked_by: String,
        revoked_time: i64,
    },
    /// READ_RECEIPT_PUSH (502): `user_id` read these messages (server ids).
    ///
    /// `client_msg_ids[i]` is the sender's client id of `server_msg_ids[i]`
    /// (the vector may be empty when unknown) and `sender_id` the sender of
    /// all of them (`""` when they are mixed or unknown): a v1 sender knows
    /// its own messages only by client id, so the v1 encoder picks the id
    /// per viewer from these.
    ReadReceipt {
        server_msg_ids: Vec<String>,
        client_msg_ids: Vec<String>,
        sender_id: String,
        conversation_id: String,
        user_id: String,
        read_time: i64,
    },
    /// TYPING_STATUS_PUSH (601).
    Typing {
        conversation_id: String,
        user_id: String,
        status: i32,
    },
    /// KICK_OUT (104): the session is closed right after.
    KickOut { reason: i32, message: String },
    /// STATUS_CHANGE_PUSH (402).
    StatusChange(UserStatus),
}

impl Event {
    /// The command number this event is sent with.
    pub fn command(&self) -> i32 {
        match self {
            Self::Message(_) => cmd::PUSH_MSG,
            Self::Revoked { .. } => cmd::REVOKE_MSG_PUSH,
            Self::ReadReceipt { .. } => cmd::READ_RECEIPT_PUSH,
            Self::Typing { .. } => cmd::TYPING_STATUS_PUSH,
            Self::KickOut { .. } => cmd::KICK_OUT,
            Self::StatusChange(_) => cmd::STATUS_CHANGE_PUSH,
        }
    }
}
