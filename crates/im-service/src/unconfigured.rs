//! Stand-ins for the group, conversation and presence ports when a caller
//! builds the services with the 1:1-only [`MessagingService::new`]
//! (`crate::MessagingService::new`): reads find nothing, writes fail, so
//! group conversations do not exist, recalls and read receipts fail with
//! a store error and nobody is ever reported online.

use async_trait::async_trait;
use im_core::StoreError;
use im_core::command::UserStatus;
use im_core::model::{
    ConversationSummary, Group, GroupMember, GroupPatch, GroupRole, StoredMessage,
};
use im_core::ports::{AddMembers, ConversationStore, GroupStore, PresenceStore, StoreResult};

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
