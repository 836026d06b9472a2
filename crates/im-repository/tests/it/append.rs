//! `MessageStore::append`: seq allocation, dedupe, inbox, batching.

use std::collections::HashMap;

use im_core::ports::MessageStore;
use im_repository::SqliteStore;

use crate::common::{group, open, options_in, single, uid};

fn seqs(res: &[im_core::ports::Appended]) -> Vec<i64> {
    res.iter().map(|a| a.message.seq).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seqs_are_gapless_from_one_across_batches() {
    let db = open().await;
    let mut all = Vec::new();
    for b in 0..5 {
        let batch: Vec<_> = (0..7)
            .map(|i| single("alice", "bob", &format!("c{b}-{i}")))
            .collect();
        let res = db.store.append(&batch).await.unwrap();
        assert!(res.iter().all(|a| !a.duplicate));
        all.extend(seqs(&res));
    }
    assert_eq!(all, (1..=35).collect::<Vec<_>>());
    let heads = db.store.user_conversations(&uid("alice")).await.unwrap();
    assert_eq!(heads.len(), 1);
    assert_eq!(heads.first().unwrap().max_seq, 35);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_batch_touching_several_conversations() {
    let db = open().await;
    let batch = vec![
        single("alice", "bob", "1"),
        group("g1", "alice", &["alice", "bob", "carol"], "2"),
        single("carol", "alice", "3"),
        single("bob", "alice", "4"),
        group("g1", "carol", &["alice", "bob", "carol"], "5"),
        single("alice", "bob", "6"),
    ];
    let res = db.store.append(&batch).await.unwrap();
    assert_eq!(seqs(&res), vec![1, 1, 1, 2, 2, 3]);
    // results echo the inputs, in order
    for (a, m) in res.iter().zip(&batch) {
        assert_eq!(a.message.server_msg_id, m.server_msg_id);
        assert_eq!(a.message.conversation_id, m.conversation_id);
        assert_eq!(a.message.content, m.content);
        assert_eq!(a.message.revoked, None);
    }
    // a second batch continues each counter
    let res = db
        .store
        .append(&[
            group("g1", "bob", &["alice", "bob", "carol"], "7"),
            single("alice", "carol", "8"),
        ])
        .await
        .unwrap();
    assert_eq!(seqs(&res), vec![3, 2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dedupe_against_the_store() {
    let db = open().await;
    let first = db
        .store
        .append(&[single("alice", "bob", "same")])
        .await
        .unwrap();
    let original = first.first().unwrap().message.clone();
    assert_eq!(original.seq, 1);
    let head_before = db.store.inbox_head(&uid("bob")).await.unwrap();

    let mut retry = single("alice", "bob", "same");
    retry.content = bytes::Bytes::from_static(b"different body");
    let retry_id = retry.server_msg_id.clone();
    let res = db
        .store
        .append(&[retry, single("alice", "bob", "next")])
        .await
        .unwrap();
    let dup = res.first().unwrap();
    assert!(dup.duplicate);
    assert_eq!(dup.message, original);
    // no seq was consumed by the duplicate
    assert_eq!(res.get(1).unwrap().message.seq, 2);
    assert!(!res.get(1).unwrap().duplicate);
    // nothing of the retry was stored
    assert_eq!(db.store.find_by_server_id(&retry_id).await.unwrap(), None);
    assert_eq!(
        db.store.inbox_head(&uid("bob")).await.unwrap(),
        head_before + 1
    );
    // a different sender may reuse the client id
    let other = db
        .store
        .append(&[single("bob", "alice", "same")])
        .await
        .unwrap();
    assert!(!other.first().unwrap().duplicate);
    assert_eq!(other.first().unwrap().message.seq, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dedupe_within_a_batch() {
    let db = open().await;
    let a = single("alice", "bob", "x");
    let b = single("alice", "bob", "x"); // same key, other server id
    let b_id = b.server_msg_id.clone();
    let res = db
        .store
        .append(&[a.clone(), single("alice", "bob", "y"), b])
        .await
        .unwrap();
    assert_eq!(seqs(&res), vec![1, 2, 1]);
    assert_eq!(
        res.iter().map(|r| r.duplicate).collect::<Vec<_>>(),
        vec![false, false, true]
    );
    assert_eq!(res.get(2).unwrap().message, res.first().unwrap().message);
    assert_eq!(res.get(2).unwrap().message.server_msg_id, a.server_msg_id);
    assert_eq!(db.store.find_by_server_id(&b_id).await.unwrap(), None);
    assert_eq!(db.store.inbox_head(&uid("alice")).await.unwrap(), 2);

    // a batch of nothing but duplicates stores nothing
    let res = db.store.append(&[a.clone(), a]).await.unwrap();
    assert!(res.iter().all(|r| r.duplicate && r.message.seq == 1));
    assert_eq!(db.store.inbox_head(&uid("alice")).await.unwrap(), 2);
    assert!(db.store.append(&[]).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbox_cursors_are_contiguous_per_participant_and_page() {
    let db = open().await;
    let members = ["alice", "bob", "carol"];
    let mut batches = Vec::new();
    for b in 0..4 {
        batches.push(vec![
            single("alice", "bob", &format!("ab{b}")),
            group("g", "carol", &members, &format!("g{b}")),
            single("carol", "alice", &format!("ca{b}")),
            // a participant listed twice gets one entry
            {
                let mut m = single("bob", "alice", &format!("ba{b}"));
                m.participants.push(uid("bob"));
                m
            },
        ]);
    }
    let mut expected: HashMap<&str, Vec<String>> = HashMap::new();
    for batch in &batches {
        let res = db.store.append(batch).await.unwrap();
        for (a, m) in res.iter().zip(batch) {
            let mut seen = Vec::new();
            for p in &m.participants {
                if !seen.contains(p) {
                    seen.push(p.clone());
                    let user = members.iter().find(|u| **u == p.as_str()).unwrap();
                    expected
                        .entry(user)
                        .or_default()
                        .push(a.message.server_msg_id.clone());
                }
            }
        }
    }
    for user in members {
        let want = expected.get(user).cloned().unwrap_or_default();
        let head = db.store.inbox_head(&uid(user)).await.unwrap();
        assert_eq!(head, want.len() as i64, "{user}");
        // page through with limit 3
        let mut after = 0;
        let mut got = Vec::new();
        loop {
            let page = db.store.inbox_after(&uid(user), after, 3).await.unwrap();
            if page.is_empty() {
                break;
            }
            assert!(page.len() <= 3);
            for e in page {
                assert_eq!(e.cursor, after + 1, "contiguous cursors for {user}");
                after = e.cursor;
                got.push(e.message.server_msg_id);
            }
        }
        assert_eq!(got, want, "{user}");
        assert!(
            db.store
                .inbox_after(&uid(user), head, 10)
                .await
                .unwrap()
                .is_empty()
        );
        assert!(
            db.store
                .inbox_after(&uid(user), 0, 0)
                .await
                .unwrap()
                .is_empty()
        );
    }
    assert_eq!(db.store.inbox_head(&uid("nobody")).await.unwrap(), 0);
    assert!(
        db.store
            .inbox_after(&uid("nobody"), 0, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_batch_is_chunked() {
    let db = open().await;
    let members = ["m1", "m2", "m3"];
    // 5000 messages over 50 groups and 1:1s: every multi-row statement needs
    // several chunks.
    let batch: Vec<_> = (0..5_000)
        .map(|i| {
            if i % 2 == 0 {
                group(&format!("g{}", i % 50), "m1", &members, &format!("c{i}"))
            } else {
                single(&format!("u{}", i % 97), "m2", &format!("c{i}"))
            }
        })
        .collect();
    let res = db.store.append(&batch).await.unwrap();
    assert_eq!(res.len(), 5_000);
    let mut per_conv: HashMap<&str, Vec<i64>> = HashMap::new();
    for a in &res {
        assert!(!a.duplicate);
        per_conv
            .entry(&a.message.conversation_id)
            .or_default()
            .push(a.message.seq);
    }
    for (conv, s) in per_conv {
        assert_eq!(s, (1..=s.len() as i64).collect::<Vec<_>>(), "{conv}");
    }
    assert_eq!(db.store.inbox_head(&uid("m2")).await.unwrap(), 5_000);
    assert_eq!(db.store.inbox_head(&uid("m3")).await.unwrap(), 2_500);
    // and all of it dedupes as one batch too
    let again = db.store.append(&batch).await.unwrap();
    assert!(again.iter().all(|a| a.duplicate));
    assert_eq!(
        again,
        res.into_iter()
            .map(|mut a| {
                a.duplicate = true;
                a
            })
            .collect::<Vec<_>>()
    );
}

fn check_gapless(all: &[im_core::ports::Appended]) {
    let mut per_conv: HashMap<String, Vec<i64>> = HashMap::new();
    for a in all {
        per_conv
            .entry(a.message.conversation_id.clone())
            .or_default()
            .push(a.message.seq);
    }
    for (conv, mut s) in per_conv {
        s.sort_unstable();
        assert_eq!(s, (1..=s.len() as i64).collect::<Vec<_>>(), "{conv}");
    }
}

async fn hammer(store: SqliteStore, task: usize) -> Vec<im_core::ports::Appended> {
    let members = ["p0", "p1", "p2", "p3"];
    let mut out = Vec::new();
    for b in 0..15 {
        let batch: Vec<_> = (0..8)
            .map(|i| {
                let cid = format!("t{task}-b{b}-{i}");
                match i % 3 {
                    0 => group("shared", members.get(task % 4).unwrap(), &members, &cid),
                    1 => single("p0", "p1", &cid),
                    _ => single(&format!("p{}", task % 4), "p9", &cid),
                }
            })
            .collect();
        out.extend(store.append(&batch).await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_keep_seqs_gapless_and_unique() {
    let db = open().await;
    let tasks: Vec<_> = (0..8)
        .map(|t| tokio::spawn(hammer(db.store.clone(), t)))
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    assert_eq!(all.len(), 8 * 15 * 8);
    check_gapless(&all);
    // what the store reports agrees with what append returned
    let shared = db
        .store
        .conversation_range("group_shared", 0, i64::MAX, 10_000)
        .await
        .unwrap();
    assert_eq!(
        shared.iter().map(|m| m.seq).collect::<Vec<_>>(),
        (1..=shared.len() as i64).collect::<Vec<_>>()
    );
    let p0_head = db.store.inbox_head(&uid("p0")).await.unwrap();
    let p0_all = db.store.inbox_after(&uid("p0"), 0, 100_000).await.unwrap();
    assert_eq!(p0_all.len() as i64, p0_head);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_stores_on_one_file_stay_gapless() {
    // Two independent stores (as two processes would be) writing the same
    // file: BEGIN IMMEDIATE + busy_timeout serialize their transactions.
    let dir = tempfile::tempdir().unwrap();
    let a = SqliteStore::open(options_in(&dir)).await.unwrap();
    let b = SqliteStore::open(options_in(&dir)).await.unwrap();
    let tasks: Vec<_> = (0..6)
        .map(|t| {
            let s = if t % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(hammer(s, t))
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    check_gapless(&all);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_batch_stores_nothing_and_consumes_no_seq() {
    let db = open().await;
    let first = single("alice", "bob", "1");
    let taken_id = first.server_msg_id.clone();
    db.store.append(&[first]).await.unwrap();

    let mut clash = single("alice", "bob", "3");
    clash.server_msg_id = taken_id; // server ids are unique
    let err = db
        .store
        .append(&[single("alice", "bob", "2"), clash])
        .await
        .unwrap_err();
    assert!(matches!(err, im_core::StoreError::Conflict(_)), "{err:?}");

    assert_eq!(
        db.store
            .conversation_range("single_alice_bob", 0, 100, 100)
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(db.store.inbox_head(&uid("bob")).await.unwrap(), 1);
    assert_eq!(
        db.store
            .find_by_client_id(&uid("alice"), "2")
            .await
            .unwrap(),
        None
    );
    let next = db
        .store
        .append(&[single("alice", "bob", "2")])
        .await
        .unwrap();
    assert_eq!(next.first().unwrap().message.seq, 2);
    assert_eq!(db.store.inbox_head(&uid("bob")).await.unwrap(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_append_is_all_or_nothing() {
    let db = open().await;
    for round in 0..5 {
        let batch: Vec<_> = (0..500)
            .map(|i| single("alice", "bob", &format!("r{round}-{i}")))
            .collect();
        // Give up on the call almost at once: the transaction must still
        // either commit whole or not at all, and the store must stay usable.
        let _ = tokio::time::timeout(
            std::time::Duration::from_micros(50),
            db.store.append(&batch),
        )
        .await;
        let res = db.store.append(&batch).await.unwrap();
        let dups = res.iter().filter(|a| a.duplicate).count();
        assert!(dups == 0 || dups == 500, "partial batch: {dups}");
    }
    let all = db
        .store
        .conversation_range("single_alice_bob", 0, i64::MAX, 10_000)
        .await
        .unwrap();
    assert_eq!(all.len(), 2_500);
    assert_eq!(
        all.iter().map(|m| m.seq).collect::<Vec<_>>(),
        (1..=2_500).collect::<Vec<_>>()
    );
    assert_eq!(db.store.inbox_head(&uid("alice")).await.unwrap(), 2_500);
}
