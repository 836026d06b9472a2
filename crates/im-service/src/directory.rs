//! The group directory: who is in which group, cached in memory for the
//! send path (membership, role and mute checks, fan-out).
//!
//! A snapshot of a group (its row and every member) is loaded from the
//! [`GroupStore`] on first use and kept until [`GroupDirectory::invalidate`]
//! (called by `GroupService` after every change it commits), until the
//! TTL passes, or until it is evicted by capacity. An invalidation bumps an
//! epoch, so a load that raced with a change is returned but not cached.
//!
//! Several nodes: invalidations are broadcast on the bus; a node whose bus
//! subscription was lost (Redis away) may have missed some, so it drops its
//! whole cache when the subscription is back
//! ([`GroupDirectory::invalidate_all_local`]); the TTL bounds whatever the
//! bus cannot notice.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use im_core::model::GROUP_STATUS_DISMISSED;
use im_core::ports::{GroupStore, StoreResult};
use im_core::{Group, GroupMember, UserId};
use parking_lot::Mutex;

/// A group and its members as of one load.
#[derive(Debug)]
pub(crate) struct GroupSnapshot {
    pub group: Group,
    pub members: HashMap<String, GroupMember>,
    /// Every member, for fan-out (members whose id does not validate are
    /// left out; they cannot have a session).
    pub member_ids: Vec<UserId>,
}

impl GroupSnapshot {
    pub fn is_dismissed(&self) -> bool {
        self.group.status == GROUP_STATUS_DISMISSED
    }

    pub fn member(&self, user: &str) -> Option<&GroupMember> {
        self.members.get(user)
    }
}

struct Entry {
    snapshot: Arc<GroupSnapshot>,
    loaded: Instant,
}

/// Cached group snapshots.
pub(crate) struct GroupDirectory {
    store: Arc<dyn GroupStore>,
    cache: Mutex<HashMap<String, Entry>>,
    epoch: AtomicU64,
    capacity: usize,
    ttl: Duration,
    /// Changes are broadcast to the other nodes' caches through it.
    cluster: std::sync::OnceLock<Arc<crate::cluster::Cluster>>,
    /// False while invalidations from other nodes may be missed (the bus
    /// is down): nothing is served from or put into the cache.
    coherent: std::sync::atomic::AtomicBool,
    /// Chat room membership (in memory, this node's).
    pub(crate) rooms: crate::chatrooms::ChatRooms,
}

impl GroupDirectory {
    pub fn new(store: Arc<dyn GroupStore>, capacity: usize, ttl: Duration) -> Self {
        Self {
            store,
            cache: Mutex::new(HashMap::new()),
            epoch: AtomicU64::new(0),
            capacity,
            ttl,
            cluster: std::sync::OnceLock::new(),
            coherent: std::sync::atomic::AtomicBool::new(true),
            rooms: crate::chatrooms::ChatRooms::new(crate::config::ChatRoomConfig::default()),
        }
    }

    /// The same directory with chat rooms configured by `cfg`.
    pub fn with_rooms(mut self, cfg: crate::config::ChatRoomConfig) -> Self {
        self.rooms = crate::chatrooms::ChatRooms::new(cfg);
        self
    }

