//! [`UserStore`](im_core::ports::UserStore),
//! [`FriendStore`](im_core::ports::FriendStore) and
//! [`TokenRevocationStore`](im_core::ports::TokenRevocationStore), written
//! once for every store (a macro, for the reason given in [`crate::ports`]).
//!
//! The reads run the shared queries of [`super::read`] (and
//! [`crate::read::user_exists`]) on `self.reader()`; the writes call the
//! store's per-backend functions:
//!
//! * `touch_impl(user, now_ms) -> StoreResult<()>` (in the store's module);
//! * `create_account_impl(&UserProfile, &Account) -> StoreResult<()>`;
//! * `update_profile_impl(user, &ProfilePatch, now_ms) -> StoreResult<UserProfile>`;
//! * `put_request_impl(&FriendRequest) -> StoreResult<()>`;
//! * `resolve_request_impl(from, to, FriendRequestStatus, now_ms) -> StoreResult<bool>`;
//! * `add_friendship_impl(&Friend, &Friend, now_ms) -> StoreResult<()>`;
//! * `remove_friendship_impl(a, b) -> StoreResult<bool>`;
//! * `set_remark_impl(owner, friend, remark) -> StoreResult<bool>` (were friends);
//! * `block_impl(owner, target, now_ms) -> StoreResult<bool>` (was not blocked);
//! * `unblock_impl(owner, target) -> StoreResult<bool>`;
//! * `revoke_token_impl(jti, user, expires_at) -> StoreResult<()>`;
//! * `purge_revoked_impl(now_secs) -> StoreResult<u64>`.
//!
//! Diesel calls are spelled out (`diesel_async::RunQueryDsl::load(q, conn)`)
//! rather than imported, as in [`crate::groups::ports`].

