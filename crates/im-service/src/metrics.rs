//! The metrics of the service layer, recorded through the `metrics` facade.
//!
//! Without an installed recorder every call is a no-op, so library users pay
//! nothing; the server binary installs the Prometheus recorder. Labels take
//! values from small fixed sets only (never user, conversation or message
//! ids), so the number of series stays bounded.

use im_core::ConversationType;
use im_core::command::Event;
use metrics::{Unit, describe_counter, describe_gauge, describe_histogram, gauge};

use crate::session::Services;

/// Messages a sender submitted, after the writer answered:
/// `kind` = single|group, `outcome` = stored|duplicate|failed.
pub const MESSAGES_SENT: &str = "im_messages_sent_total";
/// Sends refused before reaching the writer, by wire error `code` (numeric).
pub const MESSAGES_REFUSED: &str = "im_messages_refused_total";
/// Replies not sent because a transient condition stopped a request the
/// client resends by itself on silence: `request` = send|batch_sync|
/// sync_range, `reason` = overloaded|shutting_down|rate_limited|
/// store_unavailable.
pub const REPLIES_SUPPRESSED: &str = "im_replies_suppressed_total";
/// Events queued to local sessions, by `event` (message, recall, read,
/// typing, kick, presence).
pub const PUSHES_ENQUEUED: &str = "im_pushes_enqueued_total";
/// Events not queued because the session's outbound queue was full (the
/// session is closed as a slow consumer).
pub const PUSHES_DROPPED: &str = "im_pushes_dropped_total";
/// Refused tokens and logins: `op` = token|login|refresh, `reason`.
pub const AUTH_FAILURES: &str = "im_auth_failures_total";
/// Messages per writer batch (one transaction).
pub const WRITER_BATCH_SIZE: &str = "im_writer_batch_size";
/// Time from handing a batch to the store until it committed or finally
/// failed, retries included, in seconds.
pub const WRITER_COMMIT_SECONDS: &str = "im_writer_commit_seconds";
/// Writer batches that failed: `retryable` = true|false (after retries).
pub const WRITER_BATCH_FAILURES: &str = "im_writer_batch_failures_total";
/// Retries of writer batches after a retryable store error.
pub const WRITER_RETRIES: &str = "im_writer_retries_total";
/// Messages waiting in the writer queues (sampled when metrics are read).
pub const WRITER_QUEUE_DEPTH: &str = "im_writer_queue_depth";
/// Store errors that reached a service call, by `kind`
/// (unavailable|conflict|other).
pub const STORE_ERRORS: &str = "im_store_errors_total";
/// Messages streamed as BATCH_MSG after BATCH_SYNC replies (the backlog
/// beyond one reply, issue 18 item 7).
pub const SYNC_STREAMED_MESSAGES: &str = "im_sync_streamed_messages_total";
/// Backlog streams that stopped before the end (cap reached, store error,
/// session gone); the client gets the rest on its next BATCH_SYNC.
pub const SYNC_STREAMS_CUT: &str = "im_sync_streams_cut_total";
/// Authenticated sessions on this node (sampled when metrics are read).
pub const SESSIONS: &str = "im_sessions";
/// Entries waiting in the cluster queue to other nodes (sampled).
pub const CLUSTER_QUEUE_DEPTH: &str = "im_cluster_queue_depth";
/// Remote pushes dropped by the cluster link: `reason` = queue_full|failed.
pub const CLUSTER_DROPPED: &str = "im_cluster_dropped_total";
/// Bus messages published to other nodes.
pub const CLUSTER_PUBLISHED: &str = "im_cluster_bus_published_total";
/// Bus messages received from other nodes.
pub const CLUSTER_RECEIVED: &str = "im_cluster_bus_received_total";

/// Anonymous uploads refused by a limit, by `reason`
/// (upload_rate_limited|upload_quota_exceeded|insufficient_storage).
pub const FILE_UPLOADS_REFUSED: &str = "im_file_uploads_refused_total";
/// Pending anonymous files deleted by the sweeper (unreferenced past the TTL).
pub const FILES_EXPIRED: &str = "im_files_expired_total";
/// Pending anonymous files marked referenced by a stored message.
pub const FILES_REFERENCED: &str = "im_files_referenced_total";
/// File references that found the marking queue full (handed to a task).
pub const FILE_REFS_QUEUE_FULL: &str = "im_file_refs_queue_full_total";
/// Pending anonymous files this node counts (sampled).
pub const FILES_PENDING: &str = "im_files_pending";
/// Bytes charged for pending anonymous files and uploads in progress (sampled).
pub const FILES_PENDING_BYTES: &str = "im_files_pending_bytes";

