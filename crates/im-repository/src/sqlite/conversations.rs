//! Conversation-state writes on SQLite (recall, read cursors), on the
//! writer connection.

use diesel::prelude::*;
use diesel::upsert::excluded;
use diesel::{OptionalExtension, SqliteConnection};
use im_core::ports::StoreResult;

use super::SqliteStore;
use crate::error::RepoError;
use crate::groups::models::ReadCursorRow;
use crate::groups::read;
use crate::groups::schema::read_cursors;
use crate::schema::messages;

/// Marks the message recalled unless it already is (the first recall wins).
pub(crate) fn revoke(
    c: &mut SqliteConnection,
    server_msg_id: &str,
    by: &str,
    time_ms: i64,
) -> Result<(), RepoError> {
    diesel::update(
        messages::table
            .filter(messages::server_msg_id.eq(server_msg_id))
            .filter(messages::revoked_by.is_null()),
    )
    .set((
        messages::revoked_by.eq(by),
        messages::revoked_time.eq(time_ms),
    ))
    .execute(c)?;
    Ok(())
}

/// Moves the read cursor forward to `up_to_seq`; returns the one before
/// (0 if none). A new cursor starts at 0.
pub(crate) fn mark_read(
    c: &mut SqliteConnection,
    user: &str,
    conversation_id: &str,
    up_to_seq: i64,
    now_ms: i64,
) -> Result<i64, RepoError> {
    c.immediate_transaction(|c| {
        let before = read::read_seq(user, conversation_id)
            .first::<i64>(c)
            .optional()?
            .unwrap_or(0);
        read_up_to(c, user, conversation_id, up_to_seq, now_ms)?;
        Ok(before)
    })
}

/// Moves the read cursor of `user` in `conversation_id` up to `seq`
/// (never back), inside the caller's transaction.
pub(super) fn read_up_to(
    c: &mut SqliteConnection,
    user: &str,
    conversation_id: &str,
    seq: i64,
    now_ms: i64,
) -> QueryResult<()> {
    // The upsert's `WHERE` (diesel's `FilterDsl` on the conflict clause).
    use diesel::query_dsl::methods::FilterDsl;
    use read_cursors::dsl as rc;
    diesel::insert_into(rc::read_cursors)
        .values(ReadCursorRow {
            user_id: user,
            conversation_id,
            read_seq: seq.max(0),
            updated_at: now_ms,
        })
        .on_conflict((rc::user_id, rc::conversation_id))
        .do_update()
        .set((
            rc::read_seq.eq(excluded(rc::read_seq)),
            rc::updated_at.eq(excluded(rc::updated_at)),
        ))
        .filter(rc::read_seq.lt(excluded(rc::read_seq)))
        .execute(c)?;
    Ok(())
}

impl SqliteStore {
    pub(super) async fn revoke_impl(
        &self,
        server_msg_id: &str,
        by: &str,
        time_ms: i64,
    ) -> StoreResult<()> {
        let (id, by) = (server_msg_id.to_owned(), by.to_owned());
        self.write(move |c| revoke(c, &id, &by, time_ms)).await
    }

    pub(super) async fn mark_read_impl(
        &self,
        user: &str,
        conversation_id: &str,
        up_to_seq: i64,
        now_ms: i64,
    ) -> StoreResult<i64> {
        let (user, conversation_id) = (user.to_owned(), conversation_id.to_owned());
        self.write(move |c| mark_read(c, &user, &conversation_id, up_to_seq, now_ms))
            .await
    }
}
