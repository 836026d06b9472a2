//! BATCH_SYNC after a reconnect (issue 18 items 5 and 7) at the service
//! level: what a device acked is left out, the backlog beyond the reply is
//! streamed as BATCH_MSG, and live pushes of a conversation being caught up
//! wait behind its backlog.

use std::time::Duration;

use im_core::command::{Event, Reply, Request, SyncState};
use im_service::{Outbound, ServiceConfig};

use crate::{Conn, Env, env_with, send, uid};

fn cfg() -> ServiceConfig {
    ServiceConfig {
        allow_demo_tokens: true,
        ..ServiceConfig::default()
    }
}

/// Logs in with a real token (it has a `jti`: MSG_ACK rows are kept for it).
async fn login_jwt(env: &Env, user: &str, token: &str) -> Conn {
    let mut c = Conn::new(env);
    let r = c
        .call(
            env,
            Request::Auth {
                user_id: user.into(),
                token: token.into(),
                platform: "iOS".into(),
            },
        )
        .await;
    assert!(
        matches!(
            r,
            Some(Reply::Auth {
                code: im_core::ErrorCode::Success,
                ..
            })
        ),
        "{r:?}"
    );
    c
}

fn now_secs() -> i64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    i64::try_from(d.as_secs()).unwrap()
}

/// Sends MSG_ACK, as the SDK does, for the pushed messages whose seq
/// `acks` picks; returns how many messages were pushed.
async fn ack_pushes(env: &Env, c: &mut Conn, acks: impl Fn(i64) -> bool) -> usize {
    let pushed: Vec<_> = c
        .pushes()
        .into_iter()
        .filter_map(|e| match e {
            Event::Message(m) => Some(m),
            _ => None,
        })
        .collect();
    for m in pushed.iter().filter(|m| acks(m.seq)) {
        let ack = Request::Ack {
            message_id: m.server_msg_id.clone(),
            seq: 0,
        };
        assert!(c.call(env, ack).await.is_none());
    }
    pushed.len()
}

fn token(env: &Env, user: &str) -> String {
    env.services
        .auth
        .issue(&uid(user), "iOS", now_secs(), 3600)
        .unwrap()
}

async fn batch_sync(env: &Env, c: &mut Conn, states: Vec<SyncState>) -> Reply {
    batch_sync_of(env, c, states, 100).await
}

async fn batch_sync_of(env: &Env, c: &mut Conn, states: Vec<SyncState>, per_conv: i32) -> Reply {
    c.call(
        env,
        Request::BatchSync {
            states,
            max_per_conversation: per_conv,
        },
    )
    .await
    .unwrap()
}

/// Message seqs of `c`'s outbound items (pushes and BATCH_MSG elements) in
/// order, until `n` arrived.
async fn pushed_seqs(c: &mut Conn, n: usize) -> Vec<i64> {
    let mut seqs = Vec::new();
    while seqs.len() < n {
        let o = tokio::time::timeout(Duration::from_secs(5), c.rx.recv())
            .await
            .unwrap_or_else(|_| panic!("{} of {n} arrived: {seqs:?}", seqs.len()))
            .unwrap();
        match o {
            Outbound::Event(e) => {
                if let Event::Message(m) = e.as_ref() {
                    seqs.push(m.seq);
                }
            }
            Outbound::Batch(b) => seqs.extend(b.messages.iter().map(|v| v.message.seq)),
            Outbound::Reply { .. } => {}
        }
    }
    seqs
}

