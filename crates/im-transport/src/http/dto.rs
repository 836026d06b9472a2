//! JSON shapes of the HTTP API: the SDK's DTO keys (contract §4), camelCase,
//! times in milliseconds.

use im_core::model::{
    Block, ConversationSummary, FriendRequest, Group, GroupMember, StoredMessage, UserProfile,
};
use im_service::{FriendView, Session};
use serde::Serialize;
use utoipa::ToSchema;

/// `IMGroup`. `status`: 0 normal, 1 dismissed.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GroupDto {
    #[serde(rename = "groupID")]
    pub group_id: String,
    pub group_name: String,
    #[serde(rename = "faceURL")]
    pub face_url: String,
    #[serde(rename = "ownerUserID")]
    pub owner_user_id: String,
    pub member_count: i64,
    pub introduction: String,
    pub notification: String,
    pub extra: String,
    pub create_time: i64,
    pub update_time: i64,
    pub status: i32,
    pub mute_all: bool,
}

impl From<&Group> for GroupDto {
    fn from(g: &Group) -> Self {
        Self {
            group_id: g.group_id.clone(),
            group_name: g.name.clone(),
            face_url: g.face_url.clone(),
            owner_user_id: g.owner_id.clone(),
            member_count: g.member_count,
            introduction: g.introduction.clone(),
            notification: g.notification.clone(),
            extra: g.extra.clone(),
            create_time: g.created_at,
            update_time: g.updated_at,
            status: g.status,
            mute_all: g.mute_all,
        }
    }
}

/// A group member (no SDK type; same key style).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MemberDto {
    #[serde(rename = "groupID")]
    pub group_id: String,
    #[serde(rename = "userID")]
    pub user_id: String,
    /// 1 owner, 2 admin, 3 member.
    pub role: i32,
    /// Muted until (ms); 0 = not muted.
    pub mute_end_time: i64,
    pub join_time: i64,
}

impl From<&GroupMember> for MemberDto {
    fn from(m: &GroupMember) -> Self {
        Self {
            group_id: m.group_id.clone(),
            user_id: m.user_id.clone(),
            role: m.role.code(),
            mute_end_time: m.muted_until,
            join_time: m.joined_at,
        }
    }
}

/// A message over HTTP: the v1 sync `Msg` keys plus the v2 fields.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MessageDto {
    #[serde(rename = "messageID")]
    pub message_id: String,
    #[serde(rename = "serverMsgID")]
    pub server_msg_id: String,
    #[serde(rename = "clientMsgID")]
    pub client_msg_id: String,
    #[serde(rename = "conversationID")]
    pub conversation_id: String,
    pub conversation_type: i32,
    #[serde(rename = "senderID")]
    pub sender_id: String,
    #[serde(rename = "receiverID")]
    pub receiver_id: String,
    #[serde(rename = "groupID")]
    pub group_id: String,
    pub seq: i64,
    pub message_type: i32,
    /// UTF-8 text (text messages) or the JSON of rich-media content.
    pub content: String,
    pub send_time: i64,
    pub create_time: i64,
    pub server_time: i64,
    /// SDK status: 1 sent, 3 read (never 4: that is "failed" to the SDK).
    pub status: i32,
    pub is_read: bool,
    pub is_revoked: bool,
    pub revoked_by: String,
    pub revoked_time: i64,
    pub extra: String,
}

impl MessageDto {
    /// The message as `viewer` sees it (`read_seq` = the viewer's read cursor).
    /// `messageID` follows the v1 rule: the sender knows it by client id.
    pub fn view(m: &StoredMessage, viewer: &str, read_seq: i64) -> Self {
        Self::with_read_flag(m, viewer, m.sender_id == viewer || m.seq <= read_seq)
    }

    /// The message as `viewer` sees it, with a read flag the service computed.
    pub fn with_read_flag(m: &StoredMessage, viewer: &str, is_read: bool) -> Self {
        let own = m.sender_id == viewer;
        Self {
            message_id: if own && !m.client_msg_id.is_empty() {
                m.client_msg_id.clone()
            } else {
                m.server_msg_id.clone()
            },
            server_msg_id: m.server_msg_id.clone(),
            client_msg_id: m.client_msg_id.clone(),
            conversation_id: m.conversation_id.clone(),
            conversation_type: m.conversation_type.code(),
            sender_id: m.sender_id.clone(),
            receiver_id: m.receiver_id.clone(),
            group_id: m.group_id.clone(),
            seq: m.seq,
            message_type: m.message_type,
            content: String::from_utf8_lossy(&m.content).into_owned(),
            send_time: m.send_time,
            create_time: m.server_time,
            server_time: m.server_time,
            status: if is_read && !own { 3 } else { 1 },
            is_read,
            is_revoked: m.revoked.is_some(),
            revoked_by: m.revoked.as_ref().map(|r| r.by.clone()).unwrap_or_default(),
            revoked_time: m.revoked.as_ref().map_or(0, |r| r.time),
            extra: m.extra.clone(),
        }
    }
}

