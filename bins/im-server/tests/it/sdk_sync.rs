//! Issue 18, items 5, 7 and 8: the v2 SDK's BATCH_SYNC after a reconnect,
//! through the real server, with a client that behaves as the SDK at
//! 07bf3fe does:
//!
//! * it stores a pushed message and only then acks it, one MSG_ACK per
//!   push and per BATCH_MSG element (`IMMessageManager.swift:324-341`,
//!   `IMClient.swift:1302-1306`, `1618-1623`);
//! * it reconnects with the same token (the token is kept,
//!   `Talk/Talk/SceneDelegate.swift:47-49`) and sends BATCH_SYNC with its
//!   saved cursors and `max_count_per_conversation = 100`
//!   (`IMMessageSyncManager.swift:244-261`);
//! * it saves `max_seq` of every `ConversationMessages` as that
//!   conversation's next cursor (`IMMessageSyncManager.swift:692`) and does
//!   not follow `has_more` (`:699-702`);
//! * a packet body over 1 MiB is fatal (`IMPacketCodec.swift:44`, `:242-248`):
//!   the client below refuses bodies over 1 MiB as well.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use im_client::{Client, ClientOptions};
use im_core::ErrorCode;
use im_core::command::{ConversationBatch, Event, Reply, Request, SendRequest, SyncState};
use im_core::model::MessageType;

use crate::{QUIET, TestServer, assert_auth_ok, sent_ok};

/// The SDK's largest packet body (`IMPacketCodec.swift:44` @07bf3fe).
const SDK_MAX_BODY: usize = 1 << 20;

async fn connect(s: &TestServer, user: &str, token: &str) -> Client {
    let options = ClientOptions {
        max_frame_bytes: SDK_MAX_BODY,
        timeout: Duration::from_secs(20),
        ..s.client_options()
    };
    let mut c = Client::connect_tcp_with(s.addrs.tcp, options)
        .await
        .unwrap();
    assert_auth_ok(c.auth(user, token, "iOS").await.unwrap());
    c
}

async fn batch_sync(c: &mut Client, cursors: &BTreeMap<String, i64>) -> Vec<ConversationBatch> {
    let states = cursors
        .iter()
        .map(|(id, seq)| SyncState {
            conversation_id: id.clone(),
            last_seq: *seq,
        })
        .collect();
    let r = c
        .request(Request::BatchSync {
            states,
            max_per_conversation: 100,
        })
        .await
        .unwrap();
    match r {
        Reply::BatchSync {
            code: ErrorCode::Success,
            conversations,
            ..
        } => conversations,
        other => panic!("{other:?}"),
    }
}

/// What an SDK client holds: messages by conversation and seq (stored once,
/// however often they arrive), how often each arrived, and its cursors.
#[derive(Default)]
struct SdkState {
    stored: BTreeMap<String, BTreeMap<i64, String>>,
    arrivals: HashMap<(String, i64), u32>,
    /// Seqs per conversation in arrival order.
    order: BTreeMap<String, Vec<i64>>,
    cursors: BTreeMap<String, i64>,
}

impl SdkState {
    fn take(&mut self, conv: &str, seq: i64, server_msg_id: &str) {
        self.stored
            .entry(conv.to_owned())
            .or_default()
            .insert(seq, server_msg_id.to_owned());
        *self.arrivals.entry((conv.to_owned(), seq)).or_default() += 1;
        self.order.entry(conv.to_owned()).or_default().push(seq);
    }

    /// Stores a BATCH_SYNC reply and saves `max_seq` as the cursor (:692).
    fn apply_reply(&mut self, convs: &[ConversationBatch]) {
        for c in convs {
            for m in &c.messages {
                self.take(&c.conversation_id, m.message.seq, &m.message.server_msg_id);
            }
            self.cursors.insert(c.conversation_id.clone(), c.max_seq);
        }
    }

    /// Reads `n` pushes (PUSH_MSG and BATCH_MSG elements alike), storing
    /// and acking each as the SDK does, then proves that no more come.
    async fn take_pushes(&mut self, c: &mut Client, n: usize) {
        let mut got = 0;
        while got < n {
            let e = c.next_event(Duration::from_secs(10)).await.unwrap();
            let Some(e) = e else {
                panic!("{got} of {n} pushes arrived");
            };
            if let Event::Message(m) = e {
                self.take(&m.conversation_id, m.seq, &m.server_msg_id);
                c.ack(&m.server_msg_id).await.unwrap();
                got += 1;
            }
        }
        while let Some(e) = c.next_event(QUIET).await.unwrap() {
            assert!(!matches!(e, Event::Message(_)), "unexpected push {e:?}");
        }
    }

