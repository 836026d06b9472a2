//! Read queries, shared by every backend. Each is a function returning the
//! diesel query, so the stores run exactly what the query-plan tests check
//! (`EXPLAIN QUERY PLAN` on SQLite below; `EXPLAIN` on PostgreSQL and MySQL
//! in `pg::explain` and `mysql::explain`).
//!
//! Messages are selected as a tuple of columns ([`MessageSelect`], loaded
//! into [`MessageRow`](crate::models::MessageRow) by position) rather than
//! `MessageRow::as_select()`, whose type names the backend.

use diesel::dsl::auto_type;
use diesel::prelude::*;

use crate::schema::{
    acked_messages, conversations, deliveries, message_positions, messages, user_conversations,
    users,
};

/// The columns of [`MessageRow`](crate::models::MessageRow), in its field order.
pub(crate) type MessageSelect = (
    messages::server_msg_id,
    messages::client_msg_id,
    messages::conversation_id,
    messages::conversation_type,
    messages::sender_id,
    messages::receiver_id,
    messages::group_id,
    messages::message_type,
    messages::content,
    messages::send_time,
    messages::server_time,
    messages::seq,
    messages::extra,
    messages::revoked_by,
    messages::revoked_time,
);

/// The value of [`MessageSelect`].
pub(crate) const MESSAGE_SELECT: MessageSelect = (
    messages::server_msg_id,
    messages::client_msg_id,
    messages::conversation_id,
    messages::conversation_type,
    messages::sender_id,
    messages::receiver_id,
    messages::group_id,
    messages::message_type,
    messages::content,
    messages::send_time,
    messages::server_time,
    messages::seq,
    messages::extra,
    messages::revoked_by,
    messages::revoked_time,
);

/// Messages of a conversation with `after < seq <= up_to`, ascending
/// (index `messages_conversation_seq_key`).
#[auto_type(no_type_alias)]
pub(crate) fn conversation_range<'a>(
    conversation_id: &'a str,
    after: i64,
    up_to: i64,
    limit: i64,
) -> _ {
    let select: MessageSelect = MESSAGE_SELECT;
    messages::table
        .filter(messages::conversation_id.eq(conversation_id))
        .filter(messages::seq.gt(after))
        .filter(messages::seq.le(up_to))
        .order(messages::seq.asc())
        .limit(limit)
        .select(select)
}

/// [`conversation_range`] without the messages `device` of `user`
/// acknowledged: for each message one probe of the primary key of
/// `acked_messages` (an anti-join).
#[auto_type(no_type_alias)]
pub(crate) fn conversation_unacked<'a>(
    conversation_id: &'a str,
    after: i64,
    up_to: i64,
    user: &'a str,
    device: &'a str,
    limit: i64,
) -> _ {
    let select: MessageSelect = MESSAGE_SELECT;
    let acked = acked_messages::table
        .filter(acked_messages::user_id.eq(user))
        .filter(acked_messages::device_id.eq(device))
        .filter(acked_messages::conversation_id.eq(conversation_id))
        .filter(acked_messages::seq.eq(messages::seq));
    messages::table
        .filter(messages::conversation_id.eq(conversation_id))
        .filter(messages::seq.gt(after))
        .filter(messages::seq.le(up_to))
        .filter(diesel::dsl::not(diesel::dsl::exists(acked)))
        .order(messages::seq.asc())
        .limit(limit)
        .select(select)
}

/// (conversation_id, lowest seq) of every conversation in which `device`
/// of `user` has acknowledgements (primary key prefix of `acked_messages`).
#[auto_type(no_type_alias)]
pub(crate) fn acked_floors<'a>(user: &'a str, device: &'a str) -> _ {
    let low: diesel::helper_types::min<acked_messages::seq> = diesel::dsl::min(acked_messages::seq);
    acked_messages::table
        .filter(acked_messages::user_id.eq(user))
        .filter(acked_messages::device_id.eq(device))
        .group_by(acked_messages::conversation_id)
        .select((acked_messages::conversation_id, low))
}

/// The message `sender` sent with `client_msg_id` (index `messages_sender_client_key`).
#[auto_type(no_type_alias)]
pub(crate) fn by_client_id<'a>(sender: &'a str, client_msg_id: &'a str) -> _ {
    let select: MessageSelect = MESSAGE_SELECT;
    messages::table
        .filter(messages::sender_id.eq(sender))
        .filter(messages::client_msg_id.eq(client_msg_id))
        .select(select)
}

/// The message with `server_msg_id` (index `messages_server_msg_id_key`).
#[auto_type(no_type_alias)]
pub(crate) fn by_server_id<'a>(server_msg_id: &'a str) -> _ {
    let select: MessageSelect = MESSAGE_SELECT;
    messages::table
        .filter(messages::server_msg_id.eq(server_msg_id))
        .select(select)
}

/// (conversation_id, max_seq) of every conversation of `user`, by id
/// (primary keys of `user_conversations` and `conversations`).
#[auto_type(no_type_alias)]
pub(crate) fn user_conversations<'a>(user: &'a str) -> _ {
    user_conversations::table
        .inner_join(conversations::table)
        .filter(user_conversations::user_id.eq(user))
        .order(user_conversations::conversation_id.asc())
        .select((conversations::conversation_id, conversations::max_seq))
}

