//! Sends as the SwiftIM SDK makes them, over the real server (issue 18,
//! items 6 and 9).
//!
//! Transient conditions get no SEND_MSG_RSP. Any non-zero SEND_MSG_RSP
//! makes the SDK mark the message failed for good (IMClient.swift:1163-1170
//! -> IMMessageManager.swift:369-392@07bf3fe; IMClient.swift:864-868
//! @5529e01), while silence makes its send queue resend the same request,
//! same client_msg_id, after 5 s, at most 3 times
//! (Core/Protocol/IMMessageQueue.swift:36-37, 181-230 at both commits).
//! These tests behave that way: what gets no reply is resent with the same
//! client_msg_id.
//!
//! Own messages on the sender's other devices: the SDK's push path marks
//! every PUSH_MSG incoming and counts it unread (IMClient.swift:1137, 1611
//! @07bf3fe; 842, 1247@5529e01), its sync path sets the direction from
//! sender_id (IMMessageSyncManager.swift:803-807@07bf3fe) and counts only
//! incoming unread messages (IMConversationManager.swift:196@07bf3fe). The
//! SDK always says platform "iOS" (IMWebSocketTransport.swift:156,
//! IMTCPTransport.swift:301@07bf3fe; IMWebSocketTransport.swift:155
//! @5529e01); the browser demo says "web" (assets/demo/app.js:12).

use std::time::Duration;

use bytes::Bytes;
use im_client::{Client, ClientError};
use im_core::command::{Event, Reply, Request, SendRequest};
use im_core::{ErrorCode, Generation, MessageType};

use crate::{QUIET, TestServer, WAIT, assert_auth_ok, assert_no_message, next_text, sent_ok};

