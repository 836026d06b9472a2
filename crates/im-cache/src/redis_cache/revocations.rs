//! [`TokenRevocationStore`] on Redis: one key per revoked token, expiring
//! with the token.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use im_core::ports::{Clock, StoreResult, SystemClock, TokenRevocationStore};

use super::Inner;

/// Revocations as `{p}revoked:{jti}` keys that expire (EXAT) when the token
/// does, so nothing needs purging. A token already expired is not stored.
#[derive(Clone)]
pub struct RedisRevocations {
    inner: Arc<Inner>,
}

impl fmt::Debug for RedisRevocations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisRevocations").finish_non_exhaustive()
    }
}

impl RedisRevocations {
    pub(crate) fn new(inner: Arc<Inner>) -> Self {
        Self { inner }
    }
}

#[async_trait]
impl TokenRevocationStore for RedisRevocations {
    async fn revoke(&self, jti: &str, user: &str, expires_at: i64) -> StoreResult<()> {
        let now_secs = SystemClock.now_ms().div_euclid(1000);
        if expires_at <= now_secs {
            // Expired tokens are refused anyway.
            return Ok(());
        }
        let key = self.inner.keys.revoked(jti);
        self.inner
            .with_conn(|mut c| async move {
                redis::cmd("SET")
                    .arg(&key)
                    .arg(user)
                    .arg("EXAT")
                    .arg(expires_at)
                    .query_async::<()>(&mut c)
                    .await
            })
            .await
    }

    async fn is_revoked(&self, jti: &str) -> StoreResult<bool> {
        let key = self.inner.keys.revoked(jti);
        self.inner
            .with_conn(
                |mut c| async move { redis::cmd("EXISTS").arg(&key).query_async(&mut c).await },
            )
            .await
    }

    /// Redis expires revocations itself: always 0.
    async fn purge_expired(&self, _now_secs: i64) -> StoreResult<u64> {
        Ok(0)
    }
}
