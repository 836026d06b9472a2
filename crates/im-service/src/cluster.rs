//! Several nodes: the route table says which nodes hold a user's sessions,
//! and the bus carries pushes, kicks and cache invalidations to them.
//!
//! Sending is off the hot path: [`Hub::deliver`] pushes to local sessions
//! synchronously and hands the remote part to [`Cluster::forward`], which
//! `try_send`s it into one bounded queue. A worker drains the queue in
//! batches: one route lookup for all users of a batch, then one bus
//! message per node. When the queue is full, or the route table or the bus
//! fails (Redis down), the remote pushes are dropped and counted — never
//! buffered without bound. Nothing is lost for good: every pushed message
//! was committed first, and clients recover it by sync (gap detection,
//! sync after reconnect).
//!
//! Receiving: the bus adapter calls [`Receiver::on_message`] for each
//! message addressed to this node or broadcast; deliveries go to the local
//! sessions only (never forwarded again).
//!
//! Liveness: a task refreshes this node in the route table every
//! `refresh_interval`; if a refresh or a route write failed since the last
//! success, it re-registers every local session (so routes written while
//! Redis was away come back).
//!
//! Wiring, without a cycle: [`Cluster::new`] makes the outbound link first
//! (its queue waits for a worker); the hub takes it at construction (its
//! node id is the link's), and the services built around the hub take it
//! from there. Once they all exist, [`connect`] builds the [`Receiver`]
//! from them, subscribes it to the bus and spawns the worker and the
//! refresher, which end when `shutdown` is cancelled. The worker holds the
//! route table and the bus, never the queue's sender.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use im_core::UserId;
use im_core::cluster::{Bus, BusHandler, RouteTable};
use im_core::command::Event;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::blocks::BlockCache;
use crate::config::KickPolicy;
use crate::directory::GroupDirectory;
use crate::hub::Hub;
use crate::presence::PresenceService;

/// Cluster settings.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// How often this node refreshes its liveness (below the route TTL).
    pub refresh_interval: Duration,
    /// Remote pushes queued at most; more are dropped (clients sync).
    pub queue_capacity: usize,
    /// Queue entries handled per route lookup.
    pub batch: usize,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            refresh_interval: Duration::from_secs(10),
            queue_capacity: 65_536,
            batch: 256,
        }
    }
}

/// What nodes tell each other.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum BusMessage {
    /// Push `event` to every local session of `user`.
    Deliver { user: String, event: Arc<Event> },
    /// `user` logged in elsewhere (session `keep`, on `platform`): kick the
    /// local sessions the policy displaces.
    Kick {
        user: String,
        platform: String,
        policy: u8,
        keep: String,
    },
    /// Close the local sessions of `user` authenticated with token `jti`.
    CloseToken { user: String, jti: String },
    /// `user` went online or offline at `at`: tell local watchers.
    Presence { user: String, online: bool, at: i64 },
    /// Group `group_id` changed: drop it from the group cache.
    InvalidateGroup { group_id: String },
    /// `owner`'s blocklist changed.
    InvalidateBlocks { owner: String },
    /// `user` joined chat room `room` through another node.
    RoomJoin { room: String, user: String },
    /// `user` left chat room `room` through another node.
    RoomLeave { room: String, user: String },
}

/// One bus payload: who sent it and what.
#[derive(Debug, Serialize, Deserialize)]
struct Envelope {
    from: String,
    messages: Vec<BusMessage>,
}

fn policy_code(p: KickPolicy) -> u8 {
    match p {
        KickPolicy::PerPlatform => 0,
        KickPolicy::Single => 1,
        KickPolicy::Multi => 2,
    }
}

fn policy_of(code: u8) -> KickPolicy {
    match code {
        1 => KickPolicy::Single,
        2 => KickPolicy::Multi,
        _ => KickPolicy::PerPlatform,
    }
}

fn encode(from: &str, messages: Vec<BusMessage>) -> Option<Vec<u8>> {
    rmp_serde::to_vec_named(&Envelope {
        from: from.to_owned(),
        messages,
    })
    .map_err(|e| tracing::error!(error = %e, "cannot encode a bus message"))
    .ok()
}

