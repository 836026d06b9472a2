//! Cache-side adapters (Redis and in-memory) for presence, routes, the cross-node bus and
//! rate limits. The single-node build keeps sessions in `im-service`'s hub and presence in
//! [`MemoryPresence`]; the Redis adapters arrive with the multi-node issue.

mod presence;

pub use presence::MemoryPresence;
