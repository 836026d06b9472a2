//! Multi-node end to end: several real `im-server` processes behind no load
//! balancer at all (clients pick a node), sharing one PostgreSQL database and
//! one Redis, as docs/operations.md describes. Every assertion is about what
//! a client sees.
//!
//! Needs `IM_TEST_POSTGRES_URL` (an account that may create databases) and
//! `IM_TEST_REDIS_URL`; without them every test prints why and passes, unless
//! `IM_TEST_REQUIRE_BACKENDS=1` (CI), which makes that a failure. The Redis
//! outage tests also need `redis-server` on `PATH` (they run a private one).
//!
//! Each test gets its own scratch database, its own `redis.key_prefix` (its
//! keys are deleted afterwards), its own node ids and ports. At most
//! `IM_TEST_MULTINODE_JOBS` (default 2) clusters run at once, so a small
//! machine is not swamped by a dozen server processes. Set
//! `IM_TEST_MULTINODE_RUST_LOG` to pass a `RUST_LOG` to the nodes; their logs
//! are printed when a test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod client;
mod harness;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use im_client::Client;
use im_core::command::{Event, Reply, Request};
use im_core::{ErrorCode, Generation, StoredMessage};

use client::{
    QUIET, WAIT, all_messages, assert_auth_ok, assert_no_message, batch_sync_after,
    contiguous_cursor, conv, create_group, drain_messages, next_matching, next_message,
    poll_status, send, status_of, text_req,
};
use harness::{Backends, Cluster, ClusterOptions, PrivateRedis, REFRESH, ROUTE_TTL};

// ---------------------------------------------------------------------------
// The harness itself, and what a shared database gives without Redis
// ---------------------------------------------------------------------------

/// Three processes start, become ready and share one database: an account
/// registered on node 1 logs in on node 3 and authenticates a socket on node
/// 2; messages written on different nodes into one conversation get gapless
/// seqs from the database, and a user who was offline syncs them on any
/// node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn harness_three_nodes_share_one_database() {
    let Some(c) = Cluster::start(3).await else {
        return;
    };
    assert_eq!(c.node_count(), 3);
    let ids: HashSet<&str> = (1..=3).map(|i| c.node(i).id.as_str()).collect();
    assert_eq!(ids.len(), 3, "distinct node ids");
    for i in 1..=3 {
        let (status, v) = c
            .api(i, None, "GET", "/health", &serde_json::Value::Null)
            .await;
        assert_eq!(status, 200, "node {i}: {v}");
    }
    let register =
        serde_json::json!({"username": "ulla", "password": "correct horse", "nickname": "Ulla"});
    let (status, v) = c
        .api(1, None, "POST", "/api/auth/register", &register)
        .await;
    assert_eq!(status, 200, "{v}");
    let login =
        serde_json::json!({"username": "ulla", "password": "correct horse", "platform": "iOS"});
    let (status, v) = c.api(3, None, "POST", "/api/auth/login", &login).await;
    assert_eq!(
        status, 200,
        "a user registered on node 1 logs in on node 3: {v}"
    );
    let token = v["data"]["token"].as_str().unwrap().to_owned();
    let mut ulla = Client::connect_tcp(c.node(2).addrs.tcp).await.unwrap();
    assert_auth_ok(ulla.auth("ulla", &token, "iOS").await.unwrap());

    // alice (node 1) and bob (node 3) write the same conversation in turn.
    let ab = conv("alice", "bob");
    let mut alice = c.tcp(1, "alice", "iOS").await;
    let mut bob = c.tcp(3, "bob", "iOS").await;
    let mut acked = BTreeMap::new();
    for i in 0..6 {
        let (sender, cid) = if i % 2 == 0 {
            (&mut alice, format!("a-{i}"))
        } else {
            (&mut bob, format!("b-{i}"))
        };
        let (id, seq) = send(sender, &ab, &cid).await;
        acked.insert(seq, (id, cid));
    }
    assert_eq!(
        acked.keys().copied().collect::<Vec<_>>(),
        (1..=6).collect::<Vec<_>>(),
        "seqs from the database are gapless across nodes"
    );
    // A reader on node 2 sees the conversation exactly as acknowledged.
    let mut alice_web = c.ws(2, "alice", Generation::V2, "Web").await;
    let msgs = batch_sync_after(&mut alice_web, &ab, 0).await;
    let got: Vec<(i64, String, String)> = msgs
        .iter()
        .map(|m| (m.seq, m.server_msg_id.clone(), m.client_msg_id.clone()))
        .collect();
    let want: Vec<(i64, String, String)> = acked
        .iter()
        .map(|(s, (id, cid))| (*s, id.clone(), cid.clone()))
        .collect();
    assert_eq!(got, want);
}