    fn count_twice(&self) -> usize {
        self.arrivals.values().filter(|n| **n > 1).count()
    }
}

fn seqs(convs: &[ConversationBatch], conv: &str) -> Vec<i64> {
    convs
        .iter()
        .filter(|c| c.conversation_id == conv)
        .flat_map(|c| c.messages.iter().map(|m| m.message.seq))
        .collect()
}

fn entry<'a>(convs: &'a [ConversationBatch], conv: &str) -> &'a ConversationBatch {
    convs
        .iter()
        .find(|c| c.conversation_id == conv)
        .unwrap_or_else(|| panic!("{conv} missing from {convs:?}"))
}

/// Item 5: pushes the device stored and acknowledged before a reconnect are
/// left out of its next BATCH_SYNC while `max_seq` covers them; an un-acked
/// one still comes; another login of the same user (another install, even
/// on the same platform) and another platform still get everything.
#[tokio::test]
async fn acked_pushes_are_left_out_of_the_next_batch_sync_but_the_cursor_moves_past_them() {
    let s = TestServer::start().await;
    let conv = "single_alice_bob";
    let bob_token = s.token("bob");
    let mut bob = connect(&s, "bob", &bob_token).await;
    let mut sdk = SdkState::default();
    // First launch: full sync, nothing yet.
    let first = batch_sync(&mut bob, &sdk.cursors).await;
    assert!(first.is_empty(), "{first:?}");
    let mut alice = s.tcp("alice").await;
    for i in 1..=4 {
        sent_ok(&alice.send_text(conv, &format!("a{i}"), "hi").await.unwrap());
    }
    // bob stores and acks pushes 1, 2 and 4; push 3 is read but its ack is
    // lost (the socket dropped before it went out).
    let mut pushed = Vec::new();
    while pushed.len() < 4 {
        match bob.next_event(Duration::from_secs(10)).await.unwrap() {
            Some(Event::Message(m)) => pushed.push(m),
            Some(_) => {}
            None => panic!("only {} pushes", pushed.len()),
        }
    }
    for m in &pushed {
        sdk.take(&m.conversation_id, m.seq, &m.server_msg_id);
        if m.seq != 3 {
            bob.ack(&m.server_msg_id).await.unwrap();
        }
    }
    // A request after the acks: they were processed in order before it.
    bob.heartbeat().await.unwrap();
    bob.close().await.unwrap();

    // Reconnect with the same token (same install): the cursor is still 0
    // for this conversation (pushes do not move it, :692).
    let mut bob = connect(&s, "bob", &bob_token).await;
    let convs = batch_sync(&mut bob, &sdk.cursors).await;
    assert_eq!(
        seqs(&convs, conv),
        vec![3],
        "only the un-acked push comes back"
    );
    let e = entry(&convs, conv);
    assert_eq!(
        (e.max_seq, e.has_more),
        (4, false),
        "max_seq covers the acked ones"
    );
    sdk.apply_reply(&convs);
    assert_eq!(sdk.cursors.get(conv), Some(&4));
    // Push 3 arrived twice in all (push + sync: it was never acked); the
    // acked ones once.
    assert_eq!(sdk.arrivals.get(&(conv.to_owned(), 1)), Some(&1));
    assert_eq!(sdk.arrivals.get(&(conv.to_owned(), 4)), Some(&1));
    assert_eq!(sdk.count_twice(), 1);
    // With the new cursor there is nothing left.
    let again = batch_sync(&mut bob, &sdk.cursors).await;
    assert!(again.is_empty(), "{again:?}");

    // A later push acked after a sync with cursor 4 is left out too, and
    // the acks at or below the presented cursor are forgotten (no effect
    // the client can see: it never asks below its cursor).
    sent_ok(&alice.send_text(conv, "a5", "hi").await.unwrap());
    sdk.take_pushes(&mut bob, 1).await;
    bob.heartbeat().await.unwrap();
    bob.close().await.unwrap();
    let mut bob = connect(&s, "bob", &bob_token).await;
    let convs = batch_sync(&mut bob, &sdk.cursors).await;
    assert_eq!(seqs(&convs, conv), Vec::<i64>::new());
    assert_eq!(entry(&convs, conv).max_seq, 5);
    // Another install of bob (another login, same platform) and bob on
    // another platform get all five: acks are per login and platform.
    let mut other_install = connect(&s, "bob", &s.token("bob")).await;
    assert_eq!(
        seqs(
            &batch_sync(&mut other_install, &BTreeMap::new()).await,
            conv
        ),
        vec![1, 2, 3, 4, 5]
    );
    let mut web = s.ws("bob", im_core::Generation::V2, "web").await;
    assert_eq!(
        seqs(&batch_sync(&mut web, &BTreeMap::new()).await, conv),
        vec![1, 2, 3, 4, 5]
    );
    s.stop().await;
}