#[tokio::test]
async fn a_live_push_waits_behind_the_backlog_of_its_conversation() {
    let env = env_with(cfg());
    let mut alice = Conn::login(&env, "alice", "iOS").await;
    for i in 1..=150 {
        send(&env, &mut alice, "single_alice_dave", &format!("m{i}"), "x").await;
    }
    let mut dave = login_jwt(&env, "dave", &token(&env, "dave")).await;
    let Reply::BatchSync { conversations, .. } = batch_sync(&env, &mut dave, Vec::new()).await
    else {
        panic!()
    };
    assert_eq!(conversations[0].max_seq, 100);
    assert!(conversations[0].has_more);
    // Before the backlog is streamed, a new message's push is held back.
    send(&env, &mut alice, "single_alice_dave", "live", "x").await;
    assert!(dave.pushes().is_empty());
    dave.ctx.after_reply(&env.services);
    let seqs = pushed_seqs(&mut dave, 51).await;
    assert_eq!(
        seqs,
        (101..=151).collect::<Vec<_>>(),
        "backlog, then the held one, once"
    );
    // Once caught up, pushes pass again.
    send(&env, &mut alice, "single_alice_dave", "after", "x").await;
    assert_eq!(pushed_seqs(&mut dave, 1).await, vec![152]);
}

#[tokio::test]
async fn only_what_this_login_acked_is_left_out_and_the_cursor_covers_it() {
    let env = env_with(cfg());
    let mut alice = Conn::login(&env, "alice", "iOS").await;
    let tok = token(&env, "bob");
    let mut bob = login_jwt(&env, "bob", &tok).await;
    for i in 1..=3 {
        send(&env, &mut alice, "single_alice_bob", &format!("m{i}"), "x").await;
    }
    assert_eq!(ack_pushes(&env, &mut bob, |seq| seq != 2).await, 3);
    let Reply::BatchSync {
        conversations,
        total,
        ..
    } = batch_sync(&env, &mut bob, Vec::new()).await
    else {
        panic!()
    };
    let c = &conversations[0];
    let seqs: Vec<i64> = c.messages.iter().map(|v| v.message.seq).collect();
    assert_eq!((seqs, c.max_seq, c.has_more, total), (vec![2], 3, false, 1));
    bob.ctx.after_reply(&env.services);
    // A demo-token session of bob (no jti) gets everything.
    let mut demo = Conn::login(&env, "bob", "Android").await;
    let Reply::BatchSync { conversations, .. } = batch_sync(&env, &mut demo, Vec::new()).await
    else {
        panic!()
    };
    assert_eq!(conversations[0].messages.len(), 3);
    // With cursor 3 nothing is left (and the rows at or below it are
    // forgotten).
    let r = batch_sync(
        &env,
        &mut bob,
        vec![SyncState {
            conversation_id: "single_alice_bob".into(),
            last_seq: 3,
        }],
    )
    .await;
    assert!(
        matches!(r, Reply::BatchSync { ref conversations, .. } if conversations.is_empty()),
        "{r:?}"
    );
}

/// Pushes queued on a connection before its BATCH_SYNC are not streamed
/// again by that sync's backlog, even before the client acknowledged them
/// (the SDK sends BATCH_SYNC right after AUTH and acknowledges pushes as it
/// reads them): they would arrive twice on one connection, like two pushes
/// (found by the soak, bins/im-soak). The reply still carries them: sync
/// stays the source of truth.
#[tokio::test]
async fn pushes_before_the_sync_on_its_connection_are_not_sent_again() {
    let env = env_with(cfg());
    let mut alice = Conn::login(&env, "alice", "iOS").await;
    let tok = token(&env, "bob");
    let mut bob = login_jwt(&env, "bob", &tok).await;
    for i in 1..=50 {
        send(&env, &mut alice, "single_alice_bob", &format!("m{i}"), "x").await;
    }
    // Read and acknowledged: 1..=5; the rest are still on their way.
    assert_eq!(ack_pushes(&env, &mut bob, |seq| seq <= 5).await, 50);
    let r = batch_sync_of(&env, &mut bob, Vec::new(), 10).await;
    let Reply::BatchSync { conversations, .. } = r else {
        panic!("{r:?}")
    };
    let seqs: Vec<i64> = conversations[0]
        .messages
        .iter()
        .map(|v| v.message.seq)
        .collect();
    assert_eq!(
        seqs,
        (6..=15).collect::<Vec<_>>(),
        "the reply: unacknowledged ones"
    );
    assert!(conversations[0].has_more);
    bob.ctx.after_reply(&env.services);
    // Nothing is streamed: the next item bob gets is the next live push.
    send(&env, &mut alice, "single_alice_bob", "live", "x").await;
    assert_eq!(pushed_seqs(&mut bob, 1).await, vec![51]);
    // A new connection of the same login gets what it did not acknowledge.
    let mut again = login_jwt(&env, "bob", &tok).await;
    let Reply::BatchSync { conversations, .. } = batch_sync(&env, &mut again, Vec::new()).await
    else {
        panic!()
    };
    let seqs: Vec<i64> = conversations[0]
        .messages
        .iter()
        .map(|v| v.message.seq)
        .collect();
    assert_eq!(seqs, (6..=51).collect::<Vec<_>>());
}

