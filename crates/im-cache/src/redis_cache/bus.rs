//! [`Bus`] on Redis pub/sub.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use im_core::StoreError;
use im_core::cluster::{Bus, BusHandler};
use im_core::ports::StoreResult;

use super::{Inner, map_redis};

/// First wait before reconnecting the subscriber; doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How often the subscriber PINGs, to notice a connection that died silently.
const PING_EVERY: Duration = Duration::from_secs(10);

/// The bus of one node: PUBLISH to `{p}bus:node:{node_id}` or `{p}bus:all`
/// through the pool; [`Bus::start`] subscribes to this node's channel and
/// `{p}bus:all` on a connection of its own.
///
/// At most once: what is published while the subscriber is disconnected is
/// lost (Redis keeps nothing for absent subscribers). Nothing is buffered
/// here: messages go to the handler as they arrive, and a slow subscriber
/// is Redis's to cut off (`client-output-buffer-limit pubsub`), after which
/// it reconnects.
#[derive(Clone)]
pub struct RedisBus {
    inner: Arc<Inner>,
}

impl fmt::Debug for RedisBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBus")
            .field("node_id", &self.inner.opts.node_id)
            .finish_non_exhaustive()
    }
}

impl RedisBus {
    pub(crate) fn new(inner: Arc<Inner>) -> Self {
        Self { inner }
    }

    async fn publish_to(&self, channel: String, payload: &[u8]) -> StoreResult<()> {
        self.inner
            .with_conn(|mut c| async move {
                redis::cmd("PUBLISH")
                    .arg(&channel)
                    .arg(payload)
                    .query_async::<()>(&mut c)
                    .await
            })
            .await
    }
}

#[async_trait]
impl Bus for RedisBus {
    async fn publish(&self, node_id: &str, payload: &[u8]) -> StoreResult<()> {
        self.publish_to(self.inner.keys.bus_node(node_id), payload)
            .await
    }

    async fn broadcast(&self, payload: &[u8]) -> StoreResult<()> {
        self.publish_to(self.inner.keys.bus_all(), payload).await
    }

    fn start(&self, handler: Arc<dyn BusHandler>) {
        if self.inner.bus_started.swap(true, Ordering::SeqCst) {
            tracing::warn!("the redis bus was started twice; ignoring the second start");
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            tracing::error!("the redis bus needs a tokio runtime to start; it is not running");
            self.inner.bus_started.store(false, Ordering::SeqCst);
            return;
        };
        let inner = Arc::clone(&self.inner);
        rt.spawn(subscriber(inner, handler));
    }
}

/// Subscribes and delivers, reconnecting after failures, forever.
async fn subscriber(inner: Arc<Inner>, handler: Arc<dyn BusHandler>) {
    let channels = [
        inner.keys.bus_node(&inner.opts.node_id),
        inner.keys.bus_all(),
    ];
    let mut backoff = MIN_BACKOFF;
    loop {
        let mut subscribed = false;
        match subscribe_and_deliver(&inner, &channels, handler.as_ref(), &mut subscribed).await {
            Ok(()) => tracing::warn!("redis bus connection closed; reconnecting"),
            Err(e) => tracing::warn!(error = %e, ?backoff, "redis bus failed; reconnecting"),
        }
        if subscribed {
            backoff = MIN_BACKOFF;
            handler.on_subscription(false);
        }
        tokio::time::sleep(backoff).await;
        backoff = backoff.saturating_mul(2).min(MAX_BACKOFF);
    }
}

/// One connection's life: returns when it closes or fails.
async fn subscribe_and_deliver(
    inner: &Inner,
    channels: &[String; 2],
    handler: &dyn BusHandler,
    subscribed: &mut bool,
) -> StoreResult<()> {
    let timeout = inner.opts.connect_timeout;
    let pubsub = within(timeout, inner.client.get_async_pubsub()).await?;
    let (mut sink, mut stream) = pubsub.split();
    within(timeout, sink.subscribe(channels.as_slice())).await?;
    *subscribed = true;
    tracing::info!(channels = ?channels, "redis bus subscribed");
    // Broadcasts published while we were away are gone.
    handler.on_subscription(true);
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ping.tick().await;
    loop {
        tokio::select! {
            msg = stream.next() => match msg {
                Some(msg) => handler.on_message(msg.get_payload_bytes()),
                None => return Ok(()),
            },
            _ = ping.tick() => {
                within(timeout, sink.ping::<redis::Value>()).await?;
            }
        }
    }
}

async fn within<T>(
    timeout: Duration,
    fut: impl Future<Output = Result<T, redis::RedisError>>,
) -> StoreResult<T> {
    match tokio::time::timeout(timeout, fut).await {
        Ok(r) => r.map_err(map_redis),
        Err(_) => Err(super::counted(StoreError::Unavailable(format!(
            "redis did not answer within {timeout:?}"
        )))),
    }
}
