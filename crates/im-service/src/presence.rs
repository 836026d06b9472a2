//! Presence: who is online (through the [`PresenceStore`]), and the local
//! subscriptions of sessions that asked ONLINE_STATUS_REQ about users.
//!
//! A session is up in the store from its successful AUTH until it closes,
//! under a key unique across nodes ([`crate::Hub::session_key`]), so a
//! kicked session going down never takes its user offline while the newer
//! session is up. An online or offline transition is pushed as
//! STATUS_CHANGE_PUSH to the sessions of this node that watch the user.
//! Several nodes: the store is shared (Redis) and each transition is also
//! broadcast on the bus, so watchers on every node hear it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use im_core::command::{Event, Reply, UserStatus};
use im_core::ports::{Clock, PresenceStore};
use im_core::{ErrorCode, StoreError, UserId};
use parking_lot::Mutex;

use crate::hub::{SessionHandle, SessionId};

#[derive(Default)]
struct Subscriptions {
    /// Watched user -> the sessions watching them.
    watchers: HashMap<String, HashMap<SessionId, SessionHandle>>,
    /// Session -> the users it watches.
    by_session: HashMap<SessionId, HashSet<String>>,
}

/// Online status, its changes, and who is told about them.
pub struct PresenceService {
    store: Arc<dyn PresenceStore>,
    clock: Arc<dyn Clock>,
    max_subscriptions: usize,
    subs: Mutex<Subscriptions>,
    /// Transitions are broadcast to the other nodes' watchers through it.
    cluster: Option<Arc<crate::cluster::Cluster>>,
}

impl std::fmt::Debug for PresenceService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PresenceService")
            .field("max_subscriptions", &self.max_subscriptions)
            .finish_non_exhaustive()
    }
}

impl PresenceService {
    pub(crate) fn new(
        store: Arc<dyn PresenceStore>,
        clock: Arc<dyn Clock>,
        max_subscriptions: usize,
        cluster: Option<Arc<crate::cluster::Cluster>>,
    ) -> Self {
        Self {
            store,
            clock,
            max_subscriptions,
            subs: Mutex::new(Subscriptions::default()),
            cluster,
        }
    }

    /// Session `key` of `user` on `platform` is up; on an online transition
    /// the user's watchers are told.
    pub async fn session_up(&self, user: &UserId, key: &str, platform: &str) {
        let now = self.clock.now_ms();
        match self
            .store
            .session_up(user.as_str(), key, platform, now)
            .await
        {
            Ok(true) => self.announce(user, true, now).await,
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, user = %user, "presence: session up not recorded"),
        }
    }

    /// A transition: this node's watchers now, the other nodes' through the bus.
    async fn announce(&self, user: &UserId, online: bool, now: i64) {
        if let Some(c) = &self.cluster {
            c.broadcast(crate::cluster::BusMessage::Presence {
                user: user.as_str().to_owned(),
                online,
                at: now,
            });
        }
        self.announce_local(user, online, now).await;
    }

    /// Session `key` of `user` is gone; on an offline transition the user's
    /// watchers are told.
    pub async fn session_down(&self, user: &UserId, key: &str) {
        let now = self.clock.now_ms();
        match self.store.session_down(user.as_str(), key, now).await {
            Ok(true) => self.announce(user, false, now).await,
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(error = %e, user = %user, "presence: session down not recorded");
            }
        }
    }

    /// The status of each of `users`, in order.
    pub async fn statuses(&self, users: &[String]) -> Result<Vec<UserStatus>, StoreError> {
        self.store.statuses(users).await
    }

    /// ONLINE_STATUS_REQ: the statuses of `users`, and `session` watches
    /// them until it closes (at most `max_presence_subscriptions` users per
    /// session; beyond that the statuses are answered but not watched).
    pub async fn query_and_watch(&self, session: &SessionHandle, users: Vec<String>) -> Reply {
        let fail = |code: ErrorCode, msg: &str| Reply::OnlineStatus {
            code,
            msg: msg.to_owned(),
            statuses: Vec::new(),
        };
        if users.len() > self.max_subscriptions.max(1) {
            return fail(ErrorCode::InvalidParam, "too many user_ids");
        }
        if users.iter().any(|u| UserId::parse(u.as_str()).is_err()) {
            return fail(ErrorCode::InvalidParam, "malformed user id");
        }
        let statuses = match self.store.statuses(&users).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "presence: statuses failed");
                return fail(ErrorCode::Unknown, "presence temporarily unavailable");
            }
        };
        {
            let mut subs = self.subs.lock();
            let Subscriptions {
                watchers,
                by_session,
            } = &mut *subs;
            let mine = by_session.entry(session.id).or_default();
            for u in users {
                if mine.contains(&u) {
                    continue;
                }
                if mine.len() >= self.max_subscriptions {
                    break;
                }
                watchers
                    .entry(u.clone())
                    .or_default()
                    .insert(session.id, session.clone());
                mine.insert(u);
            }
        }
        Reply::OnlineStatus {
            code: ErrorCode::Success,
            msg: String::new(),
            statuses,
        }
    }

    /// Drops every subscription of `session` (when it closes or changes user).
    pub fn unwatch_all(&self, session: SessionId) {
        let mut subs = self.subs.lock();
        let Some(watched) = subs.by_session.remove(&session) else {
            return;
        };
        for u in watched {
            if let Some(w) = subs.watchers.get_mut(&u) {
                w.remove(&session);
                if w.is_empty() {
                    subs.watchers.remove(&u);
                }
            }
        }
    }

    /// How many users `session` watches.
    pub fn watch_count(&self, session: SessionId) -> usize {
        self.subs
            .lock()
            .by_session
            .get(&session)
            .map_or(0, HashSet::len)
    }

    /// Tells this node's watchers of `user` about a transition.
    pub(crate) async fn announce_local(&self, user: &UserId, online: bool, now: i64) {
        let targets: Vec<SessionHandle> = self
            .subs
            .lock()
            .watchers
            .get(user.as_str())
            .map(|w| w.values().cloned().collect())
            .unwrap_or_default();
        if targets.is_empty() {
            return;
        }
        let status = match self.store.statuses(&[user.as_str().to_owned()]).await {
            Ok(mut v) if v.len() == 1 => v.pop(),
            _ => None,
        }
        // The store's view wins (platforms, last_seen); the transition decides `online`.
        .map(|s| UserStatus { online, ..s })
        .unwrap_or_else(|| UserStatus {
            user_id: user.as_str().to_owned(),
            online,
            platforms: Vec::new(),
            last_seen: now,
        });
        let event = Arc::new(Event::StatusChange(status));
        for t in targets {
            t.push(&event);
        }
    }
}
