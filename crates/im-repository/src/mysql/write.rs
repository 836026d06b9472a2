//! The MySQL/MariaDB write path.
//!
//! `append` is one InnoDB transaction (READ COMMITTED, set per session at
//! connect: no gap locks on reads, fewer lock waits between writers) of a
//! constant number of statements per chunk of rows:
//!
//! 1. dedupe: `SELECT ... WHERE (sender_id, client_msg_id) IN ((?, ?), ...)`
//!    (a probe of `messages_sender_client_key` per pair, forced: a scan of
//!    `messages` would cost more than the whole append);
//! 2. sync clock: `UPDATE sync_clock SET pos = pos + ? WHERE id = 1`, which
//!    locks the one row until commit (see [`crate::plan`] for why that puts
//!    positions in commit order), then a plain `SELECT` of it;
//! 3. conversation counters: `INSERT ... ON DUPLICATE KEY UPDATE max_seq =
//!    max_seq + VALUES(max_seq)` (and `last_pos`), rows in the plan's sorted
//!    order: InnoDB takes each row's exclusive lock (creating missing rows)
//!    in that order and advances it in place; then a plain `SELECT` by
//!    primary key reads the new heads back (MySQL has no `UPDATE ...
//!    RETURNING`; the rows are already locked by us, so the read is exact
//!    and waits for nobody);
//! 4. messages: multi-row `INSERT`, chunked by binds and bytes;
//! 5. memberships: multi-row insert-or-keep (`ON DUPLICATE KEY UPDATE` of
//!    nothing, rather than `INSERT IGNORE`, which would also silence real
//!    errors).
//!
//! The clock is always locked first, then the conversations in sorted
//! (byte-wise, as `utf8mb4_bin` compares) order, so two server processes
//! wait for each other rather than deadlock. A deadlock or lock wait timeout
//! that still happens (1213/1205), or a unique violation from a send
//! another process stored after our dedupe read, rolls the transaction back
//! and maps to the retryable `StoreError::Conflict`.
//!
//! Not `INSERT IGNORE` + `SELECT ... FOR UPDATE` for the counters: the
//! ignored duplicate takes a shared lock, and two writers upgrading their
//! shared locks on one row deadlock.

use std::collections::HashMap;

use diesel::mysql::Mysql;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Binary, Integer, Text};
use diesel_async::{AsyncConnection, AsyncMysqlConnection, RunQueryDsl};

use crate::schema::acked_messages;
use im_core::model::{NewMessage, StoredMessage};
use im_core::ports::Appended;

use crate::error::RepoError;
use crate::models::{CounterHead, MembershipRow, MessageRow, NewMessageRow, message_select_list};
use crate::plan::{BatchPlan, ClientKey, CounterDemand, lookup_keys, no_clock_row};
use crate::sql::{self, MAX_STATEMENT_BYTES, rows_per_statement};

/// Appends `batch` in one transaction. See the module docs.
pub(crate) async fn append(
    conn: &mut AsyncMysqlConnection,
    batch: &[NewMessage],
) -> Result<Vec<Appended>, RepoError> {
    if batch.is_empty() {
        return Ok(Vec::new());
    }
    // Results are built inside the transaction: a failure there rolls back
    // instead of reporting an error for a committed batch.
    let (results, stored) = conn
        .transaction(async |conn| {
            let existing = find_existing(conn, &lookup_keys(batch)).await?;
            let mut plan = BatchPlan::new(batch, existing);
            if plan.has_new() {
                plan.assign_positions(advance_clock(conn, plan.clock_demand()?).await?)?;
                let heads = advance_conversations(conn, &plan.counter_demand()?).await?;
                plan.assign_seqs(&heads)?;
                insert_messages(conn, &plan.message_rows()?).await?;
                insert_memberships(conn, &plan.membership_rows()).await?;
            }
            let stored = plan.new_count();
            Ok::<_, RepoError>((plan.into_results()?, stored))
        })
        .await?;
    tracing::debug!(
        stored,
        duplicates = batch.len() - stored,
        "append committed"
    );
    Ok(results)
}