/// Remote work queued by the hot path.
enum Outgoing {
    /// To the other nodes holding sessions of `user`.
    ToUser { user: UserId, message: BusMessage },
    /// To every node.
    Broadcast(BusMessage),
}

/// Counters of the cluster link (for logs and metrics).
#[derive(Debug, Default)]
pub struct ClusterStats {
    /// Remote pushes dropped: queue full.
    pub dropped_full: AtomicU64,
    /// Remote pushes dropped: route lookup or publish failed.
    pub dropped_failed: AtomicU64,
    /// Bus messages published.
    pub published: AtomicU64,
    /// Bus messages received from other nodes.
    pub received: AtomicU64,
}

impl ClusterStats {
    /// Counts remote pushes dropped because the queue was full; returns the
    /// previous count.
    pub(crate) fn count_dropped_full(&self, n: u64) -> u64 {
        metrics::counter!(crate::metrics::CLUSTER_DROPPED, "reason" => "queue_full").increment(n);
        self.dropped_full.fetch_add(n, Ordering::Relaxed)
    }

    /// Counts remote pushes dropped because a lookup or publish failed.
    pub(crate) fn count_dropped_failed(&self, n: u64) -> u64 {
        metrics::counter!(crate::metrics::CLUSTER_DROPPED, "reason" => "failed").increment(n);
        self.dropped_failed.fetch_add(n, Ordering::Relaxed)
    }

    /// Counts published bus messages.
    pub(crate) fn count_published(&self, n: u64) -> u64 {
        metrics::counter!(crate::metrics::CLUSTER_PUBLISHED).increment(n);
        self.published.fetch_add(n, Ordering::Relaxed)
    }

    /// Counts bus messages received from other nodes.
    pub(crate) fn count_received(&self, n: u64) -> u64 {
        metrics::counter!(crate::metrics::CLUSTER_RECEIVED).increment(n);
        self.received.fetch_add(n, Ordering::Relaxed)
    }
}

/// What the worker sends with: everything of the link but its queue.
struct Wire {
    node_id: String,
    routes: Arc<dyn RouteTable>,
    bus: Arc<dyn Bus>,
    stats: Arc<ClusterStats>,
}

/// This node's link to the others (the outbound half).
pub struct Cluster {
    wire: Arc<Wire>,
    queue: mpsc::Sender<Outgoing>,
    /// A route write or refresh failed: re-register local sessions.
    dirty: AtomicBool,
    refresh_interval: Duration,
}

/// The link's queue, until [`connect`] starts its worker.
pub struct Outbox {
    rx: mpsc::Receiver<Outgoing>,
    batch: usize,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox").finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("node_id", &self.wire.node_id)
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// The outbound link of the node `routes` names (its id is the node's
    /// one id). Nothing runs until [`connect`]: what is queued meanwhile
    /// waits.
    pub fn new(
        routes: Arc<dyn RouteTable>,
        bus: Arc<dyn Bus>,
        cfg: &ClusterConfig,
    ) -> (Arc<Self>, Outbox) {
        let (tx, rx) = mpsc::channel(cfg.queue_capacity.max(1));
        let link = Arc::new(Self {
            wire: Arc::new(Wire {
                node_id: routes.node_id().to_owned(),
                routes,
                bus,
                stats: Arc::new(ClusterStats::default()),
            }),
            queue: tx,
            dirty: AtomicBool::new(false),
            refresh_interval: cfg.refresh_interval,
        });
        let outbox = Outbox {
            rx,
            batch: cfg.batch.max(1),
        };
        (link, outbox)
    }

    pub fn node_id(&self) -> &str {
        &self.wire.node_id
    }

    pub fn stats(&self) -> &Arc<ClusterStats> {
        &self.wire.stats
    }

    /// Entries waiting in the queue to other nodes.
    pub fn queued(&self) -> usize {
        self.queue.max_capacity() - self.queue.capacity()
    }

