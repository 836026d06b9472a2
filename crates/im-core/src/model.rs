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
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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
    /// Everyone the message is pushed to (sender included); for 1:1
    /// messages also who becomes a member of the conversation on append.
    pub participants: Vec<UserId>,
}

/// A message as persisted, with its seq.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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

/// Role of a group member (numbers as in the reference server: 1 owner, 2 admin, 3 member).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(i32)]
pub enum GroupRole {
    Owner = 1,
    Admin = 2,
    Member = 3,
}

impl GroupRole {
    pub const fn code(self) -> i32 {
        self as i32
    }

    pub const fn from_code(code: i32) -> Option<Self> {
        match code {
            1 => Some(Self::Owner),
            2 => Some(Self::Admin),
            3 => Some(Self::Member),
            _ => None,
        }
    }

    /// Owners and admins manage members and may recall anyone's message.
    pub const fn is_manager(self) -> bool {
        matches!(self, Self::Owner | Self::Admin)
    }
}

/// Group status on the wire (`IMGroup.status`): 0 normal, 1 dismissed.
pub const GROUP_STATUS_NORMAL: i32 = 0;
pub const GROUP_STATUS_DISMISSED: i32 = 1;

/// A group. `member_count` is filled by the store on reads.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Group {
    pub group_id: String,
    pub name: String,
    pub face_url: String,
    pub introduction: String,
    pub notification: String,
    pub extra: String,
    pub owner_id: String,
    /// [`GROUP_STATUS_NORMAL`] or [`GROUP_STATUS_DISMISSED`].
    pub status: i32,
    /// Everyone but owner/admins is muted.
    pub mute_all: bool,
    pub member_count: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

/// One member of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMember {
    pub group_id: String,
    pub user_id: String,
    pub role: GroupRole,
    /// Muted until this time (ms); 0 = not muted.
    pub muted_until: i64,
    pub joined_at: i64,
}

/// Fields of a group that an update may change (`None` = unchanged).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GroupPatch {
    pub name: Option<String>,
    pub face_url: Option<String>,
    pub introduction: Option<String>,
    pub notification: Option<String>,
    pub extra: Option<String>,
    pub mute_all: Option<bool>,
}

/// One row of a user's conversation list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationSummary {
    pub conversation_id: String,
    pub conversation_type: crate::ids::ConversationType,
    /// The latest message (None for a conversation without messages yet).
    pub last_message: Option<StoredMessage>,
    /// Messages after the user's read cursor, not sent by the user, not recalled.
    pub unread_count: i64,
    /// The user's read cursor in this conversation.
    pub read_seq: i64,
    pub max_seq: i64,
    /// Time of the latest change (ms).
    pub updated_at: i64,
}

/// A user's public profile (`IMUser`, contract §4). Times in ms.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserProfile {
    pub user_id: String,
    pub nickname: String,
    pub avatar: String,
    pub phone: String,
    pub email: String,
    /// 0 unknown, 1 male, 2 female.
    pub gender: i32,
    /// Birth date (ms since the epoch; 0 = unknown).
    pub birth: i64,
    pub signature: String,
    pub extra: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// Profile fields an update may change (`None` = unchanged).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProfilePatch {
    pub nickname: Option<String>,
    pub avatar: Option<String>,
    pub phone: Option<String>,
    pub email: Option<String>,
    pub gender: Option<i32>,
    pub birth: Option<i64>,
    pub signature: Option<String>,
    pub extra: Option<String>,
}

/// Login credentials of a registered user: `username` is also the user id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub user_id: String,
    /// A PHC string (argon2id), never the password.
    pub password_hash: String,
    pub created_at: i64,
}

/// One side of a friendship: `owner_id`'s entry for `friend_id` (`IMFriend`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Friend {
    pub owner_id: String,
    pub friend_id: String,
    /// The owner's private name for the friend.
    pub remark: String,
    /// How the friendship started (1 = request accepted).
    pub add_source: i32,
    /// Who completed it (the one who accepted).
    pub operator_id: String,
    pub extra: String,
    pub created_at: i64,
}

/// State of a friend request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum FriendRequestStatus {
    Pending = 0,
    Accepted = 1,
    Rejected = 2,
}

impl FriendRequestStatus {
    pub const fn code(self) -> i32 {
        self as i32
    }

    pub const fn from_code(code: i32) -> Option<Self> {
        match code {
            0 => Some(Self::Pending),
            1 => Some(Self::Accepted),
            2 => Some(Self::Rejected),
            _ => None,
        }
    }
}

/// A request from `from_id` to become friends with `to_id` (at most one per
/// ordered pair; asking again refreshes it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FriendRequest {
    pub from_id: String,
    pub to_id: String,
    pub message: String,
    pub status: FriendRequestStatus,
    pub created_at: i64,
    pub updated_at: i64,
}

/// `owner_id` blocked `blocked_id`: messages and friend requests from
/// `blocked_id` to `owner_id` are refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    pub owner_id: String,
    pub blocked_id: String,
    pub created_at: i64,
}