// ---------------------------------------------------------------------------
// 1:1
// ---------------------------------------------------------------------------

/// alice (two devices) and bob exchange messages; every other session of
/// both users gets each message once, the sending session none.
async fn exchange(alice: &mut Client, alice_web: &mut Client, bob: &mut Client) {
    let ab = conv("alice", "bob");
    let (id, seq) = send(alice, &ab, "hello-bob").await;
    let m = next_message(bob).await.expect("bob gets alice's message");
    assert_eq!(
        (m.server_msg_id.as_str(), m.seq, m.sender_id.as_str()),
        (id.as_str(), seq, "alice")
    );
    let m = next_message(alice_web)
        .await
        .expect("alice's other device gets her own message (multi-device sync)");
    assert_eq!((m.server_msg_id.as_str(), m.seq), (id.as_str(), seq));
    // bob speaks v1, whose SEND_MSG_RSP carries no server id: compare by
    // client id and seq.
    let (_, seq) = send(bob, &ab, "hello-alice").await;
    for (who, c) in [("alice iOS", &mut *alice), ("alice Web", &mut *alice_web)] {
        let m = next_message(c)
            .await
            .unwrap_or_else(|| panic!("{who} gets bob's message"));
        assert_eq!(
            (m.client_msg_id.as_str(), m.seq, m.sender_id.as_str()),
            ("hello-alice", seq, "bob"),
            "{who}"
        );
    }
    assert_no_message(alice, "alice iOS").await;
    assert_no_message(alice_web, "alice Web").await;
    assert_no_message(bob, "bob").await;
}

/// Control: every session on one node of a 3-node cluster (Redis enabled).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_to_one_on_one_node_of_a_cluster() {
    let Some(c) = Cluster::start(3).await else {
        return;
    };
    let mut alice = c.tcp(2, "alice", "iOS").await;
    let mut alice_web = c.ws(2, "alice", Generation::V2, "Web").await;
    let mut bob = c.ws(2, "bob", Generation::V1, "Android").await;
    exchange(&mut alice, &mut alice_web, &mut bob).await;
}

/// alice on node 1, bob on node 2, alice's second device on node 3.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_to_one_across_nodes() {
    let Some(c) = Cluster::start(3).await else {
        return;
    };
    let mut alice = c.tcp(1, "alice", "iOS").await;
    let mut bob = c.ws(2, "bob", Generation::V1, "Android").await;
    let mut alice_web = c.ws(3, "alice", Generation::V2, "Web").await;
    exchange(&mut alice, &mut alice_web, &mut bob).await;
}

// ---------------------------------------------------------------------------
// Groups
// ---------------------------------------------------------------------------

/// Members spread over three nodes (some sharing the sender's node, one with
/// two devices on two nodes) each get a group message exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_fan_out_across_three_nodes_once_each() {
    let Some(c) = Cluster::start(3).await else {
        return;
    };
    let gid = create_group(&c, 3, "alice", &["bob", "carol", "dave", "erin"]).await;
    let group = format!("group_{gid}");
    let mut sessions: Vec<(&str, Client)> = vec![
        ("alice", c.tcp(1, "alice", "iOS").await),
        ("dave", c.tcp(1, "dave", "iOS").await),
        ("bob", c.tcp(2, "bob", "iOS").await),
        ("erin", c.ws(2, "erin", Generation::V2, "iOS").await),
        ("carol", c.tcp(3, "carol", "iOS").await),
        ("erin-web", c.ws(3, "erin", Generation::V2, "Web").await),
    ];
    // From node 1, then from node 3.
    for (sender, cid) in [("alice", "g-from-1"), ("carol", "g-from-3")] {
        let s = sessions.iter().position(|(n, _)| *n == sender).unwrap();
        let (id, seq) = send(&mut sessions[s].1, &group, cid).await;
        for (who, client) in &mut sessions {
            if *who == sender {
                continue;
            }
            let m = next_message(client)
                .await
                .unwrap_or_else(|| panic!("{who} gets {cid} from {sender}"));
            assert_eq!(
                (m.server_msg_id.as_str(), m.seq, m.group_id.as_str()),
                (id.as_str(), seq, gid.as_str()),
                "{who}"
            );
        }
    }
    for (who, client) in &mut sessions {
        assert_no_message(client, who).await;
    }
}