/// Item 7: 350 messages waiting in one conversation (and smaller backlogs
/// in others), one BATCH_SYNC with `max_count_per_conversation = 100`: the
/// client ends up with every message exactly once, in seq order per
/// conversation, without a second request; a live message sent meanwhile
/// comes after the backlog of its conversation. After a reconnect nothing
/// comes again and the cursors move to the heads.
#[tokio::test]
async fn a_backlog_larger_than_one_page_arrives_without_a_second_request() {
    // Setting up the backlog is a burst of sends.
    let s = TestServer::start_with(|c| c.rate_limit.enabled = false).await;
    let heads = [("alice", 350i64), ("carol", 130), ("erin", 7)];
    for (peer, n) in heads {
        let mut c = s.tcp(peer).await;
        let conv = if peer < "dave" {
            format!("single_{peer}_dave")
        } else {
            format!("single_dave_{peer}")
        };
        // Pipelined: the replies are awaited after all sends went out.
        let mut seqs = Vec::new();
        for i in 0..n {
            let req = Request::Send(SendRequest {
                client_msg_id: format!("{peer}-{i}"),
                conversation_id: conv.clone(),
                receiver_id: "dave".into(),
                message_type: MessageType::TEXT.0,
                content: bytes::Bytes::from(format!("{peer} {i}")),
                send_time: 1,
                ..SendRequest::default()
            });
            seqs.push(c.send(&req).await.unwrap());
        }
        for seq in seqs {
            sent_ok(&c.wait_reply(seq, Duration::from_secs(20)).await.unwrap());
        }
    }
    let token = s.token("dave");
    let mut dave = connect(&s, "dave", &token).await;
    let mut sdk = SdkState::default();
    let convs = batch_sync(&mut dave, &sdk.cursors).await;
    let a = entry(&convs, "single_alice_dave");
    assert_eq!((a.messages.len(), a.max_seq, a.has_more), (100, 100, true));
    let c = entry(&convs, "single_carol_dave");
    assert_eq!((c.messages.len(), c.max_seq, c.has_more), (100, 100, true));
    let e = entry(&convs, "single_dave_erin");
    assert_eq!((e.messages.len(), e.max_seq, e.has_more), (7, 7, false));
    sdk.apply_reply(&convs);
    // A live message while the backlog streams.
    let mut alice = s.tcp("alice").await;
    sent_ok(
        &alice
            .send_text("single_alice_dave", "live", "live")
            .await
            .unwrap(),
    );
    sdk.take_pushes(&mut dave, 250 + 1 + 30).await;
    for (conv, head) in [
        ("single_alice_dave", 351),
        ("single_carol_dave", 130),
        ("single_dave_erin", 7),
    ] {
        let order = &sdk.order[conv];
        assert_eq!(
            order,
            &(1..=head).collect::<Vec<_>>(),
            "{conv}: every seq once, in order"
        );
    }
    assert_eq!(sdk.count_twice(), 0);
    // Reconnect with the cursors of the reply: everything streamed was
    // acked, so nothing comes again and the cursors reach the heads.
    dave.heartbeat().await.unwrap();
    dave.close().await.unwrap();
    let mut dave = connect(&s, "dave", &token).await;
    let convs = batch_sync(&mut dave, &sdk.cursors).await;
    for c in &convs {
        assert!(c.messages.is_empty(), "{c:?}");
        assert!(!c.has_more);
    }
    sdk.apply_reply(&convs);
    assert_eq!(sdk.cursors["single_alice_dave"], 351);
    assert_eq!(sdk.cursors["single_carol_dave"], 130);
    sdk.take_pushes(&mut dave, 0).await;
    s.stop().await;
}

