//! Groups and conversation state on MySQL/MariaDB: the statements whose SQL
//! is MySQL's, then the shared write path ([`crate::groups::server`]) and
//! the port impls.
//!
//! Insert-or-keep is `ON DUPLICATE KEY UPDATE <key> = <key>` (diesel's
//! `on_conflict(DuplicatedKeys).do_nothing()`), not `INSERT IGNORE`, which
//! would also silence real errors; unlike an ignored duplicate, it takes the
//! existing row's exclusive lock at once (two transactions upgrading shared
//! locks on one row would deadlock).

use diesel::dsl::DuplicatedKeys;
use diesel::{ExpressionMethods, QueryDsl, QueryResult};
use diesel_async::{AsyncMysqlConnection, RunQueryDsl};
use im_core::ConversationType;

use super::MysqlStore;
use crate::groups::models::ReadCursorRow;
use crate::models::MembershipRow;
use crate::schema::{conversations, user_conversations};

type Conn = AsyncMysqlConnection;

/// Creates the counter row of `conversation_id` if missing, and holds its
/// exclusive lock until commit either way; returns its head.
async fn lock_conversation(
    conn: &mut Conn,
    conversation_id: &str,
    now_ms: i64,
) -> QueryResult<i64> {
    use conversations::dsl as c;
    diesel::insert_into(c::conversations)
        .values((
            c::conversation_id.eq(conversation_id),
            c::conversation_type.eq(ConversationType::Group.code()),
            c::max_seq.eq(0_i64),
            c::created_at.eq(now_ms),
            c::updated_at.eq(now_ms),
        ))
        .on_conflict(DuplicatedKeys)
        .do_nothing()
        .execute(conn)
        .await?;
    crate::groups::read::conversation_head(conversation_id)
        .for_update()
        .first::<i64>(conn)
        .await
}

/// Insert-or-keep of `user_conversations` rows.
async fn insert_memberships(conn: &mut Conn, rows: &[MembershipRow<'_>]) -> QueryResult<()> {
    for chunk in rows.chunks(crate::groups::CHUNK) {
        diesel::insert_into(user_conversations::table)
            .values(chunk)
            .on_conflict(DuplicatedKeys)
            .do_nothing()
            .execute(conn)
            .await?;
    }
    Ok(())
}

/// Insert-or-keep of a read cursor, holding its lock until commit.
async fn init_read_cursor(conn: &mut Conn, row: &ReadCursorRow<'_>) -> QueryResult<()> {
    diesel::insert_into(crate::groups::schema::read_cursors::table)
        .values(row)
        .on_conflict(DuplicatedKeys)
        .do_nothing()
        .execute(conn)
        .await?;
    Ok(())
}

crate::groups::server::server_writes!(MysqlStore);
