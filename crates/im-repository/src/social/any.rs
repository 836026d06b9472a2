//! [`AnyStore`] implements the friend and token-revocation ports by
//! delegation, like the message ports in `crate::any` (which also has the
//! `UserStore` delegation).

use async_trait::async_trait;
use im_core::model::{Block, Friend, FriendRequest, FriendRequestStatus};
use im_core::ports::{FriendStore, StoreResult, TokenRevocationStore};

use crate::any::AnyStore;

/// `match self { each(s) => s.$call }`.
macro_rules! delegate {
    ($self:ident, $s:ident => $call:expr) => {
        match $self {
            AnyStore::Sqlite($s) => $call,
            AnyStore::Postgres($s) => $call,
            AnyStore::Mysql($s) => $call,
        }
    };
}

#[async_trait]
impl FriendStore for AnyStore {
    async fn put_request(&self, req: &FriendRequest) -> StoreResult<()> {
        delegate!(self, s => s.put_request(req).await)
    }

    async fn request(&self, from: &str, to: &str) -> StoreResult<Option<FriendRequest>> {
        delegate!(self, s => s.request(from, to).await)
    }

    async fn requests(
        &self,
        user: &str,
        incoming: bool,
        limit: u32,
    ) -> StoreResult<Vec<FriendRequest>> {
        delegate!(self, s => s.requests(user, incoming, limit).await)
    }

    async fn resolve_request(
        &self,
        from: &str,
        to: &str,
        status: FriendRequestStatus,
        now_ms: i64,
    ) -> StoreResult<bool> {
        delegate!(self, s => s.resolve_request(from, to, status, now_ms).await)
    }

    async fn add_friendship(&self, a: &Friend, b: &Friend, now_ms: i64) -> StoreResult<()> {
        delegate!(self, s => s.add_friendship(a, b, now_ms).await)
    }

    async fn remove_friendship(&self, a: &str, b: &str) -> StoreResult<bool> {
        delegate!(self, s => s.remove_friendship(a, b).await)
    }

    async fn friend(&self, owner: &str, friend: &str) -> StoreResult<Option<Friend>> {
        delegate!(self, s => s.friend(owner, friend).await)
    }

    async fn friends(&self, owner: &str) -> StoreResult<Vec<Friend>> {
        delegate!(self, s => s.friends(owner).await)
    }

    async fn set_remark(
        &self,
        owner: &str,
        friend: &str,
        remark: &str,
    ) -> StoreResult<Option<Friend>> {
        delegate!(self, s => s.set_remark(owner, friend, remark).await)
    }

    async fn block(&self, owner: &str, target: &str, now_ms: i64) -> StoreResult<bool> {
        delegate!(self, s => s.block(owner, target, now_ms).await)
    }

    async fn unblock(&self, owner: &str, target: &str) -> StoreResult<bool> {
        delegate!(self, s => s.unblock(owner, target).await)
    }

    async fn blocks(&self, owner: &str) -> StoreResult<Vec<Block>> {
        delegate!(self, s => s.blocks(owner).await)
    }

    async fn is_blocked(&self, owner: &str, target: &str) -> StoreResult<bool> {
        delegate!(self, s => s.is_blocked(owner, target).await)
    }
}

// `revoke` is also a `ConversationStore` method: the calls name the trait.
#[async_trait]
impl TokenRevocationStore for AnyStore {
    async fn revoke(&self, jti: &str, user: &str, expires_at: i64) -> StoreResult<()> {
        delegate!(self, s => TokenRevocationStore::revoke(s, jti, user, expires_at).await)
    }

    async fn is_revoked(&self, jti: &str) -> StoreResult<bool> {
        delegate!(self, s => TokenRevocationStore::is_revoked(s, jti).await)
    }

    async fn purge_expired(&self, now_secs: i64) -> StoreResult<u64> {
        delegate!(self, s => TokenRevocationStore::purge_expired(s, now_secs).await)
    }
}
