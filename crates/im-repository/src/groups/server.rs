//! The group and conversation-state writes of the server backends
//! (PostgreSQL, MySQL/MariaDB), written once: `server_writes!` expands in
//! `pg::groups` and `mysql::groups`, which supply the few statements whose
//! SQL differs (the insert-or-keep dialect and how the counter row is
//! locked):
//!
//! * `type Conn` — the async connection;
//! * `async fn lock_conversation(&mut Conn, conversation_id, now_ms) -> QueryResult<i64>`
//!   — creates the `group_<gid>` counter row of `conversations` if missing,
//!   holds its row lock until commit and returns its head (`max_seq`);
//! * `async fn insert_memberships(&mut Conn, &[MembershipRow]) -> QueryResult<()>`
//!   — insert-or-keep `user_conversations` rows;
//! * `async fn init_read_cursor(&mut Conn, &ReadCursorRow) -> QueryResult<()>`
//!   — insert-or-keep, holding the row lock until commit.
//!
//! Transactions run on a tokio task of their own (like `append`), so a
//! caller that gives up cannot leave one half-done on a pooled connection.
//! Lock order: the group row (`FOR UPDATE`, or the row the statement
//! inserts or updates), then the counter row, then member and membership
//! rows in user order (see [`super`]).

macro_rules! server_writes {
    ($store:ty) => {
        /// Creates the group, its members and their memberships in one transaction.
        async fn create_group(
            conn: &mut Conn,
            group: &im_core::model::Group,
            members: &[im_core::model::GroupMember],
        ) -> Result<(), crate::error::RepoError> {
            use diesel_async::{AsyncConnection, RunQueryDsl};
            let cid = crate::groups::conversation_of(&group.group_id);
            let rows = crate::groups::models::member_rows(
                &group.group_id,
                members,
                &std::collections::HashSet::new(),
            );
            conn.transaction(async |conn| {
                // A taken id fails here with a unique violation (Conflict).
                diesel::insert_into(crate::groups::schema::chat_groups::table)
                    .values(crate::groups::models::NewGroupRow::from(group))
                    .execute(conn)
                    .await?;
                lock_conversation(conn, &cid, group.created_at).await?;
                insert_members(conn, &rows).await?;
                insert_memberships(conn, &crate::groups::models::membership_rows(&cid, &rows))
                    .await?;
                Ok::<_, crate::error::RepoError>(())
            })
            .await
        }

        /// Plain multi-row inserts of new members (the caller made sure
        /// none exists, under the group's lock).
        async fn insert_members(
            conn: &mut Conn,
            rows: &[crate::groups::models::NewMemberRow<'_>],
        ) -> diesel::QueryResult<()> {
            use diesel_async::RunQueryDsl;
            for chunk in rows.chunks(crate::groups::CHUNK) {
                diesel::insert_into(crate::groups::schema::group_members::table)
                    .values(chunk)
                    .execute(conn)
                    .await?;
            }
            Ok(())
        }

        /// The members among `users` (in `users`' order, once each).
        async fn members_among(
            conn: &mut Conn,
            group_id: &str,
            users: &[&str],
        ) -> diesel::QueryResult<Vec<String>> {
            use diesel_async::RunQueryDsl;
            let mut found = std::collections::HashSet::new();
            for chunk in users.chunks(crate::groups::CHUNK) {
                found.extend(
                    crate::groups::read::members_among(group_id, chunk)
                        .load::<String>(conn)
                        .await?,
                );
            }
            let mut seen = std::collections::HashSet::new();
            Ok(users
                .iter()
                .filter(|u| found.contains(**u) && seen.insert(**u))
                .map(|u| (*u).to_owned())
                .collect())
        }

        /// Adds the new ones of `members` unless the group would exceed
        /// `max_members`, with the group row locked.
        async fn add_members(
            conn: &mut Conn,
            group_id: &str,
            members: &[im_core::model::GroupMember],
            max_members: u32,
        ) -> Result<im_core::ports::AddMembers, crate::error::RepoError> {
            use diesel::{OptionalExtension, QueryDsl};
            use diesel_async::{AsyncConnection, RunQueryDsl};
            use im_core::ports::AddMembers;
            let cid = crate::groups::conversation_of(group_id);
            conn.transaction(async |conn| {
                let status = crate::groups::read::group_status(group_id)
                    .for_update()
                    .first::<i32>(conn)
                    .await
                    .optional()?;
                if status != Some(im_core::model::GROUP_STATUS_NORMAL) {
                    return Ok(AddMembers::NoGroup);
                }
                let wanted: Vec<&str> = members.iter().map(|m| m.user_id.as_str()).collect();
                let existing: std::collections::HashSet<String> =
                    members_among(conn, group_id, &wanted).await?.into_iter().collect();
                let rows = crate::groups::models::member_rows(group_id, members, &existing);
                let count = crate::groups::read::member_count(group_id)
                    .get_result::<i64>(conn)
                    .await?;
                let after = count.saturating_add(i64::try_from(rows.len()).unwrap_or(i64::MAX));
                if after > i64::from(max_members) {
                    return Ok(AddMembers::Full);
                }
                if let Some(first) = rows.as_slice().first() {
                    crate::groups::bump_version(group_id).execute(conn).await?;
                    let head = lock_conversation(conn, &cid, first.joined_at).await?;
                    insert_members(conn, &rows).await?;
                    insert_memberships(conn, &crate::groups::models::membership_rows(&cid, &rows))
                        .await?;
                    // A new member has read the history from before they joined.
                    if head > 0 {
                        for r in &rows {
                            read_up_to(conn, r.user_id, &cid, head, r.joined_at).await?;
                        }
                    }
                }
                Ok::<_, crate::error::RepoError>(AddMembers::Added(
                    rows.iter().map(|r| r.user_id.to_owned()).collect(),
                ))
            })
            .await
        }

        /// Deletes the member rows and memberships of `users` in `group_id`
        /// (the counter row locked).
        async fn delete_members(
            conn: &mut Conn,
            group_id: &str,
            cid: &str,
            users: &[String],
        ) -> diesel::QueryResult<()> {
            use diesel::{ExpressionMethods, QueryDsl};
            use diesel_async::RunQueryDsl;
            use crate::groups::schema::group_members as gm;
            use crate::schema::user_conversations as uc;
            for chunk in users.chunks(crate::groups::CHUNK) {
                diesel::delete(
                    gm::table
                        .filter(gm::group_id.eq(group_id))
                        .filter(gm::user_id.eq_any(chunk)),
                )
                .execute(conn)
                .await?;
                diesel::delete(
                    uc::table
                        .filter(uc::user_id.eq_any(chunk))
                        .filter(uc::conversation_id.eq(cid)),
                )
                .execute(conn)
                .await?;
            }
            Ok(())
        }

        /// Removes the members among `users`; returns them.
        async fn remove_members(
            conn: &mut Conn,
            group_id: &str,
            users: &[String],
        ) -> Result<Vec<String>, crate::error::RepoError> {
            use diesel::{OptionalExtension, QueryDsl};
            use diesel_async::{AsyncConnection, RunQueryDsl};
            let cid = crate::groups::conversation_of(group_id);
            conn.transaction(async |conn| {
                let status = crate::groups::read::group_status(group_id)
                    .for_update()
                    .first::<i32>(conn)
                    .await
                    .optional()?;
                if status.is_none() {
                    return Ok(Vec::new());
                }
                let wanted: Vec<&str> = users.iter().map(String::as_str).collect();
                let removed = members_among(conn, group_id, &wanted).await?;
                if !removed.is_empty() {
                    crate::groups::bump_version(group_id).execute(conn).await?;
                    lock_conversation(conn, &cid, 0).await?;
                    delete_members(conn, group_id, &cid, &removed).await?;
                }
                Ok::<_, crate::error::RepoError>(removed)
            })
            .await
        }

        /// Marks the group dismissed and removes every member and membership.
        async fn dismiss_group(
            conn: &mut Conn,
            group_id: &str,
            now_ms: i64,
        ) -> Result<bool, crate::error::RepoError> {
            use diesel::{ExpressionMethods, QueryDsl};
            use diesel_async::{AsyncConnection, RunQueryDsl};
            use crate::groups::schema::chat_groups as g;
            use crate::groups::schema::group_members as gm;
            use crate::schema::user_conversations as uc;
            use im_core::model::GROUP_STATUS_DISMISSED;
            let cid = crate::groups::conversation_of(group_id);
            conn.transaction(async |conn| {
                let n = diesel::update(
                    g::table
                        .filter(g::group_id.eq(group_id))
                        .filter(g::status.ne(GROUP_STATUS_DISMISSED)),
                )
                .set((
                    g::status.eq(GROUP_STATUS_DISMISSED),
                    g::updated_at.eq(now_ms),
                    g::version.eq(g::version + 1_i64),
                ))
                .execute(conn)
                .await?;
                if n == 0 {
                    return Ok(false);
                }
                lock_conversation(conn, &cid, now_ms).await?;
                diesel::delete(gm::table.filter(gm::group_id.eq(group_id)))
                    .execute(conn)
                    .await?;
                diesel::delete(uc::table.filter(uc::conversation_id.eq(&cid)))
                    .execute(conn)
                    .await?;
                Ok::<_, crate::error::RepoError>(true)
            })
            .await
        }

        /// Updates one member row with `set` (the group's version raised
        /// first, which takes the group row's lock); false if there is none.
        async fn update_member(
            conn: &mut Conn,
            group_id: &str,
            user: &str,
            change: crate::groups::MemberChange,
        ) -> Result<bool, crate::error::RepoError> {
            use diesel::{ExpressionMethods, QueryDsl};
            use diesel_async::{AsyncConnection, RunQueryDsl};
            use crate::groups::MemberChange;
            use crate::groups::schema::group_members as gm;
            conn.transaction(async |conn| {
                crate::groups::bump_version(group_id).execute(conn).await?;
                let row = gm::table
                    .filter(gm::group_id.eq(group_id))
                    .filter(gm::user_id.eq(user));
                let n = match change {
                    MemberChange::Role(role) => {
                        diesel::update(row).set(gm::role.eq(role)).execute(conn).await?
                    }
                    MemberChange::MutedUntil(t) => {
                        diesel::update(row).set(gm::muted_until.eq(t)).execute(conn).await?
                    }
                };
                Ok::<_, crate::error::RepoError>(n > 0)
            })
            .await
        }

        /// Moves the read cursor of `user` in `conversation_id` up to
        /// `seq` (never back).
        async fn read_up_to(
            conn: &mut Conn,
            user: &str,
            conversation_id: &str,
            seq: i64,
            now_ms: i64,
        ) -> diesel::QueryResult<()> {
            use diesel::{ExpressionMethods, QueryDsl};
            use diesel_async::RunQueryDsl;
            use crate::groups::schema::read_cursors as rc;
            let row = crate::groups::models::ReadCursorRow {
                user_id: user,
                conversation_id,
                read_seq: seq,
                updated_at: now_ms,
            };
            init_read_cursor(conn, &row).await?;
            diesel::update(
                rc::table
                    .filter(rc::user_id.eq(user))
                    .filter(rc::conversation_id.eq(conversation_id))
                    .filter(rc::read_seq.lt(seq)),
            )
            .set((rc::read_seq.eq(seq), rc::updated_at.eq(now_ms)))
            .execute(conn)
            .await?;
            Ok(())
        }

        /// Moves the read cursor forward; returns the one before.
        async fn mark_read(
            conn: &mut Conn,
            user: &str,
            conversation_id: &str,
            up_to_seq: i64,
            now_ms: i64,
        ) -> Result<i64, crate::error::RepoError> {
            use diesel::{ExpressionMethods, QueryDsl};
            use diesel_async::{AsyncConnection, RunQueryDsl};
            use crate::groups::schema::read_cursors as rc;
            conn.transaction(async |conn| {
                let row = crate::groups::models::ReadCursorRow {
                    user_id: user,
                    conversation_id,
                    read_seq: 0,
                    updated_at: now_ms,
                };
                init_read_cursor(conn, &row).await?;
                let before = crate::groups::read::read_seq(user, conversation_id)
                    .for_update()
                    .first::<i64>(conn)
                    .await?;
                if up_to_seq > before {
                    diesel::update(
                        rc::table
                            .filter(rc::user_id.eq(user))
                            .filter(rc::conversation_id.eq(conversation_id)),
                    )
                    .set((rc::read_seq.eq(up_to_seq), rc::updated_at.eq(now_ms)))
                    .execute(conn)
                    .await?;
                }
                Ok::<_, crate::error::RepoError>(before)
            })
            .await
        }

        impl $store {
            async fn create_group_impl(
                &self,
                group: &im_core::model::Group,
                members: &[im_core::model::GroupMember],
            ) -> im_core::ports::StoreResult<()> {
                let (group, members) = (group.clone(), members.to_vec());
                crate::groups::server::on_own_task!(self, c => create_group(&mut c, &group, &members))
            }

            async fn update_group_impl(
                &self,
                group_id: &str,
                patch: &im_core::model::GroupPatch,
                now_ms: i64,
            ) -> im_core::ports::StoreResult<bool> {
                use diesel::{ExpressionMethods, QueryDsl};
                use diesel_async::RunQueryDsl;
                use crate::groups::schema::chat_groups as g;
                let mut conn = self.reader().await?;
                let n = diesel::update(g::table.filter(g::group_id.eq(group_id)))
                    .set((
                        crate::groups::models::GroupChanges::new(patch, now_ms),
                        g::version.eq(g::version + 1_i64),
                    ))
                    .execute(&mut *conn)
                    .await
                    .map_err(crate::error::map_diesel)?;
                Ok(n > 0)
            }

            async fn dismiss_group_impl(
                &self,
                group_id: &str,
                now_ms: i64,
            ) -> im_core::ports::StoreResult<bool> {
                let group_id = group_id.to_owned();
                crate::groups::server::on_own_task!(self, c => dismiss_group(&mut c, &group_id, now_ms))
            }

            async fn add_members_impl(
                &self,
                group_id: &str,
                members: &[im_core::model::GroupMember],
                max_members: u32,
            ) -> im_core::ports::StoreResult<im_core::ports::AddMembers> {
                let (group_id, members) = (group_id.to_owned(), members.to_vec());
                crate::groups::server::on_own_task!(
                    self,
                    c => add_members(&mut c, &group_id, &members, max_members)
                )
            }

            async fn remove_members_impl(
                &self,
                group_id: &str,
                users: &[String],
            ) -> im_core::ports::StoreResult<Vec<String>> {
                let (group_id, users) = (group_id.to_owned(), users.to_vec());
                crate::groups::server::on_own_task!(self, c => remove_members(&mut c, &group_id, &users))
            }

            async fn set_member_role_impl(
                &self,
                group_id: &str,
                user: &str,
                role: im_core::model::GroupRole,
            ) -> im_core::ports::StoreResult<bool> {
                let (group_id, user) = (group_id.to_owned(), user.to_owned());
                let change = crate::groups::MemberChange::Role(role.code());
                crate::groups::server::on_own_task!(self, c => update_member(&mut c, &group_id, &user, change))
            }

            async fn set_member_mute_impl(
                &self,
                group_id: &str,
                user: &str,
                muted_until: i64,
            ) -> im_core::ports::StoreResult<bool> {
                let (group_id, user) = (group_id.to_owned(), user.to_owned());
                let change = crate::groups::MemberChange::MutedUntil(muted_until);
                crate::groups::server::on_own_task!(self, c => update_member(&mut c, &group_id, &user, change))
            }

            async fn revoke_impl(
                &self,
                server_msg_id: &str,
                by: &str,
                time_ms: i64,
            ) -> im_core::ports::StoreResult<()> {
                use diesel::{ExpressionMethods, QueryDsl};
                use diesel_async::RunQueryDsl;
                use crate::schema::messages as m;
                let mut conn = self.reader().await?;
                // The first recall wins: a second one matches no row.
                diesel::update(
                    m::table
                        .filter(m::server_msg_id.eq(server_msg_id))
                        .filter(m::revoked_by.is_null()),
                )
                .set((m::revoked_by.eq(by), m::revoked_time.eq(time_ms)))
                .execute(&mut *conn)
                .await
                .map_err(crate::error::map_diesel)?;
                Ok(())
            }

            async fn mark_read_impl(
                &self,
                user: &str,
                conversation_id: &str,
                up_to_seq: i64,
                now_ms: i64,
            ) -> im_core::ports::StoreResult<i64> {
                let (user, conversation_id) = (user.to_owned(), conversation_id.to_owned());
                crate::groups::server::on_own_task!(
                    self,
                    c => mark_read(&mut c, &user, &conversation_id, up_to_seq, now_ms)
                )
            }
        }

        crate::groups::ports::impl_group_ports!($store);
    };
}

pub(crate) use server_writes;

/// Runs `$body` (a future of `Result<_, RepoError>` using the pooled
/// connection `$conn`) on a tokio task of its own, so a caller that gives up
/// cannot abandon a transaction halfway.
macro_rules! on_own_task {
    ($self:ident, $conn:ident => $body:expr) => {{
        let pool = $self.inner.pool.clone();
        tokio::spawn(async move {
            let mut $conn = crate::server::checkout(&pool).await?;
            $body.await.map_err(im_core::StoreError::from)
        })
        .await
        .map_err(crate::error::map_join)?
    }};
}

pub(crate) use on_own_task;