/// Item 8: with 36-character ids, thousands of conversations and contents
/// near 64 KiB, every frame (BATCH_SYNC reply, BATCH_MSG, SYNC_RANGE) stays
/// within the SDK's 1 MiB body, even with `sync_max_reply_bytes` just under
/// 1 MiB, and nothing is lost: the rest follows by stream or by cursor.
#[tokio::test]
async fn sync_frames_stay_under_one_mebibyte_with_long_ids_and_many_conversations() {
    let s = TestServer::start_with(|c| {
        c.message.sync_max_reply_bytes = SDK_MAX_BODY - 1;
        c.rate_limit.enabled = false;
    })
    .await;
    let uuid = |i: usize| format!("{i:08x}-0000-4000-8000-{i:012x}");
    let me = uuid(0);
    let conversations = 3000usize;
    // `me` writes to 3000 peers (own messages: they come by cursor, not by
    // stream, which only carries what the push path shows correctly).
    let mut c = connect(&s, &me, &s.token(&me)).await;
    let mut pending = Vec::new();
    for i in 1..=conversations {
        let req = Request::Send(SendRequest {
            client_msg_id: uuid(100_000 + i),
            conversation_id: String::new(),
            receiver_id: uuid(i),
            message_type: MessageType::TEXT.0,
            content: bytes::Bytes::from(vec![b'x'; 200]),
            send_time: 1,
            ..SendRequest::default()
        });
        pending.push(c.send(&req).await.unwrap());
        if pending.len() >= 256 {
            for seq in pending.drain(..) {
                sent_ok(&c.wait_reply(seq, Duration::from_secs(30)).await.unwrap());
            }
        }
    }
    for seq in pending.drain(..) {
        sent_ok(&c.wait_reply(seq, Duration::from_secs(30)).await.unwrap());
    }
    // And one peer sends 40 contents of ~63 KiB to `me`.
    let big_peer = uuid(1);
    let mut p = connect(&s, &big_peer, &s.token(&big_peer)).await;
    for i in 0..40 {
        let req = Request::Send(SendRequest {
            client_msg_id: uuid(200_000 + i),
            receiver_id: me.clone(),
            message_type: MessageType::TEXT.0,
            content: bytes::Bytes::from(vec![b'y'; 63 * 1024]),
            send_time: 1,
            ..SendRequest::default()
        });
        sent_ok(&p.request(req).await.unwrap());
    }
    c.close().await.unwrap();

    let big_conv = if me < big_peer {
        format!("single_{me}_{big_peer}")
    } else {
        format!("single_{big_peer}_{me}")
    };
    // A new install syncs: the client refuses any body over 1 MiB.
    let token = s.token(&me);
    let mut dev = connect(&s, &me, &token).await;
    let mut sdk = SdkState::default();
    let mut rounds = 0;
    let mut largest = 0usize;
    loop {
        rounds += 1;
        assert!(rounds < 50, "sync does not converge");
        let convs = batch_sync(&mut dev, &sdk.cursors).await;
        if convs.is_empty() {
            break;
        }
        // The body the server sent (re-encoding what was decoded gives the
        // same bytes): the client already refused anything over 1 MiB; the
        // budget is used nearly to the end.
        let total = convs.iter().map(|c| c.messages.len()).sum::<usize>();
        let mut body = bytes::BytesMut::new();
        im_protocol::encode_reply(
            im_core::Generation::V2,
            &Reply::BatchSync {
                code: ErrorCode::Success,
                msg: String::new(),
                conversations: convs.clone(),
                server_time: 1,
                total: i32::try_from(total).unwrap(),
            },
            &me,
            &mut body,
        );
        largest = largest.max(body.len());
        sdk.apply_reply(&convs);
        // The big conversation's messages the reply could not carry are
        // streamed after it (the others are `me`'s own: by cursor).
        let missing = 41 - sdk.stored.get(&big_conv).map_or(0, BTreeMap::len);
        sdk.take_pushes(&mut dev, missing).await;
    }
    assert!(
        rounds > 2,
        "3000 conversations cannot fit one reply ({rounds} rounds)"
    );
    assert!(
        largest + 16 <= SDK_MAX_BODY && largest > SDK_MAX_BODY - 4096,
        "largest BATCH_SYNC body {largest}"
    );
    eprintln!("largest BATCH_SYNC body: {largest} bytes in {rounds} rounds");
    assert_eq!(sdk.stored.len(), conversations);
    assert_eq!(
        sdk.stored[&big_conv].keys().copied().collect::<Vec<_>>(),
        (1..=41).collect::<Vec<_>>()
    );
    assert_eq!(sdk.count_twice(), 0);
    // SYNC_RANGE of the large messages: one frame, the rest by has_more.
    let r = dev
        .request(Request::SyncRange {
            request_id: "R".repeat(36),
            conversation_id: big_conv.clone(),
            start_seq: 1,
            end_seq: 41,
            count: 500,
        })
        .await
        .unwrap();
    let Reply::SyncRange {
        code: ErrorCode::Success,
        messages,
        end_seq,
        has_more,
        ..
    } = r
    else {
        panic!("{r:?}")
    };
    assert!(
        has_more && (10..41).contains(&end_seq),
        "{end_seq} {has_more}"
    );
    assert_eq!(messages.last().unwrap().message.seq, end_seq);
    s.stop().await;
}
