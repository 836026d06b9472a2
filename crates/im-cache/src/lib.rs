//! Cache-side adapters (Redis and in-memory) for presence, routes and the
//! cross-node bus.
//!
//! One node needs no Redis: sessions live in `im-service`'s hub and presence
//! in [`MemoryPresence`]. Several nodes share them through [`RedisCache`],
//! which hands out the Redis adapters of one node.

mod presence;
mod redis_cache;

pub use presence::MemoryPresence;
pub use redis_cache::{
    REDIS_ERRORS, RedisBus, RedisCache, RedisHealth, RedisOptions, RedisPresence, RedisRouteTable,
    describe_metrics, redact_url,
};
