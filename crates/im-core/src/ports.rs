//! Ports: the traits adapters implement. Object-safe, `Send + Sync`, used as
//! `Arc<dyn Port>` by the service layer.

use async_trait::async_trait;

use crate::error::StoreError;
use crate::ids::UserId;
use crate::model::{
    Account, Block, ConversationSummary, Friend, FriendRequest, FriendRequestStatus, Group,
    GroupMember, GroupPatch, GroupRole, NewMessage, ProfilePatch, StoredMessage, UserProfile,
};

pub type StoreResult<T> = Result<T, StoreError>;

/// Outcome of appending one message of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    pub message: StoredMessage,
    /// True when (sender, client_msg_id) already existed: nothing was stored
    /// and `message` is the original.
    pub duplicate: bool,
}

/// A conversation a user takes part in and its highest seq.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationHead {
    pub conversation_id: String,
    pub max_seq: i64,
}

/// One entry of a user's v1 sync stream: the message and its cursor (opaque
/// to clients: increasing in commit order, not contiguous per user).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxEntry {
    pub cursor: i64,
    pub message: StoredMessage,
}

/// Messages and the per-user v1 sync stream.
#[async_trait]
pub trait MessageStore: Send + Sync {
    /// Persists `batch` in one transaction. For each input, in order: either
    /// the newly stored message with its allocated seq, or — when
    /// (sender, client_msg_id) already exists, in the store or earlier in the
    /// same batch — the original message with `duplicate = true`.
    /// Per-conversation seqs are allocated gapless from 1; every new message
    /// also gets a sync cursor from one store-wide clock, increasing in
    /// commit order (what [`Self::inbox_after`] follows). Nothing is written
    /// per recipient. Returns only after commit.
    async fn append(&self, batch: &[NewMessage]) -> StoreResult<Vec<Appended>>;

    /// The message `sender` sent with `client_msg_id`, if any.
    async fn find_by_client_id(
        &self,
        sender: &UserId,
        client_msg_id: &str,
    ) -> StoreResult<Option<StoredMessage>>;

    /// The message with this server id, if any.
    async fn find_by_server_id(&self, server_msg_id: &str) -> StoreResult<Option<StoredMessage>>;

    /// Messages of a conversation with `after_seq < seq <= up_to_seq`, ascending,
    /// at most `limit`.
    async fn conversation_range(
        &self,
        conversation_id: &str,
        after_seq: i64,
        up_to_seq: i64,
        limit: u32,
    ) -> StoreResult<Vec<StoredMessage>>;

    /// Every conversation `user` takes part in, with its current max seq.
    async fn user_conversations(&self, user: &UserId) -> StoreResult<Vec<ConversationHead>>;

    /// The cursor of the newest message in `user`'s conversations (0 when
    /// there is none).
    async fn inbox_head(&self, user: &UserId) -> StoreResult<i64>;

    /// Messages of the conversations `user` takes part in now (1:1 ones they
    /// wrote or received, groups they are a member of) with `cursor > after`,
    /// ascending by cursor, at most `limit`. A cursor once passed is never
    /// filled in later: a message committed after this call has a higher one.
    async fn inbox_after(
        &self,
        user: &UserId,
        after: i64,
        limit: u32,
    ) -> StoreResult<Vec<InboxEntry>>;

    /// How many messages [`Self::inbox_after`] has after `after`, counting
    /// at most `cap` (a larger backlog answers `cap`): cursors are positions
    /// shared by every user, so their difference is no count.
    async fn inbox_count_after(&self, user: &UserId, after: i64, cap: u32) -> StoreResult<u64>;

    /// Records that `device` of `user` received everything in `conversation_id`
    /// up to `seq` (never moves backwards).
    async fn record_delivered(
        &self,
        user: &UserId,
        device: &str,
        conversation_id: &str,
        seq: i64,
    ) -> StoreResult<()>;

    /// The delivered seq recorded for (`user`, `device`, `conversation_id`), 0 if none.
    async fn delivered_seq(
        &self,
        user: &UserId,
        device: &str,
        conversation_id: &str,
    ) -> StoreResult<i64>;

