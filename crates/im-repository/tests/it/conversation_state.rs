//! `ConversationStore`: recall, read cursors, unread counts, the
//! conversation list and history paging — the same tests on every backend.

use im_core::ConversationType;
use im_core::model::{NewMessage, Revocation, StoredMessage};
use im_core::ports::{ConversationStore, GroupStore, MessageStore};
use im_repository::AnyStore;

use crate::common::{TestDb, group, single, store_tests};
use crate::groups::create;

store_tests!(
    revoke_twice_keeps_the_first,
    mark_read_never_moves_backwards,
    read_cursors_list_every_reader,
    unread_excludes_own_and_recalled_messages,
    conversation_list_order_last_message_and_unread,
    conversation_list_of_a_removed_member,
    history_pages_newest_first,
);

/// `m` accepted at `t`.
fn at(mut m: NewMessage, t: i64) -> NewMessage {
    m.server_time = t;
    m
}

async fn store(s: &AnyStore, batch: &[NewMessage]) -> Vec<StoredMessage> {
    s.append(batch)
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.message)
        .collect()
}

async fn revoke_twice_keeps_the_first(db: TestDb) {
    let s = &db.store;
    let stored = store(
        s,
        &[single("alice", "bob", "1"), single("alice", "bob", "2")],
    )
    .await;
    let first = stored.first().unwrap();
    let r = s
        .revoke(&first.server_msg_id, "alice", 5_000)
        .await
        .unwrap()
        .unwrap();
    let recalled = Revocation {
        by: "alice".into(),
        time: 5_000,
    };
    assert_eq!(
        r,
        StoredMessage {
            revoked: Some(recalled.clone()),
            ..first.clone()
        }
    );
    let again = s
        .revoke(&first.server_msg_id, "bob", 6_000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.revoked, Some(recalled.clone()));
    // sync sees it recalled; the other message is untouched
    let range = s
        .conversation_range("single_alice_bob", 0, 10, 10)
        .await
        .unwrap();
    assert_eq!(
        range.iter().map(|m| m.revoked.clone()).collect::<Vec<_>>(),
        vec![Some(recalled), None]
    );
    assert_eq!(s.revoke("nope", "alice", 1).await.unwrap(), None);
}

async fn mark_read_never_moves_backwards(db: TestDb) {
    let s = &db.store;
    let c = "single_alice_bob";
    assert_eq!(s.read_seq("bob", c).await.unwrap(), 0);
    assert_eq!(s.mark_read("bob", c, 5, 1).await.unwrap(), 0);
    assert_eq!(s.read_seq("bob", c).await.unwrap(), 5);
    assert_eq!(s.mark_read("bob", c, 3, 2).await.unwrap(), 5);
    assert_eq!(s.read_seq("bob", c).await.unwrap(), 5);
    assert_eq!(s.mark_read("bob", c, 5, 3).await.unwrap(), 5);
    assert_eq!(s.mark_read("bob", c, 7, 4).await.unwrap(), 5);
    assert_eq!(s.read_seq("bob", c).await.unwrap(), 7);
    // per user and per conversation
    assert_eq!(s.read_seq("alice", c).await.unwrap(), 0);
    assert_eq!(s.read_seq("bob", "single_bob_carol").await.unwrap(), 0);
    // concurrent marks: the cursor ends at the highest, and exactly one
    // call saw each previous value
    let other = db.another().await;
    let mut tasks = Vec::new();
    for i in 0..10_i64 {
        let st = if i % 2 == 0 { s.clone() } else { other.clone() };
        tasks.push(tokio::spawn(async move {
            loop {
                match st.mark_read("carol", "group_g", 10 + i, 5).await {
                    Ok(before) => return before,
                    Err(e) if e.is_retryable() => {
                        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                    }
                    Err(e) => panic!("{e:?}"),
                }
            }
        }));
    }
    let mut befores = Vec::new();
    for t in tasks {
        befores.push(t.await.unwrap());
    }
    assert_eq!(s.read_seq("carol", "group_g").await.unwrap(), 19);
    // each call's "before" is what an earlier call left: 0 once, and the
    // values only ever those of the marks
    assert_eq!(
        befores.iter().filter(|b| **b == 0).count(),
        1,
        "{befores:?}"
    );
    assert!(befores.iter().all(|b| *b == 0 || (10..=19).contains(b)));
}

