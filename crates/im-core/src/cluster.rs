//! Ports of running several nodes: where each user's sessions live (the
//! route table), the bus between nodes, and shared rate-limit counters.
//! One node needs none of them (the hub is the route table, and there is
//! no one to talk to); several nodes share them through Redis.

use std::sync::Arc;

use async_trait::async_trait;

use crate::ports::StoreResult;

/// One live session of a user, somewhere in the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Route {
    /// The node holding the session.
    pub node_id: String,
    /// The session's key, unique across nodes (`<node_id>:<n>`).
    pub session_key: String,
    /// The platform the session announced (the kick policy uses it).
    pub platform: String,
}

/// Users -> the nodes and sessions they are connected to.
///
/// An adapter is bound to one node (its id and TTL are configuration):
/// `add`/`remove` write this node's sessions, and `refresh` keeps this node
/// alive. Routes of a node that stopped refreshing (killed, partitioned)
/// disappear from `routes` once its TTL passes, without anyone removing them.
#[async_trait]
pub trait RouteTable: Send + Sync {
    /// Session `session_key` of `user` on `platform` now lives on this node.
    async fn add(&self, user: &str, session_key: &str, platform: &str) -> StoreResult<()>;

    /// Session `session_key` of `user` is gone.
    async fn remove(&self, user: &str, session_key: &str) -> StoreResult<()>;

    /// The live routes of each of `users`, in the same order.
    async fn routes(&self, users: &[String]) -> StoreResult<Vec<Vec<Route>>>;

    /// Marks this node alive for another TTL; called every refresh interval.
    async fn refresh(&self) -> StoreResult<()>;

    /// This node's id.
    fn node_id(&self) -> &str;
}

/// Receives what other nodes send to this one. Called from the bus
/// adapter's task: it must not block (queue, or deliver with `try_send`).
pub trait BusHandler: Send + Sync {
    fn on_message(&self, payload: &[u8]);

    /// The adapter's subscription is up (`true`, the first time too) or
    /// lost (`false`). While it is lost, broadcasts are missed, so state
    /// kept coherent by them (cache invalidations) must not be trusted.
    fn on_subscription(&self, up: bool);
}

/// Messages between nodes: at most once, no ordering across publishers.
/// Nothing depends on the bus for durability — a lost push is recovered by
/// sync — so an adapter may drop messages while its backend is away.
#[async_trait]
pub trait Bus: Send + Sync {
    /// Sends `payload` to node `node_id` (lost if that node is not listening).
    async fn publish(&self, node_id: &str, payload: &[u8]) -> StoreResult<()>;

    /// Sends `payload` to every node listening, this one included.
    async fn broadcast(&self, payload: &[u8]) -> StoreResult<()>;

    /// Starts delivering this node's messages and the broadcasts to
    /// `handler`, in a background task that reconnects after failures
    /// (telling [`BusHandler::on_subscription`] when it is lost and back),
    /// until the process ends. Call once.
    fn start(&self, handler: Arc<dyn BusHandler>);
}
