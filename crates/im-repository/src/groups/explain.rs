//! The group and conversation-state reads must be index searches on the
//! server backends too: `EXPLAIN` of the exact statements on a populated,
//! analyzed scratch database (gated like every server test, see
//! `crate::scratch`). Sorts are allowed only where the doc of the query
//! says it sorts a bounded set (one group's members, one user's groups or
//! conversations).

use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use im_core::model::{GROUP_STATUS_NORMAL, Group, GroupMember, GroupRole};
use im_core::ports::{ConversationStore, GroupStore};

use super::read;
use crate::any::{AnyStore, Backend};
use crate::explain_util::{mysql_assert, mysql_plan, pg_assert, pg_plan, populated};

/// 100 groups of 5 of the 200 users of `populated`, and read cursors.
async fn add_groups(store: &AnyStore) {
    for g in 0..100 {
        let gid = format!("g{g}");
        let group = Group {
            group_id: gid.clone(),
            owner_id: format!("u{g}"),
            status: GROUP_STATUS_NORMAL,
            created_at: g,
            updated_at: g,
            ..Group::default()
        };
        let members: Vec<GroupMember> = (0..5)
            .map(|k| GroupMember {
                group_id: gid.clone(),
                user_id: format!("u{}", (g * 7 + k * 31) % 200),
                role: if k == 0 {
                    GroupRole::Owner
                } else {
                    GroupRole::Member
                },
                muted_until: 0,
                joined_at: g,
            })
            .collect();
        store.create_group(&group, &members).await.unwrap();
    }
    for u in 0..200 {
        let user = format!("u{u}");
        store
            .mark_read(&user, &format!("single_u{u}_u{}", u + 1), 1, 1)
            .await
            .unwrap();
        store
            .mark_read(&user, &format!("group_g{}", u % 100), 1, 1)
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_reads_use_indexes() {
    let Some((db, store)) = populated(Backend::Postgres).await else {
        return;
    };
    add_groups(&store).await;
    let mut c = AsyncPgConnection::establish(db.url()).await.unwrap();
    c.batch_execute("ANALYZE; SET enable_seqscan = off;")
        .await
        .unwrap();
    let ids = vec!["g1".to_owned(), "g2".to_owned()];
    let convs = vec!["group_g1".to_owned(), "single_u1_u2".to_owned()];
    // g1's members are u7, u38, u69, u100, u131 (see `add_groups`)
    let users = ["u7", "u38", "u2"];

    let p = pg_plan(&mut c, read::group("g1")).await;
    pg_assert(&p, false, &["chat_groups_pkey"]);
    let p = pg_plan(&mut c, read::member_count("g1")).await;
    pg_assert(&p, false, &["on group_members"]);
    let p = pg_plan(&mut c, read::member_counts(&ids)).await;
    pg_assert(&p, true, &["on group_members"]);
    // (group_id, user_id) probes: either index of group_members has both
    let p = pg_plan(&mut c, read::member("g1", "u7")).await;
    pg_assert(&p, false, &["on group_members"]);
    let p = pg_plan(&mut c, read::members_among("g1", &users)).await;
    pg_assert(&p, false, &["on group_members"]);
    let p = pg_plan(&mut c, read::members("g1")).await;
    pg_assert(&p, true, &["on group_members"]);
    let p = pg_plan(&mut c, read::groups_of("u1")).await;
    pg_assert(&p, true, &["on group_members", "chat_groups_pkey"]);
    let p = pg_plan(&mut c, read::read_seq("u1", "group_g1")).await;
    pg_assert(&p, false, &["on read_cursors"]);
    // (may sort: a conversation's few readers; the index has them in order)
    let p = pg_plan(&mut c, read::read_cursors_of("group_g1")).await;
    pg_assert(&p, true, &["read_cursors_conversation_key"]);
    let p = pg_plan(&mut c, read::unread("single_u0_u3", "u0", 1)).await;
    pg_assert(&p, false, &["messages_conversation_seq_key"]);
    let p = pg_plan(&mut c, read::history("single_u0_u3", 10, 5)).await;
    pg_assert(&p, false, &["messages_conversation_seq_key", "Limit"]);
    let p = pg_plan(&mut c, read::list_page("u1", 10)).await;
    pg_assert(
        &p,
        true,
        &[
            "on user_conversations",
            "conversations_pkey",
            "on read_cursors",
            "messages_conversation_seq_key",
        ],
    );
    let p = pg_plan(&mut c, read::list_unread("u1", &convs)).await;
    pg_assert(
        &p,
        true,
        &["on user_conversations", "messages_conversation_seq_key"],
    );

    drop((c, store));
    db.drop_database().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_reads_use_indexes() {
    let Some((db, store)) = populated(Backend::Mysql).await else {
        return;
    };
    add_groups(&store).await;
    let mut c = crate::mysql::establish(db.url()).await.unwrap();
    c.batch_execute(
        "ANALYZE TABLE messages, conversations, user_conversations, chat_groups, \
         group_members, read_cursors",
    )
    .await
    .unwrap();
    let ids = vec!["g1".to_owned(), "g2".to_owned()];
    let convs = vec!["group_g1".to_owned(), "single_u1_u2".to_owned()];
    // g1's members are u7, u38, u69, u100, u131 (see `add_groups`)
    let users = ["u7", "u38", "u2"];

    let p = mysql_plan(&mut c, read::group("g1")).await;
    mysql_assert(&p, false, &[("chat_groups", "PRIMARY")]);
    let p = mysql_plan(&mut c, read::member_count("g1")).await;
    mysql_assert(&p, false, &[("group_members", "PRIMARY")]);
    let p = mysql_plan(&mut c, read::member_counts(&ids)).await;
    mysql_assert(&p, false, &[("group_members", "PRIMARY")]);
    let p = mysql_plan(&mut c, read::member("g1", "u7")).await;
    mysql_assert(&p, false, &[("group_members", "PRIMARY")]);
    let p = mysql_plan(&mut c, read::members_among("g1", &users)).await;
    mysql_assert(&p, false, &[("group_members", "PRIMARY")]);
    let p = mysql_plan(&mut c, read::members("g1")).await;
    mysql_assert(&p, true, &[("group_members", "PRIMARY")]);
    let p = mysql_plan(&mut c, read::groups_of("u1")).await;
    mysql_assert(
        &p,
        true,
        &[
            ("group_members", "group_members_user_key"),
            ("chat_groups", "PRIMARY"),
        ],
    );
    let p = mysql_plan(&mut c, read::read_seq("u1", "group_g1")).await;
    mysql_assert(&p, false, &[("read_cursors", "PRIMARY")]);
    let p = mysql_plan(&mut c, read::read_cursors_of("group_g1")).await;
    mysql_assert(
        &p,
        false,
        &[("read_cursors", "read_cursors_conversation_key")],
    );
    let p = mysql_plan(&mut c, read::unread("single_u0_u3", "u0", 1)).await;
    mysql_assert(&p, false, &[("messages", "messages_conversation_seq_key")]);
    let p = mysql_plan(&mut c, read::history("single_u0_u3", 10, 5)).await;
    mysql_assert(&p, false, &[("messages", "messages_conversation_seq_key")]);
    let p = mysql_plan(&mut c, read::list_page("u1", 10)).await;
    mysql_assert(
        &p,
        true,
        &[
            ("user_conversations", "PRIMARY"),
            ("conversations", "PRIMARY"),
            ("read_cursors", "PRIMARY"),
            ("messages", "messages_conversation_seq_key"),
        ],
    );
    let p = mysql_plan(&mut c, read::list_unread("u1", &convs)).await;
    mysql_assert(&p, true, &[("messages", "messages_conversation_seq_key")]);

    drop((c, store));
    db.drop_database().await.unwrap();
}