async fn read_cursors_list_every_reader(db: TestDb) {
    let s = &db.store;
    let c = "group_g1";
    assert!(s.read_cursors(c).await.unwrap().is_empty());
    s.mark_read("carol", c, 3, 1).await.unwrap();
    s.mark_read("alice", c, 9, 1).await.unwrap();
    s.mark_read("bob", c, 1, 1).await.unwrap();
    s.mark_read("bob", "group_other", 4, 1).await.unwrap();
    assert_eq!(
        s.read_cursors(c).await.unwrap(),
        vec![("alice".into(), 9), ("bob".into(), 1), ("carol".into(), 3)]
    );
}

async fn unread_excludes_own_and_recalled_messages(db: TestDb) {
    let s = &db.store;
    let c = "single_alice_bob";
    let stored = store(
        s,
        &[
            single("alice", "bob", "a1"),
            single("bob", "alice", "b1"),
            single("alice", "bob", "a2"),
            single("alice", "bob", "a3"),
            single("bob", "alice", "b2"),
        ],
    )
    .await;
    assert_eq!(s.unread_count("bob", c).await.unwrap(), 3);
    assert_eq!(s.unread_count("alice", c).await.unwrap(), 2);
    // a recalled message no longer counts
    let a2 = stored.get(2).unwrap();
    s.revoke(&a2.server_msg_id, "alice", 9).await.unwrap();
    assert_eq!(s.unread_count("bob", c).await.unwrap(), 2);
    // reading up to a2 (seq 3) leaves a3
    s.mark_read("bob", c, 3, 10).await.unwrap();
    assert_eq!(s.unread_count("bob", c).await.unwrap(), 1);
    s.mark_read("bob", c, 5, 11).await.unwrap();
    assert_eq!(s.unread_count("bob", c).await.unwrap(), 0);
    assert_eq!(s.unread_count("alice", c).await.unwrap(), 2);
    assert_eq!(s.unread_count("bob", "single_bob_zed").await.unwrap(), 0);

    // groups: every member's own count
    create(s, "g1", "alice", &["bob", "carol"], 1).await;
    let all = ["alice", "bob", "carol"];
    store(
        s,
        &[
            group("g1", "alice", &all, "g-a1"),
            group("g1", "bob", &all, "g-b1"),
            group("g1", "alice", &all, "g-a2"),
        ],
    )
    .await;
    let gc = "group_g1";
    assert_eq!(s.unread_count("alice", gc).await.unwrap(), 1);
    assert_eq!(s.unread_count("bob", gc).await.unwrap(), 2);
    assert_eq!(s.unread_count("carol", gc).await.unwrap(), 3);
    s.mark_read("carol", gc, 2, 5).await.unwrap();
    assert_eq!(s.unread_count("carol", gc).await.unwrap(), 1);
}

