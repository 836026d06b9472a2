//! [`PresenceStore`] on Redis, with the semantics of
//! [`crate::MemoryPresence`]; sessions of dead nodes do not count.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use im_core::StoreError;
use im_core::command::UserStatus;
use im_core::ports::{PresenceStore, StoreResult};

use super::encoding::decode_entry;
use super::{Inner, local_insert, local_remove};

/// Presence shared by the nodes: a hash of live sessions per user and a
/// last_seen key. Up and down are Lua scripts, so of two nodes racing only
/// one reports a transition. A session counts while its node is alive, so
/// the users of a killed node go offline after its `route_ttl` (their
/// last_seen stays at their latest recorded up or down).
#[derive(Clone)]
pub struct RedisPresence {
    inner: Arc<Inner>,
}

impl fmt::Debug for RedisPresence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisPresence")
            .field("node_id", &self.inner.opts.node_id)
            .finish_non_exhaustive()
    }
}

impl RedisPresence {
    pub(crate) fn new(inner: Arc<Inner>) -> Self {
        Self { inner }
    }
}

#[async_trait]
impl PresenceStore for RedisPresence {
    async fn session_up(
        &self,
        user: &str,
        session: &str,
        platform: &str,
        now_ms: i64,
    ) -> StoreResult<bool> {
        let inner = &self.inner;
        let hash = inner.keys.presence(user);
        let last_seen = inner.keys.last_seen(user);
        let entry = inner.entry(platform);
        let node_prefix = inner.keys.node_prefix();
        let became_online: i64 = inner
            .with_conn(|mut c| {
                let mut inv = inner.scripts.presence_up.key(&hash);
                inv.key(&last_seen)
                    .arg(session)
                    .arg(&entry)
                    .arg(now_ms)
                    .arg(&node_prefix);
                async move { inv.invoke_async(&mut c).await }
            })
            .await?;
        local_insert(&mut inner.local.lock().presence, user, session, platform);
        Ok(became_online == 1)
    }

    async fn session_down(&self, user: &str, session: &str, now_ms: i64) -> StoreResult<bool> {
        let inner = &self.inner;
        local_remove(&mut inner.local.lock().presence, user, session);
        let hash = inner.keys.presence(user);
        let last_seen = inner.keys.last_seen(user);
        let node_prefix = inner.keys.node_prefix();
        let went_offline: i64 = inner
            .with_conn(|mut c| {
                let mut inv = inner.scripts.presence_down.key(&hash);
                inv.key(&last_seen)
                    .arg(session)
                    .arg(now_ms)
                    .arg(&node_prefix);
                async move { inv.invoke_async(&mut c).await }
            })
            .await?;
        Ok(went_offline == 1)
    }

    async fn statuses(&self, users: &[String]) -> StoreResult<Vec<UserStatus>> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        let inner = &self.inner;
        let mut pipe = redis::pipe();
        for user in users {
            pipe.hgetall(inner.keys.presence(user))
                .get(inner.keys.last_seen(user));
        }
        let replies: Vec<redis::Value> = inner
            .with_conn(|mut c| async move { pipe.query_async(&mut c).await })
            .await?;
        let mut per_user: Vec<(Vec<(String, String)>, i64)> = Vec::with_capacity(users.len());
        let mut replies = replies.into_iter();
        while let (Some(hash), Some(seen)) = (replies.next(), replies.next()) {
            let hash: Vec<(String, String)> = redis::from_redis_value(hash).map_err(bad_reply)?;
            let seen: Option<String> = redis::from_redis_value(seen).map_err(bad_reply)?;
            let seen = seen.and_then(|s| s.parse::<i64>().ok()).unwrap_or(0);
            per_user.push((hash, seen));
        }
        let nodes: BTreeSet<String> = per_user
            .iter()
            .flat_map(|(h, _)| h.iter())
            .filter_map(|(_, v)| decode_entry(v).map(|e| e.node_id.to_owned()))
            .collect();
        let live = inner.live_incarnations(nodes.into_iter().collect()).await?;
        let mut out = Vec::with_capacity(users.len());
        let mut dead: HashMap<&str, Vec<(String, String)>> = HashMap::new();
        for (user, (hash, last_seen)) in users.iter().zip(per_user) {
            let mut platforms = Vec::new();
            for (session, value) in hash {
                let platform = decode_entry(&value).and_then(|e| {
                    live.get(e.node_id)
                        .is_some_and(|inc| inc.as_deref() == Some(e.incarnation))
                        .then(|| e.platform.to_owned())
                });
                match platform {
                    Some(p) => platforms.push(p),
                    None => dead
                        .entry(user.as_str())
                        .or_default()
                        .push((session, value)),
                }
            }
            platforms.sort();
            platforms.dedup();
            out.push(UserStatus {
                user_id: user.clone(),
                online: !platforms.is_empty(),
                platforms,
                last_seen,
            });
        }
        for (user, entries) in dead {
            inner.prune_later(inner.keys.presence(user), entries);
        }
        Ok(out)
    }
}

fn bad_reply(e: impl fmt::Display) -> StoreError {
    StoreError::Other(format!("unexpected redis reply: {e}"))
}