    /// Queues `event` for the other nodes' sessions of `user` (never blocks).
    pub(crate) fn forward(&self, user: &UserId, event: &Arc<Event>) {
        self.enqueue(Outgoing::ToUser {
            user: user.clone(),
            message: BusMessage::Deliver {
                user: user.as_str().to_owned(),
                event: Arc::clone(event),
            },
        });
    }

    /// Queues a message for every node (never blocks).
    pub(crate) fn broadcast(&self, message: BusMessage) {
        self.enqueue(Outgoing::Broadcast(message));
    }

    /// Queues a message for the other nodes holding sessions of `user`.
    pub(crate) fn to_user(&self, user: &UserId, message: BusMessage) {
        self.enqueue(Outgoing::ToUser {
            user: user.clone(),
            message,
        });
    }

    fn enqueue(&self, o: Outgoing) {
        if self.queue.try_send(o).is_err() {
            let n = self.wire.stats.count_dropped_full(1);
            if n.is_power_of_two() {
                tracing::warn!(
                    dropped = n + 1,
                    "cluster queue full: remote pushes dropped (clients catch up by sync)"
                );
            }
        }
    }

    /// Session `key` of `user` on `platform` is up on this node.
    pub(crate) async fn session_up(&self, user: &UserId, key: &str, platform: &str) {
        if let Err(e) = self.wire.routes.add(user.as_str(), key, platform).await {
            self.dirty.store(true, Ordering::SeqCst);
            tracing::warn!(error = %e, user = %user, "route not recorded; retried on the next refresh");
        }
    }

    /// Session `key` of `user` is gone from this node.
    pub(crate) async fn session_down(&self, user: &UserId, key: &str) {
        if let Err(e) = self.wire.routes.remove(user.as_str(), key).await {
            tracing::warn!(error = %e, user = %user, "route not removed; it expires with its TTL check");
        }
    }

    /// Tells the other nodes holding sessions of `user` that it logged in
    /// as session `keep` on `platform` (they kick what `policy` displaces).
    pub(crate) fn kick_elsewhere(
        &self,
        user: &UserId,
        platform: &str,
        policy: KickPolicy,
        keep: &str,
    ) {
        if policy == KickPolicy::Multi {
            return;
        }
        self.to_user(
            user,
            BusMessage::Kick {
                user: user.as_str().to_owned(),
                platform: platform.to_owned(),
                policy: policy_code(policy),
                keep: keep.to_owned(),
            },
        );
    }
}

/// Connects `link` (whose queue is `outbox`) to the others:
/// builds the [`Receiver`] from this node's hub, presence and caches,
/// subscribes it to the bus, and spawns the queue worker and the liveness
/// refresher, which end when `shutdown` is cancelled (the subscription
/// lives as long as the process).
pub(crate) fn connect(
    link: &Arc<Cluster>,
    outbox: Outbox,
    receiver: Receiver,
    shutdown: &CancellationToken,
) -> tokio::task::JoinSet<()> {
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(worker(
        Arc::clone(&link.wire),
        outbox.rx,
        outbox.batch,
        shutdown.clone(),
    ));
    tasks.spawn(refresher(
        Arc::clone(link),
        Arc::clone(&receiver.hub),
        shutdown.clone(),
    ));
    // Until the bus is subscribed, other nodes' invalidations are missed
    // (cached groups need none: they are checked against the store's
    // version, see `directory`).
    receiver.blocks.set_coherent(false);
    link.wire.bus.start(Arc::new(receiver));
    tasks
}

/// Sends what the hot path queued, in batches, until `shutdown` (what is
/// still queued then is dropped: clients sync) or until every sender is
/// gone.
async fn worker(
    wire: Arc<Wire>,
    mut rx: mpsc::Receiver<Outgoing>,
    batch: usize,
    shutdown: CancellationToken,
) {
    let mut buf = Vec::with_capacity(batch);
    loop {
        let n = tokio::select! {
            biased;
            () = shutdown.cancelled() => return,
            n = rx.recv_many(&mut buf, batch) => n,
        };
        if n == 0 {
            return;
        }
        send_batch(&wire, std::mem::take(&mut buf)).await;
        buf.reserve(batch);
    }
}

