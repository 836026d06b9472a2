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
    /// with ERR_SEND_TOO_FAST.
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
}

impl Default for ServiceConfig {
    fn default() -> Self {
        Self {
            max_content_bytes: 64 * 1024,
            allow_demo_tokens: false,
            require_registered_users: false,
            kick_policy: KickPolicy::PerPlatform,
            sync_default_per_conversation: 100,
            sync_max_per_conversation: 500,
            sync_max_reply_bytes: 768 * 1024,
            sync_stream_max_messages: 10_000,
            sync_stream_max_bytes: 64 * 1024 * 1024,
            typing_min_interval: Duration::from_millis(200),
            recall_window: Duration::from_secs(120),
            max_group_members: 2000,
            max_presence_subscriptions: 1000,
            group_cache_capacity: 4096,
            group_cache_ttl: Duration::from_secs(30),
            writer: WriterConfig::default(),
        }
    }
}