async fn conversation_list_order_last_message_and_unread(db: TestDb) {
    let s = &db.store;
    // 1:1 with bob, last message at 2_000; with carol at 1_500
    store(
        s,
        &[
            at(single("bob", "alice", "1"), 1_000),
            at(single("alice", "bob", "2"), 1_200),
            at(single("bob", "alice", "3"), 2_000),
            at(single("carol", "alice", "4"), 1_500),
        ],
    )
    .await;
    // group g1 with a message at 3_000; group g2 joined at 2_500, silent
    create(s, "g1", "dave", &["alice"], 100).await;
    create(s, "g2", "dave", &["alice"], 2_500).await;
    let g1 = store(
        s,
        &[at(group("g1", "dave", &["dave", "alice"], "5"), 3_000)],
    )
    .await;
    s.mark_read("alice", "single_alice_bob", 1, 9)
        .await
        .unwrap();

    let list = s.conversation_list("alice", 100).await.unwrap();
    let summary: Vec<(&str, ConversationType, i64, i64, i64, i64)> = list
        .iter()
        .map(|c| {
            (
                c.conversation_id.as_str(),
                c.conversation_type,
                c.updated_at,
                c.unread_count,
                c.read_seq,
                c.max_seq,
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("group_g1", ConversationType::Group, 3_000, 1, 0, 1),
            ("group_g2", ConversationType::Group, 2_500, 0, 0, 0),
            ("single_alice_bob", ConversationType::Single, 2_000, 1, 1, 3),
            (
                "single_alice_carol",
                ConversationType::Single,
                1_500,
                1,
                0,
                1
            ),
        ]
    );
    let last = |i: usize| list.get(i).unwrap().last_message.clone();
    assert_eq!(last(0), g1.first().cloned());
    assert_eq!(last(1), None);
    let bob_last = last(2).unwrap();
    assert_eq!((bob_last.seq, bob_last.client_msg_id.as_str()), (3, "3"));
    assert_eq!(bob_last.sender_id, "bob");

    // the limit keeps the newest
    let top: Vec<String> = s
        .conversation_list("alice", 2)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.conversation_id)
        .collect();
    assert_eq!(top, vec!["group_g1", "group_g2"]);
    assert!(s.conversation_list("alice", 0).await.unwrap().is_empty());

    // a new message moves its conversation to the top; a recalled last
    // message is still the last message, and no longer unread
    let newest = store(s, &[at(single("carol", "alice", "6"), 4_000)]).await;
    let newest = newest.first().unwrap();
    s.revoke(&newest.server_msg_id, "carol", 4_001)
        .await
        .unwrap();
    let list = s.conversation_list("alice", 100).await.unwrap();
    let first = list.first().unwrap();
    assert_eq!(first.conversation_id, "single_alice_carol");
    assert_eq!(first.unread_count, 1);
    assert_eq!(
        first.last_message.as_ref().and_then(|m| m.revoked.clone()),
        Some(Revocation {
            by: "carol".into(),
            time: 4_001
        })
    );
    // bob sees the same 1:1 from his side
    let bob = s.conversation_list("bob", 10).await.unwrap();
    assert_eq!(bob.len(), 1);
    let b = bob.first().unwrap();
    assert_eq!((b.unread_count, b.read_seq, b.max_seq), (1, 0, 3));
    assert!(s.conversation_list("nobody", 10).await.unwrap().is_empty());
}

async fn conversation_list_of_a_removed_member(db: TestDb) {
    let s = &db.store;
    create(s, "g1", "alice", &["bob"], 1).await;
    create(s, "g2", "alice", &["bob"], 2).await;
    store(s, &[group("g1", "alice", &["alice", "bob"], "1")]).await;
    s.remove_members("g1", &["bob".into()]).await.unwrap();
    s.dismiss_group("g2", 3).await.unwrap();
    assert!(s.conversation_list("bob", 10).await.unwrap().is_empty());
    let alice: Vec<String> = s
        .conversation_list("alice", 10)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.conversation_id)
        .collect();
    assert_eq!(alice, vec!["group_g1"]);
}

async fn history_pages_newest_first(db: TestDb) {
    let s = &db.store;
    let batch: Vec<_> = (1..=10)
        .map(|i| single("alice", "bob", &format!("{i}")))
        .collect();
    store(s, &batch).await;
    let c = "single_alice_bob";
    let page = |before: i64, limit: u32| {
        let s = s.clone();
        async move {
            s.history(c, before, limit)
                .await
                .unwrap()
                .into_iter()
                .map(|m| m.seq)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(page(0, 3).await, vec![10, 9, 8]);
    assert_eq!(page(8, 3).await, vec![7, 6, 5]);
    assert_eq!(page(5, 100).await, vec![4, 3, 2, 1]);
    assert_eq!(page(1, 100).await, Vec::<i64>::new());
    assert_eq!(page(-5, 2).await, vec![10, 9]);
    assert_eq!(page(1_000, 1).await, vec![10]);
    assert_eq!(page(0, 0).await, Vec::<i64>::new());
    assert!(s.history("single_x_y", 0, 10).await.unwrap().is_empty());
    // full messages, as stored
    let newest = s.history(c, 0, 1).await.unwrap();
    let newest = newest.first().unwrap();
    assert_eq!(newest.client_msg_id, "10");
    assert_eq!(
        s.find_by_server_id(&newest.server_msg_id)
            .await
            .unwrap()
            .as_ref(),
        Some(newest)
    );
}