/// An acknowledgement that stores nothing (a token without `jti`, or v1)
/// does not make the connection forget what it was sent: only a stored
/// MSG_ACK row leaves a message out of streams, so the record is dropped
/// after the row is written, never before (a stream running in between
/// sent it again; found by the soak).
#[tokio::test]
async fn an_ack_that_stores_nothing_keeps_the_message_out_of_the_stream() {
    let env = env_with(cfg());
    let mut alice = Conn::login(&env, "alice", "iOS").await;
    // A demo token: no jti, so MSG_ACK keeps no per-message row.
    let mut bob = Conn::login(&env, "bob", "iOS").await;
    for i in 1..=30 {
        send(&env, &mut alice, "single_alice_bob", &format!("m{i}"), "x").await;
    }
    assert_eq!(ack_pushes(&env, &mut bob, |_| true).await, 30);
    let r = batch_sync_of(&env, &mut bob, Vec::new(), 10).await;
    let Reply::BatchSync { conversations, .. } = r else {
        panic!("{r:?}")
    };
    assert_eq!(
        conversations[0].messages.len(),
        10,
        "the reply is not filtered"
    );
    bob.ctx.after_reply(&env.services);
    send(&env, &mut alice, "single_alice_bob", "live", "x").await;
    assert_eq!(
        pushed_seqs(&mut bob, 1).await,
        vec![31],
        "nothing streamed again"
    );
}

/// A MSG_ACK stored while a backlog stream runs does not make that stream
/// send the message again: the stream read its page of the store before the
/// ack's row existed, so the connection's record of what it was sent must
/// still cover the message when the stream reaches it (it forgot it at
/// once, and the message arrived twice on one connection; found by the
/// soak, about once in 100,000 messages).
#[tokio::test]
async fn an_ack_while_the_stream_runs_does_not_send_the_message_again() {
    // One message per BATCH_MSG frame: the stream blocks on its frames in
    // flight long before the end of its page.
    let env = env_with(ServiceConfig {
        sync_max_reply_bytes: 400,
        ..cfg()
    });
    let body = "x".repeat(200);
    let mut alice = Conn::login(&env, "alice", "iOS").await;
    let mut bob = None;
    for i in 1..=20 {
        if i == 11 {
            // From here on pushed to bob, not read yet.
            bob = Some(login_jwt(&env, "bob", &token(&env, "bob")).await);
        }
        let cid = format!("m{i}");
        send(&env, &mut alice, "single_alice_bob", &cid, &body).await;
    }
    let mut bob = bob.unwrap();
    let r = batch_sync_of(&env, &mut bob, Vec::new(), 1).await;
    let Reply::BatchSync { conversations, .. } = r else {
        panic!("{r:?}")
    };
    assert_eq!(conversations[0].messages.len(), 1);
    bob.ctx.after_reply(&env.services);
    // The pushes, then the stream's first frame: the stream has read its
    // page (2..=20) and waits for room, the frame held here.
    let mut pushed = Vec::new();
    let first_frame = loop {
        let o = tokio::time::timeout(Duration::from_secs(5), bob.rx.recv())
            .await
            .expect("the stream's first frame")
            .unwrap();
        match o {
            Outbound::Event(e) => {
                if let Event::Message(m) = e.as_ref() {
                    pushed.push(m.clone());
                }
            }
            Outbound::Batch(b) => break b,
            Outbound::Reply { .. } => {}
        }
    };
    assert_eq!(
        pushed.iter().map(|m| m.seq).collect::<Vec<_>>(),
        (11..=20).collect::<Vec<_>>()
    );
    assert_eq!(
        first_frame
            .messages
            .iter()
            .map(|v| v.message.seq)
            .collect::<Vec<_>>(),
        vec![2]
    );
    // The SDK acknowledges the pushes as it reads them.
    for m in &pushed {
        let ack = Request::Ack {
            message_id: m.server_msg_id.clone(),
            seq: 0,
        };
        assert!(bob.call(&env, ack).await.is_none());
    }
    let mut streamed: Vec<i64> = first_frame.messages.iter().map(|v| v.message.seq).collect();
    drop(first_frame);
    let rest = 9 - streamed.len();
    streamed.extend(pushed_seqs(&mut bob, rest).await);
    assert_eq!(streamed, (2..=10).collect::<Vec<_>>());
    // Nothing of 11..=20 follows: the next item is the next live push.
    send(&env, &mut alice, "single_alice_bob", "live", "x").await;
    assert_eq!(pushed_seqs(&mut bob, 1).await, vec![21]);
}

