//! Settings the service layer needs, filled in by the binary from its config.

use std::time::Duration;

/// What happens to a user's existing sessions when they log in again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KickPolicy {
    /// A new login on the same platform replaces the old session (KICK_OUT first).
    #[default]
    PerPlatform,
    /// One session per user, whatever the platform.
    Single,
    /// Any number of sessions; nobody is kicked.
    Multi,
}

impl KickPolicy {
    /// Whether a login on `new_platform` displaces a session on `platform`.
    pub fn displaces(self, platform: &str, new_platform: &str) -> bool {
        match self {
            Self::Multi => false,
            Self::Single => true,
            Self::PerPlatform => platform.eq_ignore_ascii_case(new_platform),
        }
    }
}

/// The `platform` both generations of the SwiftIM SDK send in AUTH_REQ
/// (IMWebSocketTransport.swift:155@5529e01, :156@07bf3fe;
/// IMTCPTransport.swift:301@07bf3fe). The SDK shows every pushed message
/// as incoming and unread (IMClient.swift:842/1247@5529e01,
/// 1137/1611@07bf3fe), so it must not be sent its user's own messages.
pub const SWIFTIM_PLATFORM: &str = "iOS";

/// The batching writer's knobs.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// Most messages per transaction.
    pub batch_size: usize,
    /// How long a partial batch waits for more messages.
    pub linger: Duration,
    /// Bound of each worker's queue (back-pressure beyond it).
    pub queue_capacity: usize,
    /// Parallel writer workers; conversations are sharded over them so one
    /// conversation is always written by the same worker, in order.
    pub workers: usize,
    /// How long a send waits for room in a full queue before it is refused
    /// ([`crate::error::Transient::Overloaded`]: no reply, the client resends).
    pub enqueue_timeout: Duration,
}

impl Default for WriterConfig {
    fn default() -> Self {
        Self {
            batch_size: 1024,
            linger: Duration::from_millis(1),
            queue_capacity: 8192,
            workers: 4,
            enqueue_timeout: Duration::from_millis(500),
        }
    }
}

/// Everything the use cases are configured with.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    pub max_content_bytes: usize,
    pub allow_demo_tokens: bool,
    pub require_registered_users: bool,
    pub kick_policy: KickPolicy,
    /// Platforms (AUTH_REQ `platform`, compared case-insensitively) whose
    /// sessions are not sent PUSH_MSG of their user's own messages sent
    /// from another session; see [`Self::echoes_own_messages`].
    pub no_own_echo_platforms: Vec<String>,
    /// Default and ceiling of messages per conversation in one batch sync.
    pub sync_default_per_conversation: u32,
    pub sync_max_per_conversation: u32,
    /// Upper bound of a sync reply body, kept under the SDK's 1 MiB packet limit.
    pub sync_max_reply_bytes: usize,
    /// Most messages streamed as BATCH_MSG after one BATCH_SYNC reply (the
    /// backlog beyond its pages); the rest waits for the next BATCH_SYNC.
    pub sync_stream_max_messages: u32,
    /// Most bytes (message elements) streamed after one BATCH_SYNC reply.
    pub sync_stream_max_bytes: usize,
    /// How long a MSG_ACK row is kept for a login that does not sync again
    /// (a login that syncs forgets its rows below its cursors at once);
    /// zero keeps them.
    pub ack_retention: Duration,
    /// Minimum interval between two relayed typing notifications of one session.
    pub typing_min_interval: Duration,
    /// How long after sending its sender may recall a message (group owners
    /// and admins may recall any message of their group at any time).
    pub recall_window: Duration,
    /// Most members of one group (owner included).
    pub max_group_members: u32,
    /// Most users one session may watch with ONLINE_STATUS_REQ.
    pub max_presence_subscriptions: usize,
    /// Groups whose members are cached in memory for the send path.
    pub group_cache_capacity: usize,
    /// How long a cached member list is trusted. Changes made through this
    /// node's `GroupService` invalidate it at once; the TTL bounds how stale
    /// a change made elsewhere (another node) can be.
    pub group_cache_ttl: Duration,
    pub writer: WriterConfig,
    /// Chat rooms (`chatroom_<id>` conversations).
    pub chat_rooms: ChatRoomConfig,
}

/// Chat rooms: large rooms with join/leave, live fan-out to members, a
/// bounded readable history and no per-member state in the store.
#[derive(Debug, Clone)]
pub struct ChatRoomConfig {
    /// Most members of one room. A full room first drops members that have
    /// no session on this node; if it is still full the join is refused.
    pub max_members: usize,
    /// Most rooms one user is in at once.
    pub max_rooms_per_user: usize,
    /// How many of a room's newest messages stay readable (SYNC_RANGE,
    /// HTTP history); older ones are not served. 0 = no history at all.
    pub history_messages: u32,
    /// A send into a room the sender is not in joins it first (the SDK has
    /// no join call); off: sends from non-members are refused.
    pub join_on_send: bool,
    /// Users may join rooms themselves (HTTP join, join on send). Off: only
    /// the app backend puts users into rooms; users may still leave.
    pub self_join: bool,
    /// Messages per second accepted in one room (with a burst of as many);
    /// 0 = unlimited.
    pub max_messages_per_second: u32,
}

impl Default for ChatRoomConfig {
    fn default() -> Self {
        Self {
            max_members: 10_000,
            max_rooms_per_user: 32,
            history_messages: 100,
            join_on_send: true,
            self_join: true,
            max_messages_per_second: 100,
        }
    }
}

impl ServiceConfig {
    /// Whether a session on `platform` is sent PUSH_MSG of its user's own
    /// messages sent from another session. The SwiftIM SDK (platform
    /// `iOS` by default) is not: it would show them as incoming and count
    /// them unread, and learns them by sync instead, where it sets the
    /// direction from `sender_id`. Other clients (the browser demo says
    /// `web`) are, and tell their own messages apart themselves.
    pub fn echoes_own_messages(&self, platform: &str) -> bool {
        !self
            .no_own_echo_platforms
            .iter()
            .any(|p| p.eq_ignore_ascii_case(platform))
    }
}

impl Default for ServiceConfig {
    fn default() -> Self {
        Self {
            max_content_bytes: 64 * 1024,
            allow_demo_tokens: false,
            require_registered_users: false,
            kick_policy: KickPolicy::PerPlatform,
            no_own_echo_platforms: vec![SWIFTIM_PLATFORM.to_owned()],
            sync_default_per_conversation: 100,
            sync_max_per_conversation: 500,
            sync_max_reply_bytes: 768 * 1024,
            sync_stream_max_messages: 10_000,
            sync_stream_max_bytes: 64 * 1024 * 1024,
            ack_retention: Duration::from_secs(30 * 24 * 3600),
            typing_min_interval: Duration::from_millis(200),
            recall_window: Duration::from_secs(120),
            max_group_members: 2000,
            max_presence_subscriptions: 1000,
            group_cache_capacity: 4096,
            group_cache_ttl: Duration::from_secs(30),
            writer: WriterConfig::default(),
            chat_rooms: ChatRoomConfig::default(),
        }
    }
}
