//! [`GroupStore`](im_core::ports::GroupStore) and
//! [`ConversationStore`](im_core::ports::ConversationStore), written once for
//! every store (a macro, for the reason given in [`crate::ports`]).
//!
//! The reads run the shared queries of [`super::read`] on `self.reader()`;
//! the writes call the store's per-backend functions:
//!
//! * `create_group_impl(&Group, &[GroupMember]) -> StoreResult<()>`;
//! * `update_group_impl(group_id, &GroupPatch, now_ms) -> StoreResult<bool>` (existed);
//! * `dismiss_group_impl(group_id, now_ms) -> StoreResult<bool>`;
//! * `add_members_impl(group_id, &[GroupMember], max_members) -> StoreResult<AddMembers>`;
//! * `remove_members_impl(group_id, &[String]) -> StoreResult<Vec<String>>`;
//! * `set_member_role_impl(group_id, user, GroupRole) -> StoreResult<bool>`;
//! * `set_member_mute_impl(group_id, user, muted_until) -> StoreResult<bool>`;
//! * `revoke_impl(server_msg_id, by, time_ms) -> StoreResult<()>`;
//! * `mark_read_impl(user, conversation_id, up_to_seq, now_ms) -> StoreResult<i64>`.

use std::collections::HashMap;

use im_core::model::{ConversationSummary, Group, StoredMessage};
use im_core::{ConversationType, StoreError};

use super::models::GroupRow;
use crate::models::MessageRow;

/// One row of [`super::read::list_page`].
pub(crate) type ListRow = (String, i32, i64, Option<i64>, i64, Option<MessageRow>);

/// The summary of one list row, with its unread count from `unread`.
pub(crate) fn summary(
    row: ListRow,
    unread: &HashMap<String, i64>,
) -> Result<ConversationSummary, StoreError> {
    let (conversation_id, kind, max_seq, read_seq, joined_at, last) = row;
    let conversation_type = ConversationType::from_code(kind).ok_or_else(|| {
        StoreError::Other(format!(
            "conversation {conversation_id} has unknown conversation_type {kind}"
        ))
    })?;
    let last_message = last.map(StoredMessage::try_from).transpose()?;
    Ok(ConversationSummary {
        unread_count: unread.get(&conversation_id).copied().unwrap_or(0),
        updated_at: last_message.as_ref().map_or(joined_at, |m| m.server_time),
        conversation_type,
        last_message,
        read_seq: read_seq.unwrap_or(0),
        max_seq,
        conversation_id,
    })
}

/// Groups with their member counts (0 when absent from `counts`).
pub(crate) fn with_counts(rows: Vec<GroupRow>, counts: &HashMap<String, i64>) -> Vec<Group> {
    rows.into_iter()
        .map(|r| {
            let n = counts.get(&r.group_id).copied().unwrap_or(0);
            r.into_group(n)
        })
        .collect()
}

/// `Ok(None)` for diesel's `NotFound` (what `OptionalExtension::optional`
/// does; a function keeps the macro free of `use`s, whose traits could
/// clash with those of the module it expands in).
pub(crate) fn none_if_not_found<T>(e: diesel::result::Error) -> diesel::QueryResult<Option<T>> {
    match e {
        diesel::result::Error::NotFound => Ok(None),
        e => Err(e),
    }
}

/// The `seq <` bound of a history page: `before_seq`, or none (0 or less).
pub(crate) fn history_bound(before_seq: i64) -> i64 {
    if before_seq <= 0 {
        i64::MAX
    } else {
        before_seq
    }
}

