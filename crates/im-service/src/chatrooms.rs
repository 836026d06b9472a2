//! Chat rooms: `chatroom_<id>` conversations (conversation type 3; the SDK
//! builds the id in `IMMessageManager.generateConversationID`,
//! IMMessageManager.swift:575-576@07bf3fe).
//!
//! Semantics:
//! - A room exists while it has members; the first join creates it.
//! - Membership is per user and lives in this node's memory: a user joins
//!   with `POST /api/chatroom/{id}/join` (or, with
//!   [`ChatRoomConfig::join_on_send`], by sending into the room) and leaves
//!   with `.../leave`. Members get every message of the room live on all
//!   their sessions (the sending session excepted); nobody else does.
//! - Messages go through the ordinary send path (per-conversation seq,
//!   idempotent send, batching writer), but nothing is stored per member:
//!   a room is in nobody's conversation list, has no unread counts and no
//!   offline delivery. Only the newest [`ChatRoomConfig::history_messages`]
//!   are readable (SYNC_RANGE, HTTP history), by members.
//! - Limits: members per room (members with no session on this node are
//!   dropped first when a room is full), rooms per user, messages per second
//!   per room.
//! - Several nodes: each node holds the whole membership in memory; a join
//!   or leave is applied where it is made and broadcast on the bus to the
//!   others, so a message sent through any node reaches every member's
//!   sessions on every node (the hub routes the pushes). A node that was
//!   down (or cut off from Redis) during a join does not learn it; nothing
//!   is persisted. See docs/protocol.md ("Chat rooms").

use std::collections::{HashMap, HashSet};
use std::num::NonZeroU32;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use im_core::ports::{ConversationStore, StoreResult};
use im_core::{ConversationId, ErrorCode, UserId};
use parking_lot::Mutex;

use crate::config::ChatRoomConfig;
use crate::error::ServiceError;
use crate::error::Transient;
use crate::messaging::{MessagingService, Refusal};

/// A user's membership of a room after a join or leave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomMembership {
    pub room_id: String,
    /// Members after the call.
    pub member_count: usize,
    /// Whether the call changed anything (false: already in / not in).
    pub changed: bool,
}

struct Room {
    members: HashSet<UserId>,
    rate: Option<DefaultDirectRateLimiter>,
}

#[derive(Default)]
struct State {
    rooms: HashMap<String, Room>,
    by_user: HashMap<UserId, HashSet<String>>,
}

impl State {
    fn remove(&mut self, room: &str, user: &UserId) -> bool {
        let Some(r) = self.rooms.get_mut(room) else {
            return false;
        };
        let was = r.members.remove(user);
        if r.members.is_empty() {
            self.rooms.remove(room);
        }
        if let Some(set) = self.by_user.get_mut(user) {
            set.remove(room);
            if set.is_empty() {
                self.by_user.remove(user);
            }
        }
        was
    }
}

/// The rooms of this node and their members.
pub(crate) struct ChatRooms {
    cfg: ChatRoomConfig,
    state: Mutex<State>,
}

impl std::fmt::Debug for ChatRooms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatRooms")
            .field("rooms", &self.state.lock().rooms.len())
            .finish()
    }
}

impl ChatRooms {
    pub fn new(cfg: ChatRoomConfig) -> Self {
        Self {
            cfg,
            state: Mutex::new(State::default()),
        }
    }

    pub fn config(&self) -> &ChatRoomConfig {
        &self.cfg
    }

