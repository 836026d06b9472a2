//! Groups and conversation state on PostgreSQL: the statements whose SQL
//! is PostgreSQL's, then the shared write path ([`crate::groups::server`])
//! and the port impls.

use diesel::{ExpressionMethods, QueryDsl, QueryResult};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use im_core::ConversationType;

use super::PgStore;
use crate::groups::models::ReadCursorRow;
use crate::models::MembershipRow;
use crate::schema::{conversations, user_conversations};

type Conn = AsyncPgConnection;

/// Creates the counter row of `conversation_id` if missing (`ON CONFLICT DO
/// NOTHING`, which takes no lock on an existing row), then locks it
/// (`FOR UPDATE`) until commit.
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
        .on_conflict_do_nothing()
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
            .on_conflict_do_nothing()
            .execute(conn)
            .await?;
    }
    Ok(())
}

/// Insert-or-keep of a read cursor (the caller then locks it `FOR UPDATE`).
async fn init_read_cursor(conn: &mut Conn, row: &ReadCursorRow<'_>) -> QueryResult<()> {
    diesel::insert_into(crate::groups::schema::read_cursors::table)
        .values(row)
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    Ok(())
}

crate::groups::server::server_writes!(PgStore);
