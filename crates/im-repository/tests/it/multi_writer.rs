//! Several server processes writing the same conversations: two
//! independent stores (separate pools, or separate writer connections on
//! SQLite) append concurrently; seqs must stay gapless and unique, sync
//! cursors unique and in commit order, every send stored once, and no error
//! may surface that the writer's retry does not absorb.

use std::collections::{BTreeMap, HashMap, HashSet};

use im_core::model::NewMessage;
use im_core::ports::{Appended, MessageStore};
use im_repository::AnyStore;

use crate::append::read_stream;
use crate::common::{TestDb, append_retrying, group, single, store_tests, uid};
use crate::groups::create;

store_tests!(
    two_stores_keep_seqs_and_cursors_gapless,
    a_reader_following_its_cursor_sees_every_commit_once,
    two_stores_racing_the_same_sends_store_each_once,
    sharded_writers_with_large_batches_never_deadlock,
);

const USERS: [&str; 6] = ["u0", "u1", "u2", "u3", "u4", "u5"];

/// Batch `b` of writer `w`: 16 messages over two groups and every 1:1 pair
/// of six users, in an order that differs per writer and batch, so that
/// concurrent batches lock overlapping counters listed in different orders.
fn batch(w: usize, b: usize) -> Vec<NewMessage> {
    (0..16)
        .map(|i| {
            let k = (w * 7 + b * 5 + i * 3) % 17;
            let cid = format!("w{w}-b{b}-{i}");
            let from = USERS[(k + w) % 6];
            match k % 4 {
                0 => group("hot", from, &USERS, &cid),
                1 => group("warm", from, &USERS[..3], &cid),
                _ => {
                    let mut to = USERS[(k * 5 + b) % 6];
                    if to == from {
                        to = USERS[(k + w + 1) % 6];
                    }
                    single(from, to, &cid)
                }
            }
        })
        .collect()
}

async fn writer(store: AnyStore, w: usize, batches: usize) -> (Vec<Appended>, usize) {
    let mut out = Vec::new();
    let mut retries = 0;
    for b in 0..batches {
        let (res, r) = append_retrying(&store, &batch(w, b)).await;
        retries += r;
        out.extend(res);
    }
    (out, retries)
}

/// The groups of [`batch`], with the members its messages name.
async fn create_groups(store: &AnyStore) {
    create(store, "hot", USERS[0], &USERS[1..], 1).await;
    create(store, "warm", USERS[0], &USERS[1..3], 1).await;
}

/// Every conversation in `sent` reads back gapless from 1 with exactly the
/// sent messages; every user's sync stream has one entry per message they
/// take part in, by strictly increasing cursor up to their head, and no
/// cursor belongs to two messages.
async fn check_store(store: &AnyStore, sent: &[Appended], inputs: &[NewMessage]) {
    let mut per_conv: BTreeMap<&str, HashSet<&str>> = BTreeMap::new();
    for a in sent {
        per_conv
            .entry(&a.message.conversation_id)
            .or_default()
            .insert(&a.message.server_msg_id);
    }
    for (conv, ids) in &per_conv {
        let stored = store
            .conversation_range(conv, 0, i64::MAX, 100_000)
            .await
            .unwrap();
        assert_eq!(
            stored.iter().map(|m| m.seq).collect::<Vec<_>>(),
            (1..=stored.len() as i64).collect::<Vec<_>>(),
            "{conv}: seqs not gapless"
        );
        let got: HashSet<&str> = stored.iter().map(|m| m.server_msg_id.as_str()).collect();
        assert_eq!(&got, ids, "{conv}");
    }
    let by_server: HashMap<&str, &NewMessage> = inputs
        .iter()
        .map(|m| (m.server_msg_id.as_str(), m))
        .collect();
    let mut expected: HashMap<&str, usize> = HashMap::new();
    for a in sent.iter().filter(|a| !a.duplicate) {
        let m = by_server.get(a.message.server_msg_id.as_str()).unwrap();
        let distinct: HashSet<&str> = m.participants.iter().map(|p| p.as_str()).collect();
        for p in distinct {
            *expected.entry(p).or_default() += 1;
        }
    }
    let mut owner_of: HashMap<i64, String> = HashMap::new();
    for user in USERS {
        let head = store.inbox_head(&uid(user)).await.unwrap();
        let entries = read_stream(store, user, 0, 50).await;
        assert_eq!(entries.last().map_or(0, |e| e.cursor), head, "{user}");
        assert_eq!(
            entries.len(),
            expected.get(user).copied().unwrap_or(0),
            "{user}"
        );
        for e in entries {
            let id = owner_of
                .entry(e.cursor)
                .or_insert_with(|| e.message.server_msg_id.clone());
            assert_eq!(*id, e.message.server_msg_id, "cursor {} reused", e.cursor);
        }
    }
}

