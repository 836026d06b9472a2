//! The im-core ports, implemented once for every store.
//!
//! The reads are the same diesel queries ([`crate::read`]) on every backend;
//! only the connection type differs, which a generic impl cannot name without
//! a wall of per-query trait bounds. So a macro writes the trait impls
//! ([`MessageStore`](im_core::ports::MessageStore) and
//! [`HealthCheck`](im_core::ports::HealthCheck); `UserStore` is written by
//! `crate::social::ports`) for a store type that provides:
//!
//! * `async fn reader(&self) -> StoreResult<impl DerefMut<Target = Conn>>`;
//! * `async fn append_batch(&self, &[NewMessage]) -> StoreResult<Vec<Appended>>`;
//! * `async fn record_delivered_impl(&self, user, device, conversation_id, seq) -> StoreResult<()>`;
//! * `async fn record_acked_impl(&self, user, device, conversation_id, seq, now_ms) -> StoreResult<()>`;
//! * `async fn delete_acked_impl(&self, user, device, Vec<(conversation_id, up_to_seq)>) -> StoreResult<u64>`;
//! * `async fn purge_acked_impl(&self, before_ms) -> StoreResult<u64>`.

/// `limit` as a SQL LIMIT.
pub(crate) fn sql_limit(limit: u32) -> i64 {
    i64::from(limit)
}

