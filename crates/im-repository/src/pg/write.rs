//! The PostgreSQL write path.
//!
//! `append` is one transaction (READ COMMITTED) of five statements whatever
//! the batch size: every step binds whole columns as arrays and `unnest`s
//! them, so the statement text is constant and stays prepared on the
//! connection ([`Prepared`]).
//!
//! Concurrency between server processes: the sync clock row is advanced
//! first (`UPDATE ... RETURNING`, held until commit: see [`crate::plan`] for
//! why that puts positions in commit order), then the conversation counters
//! by one `INSERT ... ON CONFLICT DO UPDATE ... RETURNING` that takes the
//! row locks in the plan's sorted order (`WITH ORDINALITY ... ORDER BY`).
//! Two writers therefore wait for each other instead of deadlocking, and the
//! locked counters make the allocated ranges gapless.
//! Whatever still goes wrong (a deadlock through a client reusing a
//! client_msg_id in two conversations at once, a unique violation when
//! another process stored the same send after our dedupe read) aborts the
//! transaction and maps to the retryable `StoreError::Conflict`; the retry's
//! dedupe then sees the committed row.

use std::collections::HashMap;

use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::query_dsl::methods::FilterDsl;
use diesel::sql_types::{Array, BigInt, Binary, Integer, Text};
use diesel::upsert::excluded;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use im_core::model::{NewMessage, StoredMessage};
use im_core::ports::Appended;

use crate::error::RepoError;
use crate::models::{CounterHead, MembershipRow, MessageRow, NewMessageRow};
use crate::plan::{BatchPlan, ClientKey, CounterDemand, lookup_keys, no_clock_row};
use crate::schema::{acked_messages, deliveries, users};

/// A raw statement whose text is fixed: safe to keep prepared per connection
/// (diesel treats every `sql_query` as uncacheable, which would cost a
/// Parse round trip per statement).
#[derive(Debug, Clone)]
pub(crate) struct Prepared<Q>(pub(crate) Q);

impl<Q> QueryId for Prepared<Q> {
    type QueryId = ();
    // No static id: the statement cache keys it by its SQL text and bind types.
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<Q: QueryFragment<Pg>> QueryFragment<Pg> for Prepared<Q> {
    fn walk_ast<'b>(&'b self, pass: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        self.0.walk_ast(pass)
    }

    fn is_safe_to_cache_prepared(&self, _backend: &Pg) -> QueryResult<bool> {
        Ok(true)
    }
}

impl<Q: Query> Query for Prepared<Q> {
    type SqlType = Q::SqlType;
}

/// The message columns as `m.col AS col, ...`.
macro_rules! message_select {
    () => {
        "m.server_msg_id AS server_msg_id, m.client_msg_id AS client_msg_id, \
         m.conversation_id AS conversation_id, m.conversation_type AS conversation_type, \
         m.sender_id AS sender_id, m.receiver_id AS receiver_id, m.group_id AS group_id, \
         m.message_type AS message_type, m.content AS content, m.send_time AS send_time, \
         m.server_time AS server_time, m.seq AS seq, m.extra AS extra, \
         m.revoked_by AS revoked_by, m.revoked_time AS revoked_time"
    };
}

/// Dedupe lookup: the stored messages among the (sender, client_msg_id)
/// pairs, one index probe of `messages_sender_client_key` per pair.
///
/// A `LATERAL ... LIMIT 1` rather than a plain join: the statement stays
/// prepared, and a generic plan made while `messages` was small (or before
/// autovacuum first analyzed it) would hash-join against a sequential scan
/// of the whole table for good; the lateral subquery cannot be flattened,
/// so every plan is a nested loop of index probes.
pub(crate) const FIND_EXISTING: &str = concat!(
    "SELECT ",
    message_select!(),
    " FROM unnest($1::text[], $2::text[]) AS k(sender_id, client_msg_id) \
     CROSS JOIN LATERAL (SELECT * FROM messages AS x \
         WHERE x.sender_id = k.sender_id AND x.client_msg_id = k.client_msg_id LIMIT 1) AS m"
);

/// Advances the one `sync_clock` row by `$1` (locking it until commit);
/// returns the new head.
pub(crate) const ADVANCE_CLOCK: &str =
    "UPDATE sync_clock SET pos = pos + $1 WHERE id = 1 RETURNING pos";

