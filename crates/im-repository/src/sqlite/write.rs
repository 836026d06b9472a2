//! The write path, run on the single writer connection inside one blocking
//! task per call (so a cancelled caller can never leave a transaction open).

use std::collections::HashMap;

use diesel::prelude::*;
use diesel::query_dsl::methods::FilterDsl;
use diesel::sql_types::{BigInt, Binary, Integer, Text};
use diesel::sqlite::Sqlite;
use diesel::upsert::excluded;
use im_core::model::{NewMessage, StoredMessage};
use im_core::ports::Appended;

use crate::error::RepoError;
use crate::models::{CounterHead, MembershipRow, MessageRow, NewMessageRow, message_select_list};
use crate::plan::{BatchPlan, ClientKey, CounterDemand, lookup_keys, no_clock_row};
use crate::schema::{acked_messages, deliveries, users};
use crate::sql;

/// Appends `batch` in one `BEGIN IMMEDIATE` transaction. See
/// [`crate::plan`] for the steps; every step is a constant number of
/// statements per batch (one per chunk of rows), never one per message.
pub(crate) fn append(
    conn: &mut SqliteConnection,
    batch: &[NewMessage],
) -> Result<Vec<Appended>, RepoError> {
    if batch.is_empty() {
        return Ok(Vec::new());
    }
    // Results are built inside the transaction: a failure there rolls back
    // instead of reporting an error for a committed batch.
    let (results, stored) = conn.immediate_transaction(|conn| {
        let existing = find_existing(conn, &lookup_keys(batch))?;
        let mut plan = BatchPlan::new(batch, existing);
        if plan.has_new() {
            plan.assign_positions(advance_clock(conn, plan.clock_demand()?)?)?;
            let heads = advance_conversations(conn, &plan.counter_demand()?)?;
            plan.assign_seqs(&heads)?;
            insert_messages(conn, &plan.message_rows()?)?;
            insert_memberships(conn, &plan.membership_rows())?;
        }
        let stored = plan.new_count();
        Ok::<_, RepoError>((plan.into_results()?, stored))
    })?;
    tracing::debug!(
        stored,
        duplicates = batch.len() - stored,
        "append committed"
    );
    Ok(results)
}

