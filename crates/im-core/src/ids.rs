//! Identifiers: user ids and conversation ids (sdk-contract.md §5).
//!
//! The SDK puts ids unescaped into SQL and URL paths, so every id we accept
//! or mint is restricted to `[A-Za-z0-9_-]` and a bounded length.

use std::fmt;

use thiserror::Error;

/// Longest user, group or client message id we accept.
pub const MAX_ID_LEN: usize = 64;

/// Why an id was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum IdError {
    #[error("id is empty")]
    Empty,
    #[error("id is longer than {MAX_ID_LEN} bytes")]
    TooLong,
    #[error("id contains a character outside [A-Za-z0-9_-]")]
    BadChar,
    #[error("conversation id has an unknown prefix or shape")]
    BadConversation,
    #[error("conversation id does not include the user")]
    NotParticipant,
}

/// Checks that `s` is a non-empty id of at most [`MAX_ID_LEN`] bytes of `[A-Za-z0-9_-]`.
pub fn validate_id(s: &str) -> Result<(), IdError> {
    if s.is_empty() {
        return Err(IdError::Empty);
    }
    if s.len() > MAX_ID_LEN {
        return Err(IdError::TooLong);
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(IdError::BadChar);
    }
    Ok(())
}

/// A validated user id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserId(String);

