//! Blocklists, cached in memory for the send path: "has the receiver
//! blocked the sender?" is asked on every 1:1 send and typing event, so
//! each owner's list is loaded once from the [`FriendStore`] and kept until
//! it changes here ([`BlockCache::invalidate`]), its TTL passes, or it is
//! evicted by capacity. An invalidation bumps an epoch, so a load that raced
//! with a change is used once but not cached.
//!
//! Several nodes: a change is broadcast on the bus; a node that missed it
//! sees it when the TTL expires.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use im_core::ports::{FriendStore, StoreResult};
use parking_lot::Mutex;

struct Entry {
    blocked: Arc<HashSet<String>>,
    loaded: Instant,
}

/// Cached blocklists by owner.
pub(crate) struct BlockCache {
    store: Arc<dyn FriendStore>,
    cache: Mutex<HashMap<String, Entry>>,
    epoch: AtomicU64,
    capacity: usize,
    ttl: Duration,
    /// Changes are broadcast to the other nodes' caches through it.
    cluster: Option<Arc<crate::cluster::Cluster>>,
    /// False while invalidations from other nodes may be missed (the bus
    /// is down): nothing is served from or put into the cache.
    coherent: std::sync::atomic::AtomicBool,
}

impl BlockCache {
    pub fn new(
        store: Arc<dyn FriendStore>,
        capacity: usize,
        ttl: Duration,
        cluster: Option<Arc<crate::cluster::Cluster>>,
    ) -> Self {
        Self {
            store,
            cache: Mutex::new(HashMap::new()),
            epoch: AtomicU64::new(0),
            capacity,
            ttl,
            cluster,
            coherent: std::sync::atomic::AtomicBool::new(true),
        }
    }

    /// Whether `owner` blocked `target`.
    pub async fn is_blocked(&self, owner: &str, target: &str) -> StoreResult<bool> {
        let coherent = self.coherent.load(Ordering::SeqCst);
        if let Some(e) = self.cache.lock().get(owner).filter(|_| coherent) {
            if e.loaded.elapsed() < self.ttl {
                return Ok(e.blocked.contains(target));
            }
        }
        let epoch = self.epoch.load(Ordering::SeqCst);
        let blocked: HashSet<String> = self
            .store
            .blocks(owner)
            .await?
            .into_iter()
            .map(|b| b.blocked_id)
            .collect();
        let hit = blocked.contains(target);
        if self.capacity > 0 {
            let mut cache = self.cache.lock();
            if self.epoch.load(Ordering::SeqCst) == epoch && self.coherent.load(Ordering::SeqCst) {
                if cache.len() >= self.capacity && !cache.contains_key(owner) {
                    let ttl = self.ttl;
                    cache.retain(|_, e| e.loaded.elapsed() < ttl);
                    if cache.len() >= self.capacity {
                        let oldest = cache
                            .iter()
                            .min_by_key(|(_, e)| e.loaded)
                            .map(|(k, _)| k.clone());
                        if let Some(k) = oldest {
                            cache.remove(&k);
                        }
                    }
                }
                cache.insert(
                    owner.to_owned(),
                    Entry {
                        blocked: Arc::new(blocked),
                        loaded: Instant::now(),
                    },
                );
            }
        }
        Ok(hit)
    }

    /// Forgets `owner` here and on the other nodes; call after committing a change.
    pub fn invalidate(&self, owner: &str) {
        if let Some(c) = &self.cluster {
            c.broadcast(crate::cluster::BusMessage::InvalidateBlocks {
                owner: owner.to_owned(),
            });
        }
        self.invalidate_local(owner);
    }

    /// Forgets `owner` on this node only.
    pub fn invalidate_local(&self, owner: &str) {
        let mut cache = self.cache.lock();
        self.epoch.fetch_add(1, Ordering::SeqCst);
        cache.remove(owner);
    }

    /// Drops every cached blocklist on this node; while `coherent` is
    /// false (the bus is down) nothing is cached.
    pub fn set_coherent(&self, coherent: bool) {
        let mut cache = self.cache.lock();
        self.epoch.fetch_add(1, Ordering::SeqCst);
        self.coherent.store(coherent, Ordering::SeqCst);
        cache.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use im_testkit::MemoryStore;

    #[tokio::test]
    async fn caches_until_invalidated_and_bounds_capacity() {
        let store = Arc::new(MemoryStore::new());
        let cache = BlockCache::new(store.clone(), 2, Duration::from_secs(60), None);
        assert!(!cache.is_blocked("alice", "bob").await.unwrap());
        store.block("alice", "bob", 1).await.unwrap();
        // Cached: not seen until invalidated.
        assert!(!cache.is_blocked("alice", "bob").await.unwrap());
        cache.invalidate("alice");
        assert!(cache.is_blocked("alice", "bob").await.unwrap());
        assert!(!cache.is_blocked("alice", "carol").await.unwrap());
        for owner in ["o1", "o2", "o3"] {
            cache.is_blocked(owner, "x").await.unwrap();
        }
        assert!(cache.cache.lock().len() <= 2);
    }

    #[tokio::test]
    async fn zero_ttl_always_reloads() {
        let store = Arc::new(MemoryStore::new());
        let cache = BlockCache::new(store.clone(), 8, Duration::ZERO, None);
        assert!(!cache.is_blocked("alice", "bob").await.unwrap());
        store.block("alice", "bob", 1).await.unwrap();
        assert!(cache.is_blocked("alice", "bob").await.unwrap());
    }
}