#[tokio::test]
async fn the_stream_stops_at_its_cap_and_gives_the_conversation_back_to_pushes() {
    let env = env_with(ServiceConfig {
        sync_stream_max_messages: 10,
        ..cfg()
    });
    let mut alice = Conn::login(&env, "alice", "iOS").await;
    for i in 1..=150 {
        send(&env, &mut alice, "single_alice_dave", &format!("m{i}"), "x").await;
    }
    let mut dave = login_jwt(&env, "dave", &token(&env, "dave")).await;
    batch_sync(&env, &mut dave, Vec::new()).await;
    dave.ctx.after_reply(&env.services);
    assert_eq!(
        pushed_seqs(&mut dave, 10).await,
        (101..=110).collect::<Vec<_>>()
    );
    // The stream is over: a live push passes (the client fills the gap by
    // SYNC_RANGE or its next BATCH_SYNC).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        send(&env, &mut alice, "single_alice_dave", "live", "x").await;
        if !dave.pushes().is_empty() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "pushes stay held");
        tokio::task::yield_now().await;
    }
}

/// MSG_ACK rows of a login that stops syncing go after `ack_retention`
/// (30 days): that login, back later, gets the messages again.
#[tokio::test]
async fn acks_of_a_login_that_stopped_syncing_are_purged_after_the_retention() {
    let env = env_with(cfg());
    let mut alice = Conn::login(&env, "alice", "iOS").await;
    let mut bob = login_jwt(&env, "bob", &token(&env, "bob")).await;
    for i in 1..=2 {
        send(&env, &mut alice, "single_alice_bob", &format!("p{i}"), "x").await;
    }
    assert_eq!(ack_pushes(&env, &mut bob, |_| true).await, 2);
    let synced = |r: Reply| match r {
        Reply::BatchSync { conversations, .. } => conversations
            .iter()
            .map(|c| c.messages.len())
            .sum::<usize>(),
        other => panic!("{other:?}"),
    };
    assert_eq!(synced(batch_sync(&env, &mut bob, Vec::new()).await), 0);
    bob.ctx.after_reply(&env.services);
    const DAY: i64 = 24 * 3600 * 1000;
    env.clock.advance(29 * DAY);
    assert_eq!(env.services.messaging.purge_old_acks().await.unwrap(), 0);
    env.clock.advance(2 * DAY);
    assert_eq!(env.services.messaging.purge_old_acks().await.unwrap(), 2);
    assert_eq!(synced(batch_sync(&env, &mut bob, Vec::new()).await), 2);
}
