//! Read queries of groups and conversation state, shared by every backend
//! (like [`crate::read`]): each function returns the diesel query, so the
//! stores run exactly what the query-plan tests check.

use diesel::dsl::auto_type;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable};

use super::models::{GROUP_SELECT, GroupSelect, MEMBER_SELECT, MemberSelect};
use super::schema::{chat_groups, group_members, read_cursors};
use crate::read::{MESSAGE_SELECT, MessageSelect};
use crate::schema::{conversations, messages, user_conversations};

#[diesel::declare_sql_function]
extern "SQL" {
    /// `COALESCE(a, b)` of a nullable and a non-null BIGINT.
    fn coalesce(a: Nullable<BigInt>, b: BigInt) -> BigInt;
}

/// The group `group_id` (primary key).
#[auto_type(no_type_alias)]
pub(crate) fn group<'a>(group_id: &'a str) -> _ {
    let select: GroupSelect = GROUP_SELECT;
    chat_groups::table
        .filter(chat_groups::group_id.eq(group_id))
        .select(select)
}

/// The version of group `group_id` (primary key): see [`super::bump_version`].
#[auto_type(no_type_alias)]
pub(crate) fn group_version<'a>(group_id: &'a str) -> _ {
    chat_groups::table
        .filter(chat_groups::group_id.eq(group_id))
        .select(chat_groups::version)
}

/// The head (`max_seq`) of conversation `conversation_id` (primary key);
/// the server backends lock it with `.for_update()`.
#[auto_type(no_type_alias)]
pub(crate) fn conversation_head<'a>(conversation_id: &'a str) -> _ {
    conversations::table
        .filter(conversations::conversation_id.eq(conversation_id))
        .select(conversations::max_seq)
}

/// The status of group `group_id` (primary key).
#[auto_type(no_type_alias)]
pub(crate) fn group_status<'a>(group_id: &'a str) -> _ {
    chat_groups::table
        .filter(chat_groups::group_id.eq(group_id))
        .select(chat_groups::status)
}

/// How many members group `group_id` has (a range of the primary key).
#[auto_type(no_type_alias)]
pub(crate) fn member_count<'a>(group_id: &'a str) -> _ {
    group_members::table
        .filter(group_members::group_id.eq(group_id))
        .count()
}

/// (group_id, member count) of each of `group_ids` that has members.
#[auto_type(no_type_alias)]
pub(crate) fn member_counts<'a>(group_ids: &'a [String]) -> _ {
    group_members::table
        .filter(group_members::group_id.eq_any(group_ids))
        .group_by(group_members::group_id)
        .select((group_members::group_id, diesel::dsl::count_star()))
}

/// The member `user` of `group_id` (primary key).
#[auto_type(no_type_alias)]
pub(crate) fn member<'a>(group_id: &'a str, user: &'a str) -> _ {
    let select: MemberSelect = MEMBER_SELECT;
    group_members::table
        .filter(group_members::group_id.eq(group_id))
        .filter(group_members::user_id.eq(user))
        .select(select)
}

/// Every member of `group_id`, by join time then user id (a range of the
/// primary key, sorted: at most `max_members` rows).
#[auto_type(no_type_alias)]
pub(crate) fn members<'a>(group_id: &'a str) -> _ {
    let select: MemberSelect = MEMBER_SELECT;
    group_members::table
        .filter(group_members::group_id.eq(group_id))
        .order((group_members::joined_at.asc(), group_members::user_id.asc()))
        .select(select)
}

/// Which of `users` are members of `group_id` (primary key probes).
#[auto_type(no_type_alias)]
pub(crate) fn members_among<'a>(group_id: &'a str, users: &'a [&'a str]) -> _ {
    group_members::table
        .filter(group_members::group_id.eq(group_id))
        .filter(group_members::user_id.eq_any(users))
        .select(group_members::user_id)
}

/// The live groups `user` is a member of, by creation time then id
/// (`group_members_user_key`, then the primary key of `chat_groups`; sorted:
/// one user's groups).
#[auto_type(no_type_alias)]
pub(crate) fn groups_of<'a>(user: &'a str) -> _ {
    let select: GroupSelect = GROUP_SELECT;
    let normal: i32 = im_core::model::GROUP_STATUS_NORMAL;
    group_members::table
        .inner_join(chat_groups::table)
        .filter(group_members::user_id.eq(user))
        .filter(chat_groups::status.eq(normal))
        .order((chat_groups::created_at.asc(), chat_groups::group_id.asc()))
        .select(select)
}

