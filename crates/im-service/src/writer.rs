//! The batching message writer.
//!
//! Sends are queued into bounded per-worker queues (conversations are sharded
//! over workers, so one conversation is always written by one worker, in
//! arrival order). A worker takes the first waiting message, then whatever
//! else is queued (up to `batch_size`), waits at most `linger` for a partial
//! batch to fill, and hands the batch to [`MessageStore::append`] — one
//! transaction. Each sender's reply is released only after that commit.
//! A full queue makes senders wait up to `enqueue_timeout`, then refuses
//! them: back-pressure, never unbounded growth.

use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::time::Duration;

use im_core::model::NewMessage;
use im_core::ports::{Appended, MessageStore};
use im_core::{ConversationType, StoreError};
use metrics::{counter, histogram};
use thiserror::Error;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::config::WriterConfig;
use crate::metrics::{
    WRITER_BATCH_FAILURES, WRITER_BATCH_SIZE, WRITER_COMMIT_SECONDS, WRITER_RETRIES,
};

/// Why a message could not be written.
#[derive(Debug, Error)]
pub enum WriteError {
    /// The queue stayed full for `enqueue_timeout`.
    #[error("writer queue is full")]
    Overloaded,
    /// The writer has shut down.
    #[error("writer is shut down")]
    Closed,
    /// The store failed the batch (after retries when retryable).
    #[error(transparent)]
    Store(#[from] StoreError),
}

struct Job {
    msg: NewMessage,
    reply: oneshot::Sender<Result<Appended, WriteError>>,
}

/// Handle to the writer workers. Cheap to clone.
#[derive(Clone)]
pub struct MessageWriter {
    queues: Arc<[mpsc::Sender<Job>]>,
    hasher: RandomState,
    enqueue_timeout: Duration,
}

impl std::fmt::Debug for MessageWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessageWriter")
            .field("workers", &self.queues.len())
            .finish()
    }
}

/// A queued message whose commit is awaited with [`Pending::wait`].
#[derive(Debug)]
pub struct Pending {
    rx: oneshot::Receiver<Result<Appended, WriteError>>,
    conversation_type: ConversationType,
}

impl Pending {
    /// Resolves once the batch holding this message has committed (or failed).
    pub async fn wait(self) -> Result<Appended, WriteError> {
        self.rx.await.unwrap_or(Err(WriteError::Closed))
    }

    /// The kind of conversation the queued message belongs to.
    pub fn conversation_type(&self) -> ConversationType {
        self.conversation_type
    }
}

/// Retries of a batch whose store error is retryable, with these pauses.
const RETRY_BACKOFF_MS: [u64; 4] = [10, 50, 200, 1000];

impl MessageWriter {
    /// Starts the workers on the current runtime. They stop when every
    /// `MessageWriter` clone is dropped and the queues drain; the returned
    /// set completes then. Dropping the set aborts the workers, so keep it.
    pub fn spawn(store: Arc<dyn MessageStore>, cfg: &WriterConfig) -> (Self, JoinSet<()>) {
        let workers = cfg.workers.max(1);
        let per_queue = cfg.queue_capacity.max(1).div_ceil(workers);
        let mut set = JoinSet::new();
        let mut queues = Vec::with_capacity(workers);
        for _ in 0..workers {
            let (tx, rx) = mpsc::channel(per_queue);
            queues.push(tx);
            set.spawn(worker(
                rx,
                Arc::clone(&store),
                cfg.batch_size.max(1),
                cfg.linger,
            ));
        }
        let writer = Self {
            queues: queues.into(),
            hasher: RandomState::new(),
            enqueue_timeout: cfg.enqueue_timeout,
        };
        (writer, set)
    }