/// Creates missing conversation counters and advances all of them (and sets
/// their `last_pos`), locking the rows in input order; returns the new heads.
pub(crate) const ADVANCE_CONVERSATIONS: &str = "\
    INSERT INTO conversations AS c \
        (conversation_id, conversation_type, max_seq, created_at, updated_at, last_pos) \
    SELECT u.id, u.ty, u.n, u.t0, u.t1, u.p \
    FROM unnest($1::text[], $2::int4[], $3::int8[], $4::int8[], $5::int8[], $6::int8[]) \
        WITH ORDINALITY AS u(id, ty, n, t0, t1, p, ord) \
    ORDER BY u.ord \
    ON CONFLICT (conversation_id) DO UPDATE SET \
        max_seq = c.max_seq + EXCLUDED.max_seq, \
        updated_at = GREATEST(c.updated_at, EXCLUDED.updated_at), \
        last_pos = EXCLUDED.last_pos \
    RETURNING c.conversation_id AS id, c.max_seq AS head";

pub(crate) const INSERT_MESSAGES: &str = "\
    INSERT INTO messages (server_msg_id, client_msg_id, conversation_id, conversation_type, \
        sender_id, receiver_id, group_id, message_type, content, send_time, server_time, seq, extra, \
        pos) \
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int4[], $5::text[], \
        $6::text[], $7::text[], $8::int4[], $9::bytea[], $10::int8[], $11::int8[], $12::int8[], \
        $13::text[], $14::int8[])";

pub(crate) const INSERT_MEMBERSHIPS: &str = "\
    INSERT INTO user_conversations (user_id, conversation_id, created_at, updated_at) \
    SELECT * FROM unnest($1::text[], $2::text[], $3::int8[], $4::int8[]) \
    ON CONFLICT (user_id, conversation_id) DO NOTHING";

