//! Domain types, error codes and the port traits of im-server.
//!
//! This crate knows nothing about sockets, databases or wire formats: it is the
//! vocabulary every other crate speaks. Adapters (`im-repository`, `im-cache`)
//! implement the ports; `im-service` uses them through `Arc<dyn Port>`.

pub mod cluster;
pub mod command;
pub mod error;
pub mod files;
pub mod ids;
pub mod model;
pub mod ports;

pub use error::{ErrorCode, StoreError};
pub use files::{ByteStream, FileId, FileMeta, FileStore, FileWriter, PendingFile};
pub use ids::{ConversationId, ConversationType, IdError, UserId};
pub use model::{
    Account, Block, ConversationSummary, Friend, FriendRequest, FriendRequestStatus, Generation,
    Group, GroupMember, GroupPatch, GroupRole, MessageType, NewMessage, ProfilePatch, Revocation,
    StoredMessage, UserProfile,
};