// ---------------------------------------------------------------------------
// Recall, read receipts, typing
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recall_reaches_the_other_node() {
    let Some(c) = Cluster::start(2).await else {
        return;
    };
    let ab = conv("alice", "bob");
    let mut alice = c.tcp(1, "alice", "iOS").await;
    let mut bob = c.ws(2, "bob", Generation::V2, "iOS").await;
    let (id, _) = send(&mut bob, &ab, "oops").await;
    let r = bob
        .request(Request::Revoke {
            message_id: id.clone(),
            conversation_id: ab.clone(),
        })
        .await
        .unwrap();
    assert!(
        matches!(
            r,
            Reply::Revoke {
                code: ErrorCode::Success,
                ..
            }
        ),
        "{r:?}"
    );
    let e = next_matching(&mut alice, WAIT, |e| matches!(e, Event::Revoked { .. }))
        .await
        .expect("alice on node 1 gets the recall made on node 2");
    let Event::Revoked {
        server_msg_id,
        revoked_by,
        ..
    } = e
    else {
        unreachable!()
    };
    assert_eq!(
        (server_msg_id.as_str(), revoked_by.as_str()),
        (id.as_str(), "bob")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_receipt_reaches_the_other_node() {
    let Some(c) = Cluster::start(2).await else {
        return;
    };
    let ab = conv("alice", "bob");
    let mut alice = c.tcp(1, "alice", "iOS").await;
    let mut bob = c.ws(2, "bob", Generation::V2, "iOS").await;
    let mut ids = vec![
        send(&mut alice, &ab, "r-1").await.0,
        send(&mut alice, &ab, "r-2").await.0,
    ];
    let r = bob
        .request(Request::ReadReceipt {
            message_ids: vec![],
            conversation_id: ab.clone(),
        })
        .await
        .unwrap();
    assert!(
        matches!(
            r,
            Reply::ReadReceipt {
                code: ErrorCode::Success,
                ..
            }
        ),
        "{r:?}"
    );
    let e = next_matching(&mut alice, WAIT, |e| matches!(e, Event::ReadReceipt { .. }))
        .await
        .expect("alice on node 1 gets bob's read receipt from node 2");
    let Event::ReadReceipt {
        mut server_msg_ids,
        user_id,
        conversation_id,
        ..
    } = e
    else {
        unreachable!()
    };
    server_msg_ids.sort();
    ids.sort();
    assert_eq!(
        (server_msg_ids, user_id.as_str(), conversation_id.as_str()),
        (ids, "bob", ab.as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typing_reaches_the_other_node() {
    let Some(c) = Cluster::start(2).await else {
        return;
    };
    let ab = conv("alice", "bob");
    let mut alice = c.tcp(1, "alice", "iOS").await;
    let mut bob = c.ws(2, "bob", Generation::V2, "iOS").await;
    alice
        .send(&Request::Typing {
            conversation_id: ab.clone(),
            status: 1,
        })
        .await
        .unwrap();
    let e = next_matching(&mut bob, WAIT, |e| matches!(e, Event::Typing { .. }))
        .await
        .expect("bob on node 2 gets alice's typing from node 1");
    assert!(
        matches!(e, Event::Typing { ref user_id, ref conversation_id, status: 1 }
            if user_id == "alice" && *conversation_id == ab),
        "{e:?}"
    );
}

// ---------------------------------------------------------------------------
// Presence and KICK_OUT
// ---------------------------------------------------------------------------

/// carol on node 1 watches dave, who logs in and out on node 2: she is
/// pushed both transitions, and her queries agree.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_across_nodes() {
    let Some(c) = Cluster::start(2).await else {
        return;
    };
    let mut carol = c.tcp(1, "carol", "iOS").await;
    assert!(
        !status_of(&mut carol, "dave").await.online,
        "dave starts offline"
    );
    let dave = c.ws(2, "dave", Generation::V2, "Android").await;
    let e = next_matching(
        &mut carol,
        WAIT,
        |e| matches!(e, Event::StatusChange(s) if s.user_id == "dave" && s.online),
    )
    .await
    .expect("carol (node 1) is pushed dave's login on node 2");
    let Event::StatusChange(st) = e else {
        unreachable!()
    };
    assert_eq!(st.platforms, vec!["Android".to_owned()]);
    let (ok, st) = poll_status(&mut carol, "dave", true, WAIT).await;
    assert!(ok, "a query on node 1 shows dave online: {st:?}");
    assert_eq!(st.platforms, vec!["Android".to_owned()]);
    dave.close().await.unwrap();
    let e = next_matching(
        &mut carol,
        WAIT,
        |e| matches!(e, Event::StatusChange(s) if s.user_id == "dave" && !s.online),
    )
    .await
    .expect("carol (node 1) is pushed dave's logout on node 2");
    let Event::StatusChange(st) = e else {
        unreachable!()
    };
    assert!(st.last_seen > 0, "{st:?}");
    let (ok, st) = poll_status(&mut carol, "dave", false, WAIT).await;
    assert!(ok, "a query on node 1 shows dave offline: {st:?}");
}

/// `session.kick_policy: per_platform` (the default) across nodes: another
/// platform on another node coexists; the same platform on another node
/// replaces the old session, which gets KICK_OUT and is closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kick_out_across_nodes() {
    let Some(c) = Cluster::start(2).await else {
        return;
    };
    let mut old = c.tcp(1, "alice", "iOS").await;
    let mut web = c.ws(2, "alice", Generation::V2, "Web").await;
    assert!(
        next_matching(&mut old, QUIET, |e| matches!(e, Event::KickOut { .. }))
            .await
            .is_none(),
        "another platform does not kick"
    );
    let mut new = c.tcp(2, "alice", "iOS").await;
    let e = next_matching(&mut old, WAIT, |e| matches!(e, Event::KickOut { .. }))
        .await
        .expect("the node-1 session is kicked by the same-platform login on node 2");
    assert!(matches!(e, Event::KickOut { .. }), "{e:?}");
    assert!(
        old.closed(WAIT).await.unwrap(),
        "the kicked session is closed"
    );
    assert!(new.heartbeat().await.is_ok(), "the new session lives");
    assert!(web.heartbeat().await.is_ok(), "the Web session lives");
    assert!(
        next_matching(&mut web, QUIET, |e| matches!(e, Event::KickOut { .. }))
            .await
            .is_none(),
        "the Web session is not kicked"
    );
}

// ---------------------------------------------------------------------------
// A node killed with SIGKILL
// ---------------------------------------------------------------------------

/// What one streaming sender saw.
#[derive(Default)]
struct Ledger {
    /// Client ids in send order.
    sent: Vec<String>,
    /// Client id -> (server id, seq) of the acknowledged ones.
    acked: HashMap<String, (String, i64)>,
}

/// Sends `<prefix>-0`, `<prefix>-1`, … into `conversation` (a few in
/// flight, paced under the default rate limit) until the connection dies.
async fn stream_sends(
    mut c: Client,
    conversation: String,
    prefix: &'static str,
    progress: Arc<AtomicUsize>,
) -> Ledger {
    let mut ledger = Ledger::default();
    let mut outstanding: HashMap<u32, String> = HashMap::new();
    for i in 0.. {
        let cid = format!("{prefix}-{i}");
        match c.send(&text_req(&cid, &conversation)).await {
            Ok(seq) => {
                ledger.sent.push(cid.clone());
                outstanding.insert(seq, cid);
            }
            Err(_) => return ledger,
        }
        while outstanding.len() >= 4 {
            match c.next_reply(WAIT).await {
                Ok(Some((
                    seq,
                    Reply::Send {
                        code,
                        client_msg_id,
                        server_msg_id,
                        seq: s,
                        ..
                    },
                ))) => {
                    let cid = outstanding.remove(&seq);
                    if code == ErrorCode::Success {
                        assert_eq!(cid.as_deref(), Some(client_msg_id.as_str()));
                        ledger.acked.insert(client_msg_id, (server_msg_id, s));
                        progress.fetch_add(1, Ordering::SeqCst);
                    }
                }
                Ok(Some((seq, other))) => panic!("unexpected reply {seq}: {other:?}"),
                Ok(None) | Err(_) => return ledger,
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    ledger
}

/// Asserts `msgs` (one conversation) has gapless seqs from 1, no duplicate
/// client id, and every acknowledged message unchanged.
fn check_conversation(msgs: &[StoredMessage], acked: &HashMap<String, (String, i64)>) {
    let seqs: Vec<i64> = msgs.iter().map(|m| m.seq).collect();
    assert_eq!(
        seqs,
        (1..=i64::try_from(msgs.len()).unwrap()).collect::<Vec<_>>(),
        "gapless seqs from 1"
    );
    let mut seen = HashSet::new();
    for m in msgs {
        assert!(
            seen.insert((m.sender_id.clone(), m.client_msg_id.clone())),
            "duplicate {}",
            m.client_msg_id
        );
    }
    let stored: HashMap<&str, (&str, i64)> = msgs
        .iter()
        .map(|m| (m.client_msg_id.as_str(), (m.server_msg_id.as_str(), m.seq)))
        .collect();
    for (cid, (id, seq)) in acked {
        assert_eq!(
            stored.get(cid.as_str()),
            Some(&(id.as_str(), *seq)),
            "acknowledged {cid} lost or changed"
        );
    }
}

/// Node 2 is SIGKILLed while dave streams sends from it to alice (node 1)
/// and alice sends to bob (node 2). dave and bob reconnect to node 3: dave
/// resends what was not acknowledged (idempotently), bob syncs from where
/// his pushes stopped. Every acknowledged message is there exactly once,
/// before, during and after the kill.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_node_clients_reconnect_elsewhere_and_lose_nothing() {
    let Some(mut c) = Cluster::start(3).await else {
        return;
    };
    let (ab, ad) = (conv("alice", "bob"), conv("alice", "dave"));
    let mut alice = c.tcp(1, "alice", "iOS").await;
    let mut bob = c.ws(2, "bob", Generation::V2, "iOS").await;
    let dave = c.tcp(2, "dave", "iOS").await;
    let progress = Arc::new(AtomicUsize::new(0));
    let stream = tokio::spawn(stream_sends(
        dave,
        ad.clone(),
        "dave",
        Arc::clone(&progress),
    ));
    let mut to_bob: HashMap<String, (String, i64)> = HashMap::new();
    for i in 0..10 {
        let cid = format!("before-{i}");
        to_bob.insert(cid.clone(), send(&mut alice, &ab, &cid).await);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while progress.load(Ordering::SeqCst) < 20 {
        assert!(
            Instant::now() < deadline,
            "dave's stream is not acknowledged"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    c.kill9(2);
    let ledger = tokio::time::timeout(Duration::from_secs(30), stream)
        .await
        .expect("dave's stream notices the dead node")
        .unwrap();
    // Sends to bob while his node is dead and before he is back succeed.
    for i in 0..3 {
        let cid = format!("during-{i}");
        to_bob.insert(cid.clone(), send(&mut alice, &ab, &cid).await);
    }
    // What bob's dead connection had received.
    let pushed: Vec<Arc<StoredMessage>> = drain_messages(&mut bob)
        .await
        .into_iter()
        .filter(|m| m.conversation_id == ab)
        .collect();

    // bob reconnects to node 3 and syncs from his last contiguous push.
    let mut bob = c.ws(3, "bob", Generation::V2, "iOS").await;
    let cursor = contiguous_cursor(pushed.iter().map(|m| m.seq));
    let mut seen: Vec<StoredMessage> = pushed
        .iter()
        .filter(|m| m.seq <= cursor)
        .map(|m| (**m).clone())
        .collect();
    seen.extend(batch_sync_after(&mut bob, &ab, cursor).await);
    check_conversation(&seen, &to_bob);
    assert_eq!(
        seen.len(),
        to_bob.len(),
        "bob has exactly what was sent to him"
    );

    // dave reconnects to node 3 and resends everything (the SDK resends what
    // was not acknowledged; acknowledged ones must come back unchanged).
    let mut dave = c.tcp(3, "dave", "iOS").await;
    for cid in &ledger.sent {
        let (id, seq) = send(&mut dave, &ad, cid).await;
        if let Some(orig) = ledger.acked.get(cid) {
            assert_eq!(&(id, seq), orig, "resend of acknowledged {cid}");
        }
    }
    let msgs = all_messages(&mut alice, &ad).await;
    check_conversation(&msgs, &ledger.acked);
    assert_eq!(
        msgs.len(),
        ledger.sent.len(),
        "every send stored exactly once"
    );
    eprintln!(
        "kill -9: dave sent {}, {} acknowledged before the kill; bob had {} pushes",
        ledger.sent.len(),
        ledger.acked.len(),
        pushed.len()
    );

    // After: alice keeps writing; bob gets each message once, by push or by
    // the sync a client does on reconnect/gap detection.
    let mut after = HashMap::new();
    for i in 0..5 {
        let cid = format!("after-{i}");
        after.insert(cid.clone(), send(&mut alice, &ab, &cid).await);
    }
    let mut got: Vec<StoredMessage> = drain_messages(&mut bob)
        .await
        .into_iter()
        .map(|m| (*m).clone())
        .collect();
    let cursor = contiguous_cursor(seen.iter().chain(&got).map(|m| m.seq));
    got.retain(|m| m.seq <= cursor);
    got.extend(batch_sync_after(&mut bob, &ab, cursor).await);
    seen.extend(got);
    seen.sort_by_key(|m| m.seq);
    to_bob.extend(after);
    check_conversation(&seen, &to_bob);
    assert_eq!(seen.len(), to_bob.len());
}

/// The cluster view of a SIGKILLed node: its users show online from other
/// nodes while it lives and offline once `cluster.route_ttl` has passed;
/// a user who reconnects to another node gets pushes there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_node_routes_expire_and_pushes_follow_the_reconnect() {
    let Some(mut c) = Cluster::start(3).await else {
        return;
    };
    let ab = conv("alice", "bob");
    let mut alice = c.tcp(1, "alice", "iOS").await;
    let mut erin = c.tcp(1, "erin", "iOS").await;
    let _frank = c.tcp(2, "frank", "iOS").await;
    let _bob = c.tcp(2, "bob", "iOS").await;
    let (ok, st) = poll_status(&mut erin, "frank", true, WAIT).await;
    assert!(ok, "node 1 sees frank (node 2) online: {st:?}");
    c.kill9(2);
    let killed = Instant::now();
    let mut bob = c.tcp(3, "bob", "iOS").await;
    let (id, seq) = send(&mut alice, &ab, "to-the-new-node").await;
    let m = next_message(&mut bob)
        .await
        .expect("bob, back on node 3, gets pushes from node 1");
    assert_eq!((m.server_msg_id.as_str(), m.seq), (id.as_str(), seq));
    let (ok, st) = poll_status(&mut erin, "frank", false, ROUTE_TTL + REFRESH + WAIT).await;
    assert!(
        ok,
        "frank shows offline once route_ttl ({ROUTE_TTL:?}) has passed: {st:?} after {:?}",
        killed.elapsed()
    );
    // bob, back on node 3, is online.
    let (ok, st) = poll_status(&mut erin, "bob", true, WAIT).await;
    assert!(ok, "bob (node 3) online: {st:?}");
}

// ---------------------------------------------------------------------------
// Redis outage
// ---------------------------------------------------------------------------

/// With Redis down, sessions on one node still talk, sends to users on
/// other nodes are still stored, and once Redis is back a user who missed
/// those pushes gets them by sync.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_local_delivery_and_sends_continue() {
    if Backends::from_env().is_none() {
        return;
    }
    let Some(mut redis) = PrivateRedis::start() else {
        return;
    };
    let Some(c) = Cluster::start_with(
        2,
        ClusterOptions {
            redis_url: Some(redis.url()),
            ..ClusterOptions::default()
        },
    )
    .await
    else {
        return;
    };
    let (ab, ac) = (conv("alice", "bob"), conv("alice", "carol"));
    let mut alice = c.tcp(1, "alice", "iOS").await;
    let mut bob = c.ws(1, "bob", Generation::V2, "iOS").await;
    let mut carol = c.tcp(2, "carol", "iOS").await;
    redis.stop();
    let mut to_carol = HashMap::new();
    for i in 0..5 {
        let (id, seq) = send(&mut alice, &ab, &format!("local-{i}")).await;
        let m = next_message(&mut bob)
            .await
            .unwrap_or_else(|| panic!("bob (same node) gets local-{i} with Redis down"));
        assert_eq!((m.server_msg_id.as_str(), m.seq), (id.as_str(), seq));
        let cid = format!("remote-{i}");
        to_carol.insert(cid.clone(), send(&mut alice, &ac, &cid).await);
    }
    let (id, seq) = send(&mut bob, &ab, "local-reply").await;
    let m = next_message(&mut alice)
        .await
        .expect("alice gets bob's reply with Redis down");
    assert_eq!((m.server_msg_id.as_str(), m.seq), (id.as_str(), seq));
    assert_no_message(&mut bob, "bob").await;

    redis.restart();
    // carol missed (some of) those pushes: she catches up by sync from the
    // last contiguous seq she saw.
    let pushed: Vec<StoredMessage> = drain_messages(&mut carol)
        .await
        .into_iter()
        .map(|m| (*m).clone())
        .collect();
    let cursor = contiguous_cursor(pushed.iter().map(|m| m.seq));
    let mut seen: Vec<StoredMessage> = pushed.into_iter().filter(|m| m.seq <= cursor).collect();
    seen.extend(batch_sync_after(&mut carol, &ac, cursor).await);
    check_conversation(&seen, &to_carol);
    assert_eq!(seen.len(), to_carol.len());
}

/// Cross-node pushes work, stop mattering while Redis is down (sends still
/// succeed), and resume once Redis is back on the same address (the nodes
/// reconnect and re-register their routes, even though the restarted Redis
/// lost every key).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_back_cross_node_pushes_resume() {
    if Backends::from_env().is_none() {
        return;
    }
    let Some(mut redis) = PrivateRedis::start() else {
        return;
    };
    let Some(c) = Cluster::start_with(
        2,
        ClusterOptions {
            redis_url: Some(redis.url()),
            ..ClusterOptions::default()
        },
    )
    .await
    else {
        return;
    };
    let ac = conv("alice", "carol");
    let mut alice = c.tcp(1, "alice", "iOS").await;
    let mut carol = c.tcp(2, "carol", "iOS").await;
    let (id, _) = send(&mut alice, &ac, "before-outage").await;
    let m = next_message(&mut carol)
        .await
        .expect("cross-node push with Redis up");
    assert_eq!(m.server_msg_id, id);
    redis.stop();
    for i in 0..3 {
        send(&mut alice, &ac, &format!("during-outage-{i}")).await;
    }
    redis.restart();
    // Probe until a push crosses again (the nodes must reconnect and
    // re-register carol's route in the emptied Redis).
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut probes = HashSet::new();
    let resumed = loop {
        let cid = format!("probe-{}", probes.len());
        let (id, _) = send(&mut alice, &ac, &cid).await;
        probes.insert(id);
        if let Some(Event::Message(m)) = next_matching(
            &mut carol,
            Duration::from_millis(500),
            |e| matches!(e, Event::Message(m) if probes.contains(&m.server_msg_id)),
        )
        .await
        {
            break Some(m);
        }
        if Instant::now() >= deadline {
            break None;
        }
    };
    let m = resumed.expect("cross-node pushes resume within 30 s of Redis coming back");
    eprintln!("cross-node push resumed with {}", m.client_msg_id);
    // And nothing is duplicated: sync shows each message once.
    let all = all_messages(&mut carol, &ac).await;
    check_conversation(&all, &HashMap::new());
}
