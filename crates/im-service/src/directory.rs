//! The group directory: who is in which group, cached in memory for the
//! send path (membership, role and mute checks, fan-out).
//!
//! A snapshot of a group (its row and every member) is loaded from the
//! [`GroupStore`] on first use and kept until [`GroupDirectory::invalidate`]
//! (called by `GroupService` after every change it commits), until the
//! TTL passes, or until it is evicted by capacity. An invalidation bumps an
//! epoch, so a load that raced with a change is returned but not cached.
//!
//! Several nodes: a change committed on another node reaches this one's
//! cache by a broadcast on the bus, some milliseconds later, or never if
//! the bus is down. So in a cluster a cached snapshot is served only after
//! the store confirmed that the group's version (raised by every change,
//! in its transaction) is still the one the snapshot was loaded with: one
//! primary-key read instead of three, and a change is in force everywhere
//! once it is committed (the soak found sends fanned out on one node to a
//! member kicked 3-20 ms earlier on another). Invalidations are still
//! broadcast: they free the memory of stale snapshots early.

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
    /// The group's version read before the rows below (they are at least
    /// as new).
    pub version: i64,
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
    /// Changes are broadcast to the other nodes' caches through it; with
    /// it, every cached hit is checked against the store's version (other
    /// nodes change groups too).
    cluster: Option<Arc<crate::cluster::Cluster>>,
    /// Chat room membership (in memory, this node's).
    pub(crate) rooms: crate::chatrooms::ChatRooms,
}

impl GroupDirectory {
    pub fn new(
        store: Arc<dyn GroupStore>,
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
        let cached = self
            .cache
            .lock()
            .get(group_id)
            .filter(|e| e.loaded.elapsed() < self.ttl)
            .map(|e| Arc::clone(&e.snapshot));
        let Some(snapshot) = cached else {
            return self.load(group_id, None).await;
        };
        if self.cluster.is_none() {
            return Ok(Some(snapshot));
        }
        match self.store.group_version(group_id).await? {
            Some(v) if v == snapshot.version => Ok(Some(snapshot)),
            Some(v) => self.load(group_id, Some(v)).await,
            None => Ok(None),
        }
    }

    /// Reads the group from the store (its version first, unless the
    /// caller just read it) and caches it.
    async fn load(
        &self,
        group_id: &str,
        version: Option<i64>,
    ) -> StoreResult<Option<Arc<GroupSnapshot>>> {
        let epoch = self.epoch.load(Ordering::SeqCst);
        let version = match version {
            Some(v) => v,
            None => match self.store.group_version(group_id).await? {
                Some(v) => v,
                None => return Ok(None),
            },
        };
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
            version,
            group,
            members,
            member_ids,
        });
        if self.capacity > 0 {
            let mut cache = self.cache.lock();
            // Checked under the lock `invalidate` takes: a change committed
            // after our reads began has bumped the epoch, so we do not cache.
            if self.epoch.load(Ordering::SeqCst) == epoch {
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

    /// Forgets `group_id` here and on the other nodes; call after committing a change.
    pub fn invalidate(&self, group_id: &str) {
        if let Some(c) = &self.cluster {
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

    /// One group "g" whose members are whatever `members` holds; counts
    /// loads. `version` is raised by [`Fake::change`] (another node's write).
    #[derive(Default)]
    struct Fake {
        members: Mutex<Vec<String>>,
        version: std::sync::atomic::AtomicI64,
        loads: AtomicUsize,
    }

    impl Fake {
        fn change(&self, f: impl FnOnce(&mut Vec<String>)) {
            f(&mut self.members.lock());
            self.version.fetch_add(1, Ordering::SeqCst);
        }
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
        async fn group_version(&self, id: &str) -> StoreResult<Option<i64>> {
            Ok((id == "g").then(|| self.version.load(Ordering::SeqCst)))
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
        let dir = GroupDirectory::new(fake.clone(), 8, Duration::from_secs(60), None);
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

    /// With other nodes (a cluster), a change they commit is seen at once:
    /// every hit is checked against the store's version, whether or not
    /// their invalidation ever arrives (the bus may be down).
    #[tokio::test]
    async fn in_a_cluster_a_change_elsewhere_is_seen_without_its_invalidation() {
        let fake = Arc::new(Fake::default());
        fake.members.lock().push("alice".into());
        let node = im_testkit::cluster::Shared::new().node("n1");
        let (link, _outbox) = crate::cluster::Cluster::new(
            node.clone(),
            node,
            &crate::cluster::ClusterConfig::default(),
        );
        let dir = GroupDirectory::new(fake.clone(), 8, Duration::from_secs(60), Some(link));
        assert!(has(&dir, "alice").await);
        assert!(has(&dir, "alice").await);
        assert_eq!(fake.loads.load(Ordering::SeqCst), 1, "unchanged: cached");
        fake.change(|m| m.clear());
        assert!(!has(&dir, "alice").await, "kicked on another node");
        fake.change(|m| m.push("bob".into()));
        assert!(has(&dir, "bob").await, "joined on another node");
        assert!(has(&dir, "bob").await);
        assert_eq!(fake.loads.load(Ordering::SeqCst), 3);
        assert!(dir.get("nope").await.unwrap().is_none());
    }

    /// On one node every change is made here and invalidates the cache:
    /// hits cost no store read.
    #[tokio::test]
    async fn on_one_node_hits_are_not_checked() {
        let (fake, dir) = with_alice();
        assert!(has(&dir, "alice").await);
        fake.change(|m| m.clear());
        assert!(has(&dir, "alice").await, "cached until invalidated");
        assert_eq!(fake.loads.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn zero_ttl_and_zero_capacity_always_reload() {
        let fake = Arc::new(Fake::default());
        let dir = GroupDirectory::new(fake.clone(), 8, Duration::ZERO, None);
        dir.get("g").await.unwrap();
        dir.get("g").await.unwrap();
        assert_eq!(fake.loads.load(Ordering::SeqCst), 2);
        let dir = GroupDirectory::new(fake.clone(), 0, Duration::from_secs(60), None);
        dir.get("g").await.unwrap();
        assert_eq!(dir.cached(), 0);
    }
}