    /// Adds `user` to `room` (creating it). `online` tells whether a member
    /// still has a session; a full room drops those that have none first.
    pub fn join(
        &self,
        room: &str,
        user: &UserId,
        online: impl Fn(&UserId) -> bool,
    ) -> Result<RoomMembership, ServiceError> {
        let mut st = self.state.lock();
        if let Some(r) = st.rooms.get(room) {
            if r.members.contains(user) {
                return Ok(RoomMembership {
                    room_id: room.to_owned(),
                    member_count: r.members.len(),
                    changed: false,
                });
            }
        }
        let mine = st.by_user.get(user).map_or(0, HashSet::len);
        if mine >= self.cfg.max_rooms_per_user {
            return Err(ServiceError::Conflict(
                format!(
                    "in too many chat rooms (at most {}); leave one first",
                    self.cfg.max_rooms_per_user
                )
                .into(),
            ));
        }
        let full = st
            .rooms
            .get(room)
            .is_some_and(|r| r.members.len() >= self.cfg.max_members);
        if full {
            let gone: Vec<UserId> = st
                .rooms
                .get(room)
                .map(|r| r.members.iter().filter(|m| !online(m)).cloned().collect())
                .unwrap_or_default();
            for m in &gone {
                st.remove(room, m);
            }
            let still_full = st
                .rooms
                .get(room)
                .is_some_and(|r| r.members.len() >= self.cfg.max_members);
            if still_full {
                return Err(ServiceError::Conflict(
                    format!(
                        "chat room is full (at most {} members)",
                        self.cfg.max_members
                    )
                    .into(),
                ));
            }
        }
        let member_count = self.insert(&mut st, room, user);
        Ok(RoomMembership {
            room_id: room.to_owned(),
            member_count,
            changed: true,
        })
    }

    /// A join another node accepted (its limits were checked there).
    pub fn join_replica(&self, room: &str, user: &UserId) {
        let mut st = self.state.lock();
        self.insert(&mut st, room, user);
    }

    fn insert(&self, st: &mut State, room: &str, user: &UserId) -> usize {
        let per_second = self.cfg.max_messages_per_second;
        let r = st.rooms.entry(room.to_owned()).or_insert_with(|| Room {
            members: HashSet::new(),
            rate: NonZeroU32::new(per_second)
                .map(|n| RateLimiter::direct(Quota::per_second(n).allow_burst(n))),
        });
        r.members.insert(user.clone());
        let member_count = r.members.len();
        st.by_user
            .entry(user.clone())
            .or_default()
            .insert(room.to_owned());
        member_count
    }

    /// Removes `user` from `room` (a room without members is gone).
    pub fn leave(&self, room: &str, user: &UserId) -> RoomMembership {
        let mut st = self.state.lock();
        let changed = st.remove(room, user);
        RoomMembership {
            room_id: room.to_owned(),
            member_count: st.rooms.get(room).map_or(0, |r| r.members.len()),
            changed,
        }
    }

    pub fn is_member(&self, room: &str, user: &UserId) -> bool {
        self.state
            .lock()
            .rooms
            .get(room)
            .is_some_and(|r| r.members.contains(user))
    }

    /// Every member of `room` but `user`.
    pub fn others(&self, room: &str, user: &UserId) -> Vec<UserId> {
        self.state
            .lock()
            .rooms
            .get(room)
            .map_or_else(Vec::new, |r| {
                r.members.iter().filter(|m| *m != user).cloned().collect()
            })
    }

    /// Every member of `room`.
    pub fn members(&self, room: &str) -> Vec<UserId> {
        self.state
            .lock()
            .rooms
            .get(room)
            .map_or_else(Vec::new, |r| r.members.iter().cloned().collect())
    }

    /// Takes one message from the room's rate budget; false: over the rate.
    pub fn allow_message(&self, room: &str) -> bool {
        self.state
            .lock()
            .rooms
            .get(room)
            .and_then(|r| r.rate.as_ref())
            .is_none_or(|l| l.check().is_ok())
    }
}

/// The lowest seq of `conversation` that may be read: for a chat room the
/// start of its window of the newest `history` messages (above the newest
/// seq when `history` is 0), 1 for every other conversation.
pub(crate) async fn readable_floor(
    store: &dyn ConversationStore,
    conversation: &ConversationId,
    history: u32,
) -> StoreResult<i64> {
    let Some(room) = conversation.room_id() else {
        return Ok(1);
    };
    let newest = store
        .history(&format!("chatroom_{room}"), 0, 1)
        .await?
        .first()
        .map_or(0, |m| m.seq);
    Ok(newest - i64::from(history) + 1)
}