macro_rules! impl_social_ports {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl im_core::ports::UserStore for $store {
            async fn touch(
                &self,
                user: &im_core::UserId,
                now_ms: i64,
            ) -> im_core::ports::StoreResult<()> {
                self.touch_impl(user.as_str(), now_ms).await
            }

            async fn exists(&self, user: &im_core::UserId) -> im_core::ports::StoreResult<bool> {
                let mut conn = self.reader().await?;
                diesel_async::RunQueryDsl::get_result::<bool>(
                    crate::read::user_exists(user.as_str()),
                    &mut *conn,
                )
                .await
                .map_err(crate::error::map_diesel)
            }

            #[tracing::instrument(level = "debug", skip_all, fields(user = %profile.user_id))]
            async fn create_account(
                &self,
                profile: &im_core::model::UserProfile,
                account: &im_core::model::Account,
            ) -> im_core::ports::StoreResult<()> {
                crate::social::check_account(profile, account)?;
                self.create_account_impl(profile, account).await
            }

            async fn account(
                &self,
                user_id: &str,
            ) -> im_core::ports::StoreResult<Option<im_core::model::Account>> {
                let mut conn = self.reader().await?;
                Ok(diesel_async::RunQueryDsl::first::<crate::social::models::AccountRow>(
                    crate::social::read::account(user_id),
                    &mut *conn,
                )
                .await
                .map(Some)
                .or_else(crate::groups::ports::none_if_not_found)
                .map_err(crate::error::map_diesel)?
                .map(im_core::model::Account::from))
            }

            async fn profiles(
                &self,
                users: &[String],
            ) -> im_core::ports::StoreResult<Vec<im_core::model::UserProfile>> {
                if users.is_empty() {
                    return Ok(Vec::new());
                }
                let mut conn = self.reader().await?;
                let mut out = Vec::with_capacity(users.len());
                for chunk in users.chunks(crate::social::CHUNK) {
                    let rows = diesel_async::RunQueryDsl::load::<crate::social::models::ProfileRow>(
                        crate::social::read::profiles(chunk),
                        &mut *conn,
                    )
                    .await
                    .map_err(crate::error::map_diesel)?;
                    out.extend(rows.into_iter().map(im_core::model::UserProfile::from));
                }
                Ok(out)
            }

            async fn update_profile(
                &self,
                user: &str,
                patch: &im_core::model::ProfilePatch,
                now_ms: i64,
            ) -> im_core::ports::StoreResult<im_core::model::UserProfile> {
                self.update_profile_impl(user, patch, now_ms).await
            }

            async fn search_users(
                &self,
                keyword: &str,
                limit: u32,
            ) -> im_core::ports::StoreResult<Vec<im_core::model::UserProfile>> {
                if limit == 0 {
                    return Ok(Vec::new());
                }
                let pattern = crate::social::like_pattern(keyword);
                let mut conn = self.reader().await?;
                let rows = diesel_async::RunQueryDsl::load::<crate::social::models::ProfileRow>(
                    crate::social::read::search(&pattern, crate::ports::sql_limit(limit)),
                    &mut *conn,
                )
                .await
                .map_err(crate::error::map_diesel)?;
                Ok(rows.into_iter().map(im_core::model::UserProfile::from).collect())
            }
        }

        #[async_trait::async_trait]
        impl im_core::ports::FriendStore for $store {
            async fn put_request(
                &self,
                req: &im_core::model::FriendRequest,
            ) -> im_core::ports::StoreResult<()> {
                self.put_request_impl(req).await
            }

            async fn request(
                &self,
                from: &str,
                to: &str,
            ) -> im_core::ports::StoreResult<Option<im_core::model::FriendRequest>> {
                let mut conn = self.reader().await?;
                diesel_async::RunQueryDsl::first::<crate::social::models::RequestRow>(
                    crate::social::read::request(from, to),
                    &mut *conn,
                )
                .await
                .map(Some)
                .or_else(crate::groups::ports::none_if_not_found)
                .map_err(crate::error::map_diesel)?
                .map(im_core::model::FriendRequest::try_from)
                .transpose()
            }

            async fn requests(
                &self,
                user: &str,
                incoming: bool,
                limit: u32,
            ) -> im_core::ports::StoreResult<Vec<im_core::model::FriendRequest>> {
                if limit == 0 {
                    return Ok(Vec::new());
                }
                let limit = crate::ports::sql_limit(limit);
                let mut conn = self.reader().await?;
                let rows = if incoming {
                    diesel_async::RunQueryDsl::load::<crate::social::models::RequestRow>(
                        crate::social::read::requests_to(user, limit),
                        &mut *conn,
                    )
                    .await
                } else {
                    diesel_async::RunQueryDsl::load::<crate::social::models::RequestRow>(
                        crate::social::read::requests_from(user, limit),
                        &mut *conn,
                    )
                    .await
                }
                .map_err(crate::error::map_diesel)?;
                crate::social::models::to_requests(rows)
            }

            async fn resolve_request(
                &self,
                from: &str,
                to: &str,
                status: im_core::model::FriendRequestStatus,
                now_ms: i64,
            ) -> im_core::ports::StoreResult<bool> {
                self.resolve_request_impl(from, to, status, now_ms).await
            }

            #[tracing::instrument(level = "debug", skip_all, fields(a = %a.owner_id, b = %b.owner_id))]
            async fn add_friendship(
                &self,
                a: &im_core::model::Friend,
                b: &im_core::model::Friend,
                now_ms: i64,
            ) -> im_core::ports::StoreResult<()> {
                crate::social::check_pair(a, b)?;
                self.add_friendship_impl(a, b, now_ms).await
            }

            async fn remove_friendship(
                &self,
                a: &str,
                b: &str,
            ) -> im_core::ports::StoreResult<bool> {
                self.remove_friendship_impl(a, b).await
            }

            async fn friend(
                &self,
                owner: &str,
                friend: &str,
            ) -> im_core::ports::StoreResult<Option<im_core::model::Friend>> {
                let mut conn = self.reader().await?;
                Ok(diesel_async::RunQueryDsl::first::<crate::social::models::FriendRow>(
                    crate::social::read::friend(owner, friend),
                    &mut *conn,
                )
                .await
                .map(Some)
                .or_else(crate::groups::ports::none_if_not_found)
                .map_err(crate::error::map_diesel)?
                .map(im_core::model::Friend::from))
            }

            async fn friends(
                &self,
                owner: &str,
            ) -> im_core::ports::StoreResult<Vec<im_core::model::Friend>> {
                let mut conn = self.reader().await?;
                let rows = diesel_async::RunQueryDsl::load::<crate::social::models::FriendRow>(
                    crate::social::read::friends_of(owner),
                    &mut *conn,
                )
                .await
                .map_err(crate::error::map_diesel)?;
                Ok(rows.into_iter().map(im_core::model::Friend::from).collect())
            }

            async fn set_remark(
                &self,
                owner: &str,
                friend: &str,
                remark: &str,
            ) -> im_core::ports::StoreResult<Option<im_core::model::Friend>> {
                if !self.set_remark_impl(owner, friend, remark).await? {
                    return Ok(None);
                }
                im_core::ports::FriendStore::friend(self, owner, friend).await
            }

            async fn block(
                &self,
                owner: &str,
                target: &str,
                now_ms: i64,
            ) -> im_core::ports::StoreResult<bool> {
                self.block_impl(owner, target, now_ms).await
            }

            async fn unblock(&self, owner: &str, target: &str) -> im_core::ports::StoreResult<bool> {
                self.unblock_impl(owner, target).await
            }

            async fn blocks(
                &self,
                owner: &str,
            ) -> im_core::ports::StoreResult<Vec<im_core::model::Block>> {
                let mut conn = self.reader().await?;
                let rows = diesel_async::RunQueryDsl::load::<crate::social::models::BlockRow>(
                    crate::social::read::blocks_of(owner),
                    &mut *conn,
                )
                .await
                .map_err(crate::error::map_diesel)?;
                Ok(rows.into_iter().map(im_core::model::Block::from).collect())
            }

            async fn is_blocked(
                &self,
                owner: &str,
                target: &str,
            ) -> im_core::ports::StoreResult<bool> {
                let mut conn = self.reader().await?;
                diesel_async::RunQueryDsl::get_result::<bool>(
                    crate::social::read::is_blocked(owner, target),
                    &mut *conn,
                )
                .await
                .map_err(crate::error::map_diesel)
            }
        }

        #[async_trait::async_trait]
        impl im_core::ports::TokenRevocationStore for $store {
            async fn revoke(
                &self,
                jti: &str,
                user: &str,
                expires_at: i64,
            ) -> im_core::ports::StoreResult<()> {
                self.revoke_token_impl(jti, user, expires_at).await
            }

            async fn is_revoked(&self, jti: &str) -> im_core::ports::StoreResult<bool> {
                let mut conn = self.reader().await?;
                diesel_async::RunQueryDsl::get_result::<bool>(
                    crate::social::read::is_revoked(jti),
                    &mut *conn,
                )
                .await
                .map_err(crate::error::map_diesel)
            }

            async fn purge_expired(&self, now_secs: i64) -> im_core::ports::StoreResult<u64> {
                self.purge_revoked_impl(now_secs).await
            }
        }
    };
}

pub(crate) use impl_social_ports;