macro_rules! impl_store_ports {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl im_core::ports::MessageStore for $store {
            #[tracing::instrument(level = "debug", skip_all, fields(batch = batch.len()))]
            async fn append(
                &self,
                batch: &[im_core::model::NewMessage],
            ) -> im_core::ports::StoreResult<Vec<im_core::ports::Appended>> {
                if batch.is_empty() {
                    return Ok(Vec::new());
                }
                self.append_batch(batch).await
            }

            async fn find_by_client_id(
                &self,
                sender: &im_core::UserId,
                client_msg_id: &str,
            ) -> im_core::ports::StoreResult<Option<im_core::model::StoredMessage>> {
                use diesel::OptionalExtension;
                use diesel_async::RunQueryDsl;
                let mut conn = self.reader().await?;
                crate::read::by_client_id(sender.as_str(), client_msg_id)
                    .first::<crate::models::MessageRow>(&mut *conn)
                    .await
                    .optional()
                    .map_err(crate::error::map_diesel)?
                    .map(im_core::model::StoredMessage::try_from)
                    .transpose()
            }

            async fn find_by_server_id(
                &self,
                server_msg_id: &str,
            ) -> im_core::ports::StoreResult<Option<im_core::model::StoredMessage>> {
                use diesel::OptionalExtension;
                use diesel_async::RunQueryDsl;
                let mut conn = self.reader().await?;
                crate::read::by_server_id(server_msg_id)
                    .first::<crate::models::MessageRow>(&mut *conn)
                    .await
                    .optional()
                    .map_err(crate::error::map_diesel)?
                    .map(im_core::model::StoredMessage::try_from)
                    .transpose()
            }

            async fn conversation_range(
                &self,
                conversation_id: &str,
                after_seq: i64,
                up_to_seq: i64,
                limit: u32,
            ) -> im_core::ports::StoreResult<Vec<im_core::model::StoredMessage>> {
                use diesel_async::RunQueryDsl;
                if after_seq >= up_to_seq || limit == 0 {
                    return Ok(Vec::new());
                }
                let mut conn = self.reader().await?;
                let rows = crate::read::conversation_range(
                    conversation_id,
                    after_seq,
                    up_to_seq,
                    crate::ports::sql_limit(limit),
                )
                .load::<crate::models::MessageRow>(&mut *conn)
                .await
                .map_err(crate::error::map_diesel)?;
                crate::models::to_stored(rows)
            }

            async fn user_conversations(
                &self,
                user: &im_core::UserId,
            ) -> im_core::ports::StoreResult<Vec<im_core::ports::ConversationHead>> {
                use diesel_async::RunQueryDsl;
                let mut conn = self.reader().await?;
                let rows = crate::read::user_conversations(user.as_str())
                    .load::<(String, i64)>(&mut *conn)
                    .await
                    .map_err(crate::error::map_diesel)?;
                Ok(rows
                    .into_iter()
                    .map(
                        |(conversation_id, max_seq)| im_core::ports::ConversationHead {
                            conversation_id,
                            max_seq,
                        },
                    )
                    .collect())
            }

            async fn inbox_head(&self, user: &im_core::UserId) -> im_core::ports::StoreResult<i64> {
                use diesel_async::RunQueryDsl;
                let mut conn = self.reader().await?;
                Ok(crate::read::inbox_head(user.as_str())
                    .get_result::<Option<i64>>(&mut *conn)
                    .await
                    .map_err(crate::error::map_diesel)?
                    .unwrap_or(0))
            }

            async fn inbox_count_after(
                &self,
                user: &im_core::UserId,
                after: i64,
                cap: u32,
            ) -> im_core::ports::StoreResult<u64> {
                use diesel_async::RunQueryDsl;
                if cap == 0 {
                    return Ok(0);
                }
                let mut conn = self.reader().await?;
                // The positions only (index-only, like the first step of
                // inbox_after), at most `cap` of them.
                let n = crate::read::inbox_positions(
                    user.as_str(),
                    after,
                    crate::ports::sql_limit(cap),
                )
                .load::<(i64, i64)>(&mut *conn)
                .await
                .map_err(crate::error::map_diesel)?
                .len();
                Ok(u64::try_from(n).unwrap_or(u64::MAX))
            }

            async fn inbox_after(
                &self,
                user: &im_core::UserId,
                after: i64,
                limit: u32,
            ) -> im_core::ports::StoreResult<Vec<im_core::ports::InboxEntry>> {
                use diesel_async::RunQueryDsl;
                if limit == 0 {
                    return Ok(Vec::new());
                }
                let mut conn = self.reader().await?;
                // Two steps: the page's positions and ids from the index,
                // then just the page's rows by primary key.
                let page = crate::read::inbox_positions(
                    user.as_str(),
                    after,
                    crate::ports::sql_limit(limit),
                )
                .load::<(i64, i64)>(&mut *conn)
                .await
                .map_err(crate::error::map_diesel)?;
                if page.is_empty() {
                    return Ok(Vec::new());
                }
                let ids: Vec<i64> = page.iter().map(|&(_, id)| id).collect();
                let mut rows: std::collections::HashMap<i64, crate::models::MessageRow> =
                    crate::read::messages_by_id(&ids)
                        .load::<(i64, crate::models::MessageRow)>(&mut *conn)
                        .await
                        .map_err(crate::error::map_diesel)?
                        .into_iter()
                        .collect();
                page.into_iter()
                    .map(|(cursor, id)| {
                        let row = rows.remove(&id).ok_or_else(|| {
                            im_core::StoreError::Other(format!("message {id} vanished"))
                        })?;
                        Ok(im_core::ports::InboxEntry {
                            cursor,
                            message: im_core::model::StoredMessage::try_from(row)?,
                        })
                    })
                    .collect()
            }

            async fn record_delivered(
                &self,
                user: &im_core::UserId,
                device: &str,
                conversation_id: &str,
                seq: i64,
            ) -> im_core::ports::StoreResult<()> {
                self.record_delivered_impl(user.as_str(), device, conversation_id, seq)
                    .await
            }

            async fn delivered_seq(
                &self,
                user: &im_core::UserId,
                device: &str,
                conversation_id: &str,
            ) -> im_core::ports::StoreResult<i64> {
                use diesel::OptionalExtension;
                use diesel_async::RunQueryDsl;
                let mut conn = self.reader().await?;
                Ok(
                    crate::read::delivered_seq(user.as_str(), device, conversation_id)
                        .first::<i64>(&mut *conn)
                        .await
                        .optional()
                        .map_err(crate::error::map_diesel)?
                        .unwrap_or(0),
                )
            }

            async fn record_acked(
                &self,
                user: &im_core::UserId,
                device: &str,
                conversation_id: &str,
                seq: i64,
                now_ms: i64,
            ) -> im_core::ports::StoreResult<()> {
                self.record_acked_impl(user.as_str(), device, conversation_id, seq, now_ms)
                    .await
            }

            async fn purge_acked(&self, before_ms: i64) -> im_core::ports::StoreResult<u64> {
                self.purge_acked_impl(before_ms).await
            }

            async fn conversation_unacked(
                &self,
                conversation_id: &str,
                after_seq: i64,
                up_to_seq: i64,
                user: &im_core::UserId,
                device: &str,
                limit: u32,
            ) -> im_core::ports::StoreResult<Vec<im_core::model::StoredMessage>> {
                use diesel_async::RunQueryDsl;
                if after_seq >= up_to_seq || limit == 0 {
                    return Ok(Vec::new());
                }
                let mut conn = self.reader().await?;
                let rows = crate::read::conversation_unacked(
                    conversation_id,
                    after_seq,
                    up_to_seq,
                    user.as_str(),
                    device,
                    crate::ports::sql_limit(limit),
                )
                .load::<crate::models::MessageRow>(&mut *conn)
                .await
                .map_err(crate::error::map_diesel)?;
                crate::models::to_stored(rows)
            }

            async fn forget_acked(
                &self,
                user: &im_core::UserId,
                device: &str,
                cursors: &[(String, i64)],
            ) -> im_core::ports::StoreResult<u64> {
                use diesel_async::RunQueryDsl;
                if cursors.is_empty() {
                    return Ok(0);
                }
                // Only the conversations that have acknowledgements at or
                // below their cursor cost a DELETE.
                let floors: std::collections::HashMap<String, Option<i64>> = {
                    let mut conn = self.reader().await?;
                    crate::read::acked_floors(user.as_str(), device)
                        .load::<(String, Option<i64>)>(&mut *conn)
                        .await
                        .map_err(crate::error::map_diesel)?
                        .into_iter()
                        .collect()
                };
                let due: Vec<(String, i64)> = cursors
                    .iter()
                    .filter(|(c, cursor)| {
                        floors
                            .get(c)
                            .copied()
                            .flatten()
                            .is_some_and(|low| low <= *cursor)
                    })
                    .cloned()
                    .collect();
                if due.is_empty() {
                    return Ok(0);
                }
                self.delete_acked_impl(user.as_str(), device, due).await
            }
        }

        #[async_trait::async_trait]
        impl im_core::ports::HealthCheck for $store {
            async fn ping(&self) -> im_core::ports::StoreResult<()> {
                use diesel_async::RunQueryDsl;
                let mut conn = self.reader().await?;
                diesel::sql_query("SELECT 1")
                    .execute(&mut *conn)
                    .await
                    .map(|_| ())
                    .map_err(crate::error::map_diesel)
            }
        }
    };
}

pub(crate) use impl_store_ports;