async fn send_batch(cluster: &Wire, batch: Vec<Outgoing>) {
    let mut broadcast = Vec::new();
    let mut users: Vec<String> = Vec::new();
    let mut index: std::collections::HashMap<UserId, usize> = std::collections::HashMap::new();
    let mut addressed: Vec<(usize, BusMessage)> = Vec::new();
    for o in batch {
        match o {
            Outgoing::Broadcast(m) => broadcast.push(m),
            Outgoing::ToUser { user, message } => {
                let i = *index.entry(user).or_insert_with_key(|u| {
                    users.push(u.as_str().to_owned());
                    users.len() - 1
                });
                addressed.push((i, message));
            }
        }
    }
    if !broadcast.is_empty() {
        let n = broadcast.len() as u64;
        match encode(&cluster.node_id, broadcast) {
            Some(payload) => match cluster.bus.broadcast(&payload).await {
                Ok(()) => {
                    cluster.stats.count_published(1);
                }
                Err(e) => {
                    cluster.stats.count_dropped_failed(n);
                    tracing::warn!(error = %e, "bus broadcast failed; dropped");
                }
            },
            None => {
                cluster.stats.count_dropped_failed(n);
            }
        }
    }
    if addressed.is_empty() {
        return;
    }
    let routes = match cluster.routes.routes(&users).await {
        Ok(r) => r,
        Err(e) => {
            cluster.stats.count_dropped_failed(addressed.len() as u64);
            tracing::warn!(error = %e, "route lookup failed; remote pushes dropped (clients sync)");
            return;
        }
    };
    // node -> messages for it.
    let mut per_node: std::collections::HashMap<&str, Vec<BusMessage>> =
        std::collections::HashMap::new();
    for (i, message) in addressed {
        let Some(user_routes) = routes.get(i) else {
            continue;
        };
        let mut nodes: Vec<&str> = user_routes
            .iter()
            .map(|r| r.node_id.as_str())
            .filter(|n| *n != cluster.node_id)
            .collect();
        nodes.sort_unstable();
        nodes.dedup();
        for node in nodes {
            per_node.entry(node).or_default().push(message.clone());
        }
    }
    for (node, messages) in per_node {
        let n = messages.len() as u64;
        let Some(payload) = encode(&cluster.node_id, messages) else {
            continue;
        };
        match cluster.bus.publish(node, &payload).await {
            Ok(()) => {
                cluster.stats.count_published(1);
            }
            Err(e) => {
                cluster.stats.count_dropped_failed(n);
                tracing::warn!(error = %e, node, "bus publish failed; dropped (clients sync)");
            }
        }
    }
}