/// Registers the descriptions (`# HELP`) of this crate's metrics with the
/// installed recorder. Call once after installing it.
pub fn describe() {
    describe_counter!(
        MESSAGES_SENT,
        "Sends answered by the writer, by conversation kind and outcome (stored, duplicate, failed)"
    );
    describe_counter!(
        MESSAGES_REFUSED,
        "Sends refused before the writer, by wire error code"
    );
    describe_counter!(
        REPLIES_SUPPRESSED,
        "Replies left out so that the client resends (transient conditions), by request and reason"
    );
    describe_counter!(
        PUSHES_ENQUEUED,
        "Events queued to local sessions' outbound queues, by event"
    );
    describe_counter!(
        PUSHES_DROPPED,
        "Events dropped because a session's outbound queue was full"
    );
    describe_counter!(
        AUTH_FAILURES,
        "Refused tokens and logins, by operation and reason"
    );
    describe_histogram!(
        WRITER_BATCH_SIZE,
        Unit::Count,
        "Messages per writer batch (one transaction)"
    );
    describe_histogram!(
        WRITER_COMMIT_SECONDS,
        Unit::Seconds,
        "Time to commit one writer batch, retries included"
    );
    describe_counter!(
        WRITER_BATCH_FAILURES,
        "Writer batches that failed, by whether the error was retryable"
    );
    describe_counter!(
        WRITER_RETRIES,
        "Retries of writer batches after retryable store errors"
    );
    describe_gauge!(
        WRITER_QUEUE_DEPTH,
        Unit::Count,
        "Messages waiting in the writer queues"
    );
    describe_counter!(
        STORE_ERRORS,
        "Store errors that reached a service call, by kind"
    );
    describe_counter!(
        SYNC_STREAMED_MESSAGES,
        "Messages streamed as BATCH_MSG after BATCH_SYNC replies"
    );
    describe_counter!(
        SYNC_STREAMS_CUT,
        "Sync backlog streams stopped before the end (cap, error, session gone)"
    );
    describe_gauge!(SESSIONS, Unit::Count, "Authenticated sessions on this node");
    describe_gauge!(
        CLUSTER_QUEUE_DEPTH,
        Unit::Count,
        "Entries waiting in the queue to other nodes"
    );
    describe_counter!(
        CLUSTER_DROPPED,
        "Remote pushes dropped by the cluster link, by reason"
    );
    describe_counter!(CLUSTER_PUBLISHED, "Bus messages published to other nodes");
    describe_counter!(CLUSTER_RECEIVED, "Bus messages received from other nodes");
    describe_counter!(
        FILE_UPLOADS_REFUSED,
        "Anonymous uploads refused by a per-address or global limit, by reason"
    );
    describe_counter!(
        FILES_EXPIRED,
        "Unreferenced anonymous files deleted after files.anonymous_ttl"
    );
    describe_counter!(
        FILES_REFERENCED,
        "Anonymous files marked referenced by a stored message"
    );
    describe_counter!(
        FILE_REFS_QUEUE_FULL,
        "File references that found the marking queue full"
    );
    describe_gauge!(FILES_PENDING, Unit::Count, "Unreferenced anonymous files");
    describe_gauge!(
        FILES_PENDING_BYTES,
        Unit::Bytes,
        "Bytes held by unreferenced anonymous files and anonymous uploads in progress"
    );
}

/// Sets the gauges that are read from live state rather than kept up to
/// date on the hot path: writer and cluster queue depths, sessions. Call it
/// right before rendering.
pub fn sample(services: &Services) {
    let m = &services.messaging;
    gauge!(WRITER_QUEUE_DEPTH).set(as_f64(m.writer.queued()));
    let hub = m.hub();
    gauge!(SESSIONS).set(as_f64(hub.session_count()));
    if let Some(c) = hub.cluster() {
        gauge!(CLUSTER_QUEUE_DEPTH).set(as_f64(c.queued()));
    }
    let files = services.files.pending_usage();
    gauge!(FILES_PENDING).set(as_f64(files.files));
    #[allow(clippy::cast_precision_loss)] // byte counts far below 2^52
    gauge!(FILES_PENDING_BYTES).set(files.bytes as f64);
}

#[allow(clippy::cast_precision_loss)] // counts far below 2^52
fn as_f64(n: usize) -> f64 {
    n as f64
}

/// The `kind` label of a conversation type.
pub(crate) fn conversation_kind(t: ConversationType) -> &'static str {
    match t {
        ConversationType::Single => "single",
        ConversationType::Group => "group",
        ConversationType::ChatRoom => "chat_room",
        ConversationType::System => "system",
    }
}

/// The `event` label of a push.
pub(crate) fn event_name(e: &Event) -> &'static str {
    match e {
        Event::Message(_) => "message",
        Event::Revoked { .. } => "recall",
        Event::ReadReceipt { .. } => "read",
        Event::Typing { .. } => "typing",
        Event::KickOut { .. } => "kick",
        Event::StatusChange(_) => "presence",
    }
}

/// The `kind` label of a store error.
pub(crate) fn store_error_kind(e: &im_core::StoreError) -> &'static str {
    match e {
        im_core::StoreError::Unavailable(_) => "unavailable",
        im_core::StoreError::Conflict(_) => "conflict",
        im_core::StoreError::Other(_) => "other",
    }
}