    /// The group `group_id` (dismissed ones too), or None if it never existed.
    pub async fn get(&self, group_id: &str) -> StoreResult<Option<Arc<GroupSnapshot>>> {
        let coherent = self.coherent.load(Ordering::SeqCst);
        if let Some(e) = self.cache.lock().get(group_id).filter(|_| coherent) {
            if e.loaded.elapsed() < self.ttl {
                return Ok(Some(Arc::clone(&e.snapshot)));
            }
        }
        let epoch = self.epoch.load(Ordering::SeqCst);
        let Some(group) = self.store.get_group(group_id).await? else {
            return Ok(None);
        };
        let list = if group.status == GROUP_STATUS_DISMISSED {
            Vec::new()
        } else {
            self.store.list_members(group_id).await?
        };
        let member_ids = list
            .iter()
            .filter_map(|m| UserId::parse(m.user_id.as_str()).ok())
            .collect();
        let members = list.into_iter().map(|m| (m.user_id.clone(), m)).collect();
        let snapshot = Arc::new(GroupSnapshot {
            group,
            members,
            member_ids,
        });
        if self.capacity > 0 {
            let mut cache = self.cache.lock();
            // Checked under the lock `invalidate` takes: a change committed
            // after our reads began has bumped the epoch, so we do not cache.
            if self.epoch.load(Ordering::SeqCst) == epoch && self.coherent.load(Ordering::SeqCst) {
                if cache.len() >= self.capacity && !cache.contains_key(group_id) {
                    evict_one(&mut cache, self.ttl);
                }
                cache.insert(
                    group_id.to_owned(),
                    Entry {
                        snapshot: Arc::clone(&snapshot),
                        loaded: Instant::now(),
                    },
                );
            }
        }
        Ok(Some(snapshot))
    }

    /// Connects the cache to the other nodes (once).
    pub(crate) fn set_cluster(&self, cluster: Arc<crate::cluster::Cluster>) {
        let _ = self.cluster.set(cluster);
    }

    /// Forgets `group_id` here and on the other nodes; call after committing a change.
    pub fn invalidate(&self, group_id: &str) {
        if let Some(c) = self.cluster.get() {
            c.broadcast(crate::cluster::BusMessage::InvalidateGroup {
                group_id: group_id.to_owned(),
            });
        }
        self.invalidate_local(group_id);
    }

    /// Forgets `group_id` on this node only.
    pub fn invalidate_local(&self, group_id: &str) {
        let mut cache = self.cache.lock();
        self.epoch.fetch_add(1, Ordering::SeqCst);
        cache.remove(group_id);
    }

    /// Drops every cached group on this node; while `coherent` is false
    /// (the bus is down) nothing is cached.
    pub fn set_coherent(&self, coherent: bool) {
        let mut cache = self.cache.lock();
        self.epoch.fetch_add(1, Ordering::SeqCst);
        self.coherent.store(coherent, Ordering::SeqCst);
        cache.clear();
    }

    #[cfg(test)]
    fn cached(&self) -> usize {
        self.cache.lock().len()
    }
}

