//! The one internal message model every wire generation converts to and from.

use bytes::Bytes;

use crate::ids::{ConversationType, UserId};

/// Which SDK protocol generation a connection speaks (protocol.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Generation {
    /// Flat `SendMessageRequest`/`PushMessage`, WebSocket only.
    V1,
    /// `MessageInfo` wrapper, batch and range sync; TCP and WebSocket.
    V2,
}

/// Message type numbers of the contract (§5). Unknown values are kept as
/// they are; only the range is checked by the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageType(pub i32);

impl MessageType {
    pub const TEXT: Self = Self(1);
    pub const NOTIFICATION: Self = Self(8);
    pub const CUSTOM: Self = Self(100);

    /// Types 1..=8 and 100 are defined by the contract.
    pub fn is_known(self) -> bool {
        (1..=8).contains(&self.0) || self.0 == 100
    }
}

/// Who recalled a message and when (ms).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    pub by: String,
    pub time: i64,
}

/// A message accepted by the service and handed to the writer. Everything is
/// decided except the per-conversation `seq`, which the store allocates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    pub server_msg_id: String,
    pub client_msg_id: String,
    pub conversation_id: String,
    pub conversation_type: ConversationType,
    pub sender_id: UserId,
    /// The peer for 1:1, empty for groups.
    pub receiver_id: String,
    /// The group for group messages, empty for 1:1.
    pub group_id: String,
    pub message_type: i32,
    pub content: Bytes,
    /// Client-reported send time (ms).
    pub send_time: i64,
    /// Server acceptance time (ms).
    pub server_time: i64,
    /// Opaque application data (a JSON object for v1 `extra` maps).
    pub extra: String,
    /// Everyone who gets this message in their inbox (sender included).
    pub participants: Vec<UserId>,
}

/// A message as persisted, with its seq.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    pub server_msg_id: String,
    pub client_msg_id: String,
    pub conversation_id: String,
    pub conversation_type: ConversationType,
    pub sender_id: String,
    pub receiver_id: String,
    pub group_id: String,
    pub message_type: i32,
    pub content: Bytes,
    pub send_time: i64,
    pub server_time: i64,
    pub seq: i64,
    pub extra: String,
    pub revoked: Option<Revocation>,
}

impl StoredMessage {
    /// The stored form of `m` once the store gave it `seq`.
    pub fn from_new(m: &NewMessage, seq: i64) -> Self {
        Self {
            server_msg_id: m.server_msg_id.clone(),
            client_msg_id: m.client_msg_id.clone(),
            conversation_id: m.conversation_id.clone(),
            conversation_type: m.conversation_type,
            sender_id: m.sender_id.as_str().to_owned(),
            receiver_id: m.receiver_id.clone(),
            group_id: m.group_id.clone(),
            message_type: m.message_type,
            content: m.content.clone(),
            send_time: m.send_time,
            server_time: m.server_time,
            seq,
            extra: m.extra.clone(),
            revoked: None,
        }
    }
}

/// A message as a given user sees it: with that user's read flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageView {
    pub message: StoredMessage,
    pub is_read: bool,
}
