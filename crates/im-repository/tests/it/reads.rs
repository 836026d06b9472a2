//! Reads: ranges, lookups, memberships, deliveries, users, health.

use im_core::ports::{ConversationHead, HealthCheck, MessageStore, UserStore};

use crate::common::{group, open, single, uid};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conversation_range_bounds_and_limit() {
    let db = open().await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookups_by_client_and_server_id() {
    let db = open().await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_conversations_list_heads() {
    let db = open().await;
    db.store
        .append(&[
            single("alice", "bob", "1"),
            single("bob", "alice", "2"),
            group("g", "carol", &["alice", "carol"], "3"),
            single("carol", "dave", "4"),
        ])
        .await
        .unwrap();
    let heads = db.store.user_conversations(&uid("alice")).await.unwrap();
    assert_eq!(
        heads,
        vec![
            ConversationHead {
                conversation_id: "group_g".into(),
                max_seq: 1
            },
            ConversationHead {
                conversation_id: "single_alice_bob".into(),
                max_seq: 2
            },
        ]
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivered_seq_never_moves_backwards() {
    let db = open().await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_are_provisioned_by_touch() {
    let db = open().await;
    assert!(!db.store.exists(&uid("alice")).await.unwrap());
    db.store.touch(&uid("alice"), 1_000).await.unwrap();
    assert!(db.store.exists(&uid("alice")).await.unwrap());
    db.store.touch(&uid("alice"), 500).await.unwrap();
    db.store.touch(&uid("alice"), 2_000).await.unwrap();
    assert!(!db.store.exists(&uid("bob")).await.unwrap());
    db.store.ping().await.unwrap();
}