async fn two_stores_keep_seqs_and_cursors_gapless(db: TestDb) {
    const WRITERS: usize = 8;
    const BATCHES: usize = 20;
    create_groups(&db.store).await;
    let other = db.another().await;
    let tasks: Vec<_> = (0..WRITERS)
        .map(|w| {
            let store = if w % 2 == 0 {
                db.store.clone()
            } else {
                other.clone()
            };
            tokio::spawn(writer(store, w, BATCHES))
        })
        .collect();
    let mut sent = Vec::new();
    let mut retries = 0;
    for t in tasks {
        let (res, r) = t.await.unwrap();
        sent.extend(res);
        retries += r;
    }
    println!(
        "{}: {} messages from {WRITERS} writers on two stores, {retries} retried appends",
        db.backend(),
        sent.len()
    );
    // Every send is distinct and every writer locks counters in the same
    // order: nothing should have needed a retry. (Locking the conversations
    // in batch order instead makes this test see >100 deadlocks.)
    assert_eq!(retries, 0, "deadlocks or lock timeouts between writers");
    assert_eq!(sent.len(), WRITERS * BATCHES * 16);
    assert!(sent.iter().all(|a| !a.duplicate));
    let inputs: Vec<NewMessage> = (0..WRITERS)
        .flat_map(|w| (0..BATCHES).map(move |b| (w, b)))
        .flat_map(|(w, b)| batch(w, b))
        .collect();
    // `batch()` mints new server ids on every call: match inputs by client key
    let sent_ids: HashMap<(String, String), String> = sent
        .iter()
        .map(|a| {
            (
                (a.message.sender_id.clone(), a.message.client_msg_id.clone()),
                a.message.server_msg_id.clone(),
            )
        })
        .collect();
    let inputs: Vec<NewMessage> = inputs
        .into_iter()
        .map(|mut m| {
            m.server_msg_id = sent_ids
                .get(&(m.sender_id.as_str().to_owned(), m.client_msg_id.clone()))
                .unwrap()
                .clone();
            m
        })
        .collect();
    // both stores read the same thing
    check_store(&db.store, &sent, &inputs).await;
    check_store(&other, &sent, &inputs).await;
}

/// The commit-order guarantee of v1 sync: writers on two stores append
/// batches to many conversations of one user (disjoint per writer, so only
/// the sync clock orders them) while that user follows its cursor. If a
/// position could become visible before a lower one, the reader would move
/// past the lower one and never see it.
async fn a_reader_following_its_cursor_sees_every_commit_once(db: TestDb) {
    const WRITERS: usize = 4;
    const BATCHES: usize = 25;
    const BATCH: usize = 12;
    create(&db.store, "room", "reader", &["w0", "w1", "w2", "w3"], 1).await;
    let other = db.another().await;
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let store = if w % 2 == 0 {
                db.store.clone()
            } else {
                other.clone()
            };
            tokio::spawn(async move {
                let mut stored = Vec::new();
                for b in 0..BATCHES {
                    let batch: Vec<NewMessage> = (0..BATCH)
                        .map(|i| {
                            let cid = format!("w{w}-b{b}-{i}");
                            // writer w owns peers p<w>_* and every 4th batch
                            // also writes the shared group
                            if b % 4 == w && i == 0 {
                                group("room", &format!("w{w}"), &[], &cid)
                            } else {
                                single(&format!("p{w}_{}", (b + i) % 5), "reader", &cid)
                            }
                        })
                        .collect();
                    let (res, _) = append_retrying(&store, &batch).await;
                    stored.extend(res.into_iter().map(|a| a.message.server_msg_id));
                }
                stored
            })
        })
        .collect();
    // the reader polls while the writers run (small pages: it catches up
    // with the head often), and drains once they are done
    let mut seen: Vec<(i64, String)> = Vec::new();
    let mut cursor = 0;
    let mut polls = 0u32;
    while writers.iter().any(|w| !w.is_finished()) {
        let page = db
            .store
            .inbox_after(&uid("reader"), cursor, 5)
            .await
            .unwrap();
        polls += 1;
        for e in page {
            assert!(e.cursor > cursor);
            cursor = e.cursor;
            seen.push((e.cursor, e.message.server_msg_id));
        }
        tokio::task::yield_now().await;
    }
    let mut sent = HashSet::new();
    for w in writers {
        sent.extend(w.await.unwrap());
    }
    for e in read_stream(&other, "reader", cursor, 5).await {
        seen.push((e.cursor, e.message.server_msg_id));
    }
    println!(
        "{}: {} messages, {polls} polls while writing",
        db.backend(),
        seen.len()
    );
    assert_eq!(sent.len(), WRITERS * BATCHES * BATCH);
    assert!(
        seen.windows(2).all(|w| w[0].0 < w[1].0),
        "cursors not increasing"
    );
    let ids: Vec<&String> = seen.iter().map(|(_, id)| id).collect();
    let distinct: HashSet<&String> = ids.iter().copied().collect();
    assert_eq!(distinct.len(), ids.len(), "a message was seen twice");
    let missed: Vec<&String> = sent.iter().filter(|id| !distinct.contains(id)).collect();
    assert!(
        missed.is_empty(),
        "the reader skipped {} messages",
        missed.len()
    );
    assert_eq!(
        db.store.inbox_head(&uid("reader")).await.unwrap(),
        cursor.max(seen.last().unwrap().0)
    );
}