/// The dedupe lookup for one chunk of keys.
pub(crate) fn find_existing_query<'q>(keys: &'q [ClientKey<'q>]) -> sql::Boxed<'q, Mysql> {
    let sql = format!(
        "SELECT {} FROM messages AS m FORCE INDEX (messages_sender_client_key) \
         WHERE (m.sender_id, m.client_msg_id) IN ({})",
        message_select_list("m"),
        vec!["(?, ?)"; keys.len()].join(", ")
    );
    keys.iter().fold(
        diesel::sql_query(sql).into_boxed::<Mysql>(),
        |q, (sender, client_msg_id)| q.bind::<Text, _>(*sender).bind::<Text, _>(*client_msg_id),
    )
}

async fn find_existing(
    conn: &mut AsyncMysqlConnection,
    keys: &[ClientKey<'_>],
) -> Result<HashMap<(String, String), StoredMessage>, RepoError> {
    let mut found = HashMap::new();
    for chunk in keys.chunks(rows_per_statement(2)) {
        for row in find_existing_query(chunk).load::<MessageRow>(conn).await? {
            let m = StoredMessage::try_from(row)?;
            found.insert((m.sender_id.clone(), m.client_msg_id.clone()), m);
        }
    }
    Ok(found)
}

/// `SELECT {id} AS id, {head} AS head FROM {table} FORCE INDEX (PRIMARY)
/// WHERE {id} IN (...)` over `ids`, chunked: the heads of the counters this
/// transaction has just advanced.
///
/// A plain (consistent) read: the upsert already holds these rows' exclusive
/// locks, so no other transaction can have changed them, and a transaction
/// always reads its own changes. Not `FOR UPDATE`: for a long `IN` list
/// InnoDB may scan the table instead of probing the key, and a locking scan
/// waits for rows that other writers hold, which deadlocks writers on
/// disjoint conversations (seen with 4 writers and batches of 256).
/// `FORCE INDEX` keeps the read a key lookup per id.
async fn read_heads(
    conn: &mut AsyncMysqlConnection,
    table: &str,
    id: &str,
    head: &str,
    ids: &[&str],
) -> Result<HashMap<String, i64>, RepoError> {
    let mut heads = HashMap::with_capacity(ids.len());
    for chunk in ids.chunks(sql::MAX_BINDS) {
        let sql = format!(
            "SELECT {id} AS id, {head} AS head FROM {table} FORCE INDEX (PRIMARY) \
             WHERE {id} IN ({})",
            sql::list(chunk.len())
        );
        let query = chunk
            .iter()
            .fold(diesel::sql_query(sql).into_boxed::<Mysql>(), |q, id| {
                q.bind::<Text, _>(*id)
            });
        for h in query.load::<CounterHead>(conn).await? {
            heads.insert(h.id, h.head);
        }
    }
    Ok(heads)
}

#[derive(diesel::QueryableByName)]
struct ClockHead {
    #[diesel(sql_type = BigInt)]
    pos: i64,
}

/// Advances the sync clock by `n` (locking its row until commit); returns
/// the new head. The read-back is exact for the reason given at
/// [`read_heads`].
async fn advance_clock(conn: &mut AsyncMysqlConnection, n: i64) -> Result<i64, RepoError> {
    let updated = diesel::sql_query("UPDATE sync_clock SET pos = pos + ? WHERE id = 1")
        .bind::<BigInt, _>(n)
        .execute(conn)
        .await?;
    if updated != 1 {
        return Err(RepoError::Store(no_clock_row()));
    }
    let head = diesel::sql_query("SELECT pos FROM sync_clock WHERE id = 1")
        .get_result::<ClockHead>(conn)
        .await?;
    Ok(head.pos)
}

async fn advance_conversations(
    conn: &mut AsyncMysqlConnection,
    demand: &[CounterDemand<'_>],
) -> Result<HashMap<String, i64>, RepoError> {
    let head = "INSERT INTO conversations \
                (conversation_id, conversation_type, max_seq, created_at, updated_at, last_pos)";
    let tail = "ON DUPLICATE KEY UPDATE max_seq = max_seq + VALUES(max_seq), \
                updated_at = GREATEST(updated_at, VALUES(updated_at)), \
                last_pos = VALUES(last_pos)";
    for query in sql::chunked::<Mysql, _>(head, tail, 6, demand, |q, d| {
        q.bind::<Text, _>(d.conversation_id)
            .bind::<Integer, _>(d.conversation_type)
            .bind::<BigInt, _>(d.count)
            .bind::<BigInt, _>(d.first_time)
            .bind::<BigInt, _>(d.last_time)
            .bind::<BigInt, _>(d.last_pos)
    }) {
        query.execute(conn).await?;
    }
    let ids: Vec<&str> = demand.iter().map(|d| d.conversation_id).collect();
    read_heads(conn, "conversations", "conversation_id", "max_seq", &ids).await
}

async fn insert_messages(
    conn: &mut AsyncMysqlConnection,
    rows: &[NewMessageRow<'_>],
) -> Result<(), RepoError> {
    let head = "INSERT INTO messages (server_msg_id, client_msg_id, conversation_id, \
                conversation_type, sender_id, receiver_id, group_id, message_type, content, \
                send_time, server_time, seq, extra, pos)";
    let chunks = sql::split_by(rows, rows_per_statement(14), MAX_STATEMENT_BYTES, |r| {
        r.content.len() + r.extra.len() + 256
    });
    for query in sql::statements::<Mysql, _>(head, "", 14, chunks, |q, r| {
        q.bind::<Text, _>(r.server_msg_id)
            .bind::<Text, _>(r.client_msg_id)
            .bind::<Text, _>(r.conversation_id)
            .bind::<Integer, _>(r.conversation_type)
            .bind::<Text, _>(r.sender_id)
            .bind::<Text, _>(r.receiver_id)
            .bind::<Text, _>(r.group_id)
            .bind::<Integer, _>(r.message_type)
            .bind::<Binary, _>(r.content)
            .bind::<BigInt, _>(r.send_time)
            .bind::<BigInt, _>(r.server_time)
            .bind::<BigInt, _>(r.seq)
            .bind::<Text, _>(r.extra)
            .bind::<BigInt, _>(r.pos)
    }) {
        query.execute(conn).await?;
    }
    Ok(())
}

async fn insert_memberships(
    conn: &mut AsyncMysqlConnection,
    rows: &[MembershipRow<'_>],
) -> Result<(), RepoError> {
    let head = "INSERT INTO user_conversations (user_id, conversation_id, created_at, updated_at)";
    let tail = "ON DUPLICATE KEY UPDATE user_id = user_id";
    for query in sql::chunked::<Mysql, _>(head, tail, 4, rows, |q, r| {
        q.bind::<Text, _>(r.user_id)
            .bind::<Text, _>(r.conversation_id)
            .bind::<BigInt, _>(r.created_at)
            .bind::<BigInt, _>(r.updated_at)
    }) {
        query.execute(conn).await?;
    }
    Ok(())
}

/// Raises the delivered seq of (user, device, conversation) to `seq`; a
/// lower or equal `seq` changes nothing.
pub(crate) async fn record_delivered(
    conn: &mut AsyncMysqlConnection,
    user: &str,
    device: &str,
    conversation_id: &str,
    seq: i64,
) -> Result<(), RepoError> {
    diesel::sql_query(
        "INSERT INTO deliveries (user_id, device_id, conversation_id, seq) VALUES (?, ?, ?, ?) \
         ON DUPLICATE KEY UPDATE seq = GREATEST(seq, VALUES(seq))",
    )
    .bind::<Text, _>(user)
    .bind::<Text, _>(device)
    .bind::<Text, _>(conversation_id)
    .bind::<BigInt, _>(seq)
    .execute(conn)
    .await?;
    Ok(())
}

/// Records one MSG_ACK of (user, device) for message `seq` of
/// `conversation_id`; an existing row is kept.
pub(crate) async fn record_acked(
    conn: &mut AsyncMysqlConnection,
    user: &str,
    device: &str,
    conversation_id: &str,
    seq: i64,
    now_ms: i64,
) -> Result<(), RepoError> {
    use acked_messages::dsl as a;
    diesel::insert_or_ignore_into(a::acked_messages)
        .values((
            a::user_id.eq(user),
            a::device_id.eq(device),
            a::conversation_id.eq(conversation_id),
            a::seq.eq(seq),
            a::acked_at.eq(now_ms),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// Deletes the acknowledgements of (user, device) at or below each
/// `(conversation_id, up_to)`; returns how many.
pub(crate) async fn delete_acked(
    conn: &mut AsyncMysqlConnection,
    user: &str,
    device: &str,
    due: &[(String, i64)],
) -> Result<u64, RepoError> {
    use acked_messages::dsl as a;
    let mut n = 0usize;
    for (conversation_id, up_to) in due {
        let rows = a::user_id
            .eq(user)
            .and(a::device_id.eq(device))
            .and(a::conversation_id.eq(conversation_id))
            .and(a::seq.le(*up_to));
        n += diesel::delete(diesel::QueryDsl::filter(a::acked_messages, rows))
            .execute(conn)
            .await?;
    }
    Ok(u64::try_from(n).unwrap_or(u64::MAX))
}

/// Creates `user` (an empty profile, created and updated at `now_ms`) or
/// moves its `last_seen` forward to `now_ms`.
pub(crate) async fn touch_user(
    conn: &mut AsyncMysqlConnection,
    user: &str,
    now_ms: i64,
) -> Result<(), RepoError> {
    diesel::sql_query(
        "INSERT INTO users (user_id, created_at, last_seen, updated_at) VALUES (?, ?, ?, ?) \
         ON DUPLICATE KEY UPDATE last_seen = GREATEST(last_seen, VALUES(last_seen))",
    )
    .bind::<Text, _>(user)
    .bind::<BigInt, _>(now_ms)
    .bind::<BigInt, _>(now_ms)
    .bind::<BigInt, _>(now_ms)
    .execute(conn)
    .await?;
    Ok(())
}

/// Deletes the acknowledgements recorded before `before_ms`; returns how many.
pub(crate) async fn purge_acked(
    conn: &mut AsyncMysqlConnection,
    before_ms: i64,
) -> Result<u64, RepoError> {
    use acked_messages::dsl as a;
    let n = diesel::delete(diesel::QueryDsl::filter(
        a::acked_messages,
        a::acked_at.lt(before_ms),
    ))
    .execute(conn)
    .await?;
    Ok(u64::try_from(n).unwrap_or(u64::MAX))
}
