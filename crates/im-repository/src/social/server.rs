//! The social writes of the server backends (PostgreSQL, MySQL/MariaDB),
//! written once: `server_writes!` expands in `pg::social` and
//! `mysql::social`, which supply the statements whose SQL differs (the
//! insert-or-keep and upsert dialects):
//!
//! * `type Conn` — the async connection;
//! * `async fn keep_user(&mut Conn, &NewProfileRow) -> QueryResult<()>` —
//!   insert-or-keep of a `users` row;
//! * `async fn keep_friend(&mut Conn, &NewFriendRow) -> QueryResult<()>` —
//!   insert-or-keep of a `friends` row;
//! * `async fn upsert_request(&mut Conn, &NewRequestRow) -> QueryResult<()>`
//!   — creates the request or replaces its message, status and `updated_at`;
//! * `async fn insert_block(&mut Conn, &NewBlockRow) -> QueryResult<bool>` —
//!   insert-or-keep, true when the row was new;
//! * `async fn keep_revoked(&mut Conn, &RevokedRow) -> QueryResult<()>` —
//!   insert-or-keep of a `revoked_tokens` row.
//!
//! Transactions run on a tokio task of their own (`on_own_task!`, as for
//! groups); single statements run on a pooled connection directly.

macro_rules! server_writes {
    ($store:ty) => {
        /// The user row and the credentials, in one transaction; a taken
        /// id fails with a unique violation (Conflict).
        async fn create_account(
            conn: &mut Conn,
            profile: &im_core::model::UserProfile,
            account: &im_core::model::Account,
        ) -> Result<(), crate::error::RepoError> {
            use diesel_async::{AsyncConnection, RunQueryDsl};
            conn.transaction(async |conn| {
                diesel::insert_into(crate::schema::users::table)
                    .values(crate::social::models::NewProfileRow::new(profile))
                    .execute(conn)
                    .await?;
                diesel::insert_into(crate::social::schema::accounts::table)
                    .values(crate::social::models::NewAccountRow::from(account))
                    .execute(conn)
                    .await?;
                Ok::<_, crate::error::RepoError>(())
            })
            .await
        }

        /// Creates the user if missing, applies the patch, reads the profile
        /// back (under the row lock the update took).
        async fn update_profile(
            conn: &mut Conn,
            user: &str,
            patch: &im_core::model::ProfilePatch,
            now_ms: i64,
        ) -> Result<im_core::model::UserProfile, crate::error::RepoError> {
            use diesel::{ExpressionMethods, QueryDsl};
            use diesel_async::{AsyncConnection, RunQueryDsl};
            use crate::schema::users as u;
            conn.transaction(async |conn| {
                keep_user(conn, &crate::social::models::NewProfileRow::empty(user, now_ms)).await?;
                diesel::update(u::table.filter(u::user_id.eq(user)))
                    .set(crate::social::models::ProfileChanges::new(patch, now_ms))
                    .execute(conn)
                    .await?;
                let row = crate::social::read::profile(user)
                    .first::<crate::social::models::ProfileRow>(conn)
                    .await?;
                Ok::<_, crate::error::RepoError>(im_core::model::UserProfile::from(row))
            })
            .await
        }

        /// Both friend rows (kept when present), then the pending requests
        /// between the two marked accepted; rows in user-id order.
        async fn add_friendship(
            conn: &mut Conn,
            a: &im_core::model::Friend,
            b: &im_core::model::Friend,
            now_ms: i64,
        ) -> Result<(), crate::error::RepoError> {
            use diesel::{ExpressionMethods, QueryDsl};
            use diesel_async::{AsyncConnection, RunQueryDsl};
            use crate::social::schema::friend_requests as fr;
            use im_core::model::FriendRequestStatus;
            let sides = crate::social::ordered(a, b, |f| f.owner_id.as_str());
            conn.transaction(async |conn| {
                for side in sides {
                    keep_friend(conn, &crate::social::models::NewFriendRow::from(side)).await?;
                }
                for side in sides {
                    diesel::update(
                        fr::table
                            .filter(fr::from_id.eq(&side.owner_id))
                            .filter(fr::to_id.eq(&side.friend_id))
                            .filter(fr::status.eq(FriendRequestStatus::Pending.code())),
                    )
                    .set((
                        fr::status.eq(FriendRequestStatus::Accepted.code()),
                        fr::updated_at.eq(now_ms),
                    ))
                    .execute(conn)
                    .await?;
                }
                Ok::<_, crate::error::RepoError>(())
            })
            .await
        }

        impl $store {
            async fn create_account_impl(
                &self,
                profile: &im_core::model::UserProfile,
                account: &im_core::model::Account,
            ) -> im_core::ports::StoreResult<()> {
                let (profile, account) = (profile.clone(), account.clone());
                crate::groups::server::on_own_task!(self, c => create_account(&mut c, &profile, &account))
            }

            async fn update_profile_impl(
                &self,
                user: &str,
                patch: &im_core::model::ProfilePatch,
                now_ms: i64,
            ) -> im_core::ports::StoreResult<im_core::model::UserProfile> {
                let (user, patch) = (user.to_owned(), patch.clone());
                crate::groups::server::on_own_task!(self, c => update_profile(&mut c, &user, &patch, now_ms))
            }

            async fn put_request_impl(
                &self,
                req: &im_core::model::FriendRequest,
            ) -> im_core::ports::StoreResult<()> {
                let mut conn = self.reader().await?;
                upsert_request(&mut conn, &crate::social::models::NewRequestRow::from(req))
                    .await
                    .map_err(crate::error::map_diesel)
            }

            async fn resolve_request_impl(
                &self,
                from: &str,
                to: &str,
                status: im_core::model::FriendRequestStatus,
                now_ms: i64,
            ) -> im_core::ports::StoreResult<bool> {
                use diesel::{ExpressionMethods, QueryDsl};
                use diesel_async::RunQueryDsl;
                use crate::social::schema::friend_requests as fr;
                use im_core::model::FriendRequestStatus;
                let mut conn = self.reader().await?;
                let n = diesel::update(
                    fr::table
                        .filter(fr::from_id.eq(from))
                        .filter(fr::to_id.eq(to))
                        .filter(fr::status.eq(FriendRequestStatus::Pending.code())),
                )
                .set((fr::status.eq(status.code()), fr::updated_at.eq(now_ms)))
                .execute(&mut *conn)
                .await
                .map_err(crate::error::map_diesel)?;
                Ok(n > 0)
            }

            async fn add_friendship_impl(
                &self,
                a: &im_core::model::Friend,
                b: &im_core::model::Friend,
                now_ms: i64,
            ) -> im_core::ports::StoreResult<()> {
                let (a, b) = (a.clone(), b.clone());
                crate::groups::server::on_own_task!(self, c => add_friendship(&mut c, &a, &b, now_ms))
            }

            async fn remove_friendship_impl(
                &self,
                a: &str,
                b: &str,
            ) -> im_core::ports::StoreResult<bool> {
                use diesel::{BoolExpressionMethods, ExpressionMethods, QueryDsl};
                use diesel_async::RunQueryDsl;
                use crate::social::schema::friends as f;
                let mut conn = self.reader().await?;
                // One statement: both sides go, or neither.
                let n = diesel::delete(f::table.filter(
                    f::owner_id.eq(a).and(f::friend_id.eq(b))
                        .or(f::owner_id.eq(b).and(f::friend_id.eq(a))),
                ))
                .execute(&mut *conn)
                .await
                .map_err(crate::error::map_diesel)?;
                Ok(n > 0)
            }

            async fn set_remark_impl(
                &self,
                owner: &str,
                friend: &str,
                remark: &str,
            ) -> im_core::ports::StoreResult<bool> {
                use diesel::{ExpressionMethods, QueryDsl};
                use diesel_async::RunQueryDsl;
                use crate::social::schema::friends as f;
                let mut conn = self.reader().await?;
                // (MySQL counts matched rows: the connection sets CLIENT_FOUND_ROWS.)
                let n = diesel::update(
                    f::table
                        .filter(f::owner_id.eq(owner))
                        .filter(f::friend_id.eq(friend)),
                )
                .set(f::remark.eq(remark))
                .execute(&mut *conn)
                .await
                .map_err(crate::error::map_diesel)?;
                Ok(n > 0)
            }

            async fn block_impl(
                &self,
                owner: &str,
                target: &str,
                now_ms: i64,
            ) -> im_core::ports::StoreResult<bool> {
                let mut conn = self.reader().await?;
                let row = crate::social::models::NewBlockRow {
                    owner_id: owner,
                    blocked_id: target,
                    created_at: now_ms,
                };
                insert_block(&mut conn, &row)
                    .await
                    .map_err(crate::error::map_diesel)
            }

            async fn unblock_impl(
                &self,
                owner: &str,
                target: &str,
            ) -> im_core::ports::StoreResult<bool> {
                use diesel::{ExpressionMethods, QueryDsl};
                use diesel_async::RunQueryDsl;
                use crate::social::schema::blocks as bl;
                let mut conn = self.reader().await?;
                let n = diesel::delete(
                    bl::table
                        .filter(bl::owner_id.eq(owner))
                        .filter(bl::blocked_id.eq(target)),
                )
                .execute(&mut *conn)
                .await
                .map_err(crate::error::map_diesel)?;
                Ok(n > 0)
            }

            async fn revoke_token_impl(
                &self,
                jti: &str,
                user: &str,
                expires_at: i64,
            ) -> im_core::ports::StoreResult<()> {
                let mut conn = self.reader().await?;
                let row = crate::social::models::RevokedRow {
                    jti,
                    user_id: user,
                    expires_at,
                };
                keep_revoked(&mut conn, &row)
                    .await
                    .map_err(crate::error::map_diesel)
            }

            async fn purge_revoked_impl(&self, now_secs: i64) -> im_core::ports::StoreResult<u64> {
                use diesel::{ExpressionMethods, QueryDsl};
                use diesel_async::RunQueryDsl;
                use crate::social::schema::revoked_tokens as rt;
                let mut conn = self.reader().await?;
                let n = diesel::delete(rt::table.filter(rt::expires_at.lt(now_secs)))
                    .execute(&mut *conn)
                    .await
                    .map_err(crate::error::map_diesel)?;
                Ok(crate::social::models::count(n))
            }
        }

        crate::social::ports::impl_social_ports!($store);
    };
}

pub(crate) use server_writes;