    /// Records that `device` of `user` acknowledged message `seq` of
    /// `conversation_id` at `now_ms` (one MSG_ACK; idempotent: the first
    /// time is kept). Unlike [`Self::record_delivered`] this says nothing
    /// about lower seqs.
    async fn record_acked(
        &self,
        user: &UserId,
        device: &str,
        conversation_id: &str,
        seq: i64,
        now_ms: i64,
    ) -> StoreResult<()>;

    /// [`Self::conversation_range`] without the messages `device` of `user`
    /// acknowledged ([`Self::record_acked`]): the first `limit` of the others.
    async fn conversation_unacked(
        &self,
        conversation_id: &str,
        after_seq: i64,
        up_to_seq: i64,
        user: &UserId,
        device: &str,
        limit: u32,
    ) -> StoreResult<Vec<StoredMessage>>;

    /// Forgets the acknowledgements of `device` of `user` at or below the
    /// cursor given for their conversation in `cursors` (conversations not
    /// listed keep theirs); returns how many were forgotten.
    async fn forget_acked(
        &self,
        user: &UserId,
        device: &str,
        cursors: &[(String, i64)],
    ) -> StoreResult<u64>;

    /// Forgets every acknowledgement recorded before `before_ms` (those of
    /// logins that stopped syncing); returns how many.
    async fn purge_acked(&self, before_ms: i64) -> StoreResult<u64>;
}

/// Users known to the server.
#[async_trait]
pub trait UserStore: Send + Sync {
    /// Records that `user` authenticated at `now_ms`, creating the user on first contact.
    async fn touch(&self, user: &UserId, now_ms: i64) -> StoreResult<()>;

    /// Whether `user` has ever been seen.
    async fn exists(&self, user: &UserId) -> StoreResult<bool>;

    /// Registers a user with a password in one transaction: the user row
    /// (with `profile`) and the credentials. `StoreError::Conflict` when the
    /// user id already exists (registered, or provisioned by a token).
    async fn create_account(&self, profile: &UserProfile, account: &Account) -> StoreResult<()>;

    /// The credentials of `user_id`, if the user registered with a password.
    async fn account(&self, user_id: &str) -> StoreResult<Option<Account>>;

    /// Profiles of those of `users` who exist, in no particular order.
    async fn profiles(&self, users: &[String]) -> StoreResult<Vec<UserProfile>>;

    /// Applies `patch` to `user`'s profile, creating the user if it was never
    /// seen; returns the profile after the change.
    async fn update_profile(
        &self,
        user: &str,
        patch: &ProfilePatch,
        now_ms: i64,
    ) -> StoreResult<UserProfile>;

    /// Users whose id or nickname contains `keyword` (case-insensitive for
    /// ASCII), ordered by user id, at most `limit`.
    async fn search_users(&self, keyword: &str, limit: u32) -> StoreResult<Vec<UserProfile>>;
}

/// Friendships, friend requests and blocklists.
#[async_trait]
pub trait FriendStore: Send + Sync {
    /// Creates or refreshes the request `req.from_id -> req.to_id` (status
    /// pending, message and `updated_at` replaced; `created_at` kept on refresh).
    async fn put_request(&self, req: &FriendRequest) -> StoreResult<()>;

    /// The request `from -> to`, if any.
    async fn request(&self, from: &str, to: &str) -> StoreResult<Option<FriendRequest>>;

    /// Requests sent to `user` (`incoming`) or by `user`, newest first, at most `limit`.
    async fn requests(
        &self,
        user: &str,
        incoming: bool,
        limit: u32,
    ) -> StoreResult<Vec<FriendRequest>>;

    /// Sets the status of the pending request `from -> to`; false if there is
    /// no pending one.
    async fn resolve_request(
        &self,
        from: &str,
        to: &str,
        status: FriendRequestStatus,
        now_ms: i64,
    ) -> StoreResult<bool>;

    /// In one transaction: both friend rows (`a` is `a.owner_id`'s side, `b`
    /// the other's; an existing row is kept as it is), and every pending
    /// request between the two marked accepted.
    async fn add_friendship(&self, a: &Friend, b: &Friend, now_ms: i64) -> StoreResult<()>;