    /// Queues `msg` (waiting up to the enqueue timeout for room) and returns
    /// the handle to await its commit. Enqueue order is write order within a
    /// conversation.
    pub async fn submit(&self, msg: NewMessage) -> Result<Pending, WriteError> {
        let i = (self.hasher.hash_one(&msg.conversation_id) as usize) % self.queues.len().max(1);
        let queue = self.queues.get(i).ok_or(WriteError::Closed)?;
        let (tx, rx) = oneshot::channel();
        let conversation_type = msg.conversation_type;
        let job = Job { msg, reply: tx };
        match queue.send_timeout(job, self.enqueue_timeout).await {
            Ok(()) => Ok(Pending {
                rx,
                conversation_type,
            }),
            Err(mpsc::error::SendTimeoutError::Timeout(_)) => Err(WriteError::Overloaded),
            Err(mpsc::error::SendTimeoutError::Closed(_)) => Err(WriteError::Closed),
        }
    }

    /// Messages waiting in the queues (for metrics).
    pub fn queued(&self) -> usize {
        self.queues
            .iter()
            .map(|q| q.max_capacity() - q.capacity())
            .sum()
    }
}

async fn worker(
    mut rx: mpsc::Receiver<Job>,
    store: Arc<dyn MessageStore>,
    batch_size: usize,
    linger: Duration,
) {
    let mut jobs: Vec<Job> = Vec::with_capacity(batch_size);
    let mut batch: Vec<NewMessage> = Vec::with_capacity(batch_size);
    while let Some(first) = rx.recv().await {
        jobs.push(first);
        // Take what is already queued, then linger for a partial batch.
        while jobs.len() < batch_size {
            match rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        if jobs.len() < batch_size && !linger.is_zero() {
            let deadline = Instant::now() + linger;
            while jobs.len() < batch_size {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some(job)) => jobs.push(job),
                    Ok(None) | Err(_) => break,
                }
            }
        }
        // Senders that gave up (connection gone) still get their message
        // written: it was accepted into the queue and may have been retried.
        batch.extend(jobs.iter().map(|j| j.msg.clone()));
        histogram!(WRITER_BATCH_SIZE).record(usize_f64(batch.len()));
        let started = Instant::now();
        let result = append_with_retry(store.as_ref(), &batch).await;
        histogram!(WRITER_COMMIT_SECONDS).record(started.elapsed().as_secs_f64());
        batch.clear();
        match result {
            Ok(appended) if appended.len() == jobs.len() => {
                for (job, a) in jobs.drain(..).zip(appended) {
                    let _ = job.reply.send(Ok(a));
                }
            }
            Ok(appended) => {
                tracing::error!(
                    expected = jobs.len(),
                    got = appended.len(),
                    "store returned a short batch"
                );
                for job in jobs.drain(..) {
                    let _ = job.reply.send(Err(WriteError::Store(StoreError::Other(
                        "short batch".into(),
                    ))));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, size = jobs.len(), "message batch failed");
                let msg = e.to_string();
                let retryable = e.is_retryable();
                counter!(WRITER_BATCH_FAILURES, "retryable" => if retryable { "true" } else { "false" })
                    .increment(1);
                for job in jobs.drain(..) {
                    let err = if retryable {
                        StoreError::Unavailable(msg.clone())
                    } else {
                        StoreError::Other(msg.clone())
                    };
                    let _ = job.reply.send(Err(WriteError::Store(err)));
                }
            }
        }
    }
}

#[allow(clippy::cast_precision_loss)] // batch sizes are at most 10000
fn usize_f64(n: usize) -> f64 {
    n as f64
}

async fn append_with_retry(
    store: &dyn MessageStore,
    batch: &[NewMessage],
) -> Result<Vec<Appended>, StoreError> {
    let mut attempt = 0;
    loop {
        match store.append(batch).await {
            Ok(v) => return Ok(v),
            Err(e) if e.is_retryable() => match RETRY_BACKOFF_MS.get(attempt) {
                Some(ms) => {
                    tracing::warn!(error = %e, attempt, "retrying message batch");
                    counter!(WRITER_RETRIES).increment(1);
                    tokio::time::sleep(Duration::from_millis(*ms)).await;
                    attempt += 1;
                }
                None => return Err(e),
            },
            Err(e) => return Err(e),
        }
    }
}