/// `im_replies_suppressed_total{request, reason}` (0 when absent). The
/// recorder is shared by every server of this test process, so tests
/// compare before and after, and other tests may add to it meanwhile.
pub(crate) async fn suppressed(s: &TestServer, request: &str, reason: &str) -> f64 {
    let (status, _, text) = crate::messaging::http(s.addrs.http, "GET", "/metrics", &[], "").await;
    assert_eq!(status, 200, "{text}");
    text.lines()
        .filter(|l| l.starts_with("im_replies_suppressed_total{"))
        .filter(|l| {
            l.contains(&format!("request=\"{request}\""))
                && l.contains(&format!("reason=\"{reason}\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Waits until the counter has grown by at least `by` since `before`.
pub(crate) async fn suppressed_grows(
    s: &TestServer,
    request: &str,
    reason: &str,
    before: f64,
    by: f64,
) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let now = suppressed(s, request, reason).await;
        if now >= before + by {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "im_replies_suppressed_total{{request={request},reason={reason}}} stayed at {now}, \
             expected at least {}",
            before + by
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// SEND_MSG_REQ as the v2 SDK builds it (IMMessageManager.swift:286-304
/// @07bf3fe): client id, conversation, receiver, type, send time, content.
pub(crate) fn sdk_send(
    client_msg_id: &str,
    conversation: &str,
    receiver: &str,
    text: &str,
) -> Request {
    Request::Send(SendRequest {
        client_msg_id: client_msg_id.to_owned(),
        conversation_id: conversation.to_owned(),
        receiver_id: receiver.to_owned(),
        message_type: MessageType::TEXT.0,
        content: Bytes::copy_from_slice(text.as_bytes()),
        send_time: 1,
        ..SendRequest::default()
    })
}

/// Every reply that arrives until the connection is quiet, by sequence.
pub(crate) async fn replies_until_quiet(c: &mut Client) -> Vec<(u32, Reply)> {
    let mut out = Vec::new();
    while let Some(r) = c.next_reply(QUIET).await.unwrap() {
        out.push(r);
    }
    out
}

/// The SDK's resend loop for one message: send, and resend the same
/// request when no reply comes within `every`; the first reply is returned.
async fn send_until_answered(c: &mut Client, req: &Request, every: Duration) -> Reply {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let seq = c.send(req).await.unwrap();
        match c.wait_reply(seq, every).await {
            Ok(r) => return r,
            Err(ClientError::Timeout { .. }) => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "never answered: {req:?}"
                );
            }
            Err(e) => panic!("{e}"),
        }
    }
}

/// The pushed messages `c` receives until it is quiet, by client id.
async fn pushed_client_ids(c: &mut Client) -> Vec<String> {
    let mut ids = Vec::new();
    while let Some(e) = c.next_event(QUIET).await.unwrap() {
        if let Event::Message(m) = e {
            ids.push(m.client_msg_id.clone());
        }
    }
    ids
}

/// Holds SQLite's write lock on the server's database file (what another
/// process writing the file looks like): the server's writer waits for it.
struct WriteLock(diesel::SqliteConnection);

impl WriteLock {
    fn take(path: &std::path::Path) -> Self {
        use diesel::connection::{Connection, SimpleConnection};
        let mut c = diesel::SqliteConnection::establish(path.to_str().unwrap()).unwrap();
        c.batch_execute("BEGIN IMMEDIATE").unwrap();
        Self(c)
    }

    fn release(mut self) {
        use diesel::connection::SimpleConnection;
        self.0.batch_execute("ROLLBACK").unwrap();
    }
}

#[tokio::test]
async fn a_full_writer_queue_gets_no_reply_and_the_resend_is_stored_once() {
    // One worker with room for one queued message: one message being
    // written (stalled on the lock) plus one queued fill it.
    let s = TestServer::start_with(|c| {
        c.message.writer.workers = 1;
        c.message.writer.queue_capacity = 1;
        c.message.writer.batch_size = 1;
        c.message.writer.enqueue_timeout = Duration::from_millis(50);
    })
    .await;
    let conv = "single_wq_alice_wq_bob";
    let mut alice = s.ws("wq_alice", Generation::V2, "iOS").await;
    let mut bob = s.tcp("wq_bob").await;
    let before = suppressed(&s, "send", "overloaded").await;

    let lock = WriteLock::take(&s.config.database.path);
    let m1 = sdk_send("wq-1", conv, "wq_bob", "one");
    let m2 = sdk_send("wq-2", conv, "wq_bob", "two");
    let m3 = sdk_send("wq-3", conv, "wq_bob", "three");
    let s1 = alice.send(&m1).await.unwrap();
    let s2 = alice.send(&m2).await.unwrap();
    let s3 = alice.send(&m3).await.unwrap();
    // The third found the queue full for enqueue_timeout: counted, and no
    // reply (nothing at all arrives while the store is stalled).
    suppressed_grows(&s, "send", "overloaded", before, 1.0).await;
    assert!(replies_until_quiet(&mut alice).await.is_empty());

    lock.release();
    // The stalled ones commit and are answered; the refused one never is.
    let r1 = alice.wait_reply(s1, WAIT).await.unwrap();
    let r2 = alice.wait_reply(s2, WAIT).await.unwrap();
    sent_ok(&r1);
    sent_ok(&r2);
    let late: Vec<u32> = replies_until_quiet(&mut alice)
        .await
        .into_iter()
        .map(|(seq, _)| seq)
        .collect();
    assert!(
        !late.contains(&s3),
        "the refused send was answered: {late:?}"
    );

    // The SDK resends it (same client_msg_id, new frame sequence): stored
    // once, answered with success, pushed once.
    let r3 = alice.request(m3.clone()).await.unwrap();
    let (id3, seq3) = sent_ok(&r3);
    assert_eq!(seq3, 3, "stored after the two that were queued");
    // A retry racing that reply gets the same result, and no second push.
    let again = alice.request(m3).await.unwrap();
    assert_eq!(sent_ok(&again), (id3.clone(), 3));
    assert_eq!(pushed_client_ids(&mut bob).await, ["wq-1", "wq-2", "wq-3"]);
    s.stop().await;
}

#[tokio::test]
async fn a_rate_limited_send_gets_no_reply_is_counted_and_recovers_by_resend() {
    let s = TestServer::start_with(|c| {
        c.rate_limit.requests_per_second = 1;
        c.rate_limit.burst = 3;
    })
    .await;
    let conv = "single_rl2_alice_rl2_bob";
    let mut alice = s.tcp("rl2_alice").await;
    let mut bob = s.ws("rl2_bob", Generation::V2, "iOS").await;
    let before = suppressed(&s, "send", "rate_limited").await;

    let reqs: Vec<Request> = (0..8)
        .map(|i| sdk_send(&format!("rl2-{i}"), conv, "rl2_bob", &format!("m{i}")))
        .collect();
    let mut seqs = Vec::new();
    for r in &reqs {
        seqs.push(alice.send(r).await.unwrap());
    }
    // Revoke is sent once by the SDK and its reply only logged
    // (IMMessageManager+P0Features.swift:93-125@07bf3fe): it keeps its
    // code while the user is over the limit.
    let revoke = alice
        .send(&Request::Revoke {
            message_id: "no-such-message".into(),
            conversation_id: conv.into(),
        })
        .await
        .unwrap();
    let mut replies = replies_until_quiet(&mut alice).await;
    let at = replies.iter().position(|(seq, _)| *seq == revoke);
    match at.map(|i| replies.remove(i)) {
        Some((_, Reply::Revoke { code, .. })) => assert_eq!(code, ErrorCode::SendTooFast),
        r => panic!("revoke: {r:?}"),
    }
    // Every send reply is a success: no ERR_SEND_TOO_FAST for the SDK to
    // mark the message failed with.
    for (_, r) in &replies {
        sent_ok(r);
    }
    let answered: Vec<u32> = replies.iter().map(|(seq, _)| *seq).collect();
    let unanswered = seqs.iter().filter(|s| !answered.contains(s)).count();
    assert!((3..=4).contains(&answered.len()), "answered {answered:?}");
    suppressed_grows(&s, "send", "rate_limited", before, unanswered as f64).await;

    // The SDK resends what got no reply, with the same client ids, until
    // answered: each is then stored and pushed exactly once.
    for (req, seq) in reqs.iter().zip(&seqs) {
        if !answered.contains(seq) {
            let r = send_until_answered(&mut alice, req, Duration::from_millis(700)).await;
            sent_ok(&r);
        }
    }
    let mut pushed = pushed_client_ids(&mut bob).await;
    pushed.sort();
    let mut all: Vec<String> = (0..8).map(|i| format!("rl2-{i}")).collect();
    all.sort();
    assert_eq!(pushed, all, "every message pushed exactly once");
    s.stop().await;
}

#[tokio::test]
async fn a_rate_limited_batch_sync_gets_no_reply_and_the_sdk_retry_is_served() {
    let s = TestServer::start_with(|c| {
        c.rate_limit.requests_per_second = 1;
        c.rate_limit.burst = 1;
    })
    .await;
    let mut alice = s.ws("rl3_alice", Generation::V2, "iOS").await;
    let before = suppressed(&s, "batch_sync", "rate_limited").await;
    let sync = Request::BatchSync {
        states: vec![],
        max_per_conversation: 100,
    };
    let first = alice.send(&sync).await.unwrap();
    let second = alice.send(&sync).await.unwrap();
    // The burst of one serves the first; the second is left unanswered
    // (an error reply would end the SDK's sync; silence makes it retry,
    // IMMessageSyncManager.swift:279-289, 322-352@07bf3fe).
    let replies = replies_until_quiet(&mut alice).await;
    assert_eq!(replies.iter().map(|(s, _)| *s).collect::<Vec<_>>(), [first]);
    assert!(!replies.iter().any(|(s, _)| *s == second));
    suppressed_grows(&s, "batch_sync", "rate_limited", before, 1.0).await;
    match send_until_answered(&mut alice, &sync, Duration::from_millis(700)).await {
        Reply::BatchSync { code, .. } => assert_eq!(code, ErrorCode::Success),
        r => panic!("{r:?}"),
    }
    s.stop().await;
}

#[tokio::test]
async fn errors_a_retry_cannot_fix_keep_their_codes() {
    let s = TestServer::start_with(|c| c.message.max_content_bytes = 64).await;
    let conv = "single_pe_alice_pe_bob";
    let mut alice = s.ws("pe_alice", Generation::V2, "iOS").await;
    let mut bob = s.tcp("pe_bob").await;
    let big = "x".repeat(65);
    let cases = [
        (
            sdk_send("pe-1", conv, "pe_bob", &big),
            ErrorCode::MessageTooLarge,
        ),
        (
            sdk_send("pe-2", "single_pe_carol_pe_dave", "", "hi"),
            ErrorCode::PermissionDenied,
        ),
        (
            sdk_send("pe-3", conv, "pe_carol", "hi"),
            ErrorCode::InvalidParam,
        ),
        (
            sdk_send("pe-4", "group_pe_nowhere", "", "hi"),
            ErrorCode::ConversationNotExist,
        ),
    ];
    for (req, code) in cases {
        let Request::Send(sr) = &req else {
            unreachable!()
        };
        let cid = sr.client_msg_id.clone();
        match alice.request(req).await.unwrap() {
            Reply::Send {
                code: got,
                client_msg_id,
                ..
            } => {
                assert_eq!(got, code, "{cid}");
                assert_eq!(client_msg_id, cid, "the SDK matches on client_msg_id");
            }
            r => panic!("{r:?}"),
        }
    }
    assert_no_message(&mut bob).await;
    s.stop().await;
}

/// A session of `user` on `platform` over TCP (the v2 SDK's default transport).
async fn tcp_on(s: &TestServer, user: &str, platform: &str) -> Client {
    let mut c = Client::connect_tcp_with(s.addrs.tcp, s.client_options())
        .await
        .unwrap();
    assert_auth_ok(c.auth(user, &s.token(user), platform).await.unwrap());
    c
}

#[tokio::test]
async fn own_messages_reach_the_senders_other_devices_except_sdk_ones() {
    // `multi`: one user on the SDK over both generations and transports at
    // once, plus another platform and the browser demo.
    let s = TestServer::start_with(|c| {
        c.session.kick_policy = im_server::config::KickPolicy::Multi;
    })
    .await;
    let conv = "single_ec_alice_ec_bob";
    let mut ios_v2 = s.ws("ec_alice", Generation::V2, "iOS").await;
    let mut ios_tcp = s.tcp("ec_alice").await;
    let mut ios_v1 = s.ws("ec_alice", Generation::V1, "iOS").await;
    let mut android = tcp_on(&s, "ec_alice", "Android").await;
    let mut web = s.ws("ec_alice", Generation::V2, "web").await;
    let mut bob = s.ws("ec_bob", Generation::V2, "iOS").await;

    // Sent from another platform: the peer, the demo and nobody on the SDK.
    sent_ok(
        &android
            .request(sdk_send("ec-1", conv, "ec_bob", "from android"))
            .await
            .unwrap(),
    );
    assert_eq!(next_text(&mut bob).await.unwrap().0, "from android");
    let (text, m) = next_text(&mut web).await.unwrap();
    assert_eq!(
        (text.as_str(), m.sender_id.as_str()),
        ("from android", "ec_alice")
    );
    for c in [&mut ios_v2, &mut ios_tcp, &mut ios_v1] {
        assert_no_message(c).await;
    }

    // Sent from the SDK: the other non-SDK sessions hear it, the other SDK
    // sessions and the sending one do not.
    sent_ok(
        &ios_v2
            .request(sdk_send("ec-2", conv, "ec_bob", "from ios"))
            .await
            .unwrap(),
    );
    assert_eq!(next_text(&mut bob).await.unwrap().0, "from ios");
    assert_eq!(next_text(&mut android).await.unwrap().0, "from ios");
    assert_eq!(next_text(&mut web).await.unwrap().0, "from ios");
    for c in [&mut ios_v2, &mut ios_tcp, &mut ios_v1] {
        assert_no_message(c).await;
    }

    // The SDK learns its own messages by sync: sender_id alice (so the
    // SDK files them as sent) and is_read (not counted unread).
    let r = ios_tcp
        .request(Request::BatchSync {
            states: vec![],
            max_per_conversation: 100,
        })
        .await
        .unwrap();
    let Reply::BatchSync {
        code: ErrorCode::Success,
        conversations,
        ..
    } = r
    else {
        panic!("{r:?}")
    };
    let own: Vec<(String, String, bool)> = conversations
        .iter()
        .flat_map(|c| &c.messages)
        .map(|v| {
            (
                v.message.client_msg_id.clone(),
                v.message.sender_id.clone(),
                v.is_read,
            )
        })
        .collect();
    assert_eq!(
        own,
        [
            ("ec-1".to_owned(), "ec_alice".to_owned(), true),
            ("ec-2".to_owned(), "ec_alice".to_owned(), true)
        ]
    );

    // Messages from others still reach every session.
    let (bob_id, _) = sent_ok(
        &bob.request(sdk_send("ec-3", conv, "ec_alice", "from bob"))
            .await
            .unwrap(),
    );
    for c in [
        &mut ios_v2,
        &mut ios_tcp,
        &mut ios_v1,
        &mut android,
        &mut web,
    ] {
        assert_eq!(next_text(c).await.unwrap().0, "from bob");
    }

    // Reading on the demo tells the SDK sessions (the v2 SDK clears the
    // conversation's unread count when user_id is itself,
    // IMClient.swift:1343-1347@07bf3fe).
    let r = web
        .request(Request::ReadReceipt {
            message_ids: vec![bob_id.clone()],
            conversation_id: conv.into(),
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
    let receipt = next_event(&mut ios_v2, |e| matches!(e, Event::ReadReceipt { .. })).await;
    let Event::ReadReceipt {
        user_id,
        server_msg_ids,
        ..
    } = receipt
    else {
        unreachable!()
    };
    assert_eq!(
        (user_id.as_str(), server_msg_ids),
        ("ec_alice", vec![bob_id])
    );

    // Recalling an own message on the demo reaches the SDK sessions too
    // (handleRevokeNotification by id, IMClient.swift:1315-1327@07bf3fe;
    // a message the device has not synced yet comes with is_revoked).
    let r = web
        .request(Request::Revoke {
            message_id: m.server_msg_id.clone(),
            conversation_id: conv.into(),
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
    for c in [&mut ios_v2, &mut ios_tcp, &mut bob] {
        let e = next_event(c, |e| matches!(e, Event::Revoked { .. })).await;
        let Event::Revoked { server_msg_id, .. } = e else {
            unreachable!()
        };
        assert_eq!(server_msg_id, m.server_msg_id);
    }
    s.stop().await;
}

/// The next event of `c` that `want` selects (others are skipped).
async fn next_event(c: &mut Client, want: impl Fn(&Event) -> bool) -> Event {
    loop {
        match c.next_event(WAIT).await.unwrap() {
            Some(e) if want(&e) => return e,
            Some(_) => continue,
            None => panic!("no such event within {WAIT:?}"),
        }
    }
}

#[tokio::test]
async fn the_platforms_without_own_echo_are_configurable() {
    let s = TestServer::start_with(|c| {
        c.session.kick_policy = im_server::config::KickPolicy::Multi;
        c.session.no_own_echo_platforms = vec!["android".into()];
    })
    .await;
    let conv = "single_cf_alice_cf_bob";
    let mut ios = s.ws("cf_alice", Generation::V2, "iOS").await;
    let mut android = tcp_on(&s, "cf_alice", "Android").await;
    let mut web = s.ws("cf_alice", Generation::V2, "web").await;
    sent_ok(
        &web.request(sdk_send("cf-1", conv, "cf_bob", "hello"))
            .await
            .unwrap(),
    );
    // Compared without case; iOS is no longer in the list.
    assert_eq!(next_text(&mut ios).await.unwrap().0, "hello");
    assert_no_message(&mut android).await;
    s.stop().await;
}