    /// Removes both sides of the friendship; false if neither existed.
    async fn remove_friendship(&self, a: &str, b: &str) -> StoreResult<bool>;

    /// `owner`'s entry for `friend`.
    async fn friend(&self, owner: &str, friend: &str) -> StoreResult<Option<Friend>>;

    /// Every friend of `owner`, ordered by friend id.
    async fn friends(&self, owner: &str) -> StoreResult<Vec<Friend>>;

    /// Sets `owner`'s remark for `friend`; the updated entry, None if not friends.
    async fn set_remark(
        &self,
        owner: &str,
        friend: &str,
        remark: &str,
    ) -> StoreResult<Option<Friend>>;

    /// `owner` blocks `target`; false if already blocked.
    async fn block(&self, owner: &str, target: &str, now_ms: i64) -> StoreResult<bool>;

    /// `owner` unblocks `target`; false if not blocked.
    async fn unblock(&self, owner: &str, target: &str) -> StoreResult<bool>;

    /// Whom `owner` blocked, ordered by blocked id.
    async fn blocks(&self, owner: &str) -> StoreResult<Vec<Block>>;

    /// Whether `owner` blocked `target`.
    async fn is_blocked(&self, owner: &str, target: &str) -> StoreResult<bool>;
}

/// Revoked tokens (logout, refresh rotation), by JWT id, kept until they
/// expire on their own.
#[async_trait]
pub trait TokenRevocationStore: Send + Sync {
    /// Revokes token `jti` of `user`, which expires at `expires_at` (seconds).
    /// Revoking twice is not an error.
    async fn revoke(&self, jti: &str, user: &str, expires_at: i64) -> StoreResult<()>;

    /// Whether `jti` was revoked.
    async fn is_revoked(&self, jti: &str) -> StoreResult<bool>;

    /// Forgets revocations of tokens that expired before `now_secs`; returns how many.
    async fn purge_expired(&self, now_secs: i64) -> StoreResult<u64>;
}

/// Health of a backend, for `/ready`.
#[async_trait]
pub trait HealthCheck: Send + Sync {
    async fn ping(&self) -> StoreResult<()>;
}

/// Wall-clock time in milliseconds since the Unix epoch. Tests supply a fake.
pub trait Clock: Send + Sync {
    fn now_ms(&self) -> i64;
}

/// Generator of server message ids (`[A-Za-z0-9_-]`, unique across nodes).
pub trait IdGen: Send + Sync {
    fn server_msg_id(&self) -> String;
}

/// The real clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0)
    }
}

/// Result of adding members to a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddMembers {
    /// These users were added (users already in the group are skipped).
    Added(Vec<String>),
    /// Adding them would exceed the group's member limit; nothing was added.
    Full,
    /// No such group, or it is dismissed.
    NoGroup,
}

/// Groups and their members. Membership is also conversation membership:
/// a member takes part in `group_<gid>` (sync lists it) from the moment they
/// are added; a removed member no longer does.
#[async_trait]
pub trait GroupStore: Send + Sync {
    /// Creates `group` with `members` (the owner included) in one transaction.
    /// `StoreError::Conflict` if the id is taken.
    async fn create_group(&self, group: &Group, members: &[GroupMember]) -> StoreResult<()>;

    /// The group (dismissed ones too), with `member_count` filled.
    async fn get_group(&self, group_id: &str) -> StoreResult<Option<Group>>;

    /// The group's version (None if it never existed): every change to the
    /// group or its members raises it, in the change's transaction, so a
    /// copy read after a version was read is at least that new.
    async fn group_version(&self, group_id: &str) -> StoreResult<Option<i64>>;

    /// Applies `patch`; returns the updated group (None if it does not exist).
    async fn update_group(
        &self,
        group_id: &str,
        patch: &GroupPatch,
        now_ms: i64,
    ) -> StoreResult<Option<Group>>;

    /// Marks the group dismissed and removes every member. False if it did not exist
    /// or was already dismissed.
    async fn dismiss_group(&self, group_id: &str, now_ms: i64) -> StoreResult<bool>;

