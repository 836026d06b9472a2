//! Group writes on SQLite, each one `BEGIN IMMEDIATE` transaction on the
//! writer connection (see the module docs of `sqlite` for why a write runs
//! as one blocking task), and the group/conversation-state port impls.

use std::collections::HashSet;

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use diesel::sqlite::Sqlite;
use diesel::{OptionalExtension, SqliteConnection};
use im_core::ConversationType;
use im_core::model::{
    GROUP_STATUS_DISMISSED, GROUP_STATUS_NORMAL, Group, GroupMember, GroupPatch, GroupRole,
};
use im_core::ports::{AddMembers, StoreResult};

use super::SqliteStore;
use crate::error::RepoError;
use crate::groups::models::{
    GroupChanges, NewGroupRow, NewMemberRow, member_rows, membership_rows,
};
use crate::groups::schema::{chat_groups, group_members};
use crate::groups::{CHUNK, MemberChange, bump_version, conversation_of, read};
use crate::models::MembershipRow;
use crate::schema::{conversations, user_conversations};
use crate::sql;

/// Creates the counter row of `conversation_id` if missing.
fn ensure_conversation(
    c: &mut SqliteConnection,
    conversation_id: &str,
    now_ms: i64,
) -> QueryResult<()> {
    use conversations::dsl as cv;
    diesel::insert_into(cv::conversations)
        .values((
            cv::conversation_id.eq(conversation_id),
            cv::conversation_type.eq(ConversationType::Group.code()),
            cv::max_seq.eq(0_i64),
            cv::created_at.eq(now_ms),
            cv::updated_at.eq(now_ms),
        ))
        .on_conflict_do_nothing()
        .execute(c)?;
    Ok(())
}

