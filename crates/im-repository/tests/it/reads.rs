//! Reads: ranges, lookups, memberships, deliveries, users, health — the
//! same tests on every backend.

use im_core::ports::{ConversationHead, HealthCheck, MessageStore, UserStore};

use crate::common::{TestDb, group, single, store_tests, uid};

store_tests!(
    conversation_range_bounds_and_limit,
    lookups_by_client_and_server_id,
    user_conversations_list_heads,
    delivered_seq_never_moves_backwards,
    acked_messages_are_left_out_per_device_and_forgotten_below_cursors,
    acked_messages_older_than_the_retention_are_purged,
    users_are_provisioned_by_touch,
    ids_compare_byte_wise,
);

async fn conversation_range_bounds_and_limit(db: TestDb) {
    let batch: Vec<_> = (1..=10)
        .map(|i| single("alice", "bob", &format!("{i}")))
        .collect();
    db.store.append(&batch).await.unwrap();
    let conv = "single_alice_bob";
    let range = |after, up_to, limit| {
        let store = db.store.clone();
        async move {
            store
                .conversation_range(conv, after, up_to, limit)
                .await
                .unwrap()
                .into_iter()
                .map(|m| m.seq)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(range(0, 10, 100).await, (1..=10).collect::<Vec<_>>());
    assert_eq!(range(3, 7, 100).await, vec![4, 5, 6, 7]);
    assert_eq!(range(0, 10, 3).await, vec![1, 2, 3]);
    assert_eq!(range(8, 1_000, 100).await, vec![9, 10]);
    assert_eq!(range(5, 5, 100).await, Vec::<i64>::new());
    assert_eq!(range(7, 3, 100).await, Vec::<i64>::new());
    assert_eq!(range(0, 10, 0).await, Vec::<i64>::new());
    assert!(
        db.store
            .conversation_range("single_x_y", 0, 10, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn lookups_by_client_and_server_id(db: TestDb) {
    let m = group("g", "alice", &["alice", "bob"], "cid-1");
    let stored = db.store.append(std::slice::from_ref(&m)).await.unwrap();
    let stored = stored.first().unwrap().message.clone();
    assert_eq!(stored.group_id, "g");
    assert_eq!(&stored.content[..], &[0u8, 1, 2, 255][..]);
    assert_eq!(
        db.store
            .find_by_client_id(&uid("alice"), "cid-1")
            .await
            .unwrap(),
        Some(stored.clone())
    );
    assert_eq!(
        db.store.find_by_server_id(&m.server_msg_id).await.unwrap(),
        Some(stored)
    );
    assert_eq!(
        db.store
            .find_by_client_id(&uid("bob"), "cid-1")
            .await
            .unwrap(),
        None
    );
    assert_eq!(db.store.find_by_server_id("nope").await.unwrap(), None);
}

async fn user_conversations_list_heads(db: TestDb) {
    db.store
        .append(&[
            single("alice", "bob", "1"),
            single("bob", "alice", "2"),
            group("g", "carol", &["alice", "carol"], "3"),
            single("carol", "dave", "4"),
        ])
        .await
        .unwrap();
    // Group conversation membership belongs to the GroupStore (members are
    // added and removed there); a group message does not add it.
    let heads = db.store.user_conversations(&uid("alice")).await.unwrap();
    assert_eq!(
        heads,
        vec![ConversationHead {
            conversation_id: "single_alice_bob".into(),
            max_seq: 2
        },]
    );
    assert!(
        db.store
            .user_conversations(&uid("carol"))
            .await
            .unwrap()
            .iter()
            .all(|h| h.conversation_id != "group_g")
    );
    assert_eq!(
        db.store
            .user_conversations(&uid("dave"))
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(
        db.store
            .user_conversations(&uid("erin"))
            .await
            .unwrap()
            .is_empty()
    );
    db.store
        .append(&[single("bob", "alice", "5")])
        .await
        .unwrap();
    let heads = db.store.user_conversations(&uid("bob")).await.unwrap();
    assert_eq!(
        heads,
        vec![ConversationHead {
            conversation_id: "single_alice_bob".into(),
            max_seq: 3
        }]
    );
}

async fn delivered_seq_never_moves_backwards(db: TestDb) {
    let (u, conv) = (uid("alice"), "single_alice_bob");
    assert_eq!(db.store.delivered_seq(&u, "phone", conv).await.unwrap(), 0);
    db.store
        .record_delivered(&u, "phone", conv, 5)
        .await
        .unwrap();
    assert_eq!(db.store.delivered_seq(&u, "phone", conv).await.unwrap(), 5);
    db.store
        .record_delivered(&u, "phone", conv, 3)
        .await
        .unwrap();
    assert_eq!(db.store.delivered_seq(&u, "phone", conv).await.unwrap(), 5);
    db.store
        .record_delivered(&u, "phone", conv, 5)
        .await
        .unwrap();
    db.store
        .record_delivered(&u, "phone", conv, 9)
        .await
        .unwrap();
    assert_eq!(db.store.delivered_seq(&u, "phone", conv).await.unwrap(), 9);
    // per device and per conversation
    assert_eq!(db.store.delivered_seq(&u, "laptop", conv).await.unwrap(), 0);
    db.store
        .record_delivered(&u, "laptop", conv, 2)
        .await
        .unwrap();
    assert_eq!(db.store.delivered_seq(&u, "laptop", conv).await.unwrap(), 2);
    assert_eq!(
        db.store
            .delivered_seq(&u, "phone", "group_g")
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        db.store
            .delivered_seq(&uid("bob"), "phone", conv)
            .await
            .unwrap(),
        0
    );
}

async fn users_are_provisioned_by_touch(db: TestDb) {
    assert!(!db.store.exists(&uid("alice")).await.unwrap());
    db.store.touch(&uid("alice"), 1_000).await.unwrap();
    assert!(db.store.exists(&uid("alice")).await.unwrap());
    db.store.touch(&uid("alice"), 500).await.unwrap();
    db.store.touch(&uid("alice"), 2_000).await.unwrap();
    assert!(!db.store.exists(&uid("bob")).await.unwrap());
    db.store.ping().await.unwrap();
}

/// Ids differing only in case are distinct, and conversations list in
/// byte order (upper case first) on every backend.
async fn ids_compare_byte_wise(db: TestDb) {
    db.store
        .append(&[
            single("Bob", "alice", "x"),
            single("bob", "alice", "x"),
            single("alice", "Zed", "y"),
        ])
        .await
        .unwrap();
    let heads: Vec<String> = db
        .store
        .user_conversations(&uid("alice"))
        .await
        .unwrap()
        .into_iter()
        .map(|h| h.conversation_id)
        .collect();
    assert_eq!(
        heads,
        vec!["single_Bob_alice", "single_Zed_alice", "single_alice_bob"]
    );
    let upper = db
        .store
        .find_by_client_id(&uid("Bob"), "x")
        .await
        .unwrap()
        .unwrap();
    let lower = db
        .store
        .find_by_client_id(&uid("bob"), "x")
        .await
        .unwrap()
        .unwrap();
    assert_ne!(upper.server_msg_id, lower.server_msg_id);
    db.store.touch(&uid("alice"), 1).await.unwrap();
    assert!(!db.store.exists(&uid("ALICE")).await.unwrap());
}

/// Issue 18 item 5: `conversation_unacked` leaves out exactly the messages
/// one device acknowledged (an ack of seq 7 says nothing about 1..=6), per
/// device and conversation; `forget_acked` drops rows at or below a cursor.
async fn acked_messages_are_left_out_per_device_and_forgotten_below_cursors(db: TestDb) {
    let batch: Vec<_> = (1..=10)
        .map(|i| single("alice", "bob", &format!("{i}")))
        .collect();
    db.store.append(&batch).await.unwrap();
    db.store
        .append(&[single("carol", "bob", "c1")])
        .await
        .unwrap();
    let (bob, conv, other) = (uid("bob"), "single_alice_bob", "single_bob_carol");
    let seqs = |device: &'static str, after: i64, up_to: i64, limit: u32| {
        let store = db.store.clone();
        let bob = bob.clone();
        async move {
            store
                .conversation_unacked(conv, after, up_to, &bob, device, limit)
                .await
                .unwrap()
                .into_iter()
                .map(|m| m.seq)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        seqs("phone", 0, 10, 100).await,
        (1..=10).collect::<Vec<_>>()
    );
    for s in [2, 3, 7, 10] {
        db.store
            .record_acked(&bob, "phone", conv, s, 1_000)
            .await
            .unwrap();
    }
    // idempotent
    db.store
        .record_acked(&bob, "phone", conv, 3, 1_000)
        .await
        .unwrap();
    db.store
        .record_acked(&bob, "phone", other, 1, 1_000)
        .await
        .unwrap();
    assert_eq!(seqs("phone", 0, 10, 100).await, vec![1, 4, 5, 6, 8, 9]);
    // the limit counts returned rows, not skipped ones
    assert_eq!(seqs("phone", 1, 10, 3).await, vec![4, 5, 6]);
    assert_eq!(seqs("phone", 6, 10, 100).await, vec![8, 9]);
    assert_eq!(seqs("phone", 9, 10, 100).await, Vec::<i64>::new());
    // another device of the same user, and another user, see everything
    assert_eq!(
        seqs("laptop", 0, 10, 100).await,
        (1..=10).collect::<Vec<_>>()
    );
    let alice_view = db
        .store
        .conversation_unacked(conv, 0, 10, &uid("alice"), "phone", 100)
        .await
        .unwrap();
    assert_eq!(alice_view.len(), 10);
    // forgetting below a cursor: rows <= 3 of conv go, 7 and 10 stay; other
    // conversations keep theirs unless listed
    let n = db
        .store
        .forget_acked(
            &bob,
            "phone",
            &[(conv.to_owned(), 3), ("group_x".to_owned(), 9)],
        )
        .await
        .unwrap();
    assert_eq!(n, 2);
    assert_eq!(
        seqs("phone", 0, 10, 100).await,
        vec![1, 2, 3, 4, 5, 6, 8, 9]
    );
    assert_eq!(
        db.store
            .conversation_unacked(other, 0, 1, &bob, "phone", 10)
            .await
            .unwrap()
            .len(),
        0
    );
    let n = db
        .store
        .forget_acked(
            &bob,
            "phone",
            &[(conv.to_owned(), 100), (other.to_owned(), 1)],
        )
        .await
        .unwrap();
    assert_eq!(n, 3);
    assert_eq!(
        seqs("phone", 0, 10, 100).await,
        (1..=10).collect::<Vec<_>>()
    );
    assert_eq!(
        db.store
            .forget_acked(&bob, "phone", &[(conv.to_owned(), 100)])
            .await
            .unwrap(),
        0
    );
}

/// `purge_acked` forgets the acknowledgements recorded before a time (a
/// login that stopped syncing), whoever and wherever they are; a repeated
/// ack keeps its first time; newer rows stay.
async fn acked_messages_older_than_the_retention_are_purged(db: TestDb) {
    let batch: Vec<_> = (1..=4)
        .map(|i| single("alice", "bob", &format!("{i}")))
        .collect();
    db.store.append(&batch).await.unwrap();
    let (bob, alice, conv) = (uid("bob"), uid("alice"), "single_alice_bob");
    let unacked = |user: im_core::UserId, device: &'static str| {
        let store = db.store.clone();
        async move {
            store
                .conversation_unacked(conv, 0, 4, &user, device, 100)
                .await
                .unwrap()
                .into_iter()
                .map(|m| m.seq)
                .collect::<Vec<_>>()
        }
    };
    let ack = |user: &im_core::UserId, device: &str, seq: i64, at: i64| {
        let (store, user, device) = (db.store.clone(), user.clone(), device.to_owned());
        async move {
            store
                .record_acked(&user, &device, conv, seq, at)
                .await
                .unwrap()
        }
    };
    ack(&bob, "old-phone", 1, 100).await;
    ack(&bob, "old-phone", 2, 200).await;
    ack(&bob, "new-phone", 1, 5_000).await;
    ack(&alice, "tablet", 3, 150).await;
    // a repeat keeps the first time: still due
    ack(&bob, "old-phone", 2, 9_000).await;
    assert_eq!(
        db.store.purge_acked(100).await.unwrap(),
        0,
        "strictly before"
    );
    assert_eq!(db.store.purge_acked(1_000).await.unwrap(), 3);
    assert_eq!(unacked(bob.clone(), "old-phone").await, vec![1, 2, 3, 4]);
    assert_eq!(unacked(alice.clone(), "tablet").await, vec![1, 2, 3, 4]);
    assert_eq!(unacked(bob.clone(), "new-phone").await, vec![2, 3, 4]);
    assert_eq!(db.store.purge_acked(1_000).await.unwrap(), 0);
}