impl MessagingService {
    pub(crate) fn rooms(&self) -> &ChatRooms {
        &self.directory.rooms
    }

    /// Joins `user` to chat room `room_id` (creating it), as the user's
    /// own request: refused when `self_join` is off.
    pub fn join_chat_room(
        &self,
        user: &UserId,
        room_id: &str,
    ) -> Result<RoomMembership, ServiceError> {
        if !self.rooms().config().self_join {
            return Err(ServiceError::denied(
                "chat room membership is managed by the app backend",
            ));
        }
        self.put_in_chat_room(user, room_id)
    }

    /// Puts each of `user_ids` into (`join`) or out of chat room `room_id`
    /// on behalf of the app backend (whatever `self_join` says). All ids
    /// are checked first; joins stop at the first refusal (room full, user
    /// in too many rooms). Returns the room's membership after the calls.
    pub fn backend_chat_room_members(
        &self,
        room_id: &str,
        user_ids: &[String],
        join: bool,
    ) -> Result<RoomMembership, ServiceError> {
        if user_ids.is_empty() || user_ids.len() > crate::system::MAX_NOTICE_RECIPIENTS {
            return Err(ServiceError::invalid(format!(
                "userIds must list 1-{} users",
                crate::system::MAX_NOTICE_RECIPIENTS
            )));
        }
        let users = user_ids
            .iter()
            .map(|u| {
                UserId::parse(u.as_str())
                    .map_err(|e| ServiceError::invalid(format!("userIds: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut last = None;
        for u in &users {
            last = Some(if join {
                self.put_in_chat_room(u, room_id)?
            } else {
                self.leave_chat_room(u, room_id)?
            });
        }
        last.ok_or_else(|| ServiceError::invalid("userIds must not be empty"))
    }

    fn put_in_chat_room(
        &self,
        user: &UserId,
        room_id: &str,
    ) -> Result<RoomMembership, ServiceError> {
        let conversation = ConversationId::chat_room(room_id).map_err(|_| {
            ServiceError::invalid("chat room id must be 1-64 chars of [A-Za-z0-9_-]")
        })?;
        let room = conversation.room_id().unwrap_or_default();
        let m = self.rooms().join(room, user, |m| self.member_online(m))?;
        // Broadcast even when nothing changed here: a node that missed the
        // first join learns it from a re-join.
        self.replicate(crate::cluster::BusMessage::RoomJoin {
            room: room.to_owned(),
            user: user.as_str().to_owned(),
        });
        Ok(m)
    }

    /// Members of chat room `room_id` known to this node (0: no such room).
    pub fn chat_room_member_count(&self, room_id: &str) -> usize {
        self.rooms().members(room_id).len()
    }

    /// Tells the other nodes about a membership change (no-op on one node).
    fn replicate(&self, m: crate::cluster::BusMessage) {
        if let Some(c) = self.hub.cluster() {
            c.broadcast(m);
        }
    }

    /// Removes `user` from chat room `room_id`.
    pub fn leave_chat_room(
        &self,
        user: &UserId,
        room_id: &str,
    ) -> Result<RoomMembership, ServiceError> {
        let conversation = ConversationId::chat_room(room_id).map_err(|_| {
            ServiceError::invalid("chat room id must be 1-64 chars of [A-Za-z0-9_-]")
        })?;
        let room = conversation.room_id().unwrap_or_default();
        let m = self.rooms().leave(room, user);
        if m.changed {
            self.replicate(crate::cluster::BusMessage::RoomLeave {
                room: room.to_owned(),
                user: user.as_str().to_owned(),
            });
        }
        Ok(m)
    }

    /// Whether a room member still counts as present: with several nodes
    /// this node cannot tell, so every member does.
    fn member_online(&self, user: &UserId) -> bool {
        self.hub.cluster().is_some() || !self.hub.platforms_of(user).is_empty()
    }

    /// Who receives a message `sender` sends into `room` (joining it first
    /// when configured), or why it is refused.
    pub(crate) fn chat_room_recipients(
        &self,
        sender: &UserId,
        room: &str,
    ) -> Result<Vec<UserId>, Refusal> {
        let rooms = self.rooms();
        if !rooms.is_member(room, sender) {
            if !rooms.config().join_on_send || !rooms.config().self_join {
                return Err(Refusal::Code(
                    ErrorCode::PermissionDenied,
                    "not in this chat room: join it first",
                ));
            }
            match rooms.join(room, sender, |m| self.member_online(m)) {
                Ok(m) if m.changed => self.replicate(crate::cluster::BusMessage::RoomJoin {
                    room: room.to_owned(),
                    user: sender.as_str().to_owned(),
                }),
                Ok(_) => {}
                Err(_) => {
                    return Err(Refusal::Code(
                        ErrorCode::PermissionDenied,
                        "cannot join this chat room (full, or in too many rooms)",
                    ));
                }
            }
        }
        // Over the room's message rate: a retry fixes it, so like the
        // per-user rate limit it gets no reply and the SDK resends.
        if !rooms.allow_message(room) {
            return Err(Refusal::Transient(Transient::RateLimited));
        }
        Ok(rooms.others(room, sender))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(s: &str) -> UserId {
        UserId::parse(s).unwrap()
    }

    fn rooms(max_members: usize, max_rooms_per_user: usize) -> ChatRooms {
        ChatRooms::new(ChatRoomConfig {
            max_members,
            max_rooms_per_user,
            history_messages: 10,
            join_on_send: true,
            self_join: true,
            max_messages_per_second: 2,
        })
    }

    #[test]
    fn join_leave_and_members() {
        let r = rooms(10, 10);
        let j = r.join("lobby", &u("a"), |_| true).unwrap();
        assert_eq!((j.member_count, j.changed), (1, true));
        let again = r.join("lobby", &u("a"), |_| true).unwrap();
        assert_eq!((again.member_count, again.changed), (1, false));
        r.join("lobby", &u("b"), |_| true).unwrap();
        assert!(r.is_member("lobby", &u("b")));
        assert_eq!(r.others("lobby", &u("a")), vec![u("b")]);
        let l = r.leave("lobby", &u("b"));
        assert_eq!((l.member_count, l.changed), (1, true));
        assert!(!r.leave("lobby", &u("b")).changed);
        r.leave("lobby", &u("a"));
        assert!(r.members("lobby").is_empty());
        assert!(r.state.lock().rooms.is_empty());
        assert!(r.state.lock().by_user.is_empty());
    }

    #[test]
    fn a_full_room_drops_absent_members_first_then_refuses() {
        let r = rooms(2, 10);
        r.join("x", &u("a"), |_| true).unwrap();
        r.join("x", &u("b"), |_| true).unwrap();
        // b has no session: dropped to make room for c.
        r.join("x", &u("c"), |m| m.as_str() != "b").unwrap();
        assert!(!r.is_member("x", &u("b")));
        assert!(!r.state.lock().by_user.contains_key(&u("b")));
        let e = r.join("x", &u("d"), |_| true).unwrap_err();
        assert!(e.public_message().contains("full"), "{e}");
    }

    #[test]
    fn rooms_per_user_are_bounded() {
        let r = rooms(10, 2);
        r.join("r1", &u("a"), |_| true).unwrap();
        r.join("r2", &u("a"), |_| true).unwrap();
        assert!(r.join("r3", &u("a"), |_| true).is_err());
        // Re-joining a room one is in is not a new room.
        assert!(r.join("r2", &u("a"), |_| true).is_ok());
        r.leave("r1", &u("a"));
        assert!(r.join("r3", &u("a"), |_| true).is_ok());
    }

    #[test]
    fn message_rate_per_room() {
        let r = rooms(10, 10);
        r.join("x", &u("a"), |_| true).unwrap();
        r.join("y", &u("a"), |_| true).unwrap();
        assert!(r.allow_message("x"));
        assert!(r.allow_message("x"));
        assert!(!r.allow_message("x"));
        // Another room has its own budget.
        assert!(r.allow_message("y"));
    }
}
