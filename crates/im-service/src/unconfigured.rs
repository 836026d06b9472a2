//! Stand-ins for the group, conversation and presence ports when a caller
//! builds the services with the 1:1-only [`MessagingService::new`]
//! (`crate::MessagingService::new`): reads find nothing, writes fail, so
//! group conversations do not exist, recalls and read receipts fail with
//! a store error, nobody is ever reported online, nobody has friends or
//! blocks anyone, and no token is revoked (logout fails).

use async_trait::async_trait;
use im_core::StoreError;
use im_core::command::UserStatus;
use im_core::model::{
    Block, ConversationSummary, Friend, FriendRequest, FriendRequestStatus, Group, GroupMember,
    GroupPatch, GroupRole, StoredMessage,
};
use im_core::ports::{
    AddMembers, ConversationStore, FriendStore, GroupStore, PresenceStore, StoreResult,
    TokenRevocationStore,
};

#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Unconfigured;

fn absent<T>() -> StoreResult<T> {
    Err(StoreError::Other(
        "groups and conversation state are not configured on this server".into(),
    ))
}

#[async_trait]
impl GroupStore for Unconfigured {
    async fn create_group(&self, _: &Group, _: &[GroupMember]) -> StoreResult<()> {
        absent()
    }
    async fn get_group(&self, _: &str) -> StoreResult<Option<Group>> {
        Ok(None)
    }
    async fn group_version(&self, _: &str) -> StoreResult<Option<i64>> {
        Ok(None)
    }
    async fn update_group(&self, _: &str, _: &GroupPatch, _: i64) -> StoreResult<Option<Group>> {
        Ok(None)
    }
    async fn dismiss_group(&self, _: &str, _: i64) -> StoreResult<bool> {
        Ok(false)
    }
    async fn add_members(&self, _: &str, _: &[GroupMember], _: u32) -> StoreResult<AddMembers> {
        Ok(AddMembers::NoGroup)
    }
    async fn remove_members(&self, _: &str, _: &[String]) -> StoreResult<Vec<String>> {
        Ok(Vec::new())
    }
    async fn get_member(&self, _: &str, _: &str) -> StoreResult<Option<GroupMember>> {
        Ok(None)
    }
    async fn list_members(&self, _: &str) -> StoreResult<Vec<GroupMember>> {
        Ok(Vec::new())
    }
    async fn set_member_role(&self, _: &str, _: &str, _: GroupRole) -> StoreResult<bool> {
        Ok(false)
    }
    async fn set_member_mute(&self, _: &str, _: &str, _: i64) -> StoreResult<bool> {
        Ok(false)
    }
    async fn groups_of(&self, _: &str) -> StoreResult<Vec<Group>> {
        Ok(Vec::new())
    }
}

#[async_trait]
impl ConversationStore for Unconfigured {
    async fn revoke(&self, _: &str, _: &str, _: i64) -> StoreResult<Option<StoredMessage>> {
        absent()
    }
    async fn mark_read(&self, _: &str, _: &str, _: i64, _: i64) -> StoreResult<i64> {
        absent()
    }
    async fn read_seq(&self, _: &str, _: &str) -> StoreResult<i64> {
        Ok(0)
    }
    async fn read_cursors(&self, _: &str) -> StoreResult<Vec<(String, i64)>> {
        Ok(Vec::new())
    }
    async fn unread_count(&self, _: &str, _: &str) -> StoreResult<i64> {
        Ok(0)
    }
    async fn conversation_list(&self, _: &str, _: u32) -> StoreResult<Vec<ConversationSummary>> {
        absent()
    }
    async fn history(&self, _: &str, _: i64, _: u32) -> StoreResult<Vec<StoredMessage>> {
        absent()
    }
}

#[async_trait]
impl PresenceStore for Unconfigured {
    async fn session_up(&self, _: &str, _: &str, _: &str, _: i64) -> StoreResult<bool> {
        Ok(false)
    }
    async fn session_down(&self, _: &str, _: &str, _: i64) -> StoreResult<bool> {
        Ok(false)
    }
    async fn statuses(&self, users: &[String]) -> StoreResult<Vec<UserStatus>> {
        Ok(users
            .iter()
            .map(|u| UserStatus {
                user_id: u.clone(),
                ..UserStatus::default()
            })
            .collect())
    }
}

#[async_trait]
impl FriendStore for Unconfigured {
    async fn put_request(&self, _: &FriendRequest) -> StoreResult<()> {
        absent()
    }
    async fn request(&self, _: &str, _: &str) -> StoreResult<Option<FriendRequest>> {
        Ok(None)
    }
    async fn requests(&self, _: &str, _: bool, _: u32) -> StoreResult<Vec<FriendRequest>> {
        Ok(Vec::new())
    }
    async fn resolve_request(
        &self,
        _: &str,
        _: &str,
        _: FriendRequestStatus,
        _: i64,
    ) -> StoreResult<bool> {
        Ok(false)
    }
    async fn add_friendship(&self, _: &Friend, _: &Friend, _: i64) -> StoreResult<()> {
        absent()
    }
    async fn remove_friendship(&self, _: &str, _: &str) -> StoreResult<bool> {
        Ok(false)
    }
    async fn friend(&self, _: &str, _: &str) -> StoreResult<Option<Friend>> {
        Ok(None)
    }
    async fn friends(&self, _: &str) -> StoreResult<Vec<Friend>> {
        Ok(Vec::new())
    }
    async fn set_remark(&self, _: &str, _: &str, _: &str) -> StoreResult<Option<Friend>> {
        Ok(None)
    }
    async fn block(&self, _: &str, _: &str, _: i64) -> StoreResult<bool> {
        absent()
    }
    async fn unblock(&self, _: &str, _: &str) -> StoreResult<bool> {
        Ok(false)
    }
    async fn blocks(&self, _: &str) -> StoreResult<Vec<Block>> {
        Ok(Vec::new())
    }
    async fn is_blocked(&self, _: &str, _: &str) -> StoreResult<bool> {
        Ok(false)
    }
}

#[async_trait]
impl TokenRevocationStore for Unconfigured {
    async fn revoke(&self, _: &str, _: &str, _: i64) -> StoreResult<()> {
        absent()
    }
    async fn is_revoked(&self, _: &str) -> StoreResult<bool> {
        Ok(false)
    }
    async fn purge_expired(&self, _: i64) -> StoreResult<u64> {
        Ok(0)
    }
}