macro_rules! impl_group_ports {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl im_core::ports::GroupStore for $store {
            #[tracing::instrument(level = "debug", skip_all, fields(group = %group.group_id))]
            async fn create_group(
                &self,
                group: &im_core::model::Group,
                members: &[im_core::model::GroupMember],
            ) -> im_core::ports::StoreResult<()> {
                self.create_group_impl(group, members).await
            }

            async fn get_group(
                &self,
                group_id: &str,
            ) -> im_core::ports::StoreResult<Option<im_core::model::Group>> {
                let mut conn = self.reader().await?;
                let Some(row) = diesel_async::RunQueryDsl::first::<crate::groups::models::GroupRow>(crate::groups::read::group(group_id), &mut *conn)
                    .await
                    .map(Some).or_else(crate::groups::ports::none_if_not_found)
                    .map_err(crate::error::map_diesel)?
                else {
                    return Ok(None);
                };
                let count = diesel_async::RunQueryDsl::get_result::<i64>(crate::groups::read::member_count(group_id), &mut *conn)
                    .await
                    .map_err(crate::error::map_diesel)?;
                Ok(Some(row.into_group(count)))
            }

            async fn group_version(
                &self,
                group_id: &str,
            ) -> im_core::ports::StoreResult<Option<i64>> {
                let mut conn = self.reader().await?;
                diesel_async::RunQueryDsl::first::<i64>(crate::groups::read::group_version(group_id), &mut *conn)
                    .await
                    .map(Some)
                    .or_else(crate::groups::ports::none_if_not_found)
                    .map_err(crate::error::map_diesel)
            }

            async fn update_group(
                &self,
                group_id: &str,
                patch: &im_core::model::GroupPatch,
                now_ms: i64,
            ) -> im_core::ports::StoreResult<Option<im_core::model::Group>> {
                if !self.update_group_impl(group_id, patch, now_ms).await? {
                    return Ok(None);
                }
                im_core::ports::GroupStore::get_group(self, group_id).await
            }

            async fn dismiss_group(
                &self,
                group_id: &str,
                now_ms: i64,
            ) -> im_core::ports::StoreResult<bool> {
                self.dismiss_group_impl(group_id, now_ms).await
            }

            #[tracing::instrument(level = "debug", skip_all, fields(group = group_id, n = members.len()))]
            async fn add_members(
                &self,
                group_id: &str,
                members: &[im_core::model::GroupMember],
                max_members: u32,
            ) -> im_core::ports::StoreResult<im_core::ports::AddMembers> {
                self.add_members_impl(group_id, members, max_members).await
            }

            async fn remove_members(
                &self,
                group_id: &str,
                users: &[String],
            ) -> im_core::ports::StoreResult<Vec<String>> {
                if users.is_empty() {
                    return Ok(Vec::new());
                }
                self.remove_members_impl(group_id, users).await
            }

            async fn get_member(
                &self,
                group_id: &str,
                user: &str,
            ) -> im_core::ports::StoreResult<Option<im_core::model::GroupMember>> {
                let mut conn = self.reader().await?;
                diesel_async::RunQueryDsl::first::<crate::groups::models::MemberRow>(crate::groups::read::member(group_id, user), &mut *conn)
                    .await
                    .map(Some).or_else(crate::groups::ports::none_if_not_found)
                    .map_err(crate::error::map_diesel)?
                    .map(im_core::model::GroupMember::try_from)
                    .transpose()
            }

            async fn list_members(
                &self,
                group_id: &str,
            ) -> im_core::ports::StoreResult<Vec<im_core::model::GroupMember>> {
                let mut conn = self.reader().await?;
                let rows = diesel_async::RunQueryDsl::load::<crate::groups::models::MemberRow>(crate::groups::read::members(group_id), &mut *conn)
                    .await
                    .map_err(crate::error::map_diesel)?;
                crate::groups::models::to_members(rows)
            }

            async fn set_member_role(
                &self,
                group_id: &str,
                user: &str,
                role: im_core::model::GroupRole,
            ) -> im_core::ports::StoreResult<bool> {
                self.set_member_role_impl(group_id, user, role).await
            }

            async fn set_member_mute(
                &self,
                group_id: &str,
                user: &str,
                muted_until: i64,
            ) -> im_core::ports::StoreResult<bool> {
                self.set_member_mute_impl(group_id, user, muted_until).await
            }

            async fn groups_of(
                &self,
                user: &str,
            ) -> im_core::ports::StoreResult<Vec<im_core::model::Group>> {
                let mut conn = self.reader().await?;
                let rows = diesel_async::RunQueryDsl::load::<crate::groups::models::GroupRow>(crate::groups::read::groups_of(user), &mut *conn)
                    .await
                    .map_err(crate::error::map_diesel)?;
                let ids: Vec<String> = rows.iter().map(|r| r.group_id.clone()).collect();
                let mut counts = std::collections::HashMap::with_capacity(ids.len());
                for chunk in ids.chunks(crate::groups::CHUNK) {
                    let found = diesel_async::RunQueryDsl::load::<(String, i64)>(crate::groups::read::member_counts(chunk), &mut *conn)
                        .await
                        .map_err(crate::error::map_diesel)?;
                    counts.extend(found);
                }
                Ok(crate::groups::ports::with_counts(rows, &counts))
            }
        }

        #[async_trait::async_trait]
        impl im_core::ports::ConversationStore for $store {
            async fn revoke(
                &self,
                server_msg_id: &str,
                by: &str,
                time_ms: i64,
            ) -> im_core::ports::StoreResult<Option<im_core::model::StoredMessage>> {
                self.revoke_impl(server_msg_id, by, time_ms).await?;
                im_core::ports::MessageStore::find_by_server_id(self, server_msg_id).await
            }

            async fn mark_read(
                &self,
                user: &str,
                conversation_id: &str,
                up_to_seq: i64,
                now_ms: i64,
            ) -> im_core::ports::StoreResult<i64> {
                self.mark_read_impl(user, conversation_id, up_to_seq, now_ms)
                    .await
            }

            async fn read_seq(
                &self,
                user: &str,
                conversation_id: &str,
            ) -> im_core::ports::StoreResult<i64> {
                let mut conn = self.reader().await?;
                Ok(diesel_async::RunQueryDsl::first::<i64>(crate::groups::read::read_seq(user, conversation_id), &mut *conn)
                    .await
                    .map(Some).or_else(crate::groups::ports::none_if_not_found)
                    .map_err(crate::error::map_diesel)?
                    .unwrap_or(0))
            }

            async fn read_cursors(
                &self,
                conversation_id: &str,
            ) -> im_core::ports::StoreResult<Vec<(String, i64)>> {
                let mut conn = self.reader().await?;
                diesel_async::RunQueryDsl::load::<(String, i64)>(crate::groups::read::read_cursors_of(conversation_id), &mut *conn)
                    .await
                    .map_err(crate::error::map_diesel)
            }

            async fn unread_count(
                &self,
                user: &str,
                conversation_id: &str,
            ) -> im_core::ports::StoreResult<i64> {
                let mut conn = self.reader().await?;
                let read = diesel_async::RunQueryDsl::first::<i64>(crate::groups::read::read_seq(user, conversation_id), &mut *conn)
                    .await
                    .map(Some).or_else(crate::groups::ports::none_if_not_found)
                    .map_err(crate::error::map_diesel)?
                    .unwrap_or(0);
                diesel_async::RunQueryDsl::get_result::<i64>(crate::groups::read::unread(conversation_id, user, read), &mut *conn)
                    .await
                    .map_err(crate::error::map_diesel)
            }

            async fn conversation_list(
                &self,
                user: &str,
                limit: u32,
            ) -> im_core::ports::StoreResult<Vec<im_core::model::ConversationSummary>> {
                if limit == 0 {
                    return Ok(Vec::new());
                }
                let mut conn = self.reader().await?;
                let rows = diesel_async::RunQueryDsl::load::<crate::groups::ports::ListRow>(crate::groups::read::list_page(user, crate::ports::sql_limit(limit)), &mut *conn)
                    .await
                    .map_err(crate::error::map_diesel)?;
                let ids: Vec<String> = rows.iter().map(|r| r.0.clone()).collect();
                let mut unread = std::collections::HashMap::with_capacity(ids.len());
                for chunk in ids.chunks(crate::groups::CHUNK) {
                    let found = diesel_async::RunQueryDsl::load::<(String, i64)>(crate::groups::read::list_unread(user, chunk), &mut *conn)
                        .await
                        .map_err(crate::error::map_diesel)?;
                    unread.extend(found);
                }
                rows.into_iter()
                    .map(|r| crate::groups::ports::summary(r, &unread))
                    .collect()
            }

            async fn history(
                &self,
                conversation_id: &str,
                before_seq: i64,
                limit: u32,
            ) -> im_core::ports::StoreResult<Vec<im_core::model::StoredMessage>> {
                if limit == 0 {
                    return Ok(Vec::new());
                }
                let mut conn = self.reader().await?;
                let rows = diesel_async::RunQueryDsl::load::<crate::models::MessageRow>(crate::groups::read::history(
                    conversation_id,
                    crate::groups::ports::history_bound(before_seq),
                    crate::ports::sql_limit(limit),
                ), &mut *conn)
                .await
                .map_err(crate::error::map_diesel)?;
                crate::models::to_stored(rows)
            }
        }
    };
}

pub(crate) use impl_group_ports;