/// The v1 sync head of `user`: the largest `last_pos` of their
/// conversations, NULL when they have none (primary keys of
/// `user_conversations` and `conversations`).
#[auto_type(no_type_alias)]
pub(crate) fn inbox_head<'a>(user: &'a str) -> _ {
    let head: diesel::helper_types::max<conversations::last_pos> =
        diesel::dsl::max(conversations::last_pos);
    user_conversations::table
        .inner_join(conversations::table)
        .filter(user_conversations::user_id.eq(user))
        .select(head)
}

/// v1 sync, step 1: `(pos, id)` of the first `limit` messages after `after`
/// in `user`'s conversations, ascending. Per conversation a range of
/// `messages_conversation_pos_key`, merged by a sort bounded by the LIMIT;
/// no message row is read (the index holds the row id on SQLite and InnoDB).
/// One statement, so one snapshot: the page is a prefix of the user's sync
/// stream (see [`crate::plan`] for why nothing can commit into it later).
#[auto_type(no_type_alias)]
pub(crate) fn inbox_positions<'a>(user: &'a str, after: i64, limit: i64) -> _ {
    let on = message_positions::conversation_id
        .eq(user_conversations::conversation_id)
        .and(message_positions::pos.gt(after));
    user_conversations::table
        .inner_join(message_positions::table.on(on))
        .filter(user_conversations::user_id.eq(user))
        .order(message_positions::pos.asc())
        .limit(limit)
        .select((message_positions::pos, message_positions::id))
}

/// v1 sync, step 2: `(id, message)` of the messages with these ids (primary key).
#[auto_type(no_type_alias)]
pub(crate) fn messages_by_id<'a>(ids: &'a [i64]) -> _ {
    let select: MessageSelect = MESSAGE_SELECT;
    messages::table
        .filter(messages::id.eq_any(ids))
        .select((messages::id, select))
}

/// The delivered seq of (user, device, conversation) (primary key of `deliveries`).
#[auto_type(no_type_alias)]
pub(crate) fn delivered_seq<'a>(user: &'a str, device: &'a str, conversation_id: &'a str) -> _ {
    deliveries::table
        .filter(deliveries::user_id.eq(user))
        .filter(deliveries::device_id.eq(device))
        .filter(deliveries::conversation_id.eq(conversation_id))
        .select(deliveries::seq)
}

/// Whether `user` exists (primary key of `users`).
#[auto_type(no_type_alias)]
pub(crate) fn user_exists<'a>(user: &'a str) -> _ {
    diesel::dsl::select(diesel::dsl::exists(
        users::table.filter(users::user_id.eq(user)),
    ))
}

#[cfg(test)]
mod tests {
    //! Every read must be an index search, never a table scan: run
    //! `EXPLAIN QUERY PLAN` on the exact SQL of each query.

    use super::*;
    use crate::sqlite::test_util::{assert_indexed, assert_indexed_sorted, memory_conn, plan};

    #[test]
    fn reads_use_indexes() {
        let mut c = memory_conn();
        let p = plan(&mut c, &conversation_range("c", 0, 10, 5));
        assert_indexed(
            &p,
            &["messages_conversation_seq_key (conversation_id=? AND seq>? AND seq<?)"],
        );
        let p = plan(&mut c, &by_client_id("a", "c"));
        assert_indexed(
            &p,
            &["messages_sender_client_key (sender_id=? AND client_msg_id=?)"],
        );
        let p = plan(&mut c, &by_server_id("s"));
        assert_indexed(&p, &["messages_server_msg_id_key (server_msg_id=?)"]);
        let p = plan(&mut c, &user_conversations("u"));
        assert_indexed(
            &p,
            &[
                "SEARCH user_conversations USING PRIMARY KEY (user_id=?)",
                "SEARCH conversations USING PRIMARY KEY (conversation_id=?)",
            ],
        );
        let p = plan(&mut c, &inbox_head("u"));
        assert_indexed(
            &p,
            &[
                "SEARCH user_conversations USING PRIMARY KEY (user_id=?)",
                "SEARCH conversations USING PRIMARY KEY (conversation_id=?)",
            ],
        );
        // v1 sync merges the user's conversations by position: a sort of
        // what the index ranges yield (bounded by the LIMIT), never a scan.
        let p = plan(&mut c, &inbox_positions("u", 0, 10));
        assert_indexed_sorted(
            &p,
            &[
                "SEARCH user_conversations USING PRIMARY KEY (user_id=?)",
                "SEARCH messages USING COVERING INDEX messages_conversation_pos_key \
                 (conversation_id=? AND pos>?)",
            ],
        );
        let p = plan(&mut c, &messages_by_id(&[3, 1, 2]));
        assert_indexed(&p, &["SEARCH messages USING INTEGER PRIMARY KEY (rowid=?)"]);
        let p = plan(&mut c, &delivered_seq("u", "d", "c"));
        assert_indexed(
            &p,
            &[
                "SEARCH deliveries USING PRIMARY KEY (user_id=? AND device_id=? AND conversation_id=?)",
            ],
        );
        let p = plan(&mut c, &user_exists("u"));
        assert_indexed(&p, &["SEARCH users USING PRIMARY KEY (user_id=?)"]);
    }
}
