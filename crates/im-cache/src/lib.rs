//! Cache-side adapters (Redis and in-memory) for presence, routes, the cross-node bus,
//! token revocations and rate limits.
//!
//! One node needs no Redis: sessions live in `im-service`'s hub, presence in
//! [`MemoryPresence`] and rate limits in [`MemoryRateLimiter`]. Several nodes share
//! them through [`RedisCache`], which hands out the Redis adapters of one node.

mod presence;
mod rate_limit;
mod redis_cache;

pub use presence::MemoryPresence;
pub use rate_limit::MemoryRateLimiter;
pub use redis_cache::{
    REDIS_ERRORS, RedisBus, RedisCache, RedisHealth, RedisOptions, RedisPresence, RedisRateLimiter,
    RedisRevocations, RedisRouteTable, describe_metrics, redact_url,
};