/// Drops an expired entry if there is one, else the oldest.
fn evict_one(cache: &mut HashMap<String, Entry>, ttl: Duration) {
    let victim = cache
        .iter()
        .find(|(_, e)| e.loaded.elapsed() >= ttl)
        .or_else(|| cache.iter().min_by_key(|(_, e)| e.loaded))
        .map(|(k, _)| k.clone());
    if let Some(k) = victim {
        cache.remove(&k);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use async_trait::async_trait;
    use im_core::GroupRole;
    use im_core::model::GROUP_STATUS_NORMAL;
    use im_core::model::GroupPatch;
    use im_core::ports::AddMembers;
    use std::sync::atomic::AtomicUsize;

    /// One group "g" whose members are whatever `members` holds; counts loads.
    #[derive(Default)]
    struct Fake {
        members: Mutex<Vec<String>>,
        loads: AtomicUsize,
    }

    fn member(u: &str) -> GroupMember {
        GroupMember {
            group_id: "g".into(),
            user_id: u.into(),
            role: GroupRole::Member,
            muted_until: 0,
            joined_at: 0,
        }
    }

    #[async_trait]
    impl GroupStore for Fake {
        async fn create_group(&self, _: &Group, _: &[GroupMember]) -> StoreResult<()> {
            Ok(())
        }
        async fn get_group(&self, id: &str) -> StoreResult<Option<Group>> {
            self.loads.fetch_add(1, Ordering::SeqCst);
            Ok((id == "g").then(|| Group {
                group_id: "g".into(),
                status: GROUP_STATUS_NORMAL,
                ..Group::default()
            }))
        }
        async fn update_group(
            &self,
            _: &str,
            _: &GroupPatch,
            _: i64,
        ) -> StoreResult<Option<Group>> {
            Ok(None)
        }
        async fn dismiss_group(&self, _: &str, _: i64) -> StoreResult<bool> {
            Ok(false)
        }
        async fn add_members(&self, _: &str, _: &[GroupMember], _: u32) -> StoreResult<AddMembers> {
            Ok(AddMembers::NoGroup)
        }
        async fn remove_members(&self, _: &str, _: &[String]) -> StoreResult<Vec<String>> {
            Ok(Vec::new())
        }
        async fn get_member(&self, _: &str, _: &str) -> StoreResult<Option<GroupMember>> {
            Ok(None)
        }
        async fn list_members(&self, _: &str) -> StoreResult<Vec<GroupMember>> {
            Ok(self.members.lock().iter().map(|u| member(u)).collect())
        }
        async fn set_member_role(&self, _: &str, _: &str, _: GroupRole) -> StoreResult<bool> {
            Ok(false)
        }
        async fn set_member_mute(&self, _: &str, _: &str, _: i64) -> StoreResult<bool> {
            Ok(false)
        }
        async fn groups_of(&self, _: &str) -> StoreResult<Vec<Group>> {
            Ok(Vec::new())
        }
    }

    /// A directory over a fake store whose group "g" has `alice`.
    fn with_alice() -> (Arc<Fake>, GroupDirectory) {
        let fake = Arc::new(Fake::default());
        fake.members.lock().push("alice".into());
        let dir = GroupDirectory::new(fake.clone(), 8, Duration::from_secs(60));
        (fake, dir)
    }

    async fn has(dir: &GroupDirectory, user: &str) -> bool {
        dir.get("g").await.unwrap().unwrap().member(user).is_some()
    }

    #[tokio::test]
    async fn caches_until_invalidated() {
        let (fake, dir) = with_alice();
        assert!(has(&dir, "alice").await);
        fake.members.lock().push("bob".into());
        // Cached: bob is not seen yet.
        assert!(!has(&dir, "bob").await);
        assert_eq!(fake.loads.load(Ordering::SeqCst), 1);
        dir.invalidate("g");
        let s = dir.get("g").await.unwrap().unwrap();
        assert!(s.member("bob").is_some());
        assert_eq!(s.member_ids.len(), 2);
        assert!(dir.get("nope").await.unwrap().is_none());
    }

    /// While the bus is away (invalidations would be missed) nothing is
    /// served from or put into the cache; back, it caches again.
    #[tokio::test]
    async fn nothing_is_cached_while_the_bus_is_down() {
        let (fake, dir) = with_alice();
        assert!(has(&dir, "alice").await);
        fake.members.lock().clear();
        assert!(has(&dir, "alice").await, "cached");
        dir.set_coherent(false);
        assert!(!has(&dir, "alice").await, "the store is read");
        fake.members.lock().push("bob".into());
        assert!(has(&dir, "bob").await);
        assert_eq!(dir.cached(), 0);
        let loads = fake.loads.load(Ordering::SeqCst);
        dir.set_coherent(true);
        dir.get("g").await.unwrap();
        dir.get("g").await.unwrap();
        assert_eq!(fake.loads.load(Ordering::SeqCst), loads + 1);
    }

    #[tokio::test]
    async fn zero_ttl_and_zero_capacity_always_reload() {
        let fake = Arc::new(Fake::default());
        let dir = GroupDirectory::new(fake.clone(), 8, Duration::ZERO);
        dir.get("g").await.unwrap();
        dir.get("g").await.unwrap();
        assert_eq!(fake.loads.load(Ordering::SeqCst), 2);
        let dir = GroupDirectory::new(fake.clone(), 0, Duration::from_secs(60));
        dir.get("g").await.unwrap();
        assert_eq!(dir.cached(), 0);
    }
}
