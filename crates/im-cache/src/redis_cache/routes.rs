//! [`RouteTable`] on Redis: a hash per user, entries checked against the
//! liveness keys of their nodes.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use im_core::cluster::{Route, RouteTable};
use im_core::ports::StoreResult;

use super::encoding::decode_entry;
use super::{Inner, local_insert, local_remove};

/// The route table of one node (see the module doc of `redis` for keys).
///
/// `routes` costs two round trips whatever the number of users: one
/// pipeline of HGETALLs, one MGET of the nodes seen. Entries of dead nodes
/// are left out and pruned in the background.
#[derive(Clone)]
pub struct RedisRouteTable {
    inner: Arc<Inner>,
}

impl fmt::Debug for RedisRouteTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisRouteTable")
            .field("node_id", &self.inner.opts.node_id)
            .finish_non_exhaustive()
    }
}

impl RedisRouteTable {
    pub(crate) fn new(inner: Arc<Inner>) -> Self {
        Self { inner }
    }
}

#[async_trait]
impl RouteTable for RedisRouteTable {
    async fn add(&self, user: &str, session_key: &str, platform: &str) -> StoreResult<()> {
        let key = self.inner.keys.routes(user);
        let value = self.inner.entry(platform);
        self.inner
            .with_conn(|mut c| async move {
                redis::cmd("HSET")
                    .arg(&key)
                    .arg(session_key)
                    .arg(&value)
                    .query_async::<()>(&mut c)
                    .await
            })
            .await?;
        local_insert(
            &mut self.inner.local.lock().routes,
            user,
            session_key,
            platform,
        );
        Ok(())
    }

    async fn remove(&self, user: &str, session_key: &str) -> StoreResult<()> {
        // Forget it locally first: a failed HDEL leaves an entry that dies
        // with this node, and is not written again by a refresh.
        local_remove(&mut self.inner.local.lock().routes, user, session_key);
        let key = self.inner.keys.routes(user);
        self.inner
            .with_conn(|mut c| async move {
                redis::cmd("HDEL")
                    .arg(&key)
                    .arg(session_key)
                    .query_async::<()>(&mut c)
                    .await
            })
            .await
    }

    async fn routes(&self, users: &[String]) -> StoreResult<Vec<Vec<Route>>> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for user in users {
            pipe.hgetall(self.inner.keys.routes(user));
        }
        let hashes: Vec<Vec<(String, String)>> = self
            .inner
            .with_conn(|mut c| async move { pipe.query_async(&mut c).await })
            .await?;
        let nodes: BTreeSet<String> = hashes
            .iter()
            .flatten()
            .filter_map(|(_, v)| decode_entry(v).map(|e| e.node_id.to_owned()))
            .collect();
        let live = self
            .inner
            .live_incarnations(nodes.into_iter().collect())
            .await?;
        let mut out = Vec::with_capacity(users.len());
        let mut dead: HashMap<&str, Vec<(String, String)>> = HashMap::new();
        for (user, hash) in users.iter().zip(hashes) {
            let mut routes = Vec::with_capacity(hash.len());
            for (session_key, value) in hash {
                let alive = decode_entry(&value).is_some_and(|e| {
                    live.get(e.node_id)
                        .is_some_and(|inc| inc.as_deref() == Some(e.incarnation))
                });
                if alive {
                    if let Some(e) = decode_entry(&value) {
                        routes.push(Route {
                            node_id: e.node_id.to_owned(),
                            session_key,
                            platform: e.platform.to_owned(),
                        });
                    }
                } else {
                    dead.entry(user.as_str())
                        .or_default()
                        .push((session_key, value));
                }
            }
            routes.sort_by(|a, b| a.session_key.cmp(&b.session_key));
            out.push(routes);
        }
        for (user, entries) in dead {
            self.inner
                .prune_later(self.inner.keys.routes(user), entries);
        }
        Ok(out)
    }

    async fn refresh(&self) -> StoreResult<()> {
        let previous = self.inner.write_liveness().await?;
        if previous.as_deref() == Some(self.inner.incarnation.as_str()) {
            return Ok(());
        }
        match previous {
            None => tracing::warn!(
                node_id = %self.inner.opts.node_id,
                "this node's liveness key had expired (refresh too late?): \
                 writing its sessions again"
            ),
            Some(other) => tracing::error!(
                node_id = %self.inner.opts.node_id,
                incarnation = %self.inner.incarnation,
                other_incarnation = %other,
                "another process uses this node id: node ids must be unique"
            ),
        }
        self.inner.rewrite_local_sessions().await
    }

    fn node_id(&self) -> &str {
        &self.inner.opts.node_id
    }
}
