//! The hub: every authenticated session on this node, by user.
//!
//! Delivery is synchronous and never blocks: an event is `try_send` into
//! each target session's bounded outbound queue. A session whose queue is
//! full is a slow consumer; it is cancelled (the transport closes it) and
//! its client catches up by sync after reconnecting. Nothing is only in
//! memory: every message was committed before it reached the hub.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use im_core::UserId;
use im_core::command::{Event, Reply};
use parking_lot::RwLock;
use tokio_util::sync::CancellationToken;

use crate::config::KickPolicy;
use crate::queue::{self, TrySendError};

/// Process-unique id of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub u64);

/// What the service hands to a connection's writer.
#[derive(Debug, Clone)]
pub enum Outbound {
    /// A reply to the request that arrived with `seq`. Boxed: the queue's
    /// slots are sized for the largest variant, and every connection's
    /// queue allocates a block of slots up front (idle memory per
    /// connection).
    Reply { seq: u32, reply: Box<Reply> },
    /// A push. After `Event::KickOut` the connection closes.
    Event(Arc<Event>),
    /// BATCH_MSG (204): a sync backlog streamed after a BATCH_SYNC reply.
    Batch(Box<crate::sync::BatchFrame>),
}

/// A handle the hub keeps to reach one session.
#[derive(Debug, Clone)]
pub struct SessionHandle {
    pub id: SessionId,
    pub user: UserId,
    pub platform: String,
    pub tx: queue::Sender<Outbound>,
    /// Cancelled to make the transport close the connection.
    pub close: CancellationToken,
    /// The `jti` of the token the session authenticated with, if any
    /// (logout closes the sessions of a revoked token).
    pub token_id: Option<Arc<str>>,
    /// Holds back message pushes of conversations the session is catching
    /// up on after a BATCH_SYNC (see `sync::SyncGate`).
    pub sync_gate: Arc<crate::sync::SyncGate>,
    /// Whether the session is sent PUSH_MSG of its user's own messages
    /// (sent from another session): `ServiceConfig::echoes_own_messages`
    /// of its platform.
    pub echo_own: bool,
}

/// KICK_OUT reason 1: the user logged in elsewhere.
pub(crate) fn kicked_by_login() -> Arc<Event> {
    Arc::new(Event::KickOut {
        reason: 1,
        message: "logged in on another device".into(),
    })
}

impl SessionHandle {
    /// Whether `event` is for this session. Everything is, except a
    /// message its own user sent when the session takes no echoes of
    /// those (the SwiftIM SDK; it learns them by sync). Local and remote
    /// deliveries both pass here, so the rule holds on every node.
    pub fn takes(&self, event: &Event) -> bool {
        match event {
            Event::Message(m) => self.echo_own || m.sender_id != self.user.as_str(),
            _ => true,
        }
    }

    /// Sends `event` (a KICK_OUT: the transport closes after writing it), or
    /// closes at once if it cannot be queued.
    pub fn kick(&self, event: &Arc<Event>) {
        if !self.push(event) {
            self.close.cancel();
        }
    }

    /// Queues `event` without waiting. A full queue closes the session.
    /// Returns whether the event was queued.
    pub fn push(&self, event: &Arc<Event>) -> bool {
        if let Event::Message(m) = event.as_ref() {
            if !self.sync_gate.admit(m) {
                // The session's backlog stream delivers it, in order.
                return true;
            }
        }
        match self.tx.try_send(Outbound::Event(Arc::clone(event))) {
            Ok(()) => {
                self.sync_gate.delivered(event);
                true
            }
            Err(TrySendError::Full(_)) => {
                metrics::counter!(crate::metrics::PUSHES_DROPPED, "event" => crate::metrics::event_name(event))
                    .increment(1);
                tracing::warn!(session = self.id.0, user = %self.user, "outbound queue full; closing slow consumer");
                self.close.cancel();
                false
            }
            Err(TrySendError::Closed(_)) => false,
        }
    }
}

const SHARDS: usize = 32;

type Shard = RwLock<HashMap<UserId, Vec<SessionHandle>>>;