/// `user`'s read cursor in `conversation_id` (primary key).
#[auto_type(no_type_alias)]
pub(crate) fn read_seq<'a>(user: &'a str, conversation_id: &'a str) -> _ {
    read_cursors::table
        .filter(read_cursors::user_id.eq(user))
        .filter(read_cursors::conversation_id.eq(conversation_id))
        .select(read_cursors::read_seq)
}

/// (user, read seq) of every cursor in `conversation_id`, by user
/// (`read_cursors_conversation_key`, covering).
#[auto_type(no_type_alias)]
pub(crate) fn read_cursors_of<'a>(conversation_id: &'a str) -> _ {
    read_cursors::table
        .filter(read_cursors::conversation_id.eq(conversation_id))
        .order(read_cursors::user_id.asc())
        .select((read_cursors::user_id, read_cursors::read_seq))
}

/// How many messages of `conversation_id` after `read` were not sent by
/// `user` and are not recalled (a range of `messages_conversation_seq_key`).
#[auto_type(no_type_alias)]
pub(crate) fn unread<'a>(conversation_id: &'a str, user: &'a str, read: i64) -> _ {
    messages::table
        .filter(messages::conversation_id.eq(conversation_id))
        .filter(messages::seq.gt(read))
        .filter(messages::sender_id.ne(user))
        .filter(messages::revoked_by.is_null())
        .count()
}

/// Messages of `conversation_id` with `seq < below`, newest first, at most
/// `limit` (a backward range of `messages_conversation_seq_key`).
#[auto_type(no_type_alias)]
pub(crate) fn history<'a>(conversation_id: &'a str, below: i64, limit: i64) -> _ {
    let select: MessageSelect = MESSAGE_SELECT;
    messages::table
        .filter(messages::conversation_id.eq(conversation_id))
        .filter(messages::seq.lt(below))
        .order(messages::seq.desc())
        .limit(limit)
        .select(select)
}

/// One page of `user`'s conversation list: (conversation_id, type, max_seq,
/// read_seq, joined_at, last message), most recently updated first (the last
/// message's server time, or when the user joined for a conversation without
/// messages), then by id.
///
/// `user_conversations` primary key range, each row joined to its counter
/// row, its read cursor and its last message by primary/unique keys; the
/// sort is over one user's conversations.
#[auto_type(no_type_alias)]
pub(crate) fn list_page<'a>(user: &'a str, limit: i64) -> _ {
    let last: MessageSelect = MESSAGE_SELECT;
    let cursor_on = read_cursors::user_id
        .eq(user_conversations::user_id)
        .and(read_cursors::conversation_id.eq(user_conversations::conversation_id));
    let last_on = messages::conversation_id
        .eq(conversations::conversation_id)
        .and(messages::seq.eq(conversations::max_seq));
    let updated: coalesce<
        diesel::dsl::Nullable<messages::server_time>,
        user_conversations::created_at,
    > = coalesce(
        messages::server_time.nullable(),
        user_conversations::created_at,
    );
    user_conversations::table
        .inner_join(conversations::table)
        .left_join(read_cursors::table.on(cursor_on))
        .left_join(messages::table.on(last_on))
        .filter(user_conversations::user_id.eq(user))
        .order((updated.desc(), user_conversations::conversation_id.asc()))
        .limit(limit)
        .select((
            user_conversations::conversation_id,
            conversations::conversation_type,
            conversations::max_seq,
            read_cursors::read_seq.nullable(),
            user_conversations::created_at,
            last.nullable(),
        ))
}

/// (conversation_id, unread count) of `user` in each of `conversation_ids`
/// that has unread messages: each conversation's messages after the user's
/// read cursor (a range of `messages_conversation_seq_key`), not sent by
/// the user, not recalled.
#[auto_type(no_type_alias)]
pub(crate) fn list_unread<'a>(user: &'a str, conversation_ids: &'a [String]) -> _ {
    let cursor_on = read_cursors::user_id
        .eq(user_conversations::user_id)
        .and(read_cursors::conversation_id.eq(user_conversations::conversation_id));
    let read: coalesce<diesel::dsl::Nullable<read_cursors::read_seq>, i64> =
        coalesce(read_cursors::read_seq.nullable(), 0_i64);
    let unread_on = messages::conversation_id
        .eq(user_conversations::conversation_id)
        .and(messages::seq.gt(read));
    user_conversations::table
        .left_join(read_cursors::table.on(cursor_on))
        .inner_join(messages::table.on(unread_on))
        .filter(user_conversations::user_id.eq(user))
        .filter(user_conversations::conversation_id.eq_any(conversation_ids))
        .filter(messages::sender_id.ne(user))
        .filter(messages::revoked_by.is_null())
        .group_by(user_conversations::conversation_id)
        .select((
            user_conversations::conversation_id,
            diesel::dsl::count_star(),
        ))
}