fn insert_members(c: &mut SqliteConnection, rows: &[NewMemberRow<'_>]) -> QueryResult<()> {
    for chunk in rows.chunks(CHUNK) {
        diesel::insert_into(group_members::table)
            .values(chunk)
            .execute(c)?;
    }
    Ok(())
}

/// Insert-or-keep of `user_conversations` rows: hand-written multi-row
/// statements (diesel cannot batch an upsert on SQLite), as in `write.rs`.
fn insert_memberships(c: &mut SqliteConnection, rows: &[MembershipRow<'_>]) -> QueryResult<()> {
    let head = "INSERT INTO user_conversations (user_id, conversation_id, created_at, updated_at)";
    let tail = "ON CONFLICT (user_id, conversation_id) DO NOTHING";
    for query in sql::chunked::<Sqlite, _>(head, tail, 4, rows, |q, r| {
        q.bind::<Text, _>(r.user_id)
            .bind::<Text, _>(r.conversation_id)
            .bind::<BigInt, _>(r.created_at)
            .bind::<BigInt, _>(r.updated_at)
    }) {
        query.execute(c)?;
    }
    Ok(())
}

/// The members among `users` (in `users`' order, once each).
fn members_among(
    c: &mut SqliteConnection,
    group_id: &str,
    users: &[&str],
) -> QueryResult<Vec<String>> {
    let mut found = HashSet::new();
    for chunk in users.chunks(CHUNK) {
        found.extend(read::members_among(group_id, chunk).load::<String>(c)?);
    }
    let mut seen = HashSet::new();
    Ok(users
        .iter()
        .filter(|u| found.contains(**u) && seen.insert(**u))
        .map(|u| (*u).to_owned())
        .collect())
}

pub(crate) fn create_group(
    c: &mut SqliteConnection,
    group: &Group,
    members: &[GroupMember],
) -> Result<(), RepoError> {
    let cid = conversation_of(&group.group_id);
    let rows = member_rows(&group.group_id, members, &HashSet::new());
    c.immediate_transaction(|c| {
        // A taken id fails here with a unique violation (Conflict).
        diesel::insert_into(chat_groups::table)
            .values(NewGroupRow::from(group))
            .execute(c)?;
        insert_members(c, &rows)?;
        ensure_conversation(c, &cid, group.created_at)?;
        insert_memberships(c, &membership_rows(&cid, &rows))?;
        Ok(())
    })
}

pub(crate) fn update_group(
    c: &mut SqliteConnection,
    group_id: &str,
    patch: &GroupPatch,
    now_ms: i64,
) -> Result<bool, RepoError> {
    let n = diesel::update(chat_groups::table.filter(chat_groups::group_id.eq(group_id)))
        .set((
            GroupChanges::new(patch, now_ms),
            chat_groups::version.eq(chat_groups::version + 1_i64),
        ))
        .execute(c)?;
    Ok(n > 0)
}

pub(crate) fn dismiss_group(
    c: &mut SqliteConnection,
    group_id: &str,
    now_ms: i64,
) -> Result<bool, RepoError> {
    let cid = conversation_of(group_id);
    c.immediate_transaction(|c| {
        let n = diesel::update(
            chat_groups::table
                .filter(chat_groups::group_id.eq(group_id))
                .filter(chat_groups::status.ne(GROUP_STATUS_DISMISSED)),
        )
        .set((
            chat_groups::status.eq(GROUP_STATUS_DISMISSED),
            chat_groups::updated_at.eq(now_ms),
            chat_groups::version.eq(chat_groups::version + 1_i64),
        ))
        .execute(c)?;
        if n == 0 {
            return Ok(false);
        }
        diesel::delete(group_members::table.filter(group_members::group_id.eq(group_id)))
            .execute(c)?;
        diesel::delete(
            user_conversations::table.filter(user_conversations::conversation_id.eq(&cid)),
        )
        .execute(c)?;
        Ok(true)
    })
}

pub(crate) fn add_members(
    c: &mut SqliteConnection,
    group_id: &str,
    members: &[GroupMember],
    max_members: u32,
) -> Result<AddMembers, RepoError> {
    let cid = conversation_of(group_id);
    c.immediate_transaction(|c| {
        let status = read::group_status(group_id).first::<i32>(c).optional()?;
        if status != Some(GROUP_STATUS_NORMAL) {
            return Ok(AddMembers::NoGroup);
        }
        let wanted: Vec<&str> = members.iter().map(|m| m.user_id.as_str()).collect();
        let existing: HashSet<String> = members_among(c, group_id, &wanted)?.into_iter().collect();
        let rows = member_rows(group_id, members, &existing);
        let count = read::member_count(group_id).get_result::<i64>(c)?;
        let after = count.saturating_add(i64::try_from(rows.len()).unwrap_or(i64::MAX));
        if after > i64::from(max_members) {
            return Ok(AddMembers::Full);
        }
        if let Some(first) = rows.as_slice().first() {
            bump_version(group_id).execute(c)?;
            insert_members(c, &rows)?;
            ensure_conversation(c, &cid, first.joined_at)?;
            insert_memberships(c, &membership_rows(&cid, &rows))?;
            // A new member has read the history from before they joined.
            let head = read::conversation_head(&cid).first::<i64>(c)?;
            if head > 0 {
                for r in &rows {
                    super::conversations::read_up_to(c, r.user_id, &cid, head, r.joined_at)?;
                }
            }
        }
        Ok(AddMembers::Added(
            rows.iter().map(|r| r.user_id.to_owned()).collect(),
        ))
    })
}

pub(crate) fn remove_members(
    c: &mut SqliteConnection,
    group_id: &str,
    users: &[String],
) -> Result<Vec<String>, RepoError> {
    let cid = conversation_of(group_id);
    c.immediate_transaction(|c| {
        let wanted: Vec<&str> = users.iter().map(String::as_str).collect();
        let removed = members_among(c, group_id, &wanted)?;
        if !removed.is_empty() {
            bump_version(group_id).execute(c)?;
        }
        for chunk in removed.chunks(CHUNK) {
            diesel::delete(
                group_members::table
                    .filter(group_members::group_id.eq(group_id))
                    .filter(group_members::user_id.eq_any(chunk)),
            )
            .execute(c)?;
            diesel::delete(
                user_conversations::table
                    .filter(user_conversations::user_id.eq_any(chunk))
                    .filter(user_conversations::conversation_id.eq(&cid)),
            )
            .execute(c)?;
        }
        Ok(removed)
    })
}

/// Updates one member row (and the group's version); false if there is none.
fn update_member(
    c: &mut SqliteConnection,
    group_id: &str,
    user: &str,
    change: MemberChange,
) -> Result<bool, RepoError> {
    c.immediate_transaction(|c| {
        bump_version(group_id).execute(c)?;
        let row = group_members::table
            .filter(group_members::group_id.eq(group_id))
            .filter(group_members::user_id.eq(user));
        let n = match change {
            MemberChange::Role(role) => diesel::update(row)
                .set(group_members::role.eq(role))
                .execute(c)?,
            MemberChange::MutedUntil(t) => diesel::update(row)
                .set(group_members::muted_until.eq(t))
                .execute(c)?,
        };
        Ok(n > 0)
    })
}

impl SqliteStore {
    async fn create_group_impl(&self, group: &Group, members: &[GroupMember]) -> StoreResult<()> {
        let (group, members) = (group.clone(), members.to_vec());
        self.write(move |c| create_group(c, &group, &members)).await
    }

    async fn update_group_impl(
        &self,
        group_id: &str,
        patch: &GroupPatch,
        now_ms: i64,
    ) -> StoreResult<bool> {
        let (group_id, patch) = (group_id.to_owned(), patch.clone());
        self.write(move |c| update_group(c, &group_id, &patch, now_ms))
            .await
    }

    async fn dismiss_group_impl(&self, group_id: &str, now_ms: i64) -> StoreResult<bool> {
        let group_id = group_id.to_owned();
        self.write(move |c| dismiss_group(c, &group_id, now_ms))
            .await
    }

    async fn add_members_impl(
        &self,
        group_id: &str,
        members: &[GroupMember],
        max_members: u32,
    ) -> StoreResult<AddMembers> {
        let (group_id, members) = (group_id.to_owned(), members.to_vec());
        self.write(move |c| add_members(c, &group_id, &members, max_members))
            .await
    }

    async fn remove_members_impl(
        &self,
        group_id: &str,
        users: &[String],
    ) -> StoreResult<Vec<String>> {
        let (group_id, users) = (group_id.to_owned(), users.to_vec());
        self.write(move |c| remove_members(c, &group_id, &users))
            .await
    }

    async fn set_member_role_impl(
        &self,
        group_id: &str,
        user: &str,
        role: GroupRole,
    ) -> StoreResult<bool> {
        let (group_id, user) = (group_id.to_owned(), user.to_owned());
        self.write(move |c| update_member(c, &group_id, &user, MemberChange::Role(role.code())))
            .await
    }

    async fn set_member_mute_impl(
        &self,
        group_id: &str,
        user: &str,
        muted_until: i64,
    ) -> StoreResult<bool> {
        let (group_id, user) = (group_id.to_owned(), user.to_owned());
        self.write(move |c| {
            update_member(c, &group_id, &user, MemberChange::MutedUntil(muted_until))
        })
        .await
    }
}

crate::groups::ports::impl_group_ports!(SqliteStore);