async fn two_stores_racing_the_same_sends_store_each_once(db: TestDb) {
    // A client resending through two nodes at once: the same
    // (sender, client_msg_id) reaches both stores concurrently.
    create_groups(&db.store).await;
    let other = db.another().await;
    let mut sent = Vec::new();
    let mut inputs = Vec::new();
    let mut retries = 0;
    for round in 0..10 {
        let batch: Vec<NewMessage> = (0..12)
            .map(|i| {
                let cid = format!("r{round}-{i}");
                if i % 3 == 0 {
                    group("hot", USERS[i % 6], &USERS, &cid)
                } else {
                    single(USERS[i % 6], USERS[(i + 1) % 6], &cid)
                }
            })
            .collect();
        // the copy the other node got: same keys, its own server ids
        let copy: Vec<NewMessage> = batch
            .iter()
            .map(|m| {
                let mut c = m.clone();
                c.server_msg_id = format!("{}-copy", m.server_msg_id);
                c
            })
            .collect();
        let (a, b) = tokio::join!(
            append_retrying(&db.store, &batch),
            append_retrying(&other, &copy)
        );
        let ((a, ra), (b, rb)) = (a, b);
        retries += ra + rb;
        for (x, y) in a.iter().zip(&b) {
            // both got the one stored message; exactly one of them stored it
            assert_eq!(x.message, y.message);
            assert!(x.duplicate != y.duplicate, "{x:?} / {y:?}");
        }
        sent.extend(a.into_iter().filter(|x| !x.duplicate));
        sent.extend(b.into_iter().filter(|y| !y.duplicate));
        inputs.extend(batch);
        inputs.extend(copy);
    }
    println!("{}: {retries} retried appends", db.backend());
    assert_eq!(sent.len(), 10 * 12);
    check_store(&db.store, &sent, &inputs).await;
}

/// The service's writer shards conversations over its workers: concurrent
/// appends then touch disjoint conversations but share users. With large
/// batches (hundreds of conversations per statement) no lock taken for one
/// writer's conversations may wait for another's: a plan that scanned the
/// counter table under `FOR UPDATE` did, and deadlocked on MySQL.
async fn sharded_writers_with_large_batches_never_deadlock(db: TestDb) {
    const WRITERS: usize = 4;
    const BATCHES: usize = 8;
    const BATCH: usize = 256;
    let users: Vec<String> = (0..300).map(|i| format!("m{i}")).collect();
    // writer w owns the 1:1 conversations {a, z} with (3 min + max) % WRITERS == w
    let make = |w: usize, b: usize| -> Vec<NewMessage> {
        let mut out = Vec::with_capacity(BATCH);
        let mut k: u64 = (w * 7919 + b * 104_729) as u64;
        while out.len() < BATCH {
            // a small LCG: pseudo-random pairs
            k = k.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            let (a, z) = (((k >> 33) % 300) as usize, ((k >> 13) % 300) as usize);
            if a == z || (3 * a.min(z) + a.max(z)) % WRITERS != w {
                continue;
            }
            let cid = format!("w{w}-b{b}-{}", out.len());
            out.push(single(&users[a], &users[z], &cid));
        }
        out
    };
    let other = db.another().await;
    let tasks: Vec<_> = (0..WRITERS)
        .map(|w| {
            let store = if w % 2 == 0 {
                db.store.clone()
            } else {
                other.clone()
            };
            let batches: Vec<Vec<NewMessage>> = (0..BATCHES).map(|b| make(w, b)).collect();
            tokio::spawn(async move {
                let mut out = Vec::new();
                let mut retries = 0;
                for batch in &batches {
                    let (res, r) = append_retrying(&store, batch).await;
                    retries += r;
                    out.extend(res);
                }
                (out, retries)
            })
        })
        .collect();
    let mut sent = Vec::new();
    let mut retries = 0;
    for t in tasks {
        let (res, r) = t.await.unwrap();
        sent.extend(res);
        retries += r;
    }
    println!("{}: {retries} retried appends", db.backend());
    assert_eq!(
        retries, 0,
        "writers on disjoint conversations waited on each other"
    );
    assert_eq!(sent.len(), WRITERS * BATCHES * BATCH);
    let mut per_conv: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    for a in &sent {
        per_conv
            .entry(&a.message.conversation_id)
            .or_default()
            .push(a.message.seq);
    }
    for (conv, mut seqs) in per_conv {
        seqs.sort_unstable();
        assert_eq!(seqs, (1..=seqs.len() as i64).collect::<Vec<_>>(), "{conv}");
    }
}