    /// Adds `members` atomically unless the total would exceed `max_members`.
    /// In the same transaction each new member's read cursor of the group
    /// conversation moves up to its head: the history from before they
    /// joined is read (never unread for a moment, nor streamed to them as
    /// new).
    async fn add_members(
        &self,
        group_id: &str,
        members: &[GroupMember],
        max_members: u32,
    ) -> StoreResult<AddMembers>;

    /// Removes these users; returns those who were members.
    async fn remove_members(&self, group_id: &str, users: &[String]) -> StoreResult<Vec<String>>;

    async fn get_member(&self, group_id: &str, user: &str) -> StoreResult<Option<GroupMember>>;

    /// Every member, ordered by join time then user id.
    async fn list_members(&self, group_id: &str) -> StoreResult<Vec<GroupMember>>;

    /// Changes a member's role; false if not a member.
    async fn set_member_role(
        &self,
        group_id: &str,
        user: &str,
        role: GroupRole,
    ) -> StoreResult<bool>;

    /// Mutes a member until `muted_until` (ms; 0 unmutes); false if not a member.
    async fn set_member_mute(
        &self,
        group_id: &str,
        user: &str,
        muted_until: i64,
    ) -> StoreResult<bool>;

    /// Groups `user` is a member of (not dismissed).
    async fn groups_of(&self, user: &str) -> StoreResult<Vec<Group>>;
}

/// Per-user conversation state: read cursors, unread counts, recall, the
/// conversation list.
#[async_trait]
pub trait ConversationStore: Send + Sync {
    /// Marks the message `server_msg_id` recalled by `by` at `time_ms`. Returns the
    /// updated message, or None if it does not exist. Recalling twice keeps the first.
    async fn revoke(
        &self,
        server_msg_id: &str,
        by: &str,
        time_ms: i64,
    ) -> StoreResult<Option<StoredMessage>>;

    /// Moves `user`'s read cursor in `conversation_id` forward to `up_to_seq`
    /// (never backwards). Returns the cursor before the call.
    async fn mark_read(
        &self,
        user: &str,
        conversation_id: &str,
        up_to_seq: i64,
        now_ms: i64,
    ) -> StoreResult<i64>;

    /// `user`'s read cursor in `conversation_id` (0 if none).
    async fn read_seq(&self, user: &str, conversation_id: &str) -> StoreResult<i64>;

    /// Every participant's read cursor in `conversation_id` (who read up to where).
    async fn read_cursors(&self, conversation_id: &str) -> StoreResult<Vec<(String, i64)>>;

    /// Messages of `conversation_id` after `user`'s read cursor, not sent by
    /// `user` and not recalled.
    async fn unread_count(&self, user: &str, conversation_id: &str) -> StoreResult<i64>;

    /// The conversation list of `user`, most recently updated first, at most `limit`.
    async fn conversation_list(
        &self,
        user: &str,
        limit: u32,
    ) -> StoreResult<Vec<ConversationSummary>>;

    /// Messages of `conversation_id` with `seq < before_seq` (0 = from the newest),
    /// newest first, at most `limit` — history paging.
    async fn history(
        &self,
        conversation_id: &str,
        before_seq: i64,
        limit: u32,
    ) -> StoreResult<Vec<StoredMessage>>;
}

/// Who is online, on which platforms, and when they were last seen. One
/// node keeps it in memory; several nodes share it through Redis.
#[async_trait]
pub trait PresenceStore: Send + Sync {
    /// Session `session` (unique across nodes) of `user` on `platform` is up.
    /// Returns true when the user was offline before (an online transition).
    async fn session_up(
        &self,
        user: &str,
        session: &str,
        platform: &str,
        now_ms: i64,
    ) -> StoreResult<bool>;

    /// Session `session` of `user` is gone. Returns true when it was the
    /// user's last session (an offline transition; last_seen becomes `now_ms`).
    async fn session_down(&self, user: &str, session: &str, now_ms: i64) -> StoreResult<bool>;

    /// The status of each of `users`, in the same order.
    async fn statuses(&self, users: &[String]) -> StoreResult<Vec<crate::command::UserStatus>>;
}
