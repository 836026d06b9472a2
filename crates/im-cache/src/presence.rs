//! In-memory presence for one node.

use std::collections::HashMap;

use async_trait::async_trait;
use im_core::command::UserStatus;
use im_core::ports::{PresenceStore, StoreResult};
use parking_lot::Mutex;

#[derive(Debug, Default)]
struct UserPresence {
    /// Live sessions: session key -> platform.
    sessions: HashMap<String, String>,
    /// When the user was last seen (ms): the latest session up or down.
    last_seen: i64,
}

/// A [`PresenceStore`] that keeps every user's live sessions in memory.
///
/// A user is online while at least one session is up. Session keys are
/// opaque and must be unique (the hub derives them from its node id and the
/// session id), so a kicked session going down never takes its user offline
/// while a newer session is up. Users who went offline are remembered for
/// their `last_seen`.
#[derive(Debug, Default)]
pub struct MemoryPresence {
    users: Mutex<HashMap<String, UserPresence>>,
}

impl MemoryPresence {
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl PresenceStore for MemoryPresence {
    async fn session_up(
        &self,
        user: &str,
        session: &str,
        platform: &str,
        now_ms: i64,
    ) -> StoreResult<bool> {
        let mut users = self.users.lock();
        let p = users.entry(user.to_owned()).or_default();
        let was_offline = p.sessions.is_empty();
        p.sessions.insert(session.to_owned(), platform.to_owned());
        p.last_seen = p.last_seen.max(now_ms);
        Ok(was_offline)
    }

    async fn session_down(&self, user: &str, session: &str, now_ms: i64) -> StoreResult<bool> {
        let mut users = self.users.lock();
        let Some(p) = users.get_mut(user) else {
            return Ok(false);
        };
        if p.sessions.remove(session).is_none() {
            return Ok(false);
        }
        p.last_seen = p.last_seen.max(now_ms);
        Ok(p.sessions.is_empty())
    }

    async fn statuses(&self, users: &[String]) -> StoreResult<Vec<UserStatus>> {
        let map = self.users.lock();
        Ok(users
            .iter()
            .map(|u| match map.get(u) {
                Some(p) => {
                    let mut platforms: Vec<String> = p.sessions.values().cloned().collect();
                    platforms.sort();
                    platforms.dedup();
                    UserStatus {
                        user_id: u.clone(),
                        online: !p.sessions.is_empty(),
                        platforms,
                        last_seen: p.last_seen,
                    }
                }
                None => UserStatus {
                    user_id: u.clone(),
                    ..UserStatus::default()
                },
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn ids(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[tokio::test]
    async fn transitions_only_on_first_up_and_last_down() {
        let p = MemoryPresence::new();
        assert!(p.session_up("alice", "n1:1", "iOS", 10).await.unwrap());
        assert!(!p.session_up("alice", "n1:2", "Web", 20).await.unwrap());
        // Same session again is not a transition.
        assert!(!p.session_up("alice", "n1:2", "Web", 25).await.unwrap());
        assert!(!p.session_down("alice", "n1:1", 30).await.unwrap());
        assert!(p.session_down("alice", "n1:2", 40).await.unwrap());
        // Already gone, or never there: nothing happens.
        assert!(!p.session_down("alice", "n1:2", 50).await.unwrap());
        assert!(!p.session_down("nobody", "n1:9", 50).await.unwrap());
        let s = p.statuses(&ids(&["alice"])).await.unwrap();
        assert!(!s[0].online);
        assert_eq!(s[0].last_seen, 40);
        assert!(s[0].platforms.is_empty());
    }

    #[tokio::test]
    async fn statuses_in_order_with_platforms() {
        let p = MemoryPresence::new();
        p.session_up("bob", "a", "iOS", 5).await.unwrap();
        p.session_up("bob", "b", "Android", 6).await.unwrap();
        p.session_up("bob", "c", "iOS", 7).await.unwrap();
        let s = p.statuses(&ids(&["carol", "bob", "carol"])).await.unwrap();
        assert_eq!(s.len(), 3);
        assert_eq!(
            s[0],
            UserStatus {
                user_id: "carol".into(),
                ..UserStatus::default()
            }
        );
        assert_eq!(s[1].user_id, "bob");
        assert!(s[1].online);
        assert_eq!(s[1].platforms, vec!["Android".to_owned(), "iOS".to_owned()]);
        assert_eq!(s[1].last_seen, 7);
        assert_eq!(s[2].user_id, "carol");
    }

    #[tokio::test]
    async fn a_kicked_session_going_down_keeps_the_user_online() {
        let p = MemoryPresence::new();
        assert!(p.session_up("alice", "old", "iOS", 1).await.unwrap());
        // The new login is up before the old one is closed.
        assert!(!p.session_up("alice", "new", "iOS", 2).await.unwrap());
        assert!(!p.session_down("alice", "old", 3).await.unwrap());
        let s = p.statuses(&ids(&["alice"])).await.unwrap();
        assert!(s[0].online);
        assert_eq!(s[0].platforms, vec!["iOS".to_owned()]);
    }
}
