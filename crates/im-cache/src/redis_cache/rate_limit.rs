//! [`RateLimiter`] on Redis: fixed windows on the server's clock.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use im_core::cluster::RateLimiter;
use im_core::ports::StoreResult;

use super::Inner;

/// Fixed-window counters `{p}rl:{key}:{window_index}`, the index taken from
/// Redis's clock (TIME) so every node counts in the same window; INCR and
/// the expiry are one script. Same semantics as [`crate::MemoryRateLimiter`].
#[derive(Clone)]
pub struct RedisRateLimiter {
    inner: Arc<Inner>,
}

impl fmt::Debug for RedisRateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisRateLimiter").finish_non_exhaustive()
    }
}

impl RedisRateLimiter {
    pub(crate) fn new(inner: Arc<Inner>) -> Self {
        Self { inner }
    }
}

#[async_trait]
impl RateLimiter for RedisRateLimiter {
    async fn hit(&self, key: &str, limit: u32, window_ms: u64) -> StoreResult<bool> {
        let inner = &self.inner;
        let base = inner.keys.rate(key);
        let window_ms = window_ms.max(1);
        let count: i64 = inner
            .with_conn(|mut c| {
                let mut inv = inner.scripts.rate_hit.key(&base);
                inv.arg(window_ms);
                async move { inv.invoke_async(&mut c).await }
            })
            .await?;
        Ok(count <= i64::from(limit))
    }
}
