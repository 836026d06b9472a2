//! Accounts, profiles, friends, blocks and revoked tokens on MySQL/MariaDB:
//! the statements whose SQL is MySQL's, then the shared write path
//! ([`crate::social::server`]) and the port impls.
//!
//! Insert-or-keep is `ON DUPLICATE KEY UPDATE <key> = <key>` (see
//! `mysql::groups` for why not `INSERT IGNORE`). Its affected-row count
//! cannot tell a new row from a kept one (the connection sets
//! CLIENT_FOUND_ROWS), so a block, which must report whether it is new, is
//! a plain insert whose duplicate-key error means "already blocked".

use diesel::QueryResult;
use diesel::dsl::DuplicatedKeys;
use diesel::result::{DatabaseErrorKind, Error};
use diesel::sql_types::{BigInt, Integer, Text};
use diesel_async::{AsyncMysqlConnection, RunQueryDsl};

use super::MysqlStore;
use crate::social::models::{NewBlockRow, NewFriendRow, NewProfileRow, NewRequestRow, RevokedRow};
use crate::social::schema::{blocks, friends, revoked_tokens};

type Conn = AsyncMysqlConnection;

/// Insert-or-keep of a `users` row, holding its lock until commit.
async fn keep_user(conn: &mut Conn, row: &NewProfileRow<'_>) -> QueryResult<()> {
    diesel::insert_into(crate::schema::users::table)
        .values(row)
        .on_conflict(DuplicatedKeys)
        .do_nothing()
        .execute(conn)
        .await?;
    Ok(())
}

/// Insert-or-keep of a `friends` row.
async fn keep_friend(conn: &mut Conn, row: &NewFriendRow<'_>) -> QueryResult<()> {
    diesel::insert_into(friends::table)
        .values(row)
        .on_conflict(DuplicatedKeys)
        .do_nothing()
        .execute(conn)
        .await?;
    Ok(())
}

/// Creates the request, or refreshes it (message, status, `updated_at`).
async fn upsert_request(conn: &mut Conn, row: &NewRequestRow<'_>) -> QueryResult<()> {
    diesel::sql_query(
        "INSERT INTO friend_requests (from_id, to_id, message, status, created_at, updated_at) \
         VALUES (?, ?, ?, ?, ?, ?) \
         ON DUPLICATE KEY UPDATE message = VALUES(message), status = VALUES(status), \
         updated_at = VALUES(updated_at)",
    )
    .bind::<Text, _>(row.from_id)
    .bind::<Text, _>(row.to_id)
    .bind::<Text, _>(row.message)
    .bind::<Integer, _>(row.status)
    .bind::<BigInt, _>(row.created_at)
    .bind::<BigInt, _>(row.updated_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// A plain insert of a block: true when new, false on a duplicate key.
async fn insert_block(conn: &mut Conn, row: &NewBlockRow<'_>) -> QueryResult<bool> {
    match diesel::insert_into(blocks::table)
        .values(row)
        .execute(conn)
        .await
    {
        Ok(_) => Ok(true),
        Err(Error::DatabaseError(DatabaseErrorKind::UniqueViolation, _)) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Insert-or-keep of a revoked token.
async fn keep_revoked(conn: &mut Conn, row: &RevokedRow<'_>) -> QueryResult<()> {
    diesel::insert_into(revoked_tokens::table)
        .values(row)
        .on_conflict(DuplicatedKeys)
        .do_nothing()
        .execute(conn)
        .await?;
    Ok(())
}

crate::social::server::server_writes!(MysqlStore);