/// Appends `batch` in one transaction. See [`crate::plan`] for the steps and
/// the module docs for the locking.
pub(crate) async fn append(
    conn: &mut AsyncPgConnection,
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

async fn find_existing(
    conn: &mut AsyncPgConnection,
    keys: &[ClientKey<'_>],
) -> Result<HashMap<(String, String), StoredMessage>, RepoError> {
    let (senders, client_ids): (Vec<&str>, Vec<&str>) = keys.iter().copied().unzip();
    let rows = Prepared(
        diesel::sql_query(FIND_EXISTING)
            .bind::<Array<Text>, _>(senders)
            .bind::<Array<Text>, _>(client_ids),
    )
    .load::<MessageRow>(conn)
    .await?;
    let mut found = HashMap::with_capacity(rows.len());
    for row in rows {
        let m = StoredMessage::try_from(row)?;
        found.insert((m.sender_id.clone(), m.client_msg_id.clone()), m);
    }
    Ok(found)
}

fn heads(rows: Vec<CounterHead>) -> HashMap<String, i64> {
    rows.into_iter().map(|h| (h.id, h.head)).collect()
}

#[derive(QueryableByName)]
struct ClockHead {
    #[diesel(sql_type = BigInt)]
    pos: i64,
}

async fn advance_clock(conn: &mut AsyncPgConnection, n: i64) -> Result<i64, RepoError> {
    Prepared(diesel::sql_query(ADVANCE_CLOCK).bind::<BigInt, _>(n))
        .get_result::<ClockHead>(conn)
        .await
        .optional()?
        .map(|h| h.pos)
        .ok_or_else(|| RepoError::Store(no_clock_row()))
}

async fn advance_conversations(
    conn: &mut AsyncPgConnection,
    demand: &[CounterDemand<'_>],
) -> Result<HashMap<String, i64>, RepoError> {
    let ids: Vec<&str> = demand.iter().map(|d| d.conversation_id).collect();
    let types: Vec<i32> = demand.iter().map(|d| d.conversation_type).collect();
    let counts: Vec<i64> = demand.iter().map(|d| d.count).collect();
    let first: Vec<i64> = demand.iter().map(|d| d.first_time).collect();
    let last: Vec<i64> = demand.iter().map(|d| d.last_time).collect();
    let last_pos: Vec<i64> = demand.iter().map(|d| d.last_pos).collect();
    let rows = Prepared(
        diesel::sql_query(ADVANCE_CONVERSATIONS)
            .bind::<Array<Text>, _>(ids)
            .bind::<Array<Integer>, _>(types)
            .bind::<Array<BigInt>, _>(counts)
            .bind::<Array<BigInt>, _>(first)
            .bind::<Array<BigInt>, _>(last)
            .bind::<Array<BigInt>, _>(last_pos),
    )
    .load::<CounterHead>(conn)
    .await?;
    Ok(heads(rows))
}

async fn insert_messages(
    conn: &mut AsyncPgConnection,
    rows: &[NewMessageRow<'_>],
) -> Result<(), RepoError> {
    fn col<'r, T>(rows: &'r [NewMessageRow<'_>], f: impl Fn(&'r NewMessageRow<'_>) -> T) -> Vec<T> {
        rows.iter().map(f).collect()
    }
    Prepared(
        diesel::sql_query(INSERT_MESSAGES)
            .bind::<Array<Text>, _>(col(rows, |r| r.server_msg_id))
            .bind::<Array<Text>, _>(col(rows, |r| r.client_msg_id))
            .bind::<Array<Text>, _>(col(rows, |r| r.conversation_id))
            .bind::<Array<Integer>, _>(col(rows, |r| r.conversation_type))
            .bind::<Array<Text>, _>(col(rows, |r| r.sender_id))
            .bind::<Array<Text>, _>(col(rows, |r| r.receiver_id))
            .bind::<Array<Text>, _>(col(rows, |r| r.group_id))
            .bind::<Array<Integer>, _>(col(rows, |r| r.message_type))
            .bind::<Array<Binary>, _>(col(rows, |r| r.content))
            .bind::<Array<BigInt>, _>(col(rows, |r| r.send_time))
            .bind::<Array<BigInt>, _>(col(rows, |r| r.server_time))
            .bind::<Array<BigInt>, _>(col(rows, |r| r.seq))
            .bind::<Array<Text>, _>(col(rows, |r| r.extra))
            .bind::<Array<BigInt>, _>(col(rows, |r| r.pos)),
    )
    .execute(conn)
    .await?;
    Ok(())
}

async fn insert_memberships(
    conn: &mut AsyncPgConnection,
    rows: &[MembershipRow<'_>],
) -> Result<(), RepoError> {
    Prepared(
        diesel::sql_query(INSERT_MEMBERSHIPS)
            .bind::<Array<Text>, _>(rows.iter().map(|r| r.user_id).collect::<Vec<_>>())
            .bind::<Array<Text>, _>(rows.iter().map(|r| r.conversation_id).collect::<Vec<_>>())
            .bind::<Array<BigInt>, _>(rows.iter().map(|r| r.created_at).collect::<Vec<_>>())
            .bind::<Array<BigInt>, _>(rows.iter().map(|r| r.updated_at).collect::<Vec<_>>()),
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Raises the delivered seq of (user, device, conversation) to `seq`; a
/// lower or equal `seq` changes nothing.
pub(crate) async fn record_delivered(
    conn: &mut AsyncPgConnection,
    user: &str,
    device: &str,
    conversation_id: &str,
    seq: i64,
) -> Result<(), RepoError> {
    use deliveries::dsl as d;
    diesel::insert_into(d::deliveries)
        .values((
            d::user_id.eq(user),
            d::device_id.eq(device),
            d::conversation_id.eq(conversation_id),
            d::seq.eq(seq),
        ))
        .on_conflict((d::user_id, d::device_id, d::conversation_id))
        .do_update()
        .set(d::seq.eq(excluded(d::seq)))
        .filter(d::seq.lt(excluded(d::seq)))
        .execute(conn)
        .await?;
    Ok(())
}

/// Records one MSG_ACK of (user, device) for message `seq` of
/// `conversation_id`; an existing row is kept.
pub(crate) async fn record_acked(
    conn: &mut AsyncPgConnection,
    user: &str,
    device: &str,
    conversation_id: &str,
    seq: i64,
    now_ms: i64,
) -> Result<(), RepoError> {
    use acked_messages::dsl as a;
    diesel::insert_into(a::acked_messages)
        .values((
            a::user_id.eq(user),
            a::device_id.eq(device),
            a::conversation_id.eq(conversation_id),
            a::seq.eq(seq),
            a::acked_at.eq(now_ms),
        ))
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    Ok(())
}

/// Deletes the acknowledgements of (user, device) at or below each
/// `(conversation_id, up_to)`; returns how many.
pub(crate) async fn delete_acked(
    conn: &mut AsyncPgConnection,
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
    conn: &mut AsyncPgConnection,
    user: &str,
    now_ms: i64,
) -> Result<(), RepoError> {
    use users::dsl as u;
    diesel::insert_into(u::users)
        .values((
            u::user_id.eq(user),
            u::created_at.eq(now_ms),
            u::last_seen.eq(now_ms),
            u::updated_at.eq(now_ms),
        ))
        .on_conflict(u::user_id)
        .do_update()
        .set(u::last_seen.eq(excluded(u::last_seen)))
        .filter(u::last_seen.lt(excluded(u::last_seen)))
        .execute(conn)
        .await?;
    Ok(())
}

/// Deletes the acknowledgements recorded before `before_ms`; returns how many.
pub(crate) async fn purge_acked(
    conn: &mut AsyncPgConnection,
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