/// The stored messages among `keys` (sender, client_msg_id), one query per
/// chunk: the keys form a `VALUES` list joined to the
/// (sender_id, client_msg_id) unique index (`CROSS JOIN` pins that join order).
fn find_existing(
    conn: &mut SqliteConnection,
    keys: &[ClientKey<'_>],
) -> Result<HashMap<(String, String), StoredMessage>, RepoError> {
    let head = format!("SELECT {} FROM (", message_select_list("m"));
    let tail = ") AS v CROSS JOIN messages AS m \
                ON m.sender_id = v.column1 AND m.client_msg_id = v.column2";
    let mut found = HashMap::new();
    for query in sql::chunked::<Sqlite, _>(&head, tail, 2, keys, |q, (sender, client_msg_id)| {
        q.bind::<Text, _>(*sender).bind::<Text, _>(*client_msg_id)
    }) {
        for row in query.load::<MessageRow>(conn)? {
            let m = StoredMessage::try_from(row)?;
            found.insert((m.sender_id.clone(), m.client_msg_id.clone()), m);
        }
    }
    Ok(found)
}

/// Advances the one `sync_clock` row by the bound count; returns the new head.
pub(crate) const ADVANCE_CLOCK: &str =
    "UPDATE sync_clock SET pos = pos + ? WHERE id = 1 RETURNING pos";

#[derive(QueryableByName)]
struct ClockHead {
    #[diesel(sql_type = BigInt)]
    pos: i64,
}

/// Advances the sync clock by `n`; returns its new head.
fn advance_clock(conn: &mut SqliteConnection, n: i64) -> Result<i64, RepoError> {
    diesel::sql_query(ADVANCE_CLOCK)
        .bind::<BigInt, _>(n)
        .get_result::<ClockHead>(conn)
        .optional()?
        .map(|h| h.pos)
        .ok_or_else(|| RepoError::Store(no_clock_row()))
}

/// Advances the conversation counters (creating missing rows) by each
/// demand's count, in the demand's (sorted) order; returns the new heads.
fn advance_conversations(
    conn: &mut SqliteConnection,
    demand: &[CounterDemand<'_>],
) -> Result<HashMap<String, i64>, RepoError> {
    let head = "INSERT INTO conversations \
                (conversation_id, conversation_type, max_seq, created_at, updated_at, last_pos)";
    let tail = "ON CONFLICT (conversation_id) DO UPDATE SET \
                max_seq = conversations.max_seq + excluded.max_seq, \
                updated_at = max(conversations.updated_at, excluded.updated_at), \
                last_pos = excluded.last_pos \
                RETURNING conversation_id AS id, max_seq AS head";
    let mut heads = HashMap::with_capacity(demand.len());
    for query in sql::chunked::<Sqlite, _>(head, tail, 6, demand, |q, d| {
        q.bind::<Text, _>(d.conversation_id)
            .bind::<Integer, _>(d.conversation_type)
            .bind::<BigInt, _>(d.count)
            .bind::<BigInt, _>(d.first_time)
            .bind::<BigInt, _>(d.last_time)
            .bind::<BigInt, _>(d.last_pos)
    }) {
        for h in query.load::<CounterHead>(conn)? {
            heads.insert(h.id, h.head);
        }
    }
    Ok(heads)
}

/// Multi-row inserts of the new messages.
fn insert_messages(
    conn: &mut SqliteConnection,
    rows: &[NewMessageRow<'_>],
) -> Result<(), RepoError> {
    let head = "INSERT INTO messages (server_msg_id, client_msg_id, conversation_id, \
                conversation_type, sender_id, receiver_id, group_id, message_type, content, \
                send_time, server_time, seq, extra, pos)";
    for query in sql::chunked::<Sqlite, _>(head, "", 14, rows, |q, r| {
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
        query.execute(conn)?;
    }
    Ok(())
}

/// Multi-row insert-or-ignore of the memberships.
fn insert_memberships(
    conn: &mut SqliteConnection,
    rows: &[MembershipRow<'_>],
) -> Result<(), RepoError> {
    let head = "INSERT INTO user_conversations (user_id, conversation_id, created_at, updated_at)";
    let tail = "ON CONFLICT (user_id, conversation_id) DO NOTHING";
    for query in sql::chunked::<Sqlite, _>(head, tail, 4, rows, |q, r| {
        q.bind::<Text, _>(r.user_id)
            .bind::<Text, _>(r.conversation_id)
            .bind::<BigInt, _>(r.created_at)
            .bind::<BigInt, _>(r.updated_at)
    }) {
        query.execute(conn)?;
    }
    Ok(())
}

/// Raises the delivered seq of (user, device, conversation) to `seq`; a
/// lower or equal `seq` changes nothing.
pub(crate) fn record_delivered(
    conn: &mut SqliteConnection,
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
        .execute(conn)?;
    Ok(())
}

/// Records one MSG_ACK of (user, device) for message `seq` of
/// `conversation_id`; an existing row is kept.
pub(crate) fn record_acked(
    conn: &mut SqliteConnection,
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
        .execute(conn)?;
    Ok(())
}

/// Deletes the acknowledgements of (user, device) at or below each
/// `(conversation_id, up_to)`; returns how many.
pub(crate) fn delete_acked(
    conn: &mut SqliteConnection,
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
        n += diesel::delete(diesel::QueryDsl::filter(a::acked_messages, rows)).execute(conn)?;
    }
    Ok(u64::try_from(n).unwrap_or(u64::MAX))
}

/// Creates `user` (an empty profile, created and updated at `now_ms`) or
/// moves its `last_seen` forward to `now_ms`.
pub(crate) fn touch_user(
    conn: &mut SqliteConnection,
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
        .execute(conn)?;
    Ok(())
}

/// Deletes the acknowledgements recorded before `before_ms`; returns how many.
pub(crate) fn purge_acked(conn: &mut SqliteConnection, before_ms: i64) -> Result<u64, RepoError> {
    use acked_messages::dsl as a;
    let n = diesel::delete(diesel::QueryDsl::filter(
        a::acked_messages,
        a::acked_at.lt(before_ms),
    ))
    .execute(conn)?;
    Ok(u64::try_from(n).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dedupe_lookup_searches_the_unique_index() {
        use crate::sqlite::test_util::{assert_indexed, memory_conn, plan};
        let mut c = memory_conn();
        let keys = [("a", "1"), ("b", "2"), ("c", "3")];
        let head = format!("SELECT {} FROM (", message_select_list("m"));
        let tail = ") AS v CROSS JOIN messages AS m \
                    ON m.sender_id = v.column1 AND m.client_msg_id = v.column2";
        let q = sql::chunked::<Sqlite, _>(&head, tail, 2, &keys, |q, (s, k)| {
            q.bind::<Text, _>(*s).bind::<Text, _>(*k)
        })
        .next()
        .unwrap();
        let p = plan(&mut c, &q);
        assert_indexed(
            &p,
            &["SEARCH m USING INDEX messages_sender_client_key (sender_id=? AND client_msg_id=?)"],
        );
    }
}
