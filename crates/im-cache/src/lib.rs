//! Cache-side adapters (Redis and in-memory) for presence, routes, the cross-node bus and
//! rate limits. The single-node walking skeleton keeps sessions in `im-service`'s hub;
//! the Redis adapters arrive with the multi-node issue.
