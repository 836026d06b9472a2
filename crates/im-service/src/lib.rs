//! Use cases of im-server: authentication, the session hub, the batching
//! message writer, messaging (send, ack, sync) and the per-session dispatcher.
//!
//! This crate sees only `im-core` types and ports. It never names a database,
//! a cache client or a socket library; the transport hands it decoded
//! [`im_core::command::Request`]s and writes out what it returns.

pub mod auth;
pub mod config;
pub mod hub;
pub mod idgen;
pub mod messaging;
pub mod session;
pub mod writer;

pub use auth::{AuthError, Claims, Identity, JwtAuth};
pub use config::{KickPolicy, ServiceConfig, WriterConfig};
pub use hub::{Hub, Outbound, SessionHandle, SessionId};
pub use messaging::MessagingService;
pub use session::{Dispatched, Services, SessionCtx};
pub use writer::MessageWriter;
