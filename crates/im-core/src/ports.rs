//! Ports: the traits adapters implement. Object-safe, `Send + Sync`, used as
//! `Arc<dyn Port>` by the service layer.

use async_trait::async_trait;

use crate::error::StoreError;
use crate::ids::UserId;
use crate::model::{NewMessage, StoredMessage};

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

/// One entry of a user's inbox: the per-user change cursor and the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxEntry {
    pub cursor: i64,
    pub message: StoredMessage,
}

/// Messages and per-user inboxes.
#[async_trait]
pub trait MessageStore: Send + Sync {
    /// Persists `batch` in one transaction. For each input, in order: either
    /// the newly stored message with its allocated seq, or — when
    /// (sender, client_msg_id) already exists, in the store or earlier in the
    /// same batch — the original message with `duplicate = true`.
    /// Per-conversation seqs are allocated gapless from 1; each participant's
    /// inbox cursor advances by one per new message. Returns only after commit.
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

    /// The highest inbox cursor of `user` (0 when the inbox is empty).
    async fn inbox_head(&self, user: &UserId) -> StoreResult<i64>;

    /// Inbox entries of `user` with `cursor > after`, ascending, at most `limit`.
    async fn inbox_after(
        &self,
        user: &UserId,
        after: i64,
        limit: u32,
    ) -> StoreResult<Vec<InboxEntry>>;

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
}

/// Users known to the server.
#[async_trait]
pub trait UserStore: Send + Sync {
    /// Records that `user` authenticated at `now_ms`, creating the user on first contact.
    async fn touch(&self, user: &UserId, now_ms: i64) -> StoreResult<()>;

    /// Whether `user` has ever been seen.
    async fn exists(&self, user: &UserId) -> StoreResult<bool>;
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