/// Local sessions by user, sharded to keep lock contention low.
pub struct Hub {
    shards: Box<[Shard]>,
    hasher: RandomState,
    next_id: AtomicU64,
    node_id: String,
    /// The link to other nodes, when there are any.
    cluster: Option<Arc<crate::cluster::Cluster>>,
}

impl Default for Hub {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("sessions", &self.session_count())
            .finish()
    }
}

impl Hub {
    /// A hub whose node id is random (unique per process start).
    pub fn new() -> Self {
        let mut b = [0u8; 8];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut b);
        Self::with_node_id(hex::encode(b))
    }

    /// A hub with a given node id (keep it unique across nodes and restarts).
    pub fn with_node_id(node_id: impl Into<String>) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| RwLock::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
            next_id: AtomicU64::new(1),
            node_id: node_id.into(),
            cluster: None,
        }
    }

    /// The hub of a node of a cluster: its node id is the link's, and
    /// what is not for local sessions goes through `link`
    /// ([`crate::cluster`] says how the link is connected).
    pub fn clustered(link: Arc<crate::cluster::Cluster>) -> Self {
        Self {
            cluster: Some(Arc::clone(&link)),
            ..Self::with_node_id(link.node_id())
        }
    }

    /// A fresh session id.
    pub fn next_session_id(&self) -> SessionId {
        SessionId(self.next_id.fetch_add(1, Ordering::Relaxed))
    }

    /// This node's id.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// The presence key of session `id`: unique across nodes and restarts.
    pub fn session_key(&self, id: SessionId) -> String {
        format!("{}:{}", self.node_id, id.0)
    }

    fn shard(&self, user: &UserId) -> &Shard {
        let i = (self.hasher.hash_one(user) as usize) % SHARDS;
        // `shards` always has exactly SHARDS entries and `i < SHARDS`.
        #[allow(clippy::indexing_slicing)]
        &self.shards[i]
    }

    /// Adds `handle`, and returns the sessions it displaces under `policy`
    /// (already removed from the hub; the caller sends them KICK_OUT).
    pub fn register(&self, handle: SessionHandle, policy: KickPolicy) -> Vec<SessionHandle> {
        let mut map = self.shard(&handle.user).write();
        let list = map.entry(handle.user.clone()).or_default();
        let mut kicked = Vec::new();
        list.retain(|s| {
            let displace = s.id != handle.id && policy.displaces(&s.platform, &handle.platform);
            if displace {
                kicked.push(s.clone());
            }
            !displace && s.id != handle.id
        });
        list.push(handle);
        kicked
    }

    /// Removes session `id` of `user` (no-op when already gone).
    pub fn unregister(&self, user: &UserId, id: SessionId) {
        let mut map = self.shard(user).write();
        if let Some(list) = map.get_mut(user) {
            list.retain(|s| s.id != id);
            if list.is_empty() {
                map.remove(user);
            }
        }
    }

    /// Closes the sessions of `user` that authenticated with token `jti`,
    /// here and on the other nodes; returns how many were local.
    pub fn close_token(&self, user: &UserId, jti: &str) -> usize {
        if let Some(c) = &self.cluster {
            c.to_user(
                user,
                crate::cluster::BusMessage::CloseToken {
                    user: user.as_str().to_owned(),
                    jti: jti.to_owned(),
                },
            );
        }
        self.close_token_local(user, jti)
    }

    /// Closes this node's sessions of `user` that authenticated with token
    /// `jti` (after KICK_OUT "logged out"); returns how many.
    pub fn close_token_local(&self, user: &UserId, jti: &str) -> usize {
        let event = Arc::new(Event::KickOut {
            reason: 2,
            message: "logged out".into(),
        });
        self.kick_where(user, &event, |s| s.token_id.as_deref() == Some(jti))
    }

    /// Removes the sessions of `user` that `pred` selects and kicks them
    /// with `event`; returns how many.
    fn kick_where(
        &self,
        user: &UserId,
        event: &Arc<Event>,
        pred: impl Fn(&SessionHandle) -> bool,
    ) -> usize {
        let mut map = self.shard(user).write();
        let Some(list) = map.get_mut(user) else {
            return 0;
        };
        let mut kicked = 0;
        list.retain(|s| {
            if !pred(s) {
                return true;
            }
            s.kick(event);
            kicked += 1;
            false
        });
        if list.is_empty() {
            map.remove(user);
        }
        kicked
    }

    /// The link to other nodes, if any.
    pub fn cluster(&self) -> Option<&Arc<crate::cluster::Cluster>> {
        self.cluster.as_ref()
    }

    /// Every local session: (user, session key, platform).
    pub fn local_sessions(&self) -> Vec<(UserId, String, String)> {
        let mut out = Vec::new();
        for shard in self.shards.iter() {
            for (user, list) in shard.read().iter() {
                for s in list {
                    out.push((user.clone(), self.session_key(s.id), s.platform.clone()));
                }
            }
        }
        out
    }

    /// Pushes `event` to every session of `user` except the local session
    /// `except`: local ones at once, the ones on other nodes through the
    /// cluster queue. Returns how many local sessions it was queued for.
    pub fn deliver(&self, user: &UserId, event: &Arc<Event>, except: Option<SessionId>) -> usize {
        if let Some(c) = &self.cluster {
            c.forward(user, event);
        }
        self.deliver_local(user, event, except)
    }

    /// Kicks the local sessions of `user` that a login as session `keep` on
    /// `platform` displaces under `policy` (a login on another node).
    pub fn kick_local(
        &self,
        user: &UserId,
        platform: &str,
        policy: KickPolicy,
        keep: &str,
    ) -> usize {
        self.kick_where(user, &kicked_by_login(), |s| {
            policy.displaces(&s.platform, platform) && self.session_key(s.id) != keep
        })
    }

    /// Pushes `event` to this node's sessions of `user` except `except`.
    /// Returns how many sessions it was queued for.
    pub fn deliver_local(
        &self,
        user: &UserId,
        event: &Arc<Event>,
        except: Option<SessionId>,
    ) -> usize {
        let map = self.shard(user).read();
        let queued = map.get(user).map_or(0, |list| {
            list.iter()
                .filter(|s| Some(s.id) != except && s.takes(event))
                .filter(|s| s.push(event))
                .count()
        });
        drop(map);
        if queued > 0 {
            metrics::counter!(crate::metrics::PUSHES_ENQUEUED, "event" => crate::metrics::event_name(event))
                .increment(queued as u64);
        }
        queued
    }

    /// The platforms `user` is online on locally (empty when offline).
    pub fn platforms_of(&self, user: &UserId) -> Vec<String> {
        let map = self.shard(user).read();
        map.get(user)
            .map(|l| l.iter().map(|s| s.platform.clone()).collect())
            .unwrap_or_default()
    }

    /// Number of authenticated sessions on this node.
    pub fn session_count(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.read().values().map(Vec::len).sum::<usize>())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handle(
        hub: &Hub,
        user: &str,
        platform: &str,
        cap: usize,
    ) -> (SessionHandle, queue::Receiver<Outbound>) {
        let (tx, rx) = queue::channel(cap);
        let h = SessionHandle {
            id: hub.next_session_id(),
            user: UserId::parse(user).unwrap(),
            platform: platform.into(),
            tx,
            close: CancellationToken::new(),
            token_id: None,
            sync_gate: Default::default(),
            echo_own: platform != "iOS",
        };
        (h, rx)
    }

    fn ev() -> Arc<Event> {
        Arc::new(Event::Typing {
            conversation_id: "c".into(),
            user_id: "u".into(),
            status: 1,
        })
    }

    #[test]
    fn own_messages_skip_sessions_without_echo_and_nothing_else() {
        let hub = Hub::new();
        let (ios, mut r_ios) = handle(&hub, "dave", "iOS", 8);
        let (web, mut r_web) = handle(&hub, "dave", "web", 8);
        hub.register(ios.clone(), KickPolicy::Multi);
        hub.register(web.clone(), KickPolicy::Multi);
        let dave = UserId::parse("dave").unwrap();
        let message = |sender: &str| {
            Arc::new(Event::Message(Arc::new(im_core::StoredMessage {
                server_msg_id: "s1".into(),
                client_msg_id: "c1".into(),
                conversation_id: "single_dave_erin".into(),
                conversation_type: im_core::ConversationType::Single,
                sender_id: sender.into(),
                receiver_id: String::new(),
                group_id: String::new(),
                message_type: 1,
                content: bytes::Bytes::new(),
                send_time: 0,
                server_time: 0,
                seq: 1,
                extra: String::new(),
                revoked: None,
            })))
        };
        // Dave's own message: only the session that takes echoes.
        assert_eq!(hub.deliver(&dave, &message("dave"), None), 1);
        assert!(r_ios.try_recv().is_none());
        assert!(r_web.try_recv().is_some());
        // Someone else's message, and any other event: every session.
        assert_eq!(hub.deliver(&dave, &message("erin"), None), 2);
        assert_eq!(hub.deliver(&dave, &ev(), None), 2);
        assert!(ios.takes(&ev()));
        assert!(!ios.takes(&message("dave")) && ios.takes(&message("erin")));
    }

    #[test]
    fn session_keys_are_node_unique() {
        let a = Hub::new();
        let b = Hub::new();
        let id = a.next_session_id();
        assert_ne!(a.session_key(id), b.session_key(id));
        assert_eq!(Hub::with_node_id("n1").session_key(SessionId(7)), "n1:7");
    }

    #[test]
    fn per_platform_kicks_same_platform_only() {
        let hub = Hub::new();
        let (a, _ra) = handle(&hub, "alice", "iOS", 4);
        let (b, _rb) = handle(&hub, "alice", "Android", 4);
        let (c, _rc) = handle(&hub, "alice", "ios", 4);
        assert!(hub.register(a.clone(), KickPolicy::PerPlatform).is_empty());
        assert!(hub.register(b.clone(), KickPolicy::PerPlatform).is_empty());
        let kicked = hub.register(c.clone(), KickPolicy::PerPlatform);
        assert_eq!(kicked.len(), 1);
        assert_eq!(kicked[0].id, a.id);
        assert_eq!(hub.session_count(), 2);
    }

    #[test]
    fn single_and_multi_policies() {
        let hub = Hub::new();
        let (a, _ra) = handle(&hub, "bob", "iOS", 4);
        let (b, _rb) = handle(&hub, "bob", "Web", 4);
        hub.register(a, KickPolicy::Multi);
        assert!(hub.register(b.clone(), KickPolicy::Multi).is_empty());
        let (c, _rc) = handle(&hub, "bob", "PC", 4);
        assert_eq!(hub.register(c, KickPolicy::Single).len(), 2);
        assert_eq!(hub.session_count(), 1);
    }

    #[test]
    fn deliver_skips_excepted_and_closes_slow_consumer() {
        let hub = Hub::new();
        let (a, mut ra) = handle(&hub, "carol", "iOS", 1);
        let (b, mut rb) = handle(&hub, "carol", "Web", 8);
        hub.register(a.clone(), KickPolicy::Multi);
        hub.register(b.clone(), KickPolicy::Multi);
        let user = UserId::parse("carol").unwrap();
        assert_eq!(hub.deliver(&user, &ev(), Some(b.id)), 1);
        assert!(ra.try_recv().is_some());
        assert!(rb.try_recv().is_none());
        // Fill a's queue, then one more: a is cancelled, b still gets it.
        assert_eq!(hub.deliver(&user, &ev(), None), 2);
        assert!(!a.close.is_cancelled());
        assert_eq!(hub.deliver(&user, &ev(), None), 1);
        assert!(a.close.is_cancelled());
        hub.unregister(&user, a.id);
        hub.unregister(&user, b.id);
        assert_eq!(hub.session_count(), 0);
        assert!(hub.platforms_of(&user).is_empty());
    }
}
