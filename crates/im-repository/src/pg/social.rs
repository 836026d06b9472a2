//! Accounts, profiles, friends, blocks and revoked tokens on PostgreSQL:
//! the statements whose SQL is PostgreSQL's (`ON CONFLICT`), then the shared
//! write path ([`crate::social::server`]) and the port impls.

use diesel::QueryResult;
use diesel::upsert::excluded;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::PgStore;
use crate::social::models::{NewBlockRow, NewFriendRow, NewProfileRow, NewRequestRow, RevokedRow};
use crate::social::schema::{blocks, friend_requests, friends, revoked_tokens};

type Conn = AsyncPgConnection;

/// Insert-or-keep of a `users` row (the caller's update then locks it).
async fn keep_user(conn: &mut Conn, row: &NewProfileRow<'_>) -> QueryResult<()> {
    diesel::insert_into(crate::schema::users::table)
        .values(row)
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    Ok(())
}

/// Insert-or-keep of a `friends` row.
async fn keep_friend(conn: &mut Conn, row: &NewFriendRow<'_>) -> QueryResult<()> {
    diesel::insert_into(friends::table)
        .values(row)
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    Ok(())
}

/// Creates the request, or refreshes it (message, status, `updated_at`).
async fn upsert_request(conn: &mut Conn, row: &NewRequestRow<'_>) -> QueryResult<()> {
    use diesel::ExpressionMethods;
    use friend_requests::dsl as fr;
    diesel::insert_into(fr::friend_requests)
        .values(row)
        .on_conflict((fr::from_id, fr::to_id))
        .do_update()
        .set((
            fr::message.eq(excluded(fr::message)),
            fr::status.eq(excluded(fr::status)),
            fr::updated_at.eq(excluded(fr::updated_at)),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// Insert-or-keep of a block; true when it is new.
async fn insert_block(conn: &mut Conn, row: &NewBlockRow<'_>) -> QueryResult<bool> {
    let n = diesel::insert_into(blocks::table)
        .values(row)
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    Ok(n > 0)
}

/// Insert-or-keep of a revoked token.
async fn keep_revoked(conn: &mut Conn, row: &RevokedRow<'_>) -> QueryResult<()> {
    diesel::insert_into(revoked_tokens::table)
        .values(row)
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    Ok(())
}

crate::social::server::server_writes!(PgStore);
