//! [`AnyStore`] implements the group and conversation-state ports by
//! delegation, like the message ports in `crate::any`.

use async_trait::async_trait;
use im_core::model::{
    ConversationSummary, Group, GroupMember, GroupPatch, GroupRole, StoredMessage,
};
use im_core::ports::{AddMembers, ConversationStore, GroupStore, StoreResult};

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
impl GroupStore for AnyStore {
    async fn create_group(&self, group: &Group, members: &[GroupMember]) -> StoreResult<()> {
        delegate!(self, s => s.create_group(group, members).await)
    }

    async fn get_group(&self, group_id: &str) -> StoreResult<Option<Group>> {
        delegate!(self, s => s.get_group(group_id).await)
    }

    async fn group_version(&self, group_id: &str) -> StoreResult<Option<i64>> {
        delegate!(self, s => s.group_version(group_id).await)
    }

    async fn update_group(
        &self,
        group_id: &str,
        patch: &GroupPatch,
        now_ms: i64,
    ) -> StoreResult<Option<Group>> {
        delegate!(self, s => s.update_group(group_id, patch, now_ms).await)
    }

    async fn dismiss_group(&self, group_id: &str, now_ms: i64) -> StoreResult<bool> {
        delegate!(self, s => s.dismiss_group(group_id, now_ms).await)
    }

    async fn add_members(
        &self,
        group_id: &str,
        members: &[GroupMember],
        max_members: u32,
    ) -> StoreResult<AddMembers> {
        delegate!(self, s => s.add_members(group_id, members, max_members).await)
    }

    async fn remove_members(&self, group_id: &str, users: &[String]) -> StoreResult<Vec<String>> {
        delegate!(self, s => s.remove_members(group_id, users).await)
    }

    async fn get_member(&self, group_id: &str, user: &str) -> StoreResult<Option<GroupMember>> {
        delegate!(self, s => s.get_member(group_id, user).await)
    }

    async fn list_members(&self, group_id: &str) -> StoreResult<Vec<GroupMember>> {
        delegate!(self, s => s.list_members(group_id).await)
    }

    async fn set_member_role(
        &self,
        group_id: &str,
        user: &str,
        role: GroupRole,
    ) -> StoreResult<bool> {
        delegate!(self, s => s.set_member_role(group_id, user, role).await)
    }

    async fn set_member_mute(
        &self,
        group_id: &str,
        user: &str,
        muted_until: i64,
    ) -> StoreResult<bool> {
        delegate!(self, s => s.set_member_mute(group_id, user, muted_until).await)
    }

    async fn groups_of(&self, user: &str) -> StoreResult<Vec<Group>> {
        delegate!(self, s => s.groups_of(user).await)
    }
}

#[async_trait]
impl ConversationStore for AnyStore {
    async fn revoke(
        &self,
        server_msg_id: &str,
        by: &str,
        time_ms: i64,
    ) -> StoreResult<Option<StoredMessage>> {
        delegate!(self, s => s.revoke(server_msg_id, by, time_ms).await)
    }

    async fn mark_read(
        &self,
        user: &str,
        conversation_id: &str,
        up_to_seq: i64,
        now_ms: i64,
    ) -> StoreResult<i64> {
        delegate!(self, s => s.mark_read(user, conversation_id, up_to_seq, now_ms).await)
    }

    async fn read_seq(&self, user: &str, conversation_id: &str) -> StoreResult<i64> {
        delegate!(self, s => s.read_seq(user, conversation_id).await)
    }

    async fn read_cursors(&self, conversation_id: &str) -> StoreResult<Vec<(String, i64)>> {
        delegate!(self, s => s.read_cursors(conversation_id).await)
    }

    async fn unread_count(&self, user: &str, conversation_id: &str) -> StoreResult<i64> {
        delegate!(self, s => s.unread_count(user, conversation_id).await)
    }

    async fn conversation_list(
        &self,
        user: &str,
        limit: u32,
    ) -> StoreResult<Vec<ConversationSummary>> {
        delegate!(self, s => s.conversation_list(user, limit).await)
    }

    async fn history(
        &self,
        conversation_id: &str,
        before_seq: i64,
        limit: u32,
    ) -> StoreResult<Vec<StoredMessage>> {
        delegate!(self, s => s.history(conversation_id, before_seq, limit).await)
    }
}