async fn refresher(cluster: Arc<Cluster>, hub: Arc<Hub>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(cluster.refresh_interval.max(Duration::from_millis(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Err(e) = cluster.wire.routes.refresh().await {
            cluster.dirty.store(true, Ordering::SeqCst);
            tracing::warn!(error = %e, "node liveness refresh failed");
            continue;
        }
        if cluster.dirty.swap(false, Ordering::SeqCst) {
            let sessions = hub.local_sessions();
            tracing::info!(
                sessions = sessions.len(),
                "re-registering local sessions in the route table"
            );
            for (user, key, platform) in sessions {
                if let Err(e) = cluster
                    .wire
                    .routes
                    .add(user.as_str(), &key, &platform)
                    .await
                {
                    cluster.dirty.store(true, Ordering::SeqCst);
                    tracing::warn!(error = %e, "re-registering routes failed; retried next refresh");
                    break;
                }
            }
        }
    }
}

/// Applies what other nodes send to this node's sessions and caches.
pub(crate) struct Receiver {
    pub(crate) node_id: String,
    pub(crate) hub: Arc<Hub>,
    pub(crate) presence: Arc<PresenceService>,
    pub(crate) directory: Arc<GroupDirectory>,
    pub(crate) blocks: Arc<BlockCache>,
    pub(crate) stats: Arc<ClusterStats>,
}

impl BusHandler for Receiver {
    fn on_message(&self, payload: &[u8]) {
        let envelope: Envelope = match rmp_serde::from_slice(payload) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(error = %e, "undecodable bus message ignored");
                return;
            }
        };
        if envelope.from == self.node_id {
            // Our own broadcast: already applied locally.
            return;
        }
        self.stats.count_received(1);
        for m in envelope.messages {
            self.apply(m);
        }
    }

    /// Without the subscription, invalidations are missed: cached
    /// blocklists are dropped and not cached again until it is back (and
    /// dropped again then), rather than trusted until their TTL. (Groups
    /// are checked against the store's version on every use instead: found
    /// by the soak, a member kicked while Redis restarted kept receiving
    /// the group's messages on the other nodes.)
    fn on_subscription(&self, up: bool) {
        tracing::info!(up, "bus subscription changed: cached blocklists dropped");
        self.blocks.set_coherent(up);
    }
}

impl Receiver {
    fn apply(&self, m: BusMessage) {
        match m {
            BusMessage::Deliver { user, event } => {
                if let Ok(u) = UserId::parse(user) {
                    self.hub.deliver_local(&u, &event, None);
                }
            }
            BusMessage::Kick {
                user,
                platform,
                policy,
                keep,
            } => {
                if let Ok(u) = UserId::parse(user) {
                    self.hub.kick_local(&u, &platform, policy_of(policy), &keep);
                }
            }
            BusMessage::CloseToken { user, jti } => {
                if let Ok(u) = UserId::parse(user) {
                    self.hub.close_token_local(&u, &jti);
                }
            }
            BusMessage::Presence { user, online, at } => {
                if let Ok(u) = UserId::parse(user) {
                    let presence = Arc::clone(&self.presence);
                    tokio::spawn(async move { presence.announce_local(&u, online, at).await });
                }
            }
            BusMessage::InvalidateGroup { group_id } => self.directory.invalidate_local(&group_id),
            BusMessage::InvalidateBlocks { owner } => self.blocks.invalidate_local(&owner),
            BusMessage::RoomJoin { room, user } => {
                if let Ok(u) = UserId::parse(user) {
                    self.directory.rooms.join_replica(&room, &u);
                }
            }
            BusMessage::RoomLeave { room, user } => {
                if let Ok(u) = UserId::parse(user) {
                    self.directory.rooms.leave(&room, &u);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use im_core::model::StoredMessage;

    #[test]
    fn envelopes_round_trip() {
        let msg = StoredMessage {
            server_msg_id: "s1".into(),
            client_msg_id: "c1".into(),
            conversation_id: "single_a_b".into(),
            conversation_type: im_core::ConversationType::Single,
            sender_id: "a".into(),
            receiver_id: "b".into(),
            group_id: String::new(),
            message_type: 1,
            content: bytes::Bytes::from_static(b"\x00\xffhello"),
            send_time: 1,
            server_time: 2,
            seq: 3,
            extra: String::new(),
            revoked: None,
        };
        let messages = vec![
            BusMessage::Deliver {
                user: "b".into(),
                event: Arc::new(Event::Message(Arc::new(msg))),
            },
            BusMessage::Kick {
                user: "b".into(),
                platform: "iOS".into(),
                policy: policy_code(KickPolicy::Single),
                keep: "n1:7".into(),
            },
            BusMessage::InvalidateGroup {
                group_id: "g".into(),
            },
        ];
        let bytes = encode("n1", messages.clone()).unwrap();
        let back: Envelope = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!(back.from, "n1");
        assert_eq!(back.messages, messages);
        assert_eq!(policy_of(policy_code(KickPolicy::Multi)), KickPolicy::Multi);
        assert!(rmp_serde::from_slice::<Envelope>(b"garbage").is_err());
    }
}