#[cfg(test)]
mod tests {
    //! Every read is an index search, never a table scan (`EXPLAIN QUERY
    //! PLAN` of the exact SQL). The only sorts are over one group's members
    //! or one user's groups and conversations.

    use super::*;
    use crate::sqlite::test_util::{assert_indexed, memory_conn, plan};

    /// Like `assert_indexed`, but a final sort of the (bounded) rows is fine.
    fn assert_indexed_then_sorted(details: &[String], expected: &[&str]) {
        let (sorts, rest): (Vec<String>, Vec<String>) = details
            .iter()
            .cloned()
            .partition(|d| d == "USE TEMP B-TREE FOR ORDER BY");
        assert_eq!(sorts.len(), 1, "{details:?}");
        assert_indexed(&rest, expected);
    }

    #[test]
    fn reads_use_indexes() {
        let mut c = memory_conn();
        let ids = vec!["a".to_owned(), "b".to_owned()];
        let users = ["a", "b"];
        let pk = |t: &str, cond: &str| format!("SEARCH {t} USING PRIMARY KEY ({cond})");
        let p = plan(&mut c, &group("g"));
        assert_indexed(&p, &[&pk("chat_groups", "group_id=?")]);
        let p = plan(&mut c, &group_status("g"));
        assert_indexed(&p, &[&pk("chat_groups", "group_id=?")]);
        let p = plan(&mut c, &member_count("g"));
        assert_indexed(&p, &[&pk("group_members", "group_id=?")]);
        let p = plan(&mut c, &member_counts(&ids));
        assert_indexed(&p, &[&pk("group_members", "group_id=?")]);
        let p = plan(&mut c, &member("g", "u"));
        assert_indexed(&p, &[&pk("group_members", "group_id=? AND user_id=?")]);
        let p = plan(&mut c, &members_among("g", &users));
        assert_indexed(&p, &[&pk("group_members", "group_id=? AND user_id=?")]);
        let p = plan(&mut c, &members("g"));
        assert_indexed_then_sorted(&p, &[&pk("group_members", "group_id=?")]);
        let p = plan(&mut c, &groups_of("u"));
        assert_indexed_then_sorted(
            &p,
            &[
                "group_members USING COVERING INDEX group_members_user_key (user_id=?)",
                &pk("chat_groups", "group_id=?"),
            ],
        );
        let p = plan(&mut c, &read_seq("u", "c"));
        assert_indexed(
            &p,
            &[&pk("read_cursors", "user_id=? AND conversation_id=?")],
        );
        let p = plan(&mut c, &read_cursors_of("c"));
        assert_indexed(
            &p,
            &[
                "read_cursors USING COVERING INDEX read_cursors_conversation_key (conversation_id=?)",
            ],
        );
        let p = plan(&mut c, &unread("c", "u", 3));
        assert_indexed(
            &p,
            &["messages_conversation_seq_key (conversation_id=? AND seq>?)"],
        );
        let p = plan(&mut c, &history("c", 10, 5));
        assert_indexed(
            &p,
            &["messages_conversation_seq_key (conversation_id=? AND seq<?)"],
        );
        let p = plan(&mut c, &list_page("u", 10));
        assert_indexed_then_sorted(
            &p,
            &[
                &pk("user_conversations", "user_id=?"),
                &pk("conversations", "conversation_id=?"),
                &pk("read_cursors", "user_id=? AND conversation_id=?"),
                "messages_conversation_seq_key (conversation_id=? AND seq=?)",
            ],
        );
        let p = plan(&mut c, &list_unread("u", &ids));
        assert_indexed(
            &p,
            &[
                "user_conversations",
                &pk("read_cursors", "user_id=? AND conversation_id=?"),
                "messages_conversation_seq_key (conversation_id=? AND seq>?)",
            ],
        );
    }
}