/// One row of the conversation list.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConversationDto {
    #[serde(rename = "conversationID")]
    pub conversation_id: String,
    pub conversation_type: i32,
    pub unread_count: i64,
    pub read_seq: i64,
    pub max_seq: i64,
    pub update_time: i64,
    pub last_message: Option<MessageDto>,
}

impl ConversationDto {
    pub fn view(c: &ConversationSummary, viewer: &str) -> Self {
        Self {
            conversation_id: c.conversation_id.clone(),
            conversation_type: c.conversation_type.code(),
            unread_count: c.unread_count,
            read_seq: c.read_seq,
            max_seq: c.max_seq,
            update_time: c.updated_at,
            last_message: c
                .last_message
                .as_ref()
                .map(|m| MessageDto::view(m, viewer, c.read_seq)),
        }
    }
}

/// `IMUser`. `phone` and `email` are shown to the user themself only.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserDto {
    #[serde(rename = "userID")]
    pub user_id: String,
    pub nickname: String,
    pub avatar: String,
    pub phone: String,
    pub email: String,
    /// 0 unknown, 1 male, 2 female.
    pub gender: i32,
    /// ms since the epoch (0 = unknown).
    pub birth: i64,
    pub signature: String,
    pub extra: String,
    pub create_time: i64,
    pub update_time: i64,
}

impl UserDto {
    /// `p` as `viewer` sees it.
    pub fn view(p: &UserProfile, viewer: &str) -> Self {
        let own = p.user_id == viewer;
        Self {
            user_id: p.user_id.clone(),
            nickname: p.nickname.clone(),
            avatar: p.avatar.clone(),
            phone: if own { p.phone.clone() } else { String::new() },
            email: if own { p.email.clone() } else { String::new() },
            gender: p.gender,
            birth: p.birth,
            signature: p.signature.clone(),
            extra: p.extra.clone(),
            create_time: p.created_at,
            update_time: p.updated_at,
        }
    }
}

/// `IMFriend`, with the friend's profile.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FriendDto {
    #[serde(rename = "friendUserID")]
    pub friend_user_id: String,
    #[serde(rename = "ownerUserID")]
    pub owner_user_id: String,
    pub remark: String,
    pub create_time: i64,
    /// 1 = a request was accepted.
    pub add_source: i32,
    #[serde(rename = "operatorUserID")]
    pub operator_user_id: String,
    pub extra: String,
    pub user: UserDto,
}

impl FriendDto {
    pub fn view(f: &FriendView, viewer: &str) -> Self {
        Self {
            friend_user_id: f.friend.friend_id.clone(),
            owner_user_id: f.friend.owner_id.clone(),
            remark: f.friend.remark.clone(),
            create_time: f.friend.created_at,
            add_source: f.friend.add_source,
            operator_user_id: f.friend.operator_id.clone(),
            extra: f.friend.extra.clone(),
            user: UserDto::view(&f.user, viewer),
        }
    }
}

/// A friend request. `status`: 0 pending, 1 accepted, 2 rejected.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FriendRequestDto {
    #[serde(rename = "fromUserID")]
    pub from_user_id: String,
    #[serde(rename = "toUserID")]
    pub to_user_id: String,
    pub message: String,
    pub status: i32,
    pub create_time: i64,
    pub update_time: i64,
}

impl From<&FriendRequest> for FriendRequestDto {
    fn from(r: &FriendRequest) -> Self {
        Self {
            from_user_id: r.from_id.clone(),
            to_user_id: r.to_id.clone(),
            message: r.message.clone(),
            status: r.status.code(),
            create_time: r.created_at,
            update_time: r.updated_at,
        }
    }
}

/// A blocked user.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BlockDto {
    #[serde(rename = "userID")]
    pub user_id: String,
    pub create_time: i64,
}

impl From<&Block> for BlockDto {
    fn from(b: &Block) -> Self {
        Self {
            user_id: b.blocked_id.clone(),
            create_time: b.created_at,
        }
    }
}

/// A signed-in session: `token` for `Authorization: Bearer` and socket AUTH,
/// `refreshToken` for `/api/auth/refresh`. Expiry times in ms.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LoginDto {
    pub token: String,
    #[serde(rename = "userID")]
    pub user_id: String,
    pub user: UserDto,
    pub expire_time: i64,
    pub refresh_token: String,
    pub refresh_expire_time: i64,
}

impl From<&Session> for LoginDto {
    fn from(s: &Session) -> Self {
        Self {
            token: s.token.clone(),
            user_id: s.user.user_id.clone(),
            user: UserDto::view(&s.user, &s.user.user_id),
            expire_time: s.expires_at.saturating_mul(1000),
            refresh_token: s.refresh_token.clone(),
            refresh_expire_time: s.refresh_expires_at.saturating_mul(1000),
        }
    }
}

/// v1 HTTP sync reply (contract §4): all four keys always present.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SyncDto {
    pub messages: Vec<MessageDto>,
    /// The cursor to send as the next `lastSeq`.
    pub max_seq: i64,
    pub has_more: bool,
    /// Messages after the request's `lastSeq` (this page included), counted
    /// up to 10,000 (a larger backlog reports 10,000).
    pub total_count: i64,
}

/// v1 range sync reply.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RangeDto {
    pub messages: Vec<MessageDto>,
}
