//! Use cases of im-server: authentication, the session hub, the batching
//! message writer, messaging (1:1 and group send, ack, sync, recall, read
//! receipts, typing), groups, conversation state, presence and the
//! per-session dispatcher.
//!
//! This crate sees only `im-core` types and ports. It never names a database,
//! a cache client or a socket library; the transport hands it decoded
//! [`im_core::command::Request`]s and writes out what it returns.

pub mod accounts;
pub mod auth;
pub mod backend;
mod blocks;
pub mod chatrooms;
pub mod cluster;
pub mod config;
pub mod conversations;
mod directory;
pub mod error;
pub mod files;
pub mod groups;
pub mod hub;
pub mod idgen;
pub mod limits;
pub mod messaging;
pub mod metrics;
pub mod presence;
pub mod queue;
mod recall;
pub mod receipts;
pub mod session;
pub mod social;
pub mod sync;
pub mod system;
pub mod writer;

pub use accounts::{AccountConfig, AccountService, Session};
pub use auth::{AuthError, Claims, Identity, JwtAuth};
pub use backend::BackendAuth;
pub use chatrooms::RoomMembership;
pub use cluster::{Cluster, ClusterConfig, ClusterStats};
pub use config::{ChatRoomConfig, KickPolicy, ServiceConfig, WriterConfig};
pub use conversations::ConversationService;
pub use error::ServiceError;
pub use files::{
    AnonymousLimits, FileError, FileRefs, FileService, FilesConfig, PendingUsage, SweepReport,
    Upload,
};
pub use groups::{GroupService, NewGroup};
pub use hub::{Hub, Outbound, SessionHandle, SessionId};
pub use limits::{Limits, LimitsConfig, Rate};
pub use messaging::{MessagingService, Ports};
pub use presence::PresenceService;
pub use session::{Dispatched, Services, SessionCtx};
pub use social::{FriendAdd, FriendView, SocialService};
pub use writer::MessageWriter;
