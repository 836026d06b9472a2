//! `MessageStore::append`: seq allocation, dedupe, v1 sync positions,
//! batching — the same tests on every backend.

use std::collections::HashMap;

use im_core::ports::{GroupStore, InboxEntry, MessageStore};

use im_repository::AnyStore;

use crate::common::{TestDb, append_retrying, group, single, store_tests, uid};
use crate::groups::{create, members};

store_tests!(
    seqs_are_gapless_from_one_across_batches,
    one_batch_touching_several_conversations,
    dedupe_against_the_store,
    dedupe_within_a_batch,
    inbox_pages_through_every_conversation_in_commit_order,
    inbox_follows_current_group_membership,
    large_batch_is_chunked,
    concurrent_appends_keep_seqs_gapless_and_unique,
    a_failed_batch_stores_nothing_and_consumes_no_seq,
    a_cancelled_append_is_all_or_nothing,
);

fn seqs(res: &[im_core::ports::Appended]) -> Vec<i64> {
    res.iter().map(|a| a.message.seq).collect()
}

async fn seqs_are_gapless_from_one_across_batches(db: TestDb) {
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

async fn one_batch_touching_several_conversations(db: TestDb) {
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

async fn dedupe_against_the_store(db: TestDb) {
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

async fn dedupe_within_a_batch(db: TestDb) {
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

/// Every entry of `user`'s sync stream after `after`, paged by `page`:
/// checks that cursors strictly increase and pages are at most `page` long.
pub(crate) async fn read_stream(
    store: &AnyStore,
    user: &str,
    mut after: i64,
    page: u32,
) -> Vec<InboxEntry> {
    let mut got: Vec<InboxEntry> = Vec::new();
    loop {
        let entries = store.inbox_after(&uid(user), after, page).await.unwrap();
        if entries.is_empty() {
            return got;
        }
        assert!(entries.len() <= page as usize);
        for e in entries {
            assert!(
                e.cursor > after,
                "{user}: cursor {} after {after}",
                e.cursor
            );
            after = e.cursor;
            got.push(e);
        }
    }
}

async fn inbox_pages_through_every_conversation_in_commit_order(db: TestDb) {
    let members = ["alice", "bob", "carol"];
    create(&db.store, "g", "carol", &["alice", "bob"], 1).await;
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
        // page through with limit 3: commit order, each message once
        let got = read_stream(&db.store, user, 0, 3).await;
        assert_eq!(
            got.iter()
                .map(|e| e.message.server_msg_id.clone())
                .collect::<Vec<_>>(),
            want,
            "{user}"
        );
        assert_eq!(got.last().unwrap().cursor, head, "{user}: head");
        // a cursor in the middle continues right after it
        let mid = got.get(4).unwrap().cursor;
        let rest = read_stream(&db.store, user, mid, 100).await;
        assert_eq!(rest, got.get(5..).unwrap().to_vec(), "{user}");
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
        // the backlog after a cursor is a count of messages, capped
        let me = uid(user);
        let count = |after, cap| db.store.inbox_count_after(&me, after, cap);
        assert_eq!(count(0, 1_000).await.unwrap(), want.len() as u64, "{user}");
        assert_eq!(count(mid, 1_000).await.unwrap(), (got.len() - 5) as u64);
        assert_eq!(count(0, 2).await.unwrap(), 2);
        assert_eq!(count(0, 0).await.unwrap(), 0);
        assert_eq!(count(head, 1_000).await.unwrap(), 0);
        // a cursor from nowhere (negative, past the head) is just a position
        assert_eq!(read_stream(&db.store, user, -5, 100).await, got);
        assert!(read_stream(&db.store, user, i64::MAX, 10).await.is_empty());
    }
    // cursors are one clock: alice's and bob's streams interleave, and
    // every position handed out is unique
    let mut all: Vec<i64> = Vec::new();
    for user in members {
        all.extend(
            read_stream(&db.store, user, 0, 100)
                .await
                .iter()
                .map(|e| e.cursor),
        );
    }
    all.sort_unstable();
    all.dedup();
    assert_eq!(all, (1..=16).collect::<Vec<_>>());
    assert_eq!(db.store.inbox_head(&uid("nobody")).await.unwrap(), 0);
    assert!(
        db.store
            .inbox_after(&uid("nobody"), 0, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

/// v1 sync serves the conversations a user is a member of when they sync:
/// a member who joins later reads the earlier group history from cursor 0
/// (as SYNC_RANGE lets members); a removed member stops getting the group;
/// a member who was offline gets everything after their cursor.
async fn inbox_follows_current_group_membership(db: TestDb) {
    let s = &db.store;
    create(s, "g", "owner", &["early", "leaver"], 1).await;
    let all = ["owner", "early", "leaver"];
    let before = s
        .append(&[
            group("g", "owner", &all, "1"),
            group("g", "early", &all, "2"),
        ])
        .await
        .unwrap();
    // "early" saw the first message, then went offline
    let cursor = s
        .inbox_after(&uid("early"), 0, 1)
        .await
        .unwrap()
        .first()
        .unwrap()
        .cursor;
    s.add_members("g", &members("g", &["late"], 2), 500)
        .await
        .unwrap();
    s.remove_members("g", &["leaver".to_owned()]).await.unwrap();
    let after = s
        .append(&[
            group("g", "owner", &["owner", "early", "late"], "3"),
            single("leaver", "owner", "4"),
        ])
        .await
        .unwrap();
    let ids = |v: &[InboxEntry]| -> Vec<String> {
        v.iter().map(|e| e.message.client_msg_id.clone()).collect()
    };
    // offline member: everything after their cursor, once
    assert_eq!(ids(&read_stream(s, "early", cursor, 10).await), ["2", "3"]);
    // late joiner: the whole group history
    assert_eq!(ids(&read_stream(s, "late", 0, 10).await), ["1", "2", "3"]);
    assert_eq!(
        s.inbox_head(&uid("late")).await.unwrap(),
        read_stream(s, "late", 0, 10).await.last().unwrap().cursor
    );
    // removed member: only their 1:1 conversation
    assert_eq!(ids(&read_stream(s, "leaver", 0, 10).await), ["4"]);
    assert_eq!(
        ids(&read_stream(s, "owner", 0, 10).await),
        ["1", "2", "3", "4"]
    );
    assert!(before.iter().chain(&after).all(|a| !a.duplicate));
}

async fn large_batch_is_chunked(db: TestDb) {
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
    // m2 is in every 1:1 conversation, the last message of the batch is
    // one of them; m3 is a member of no group (no GroupStore here), so has
    // no conversations
    assert_eq!(db.store.inbox_head(&uid("m2")).await.unwrap(), 5_000);
    let m2 = db.store.inbox_after(&uid("m2"), 0, 10_000).await.unwrap();
    assert_eq!(m2.len(), 2_500);
    assert!(m2.windows(2).all(|w| w[0].cursor < w[1].cursor));
    assert_eq!(db.store.inbox_head(&uid("m3")).await.unwrap(), 0);
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

pub(crate) fn check_gapless(all: &[im_core::ports::Appended]) {
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

/// 15 batches of 8 messages over a shared group, a shared 1:1 and a
/// per-task 1:1; retries retryable errors like the writer. Returns what was
/// appended and how many attempts failed.
pub(crate) async fn hammer(store: AnyStore, task: usize) -> (Vec<im_core::ports::Appended>, usize) {
    let members = ["p0", "p1", "p2", "p3"];
    let mut out = Vec::new();
    let mut retries = 0;
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
        let (res, failed) = append_retrying(&store, &batch).await;
        retries += failed;
        out.extend(res);
    }
    (out, retries)
}

async fn concurrent_appends_keep_seqs_gapless_and_unique(db: TestDb) {
    let tasks: Vec<_> = (0..8)
        .map(|t| tokio::spawn(hammer(db.store.clone(), t)))
        .collect();
    let mut all = Vec::new();
    let mut retries = 0;
    for t in tasks {
        let (res, r) = t.await.unwrap();
        all.extend(res);
        retries += r;
    }
    println!("{}: {retries} retried appends", db.backend());
    assert_eq!(retries, 0, "deadlocks or lock timeouts between writers");
    assert_eq!(all.len(), 8 * 15 * 8);
    assert!(all.iter().all(|a| !a.duplicate));
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
    // p0's sync stream: every message of its 1:1 conversations once, by
    // increasing cursor, ending at the head (group_shared has no members here)
    let p0_head = db.store.inbox_head(&uid("p0")).await.unwrap();
    let p0_all = read_stream(&db.store, "p0", 0, 7).await;
    let mine = all
        .iter()
        .filter(|a| ["single_p0_p1", "single_p0_p9"].contains(&a.message.conversation_id.as_str()))
        .count();
    assert_eq!(p0_all.len(), mine);
    assert_eq!(p0_all.last().unwrap().cursor, p0_head);
}

async fn a_failed_batch_stores_nothing_and_consumes_no_seq(db: TestDb) {
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

async fn a_cancelled_append_is_all_or_nothing(db: TestDb) {
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
        // On a server backend the abandoned transaction may still be running
        // (it commits or rolls back on its own task): this one then waits for
        // its locks and may conflict with it, which the writer would retry.
        let (res, _) = append_retrying(&db.store, &batch).await;
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