impl UserId {
    /// Validates and wraps `s`.
    pub fn parse(s: impl Into<String>) -> Result<Self, IdError> {
        let s = s.into();
        validate_id(&s)?;
        Ok(Self(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for UserId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Conversation type numbers of the contract (§5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[repr(i32)]
pub enum ConversationType {
    Single = 1,
    Group = 2,
    ChatRoom = 3,
    System = 4,
}

impl ConversationType {
    pub const fn code(self) -> i32 {
        self as i32
    }

    pub const fn from_code(code: i32) -> Option<Self> {
        match code {
            1 => Some(Self::Single),
            2 => Some(Self::Group),
            3 => Some(Self::ChatRoom),
            4 => Some(Self::System),
            _ => None,
        }
    }
}

/// A parsed conversation id: `single_<a>_<b>` (a < b, byte order),
/// `group_<gid>`, `chatroom_<room>` or `system_<user>` (the SDK builds all
/// four: `IMMessageManager.generateConversationID`, IMMessageManager.swift:561-579@07bf3fe).
///
/// A system conversation belongs to one user: `system_<user>` holds the
/// notices the app backend sent to that user, so its seqs are contiguous
/// for that user (the SDK's gap detection needs it).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ConversationId {
    Single { a: UserId, b: UserId },
    Group { group_id: String },
    ChatRoom { room_id: String },
    System { user: UserId },
}

impl ConversationId {
    /// The 1:1 conversation between two users, with the ids in byte order.
    pub fn single(x: &UserId, y: &UserId) -> Self {
        if x.as_str() <= y.as_str() {
            Self::Single {
                a: x.clone(),
                b: y.clone(),
            }
        } else {
            Self::Single {
                a: y.clone(),
                b: x.clone(),
            }
        }
    }

    /// The conversation of group `gid`.
    pub fn group(gid: &str) -> Result<Self, IdError> {
        validate_id(gid)?;
        Ok(Self::Group {
            group_id: gid.to_owned(),
        })
    }

    /// The chat room `room`.
    pub fn chat_room(room: &str) -> Result<Self, IdError> {
        validate_id(room)?;
        Ok(Self::ChatRoom {
            room_id: room.to_owned(),
        })
    }

    /// The system (notice) conversation of `user`.
    pub fn system(user: &UserId) -> Self {
        Self::System { user: user.clone() }
    }

    /// Parses `raw` as seen by `user`. User ids may themselves contain `_`,
    /// so `single_x_y` is only unambiguous relative to a known participant:
    /// the user must be one of the two ends and the ids must be in byte order.
    pub fn parse_for(raw: &str, user: &UserId) -> Result<Self, IdError> {
        if raw.len() > 2 * MAX_ID_LEN + 16 {
            return Err(IdError::TooLong);
        }
        if let Some(gid) = raw.strip_prefix("group_") {
            return Self::group(gid);
        }
        if let Some(room) = raw.strip_prefix("chatroom_") {
            return Self::chat_room(room).map_err(|_| IdError::BadConversation);
        }
        if let Some(owner) = raw.strip_prefix("system_") {
            validate_id(owner).map_err(|_| IdError::BadConversation)?;
            return if owner == user.as_str() {
                Ok(Self::system(user))
            } else {
                Err(IdError::NotParticipant)
            };
        }
        let rest = raw
            .strip_prefix("single_")
            .ok_or(IdError::BadConversation)?;
        if !rest.contains('_') {
            return Err(IdError::BadConversation);
        }
        let me = user.as_str();
        // user is the first (smaller) id: single_<me>_<peer>
        if let Some(peer) = rest.strip_prefix(me).and_then(|r| r.strip_prefix('_')) {
            if let Ok(peer) = UserId::parse(peer) {
                if me <= peer.as_str() {
                    return Ok(Self::single(user, &peer));
                }
            }
        }
        // user is the second (larger) id: single_<peer>_<me>
        if let Some(peer) = rest.strip_suffix(me).and_then(|r| r.strip_suffix('_')) {
            if let Ok(peer) = UserId::parse(peer) {
                if peer.as_str() <= me {
                    return Ok(Self::single(user, &peer));
                }
            }
        }
        // Well-formed but not ours, or malformed.
        validate_id(rest).map_err(|_| IdError::BadConversation)?;
        Err(IdError::NotParticipant)
    }

    pub fn kind(&self) -> ConversationType {
        match self {
            Self::Single { .. } => ConversationType::Single,
            Self::Group { .. } => ConversationType::Group,
            Self::ChatRoom { .. } => ConversationType::ChatRoom,
            Self::System { .. } => ConversationType::System,
        }
    }

    /// For a 1:1 conversation, the other participant as seen from `me`.
    pub fn peer_of(&self, me: &UserId) -> Option<&UserId> {
        match self {
            Self::Single { a, b } if a == me => Some(b),
            Self::Single { a, b } if b == me => Some(a),
            _ => None,
        }
    }

    pub fn group_id(&self) -> Option<&str> {
        match self {
            Self::Group { group_id } => Some(group_id),
            Self::Single { .. } | Self::ChatRoom { .. } | Self::System { .. } => None,
        }
    }

    pub fn room_id(&self) -> Option<&str> {
        match self {
            Self::ChatRoom { room_id } => Some(room_id),
            _ => None,
        }
    }
}

impl fmt::Display for ConversationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Single { a, b } => write!(f, "single_{a}_{b}"),
            Self::Group { group_id } => write!(f, "group_{group_id}"),
            Self::ChatRoom { room_id } => write!(f, "chatroom_{room_id}"),
            Self::System { user } => write!(f, "system_{user}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(s: &str) -> UserId {
        UserId::parse(s).unwrap()
    }

    #[test]
    fn validates_ids() {
        assert!(UserId::parse("alice_1-B").is_ok());
        assert_eq!(UserId::parse(""), Err(IdError::Empty));
        assert_eq!(UserId::parse("a b"), Err(IdError::BadChar));
        assert_eq!(UserId::parse("a/../b"), Err(IdError::BadChar));
        assert_eq!(UserId::parse("é"), Err(IdError::BadChar));
        assert_eq!(UserId::parse("x".repeat(65)), Err(IdError::TooLong));
    }

    #[test]
    fn single_is_sorted_bytewise_not_numerically() {
        let c = ConversationId::single(&u("9"), &u("10"));
        assert_eq!(c.to_string(), "single_10_9");
        assert_eq!(
            ConversationId::single(&u("bob"), &u("alice")).to_string(),
            "single_alice_bob"
        );
    }

    #[test]
    fn parses_relative_to_participant_even_with_underscores() {
        let me = u("a_b");
        let c = ConversationId::parse_for("single_a_b_c", &me).unwrap();
        assert_eq!(c.peer_of(&me), Some(&u("c")));
        let me2 = u("c");
        let c2 = ConversationId::parse_for("single_a_b_c", &me2).unwrap();
        assert_eq!(c2.peer_of(&me2), Some(&u("a_b")));
        assert_eq!(c, c2);
    }

    #[test]
    fn rejects_foreign_unsorted_and_malformed() {
        let me = u("alice");
        assert_eq!(
            ConversationId::parse_for("single_bob_carol", &me),
            Err(IdError::NotParticipant)
        );
        assert_eq!(
            ConversationId::parse_for("single_bob_alice", &me),
            Err(IdError::NotParticipant)
        );
        assert_eq!(
            ConversationId::parse_for("chat_x", &me),
            Err(IdError::BadConversation)
        );
        assert_eq!(
            ConversationId::parse_for("single_al ice_bob", &me),
            Err(IdError::BadConversation)
        );
        assert!(ConversationId::parse_for("group_g1", &me).is_ok());
        assert_eq!(
            ConversationId::parse_for("single_alice", &me),
            Err(IdError::BadConversation)
        );
        assert_eq!(
            ConversationId::parse_for("single_alice", &me),
            Err(IdError::BadConversation)
        );
        assert!(ConversationId::parse_for("group_", &me).is_err());
    }

    #[test]
    fn chat_room_and_system_ids() {
        let me = u("alice");
        let room = ConversationId::parse_for("chatroom_lobby-1", &me).unwrap();
        assert_eq!(room.kind(), ConversationType::ChatRoom);
        assert_eq!(room.room_id(), Some("lobby-1"));
        assert_eq!(room.to_string(), "chatroom_lobby-1");
        assert_eq!(room.group_id(), None);
        assert_eq!(room.peer_of(&me), None);
        assert_eq!(
            ConversationId::parse_for("chatroom_", &me),
            Err(IdError::BadConversation)
        );
        assert_eq!(
            ConversationId::parse_for("chatroom_a b", &me),
            Err(IdError::BadConversation)
        );
        let sys = ConversationId::parse_for("system_alice", &me).unwrap();
        assert_eq!(sys, ConversationId::system(&me));
        assert_eq!(sys.kind(), ConversationType::System);
        assert_eq!(sys.to_string(), "system_alice");
        assert_eq!(sys.peer_of(&me), None);
        assert_eq!(
            ConversationId::parse_for("system_bob", &me),
            Err(IdError::NotParticipant)
        );
        assert_eq!(
            ConversationId::parse_for("system_", &me),
            Err(IdError::BadConversation)
        );
        // A user id with underscores still owns exactly its own system conversation.
        let odd = u("system_x");
        assert!(ConversationId::parse_for("system_system_x", &odd).is_ok());
    }

    #[test]
    fn self_conversation_roundtrips() {
        let me = u("alice");
        let c = ConversationId::parse_for("single_alice_alice", &me).unwrap();
        assert_eq!(c.peer_of(&me), Some(&me));
    }
}
