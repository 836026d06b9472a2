//! The iOS SDK's WebSocket behaviour on a default server (issue 18, items
//! 1 and 2).
//!
//! Both SDK generations' sample apps use the plain `/ws` path for WebSocket
//! (v2 Talk app: the URL given at Talk/Talk/Models/TalkConfig.swift:14@07bf3fe;
//! v1: Talk/GETTING_STARTED.md:48@5529e01), so the server detects each
//! connection's generation from its requests. And both open
//! the socket as `url?token=<token>` (IMWebSocketManager.swift:54-59, the
//! same at 5529e01 and 07bf3fe), then send AUTH_REQ
//! (IMWebSocketTransport.swift:81-88@07bf3fe); after a server-side close
//! they reopen it with the same URL and token and send nothing at all
//! (IMWebSocketManager.swift:135-162 and 216-233: `reconnect()` calls only
//! `connect(url:token:)`), so the query token alone must authenticate.

use std::time::Duration;

use im_client::{Client, ClientError};
use im_core::command::{Event, Reply, Request};
use im_core::{ErrorCode, Generation};

use crate::{QUIET, TestServer, WAIT, assert_auth_ok, next_text, sent_ok};

/// A client framing `generation` on `path` (plain `/ws` unless it says
/// otherwise), not authenticated.
async fn open(s: &TestServer, path: &str, generation: Generation) -> Client {
    Client::connect_ws_with(s.addrs.ws, path, generation, s.client_options())
        .await
        .unwrap()
}

/// An SDK-like client on plain `/ws`: `?token=` in the URL, then AUTH_REQ
/// with platform "iOS" (IMWebSocketTransport.swift:152-157@07bf3fe).
async fn sdk(s: &TestServer, user: &str, generation: Generation) -> Client {
    let token = s.token(user);
    let mut c = open(s, &format!("/ws?token={token}"), generation).await;
    assert_auth_ok(c.auth(user, &token, "iOS").await.unwrap());
    c
}

/// The v2 SDK's first BATCH_SYNC on a fresh install: no conversation
/// states, 100 per conversation, i.e. the bytes `10 64`
/// (IMMessageSyncManager.swift:241-261@07bf3fe).
fn full_sync() -> Request {
    Request::BatchSync {
        states: vec![],
        max_per_conversation: 100,
    }
}

fn sync_ok(r: &Reply) {
    assert!(
        matches!(
            r,
            Reply::BatchSync {
                code: ErrorCode::Success,
                ..
            }
        ),
        "{r:?}"
    );
}

/// The next pushed message, checked field by field (a push encoded in the
/// other generation does not decode like this).
async fn expect_push(c: &mut Client, text: &str, from: &str, conversation: &str) {
    let (got, m) = next_text(c)
        .await
        .unwrap_or_else(|| panic!("no push {text:?}"));
    assert_eq!(got, text);
    assert_eq!(m.sender_id, from);
    assert_eq!(m.conversation_id, conversation);
    assert!(m.seq > 0, "{m:?}");
}

#[tokio::test]
async fn both_generations_and_tcp_talk_on_plain_ws() {
    let s = TestServer::start().await;
    // The v1 app: AUTH and nothing else (it syncs over HTTP,
    // IMMessageSyncManager.swift:464@5529e01).
    let mut alice = sdk(&s, "alice", Generation::V1).await;
    let mut carol = s.tcp("carol").await;
    let mut bob = sdk(&s, "bob", Generation::V2).await;
    sync_ok(&bob.request(full_sync()).await.unwrap());

    // v2 on /ws -> v1 on /ws, and -> TCP.
    sent_ok(
        &bob.send_text("single_alice_bob", "b-1", "bob to alice")
            .await
            .unwrap(),
    );
    expect_push(&mut alice, "bob to alice", "bob", "single_alice_bob").await;
    sent_ok(
        &bob.send_text("single_bob_carol", "b-2", "bob to carol")
            .await
            .unwrap(),
    );
    expect_push(&mut carol, "bob to carol", "bob", "single_bob_carol").await;

    // v1 on /ws (its send reveals v1, the default) -> v2 on /ws.
    sent_ok(
        &alice
            .send_text("single_alice_bob", "a-1", "alice to bob")
            .await
            .unwrap(),
    );
    expect_push(&mut bob, "alice to bob", "alice", "single_alice_bob").await;
    // TCP -> both.
    sent_ok(
        &carol
            .send_text("single_bob_carol", "c-1", "carol to bob")
            .await
            .unwrap(),
    );
    expect_push(&mut bob, "carol to bob", "carol", "single_bob_carol").await;
    sent_ok(
        &carol
            .send_text("single_alice_carol", "c-2", "carol to alice")
            .await
            .unwrap(),
    );
    expect_push(&mut alice, "carol to alice", "carol", "single_alice_carol").await;

    // A v2 client whose first revealing request is a send (the SDK resends
    // unacknowledged messages before it syncs, IMClient.swift:1003-1009@07bf3fe).
    let mut dave = sdk(&s, "dave", Generation::V2).await;
    sent_ok(
        &dave
            .send_text("single_alice_dave", "d-1", "dave to alice")
            .await
            .unwrap(),
    );
    expect_push(&mut alice, "dave to alice", "dave", "single_alice_dave").await;
    sent_ok(
        &alice
            .send_text("single_alice_dave", "a-2", "alice to dave")
            .await
            .unwrap(),
    );
    expect_push(&mut dave, "alice to dave", "alice", "single_alice_dave").await;
}

#[tokio::test]
async fn pushes_wait_until_the_generation_is_known() {
    // A long hold, so that a slow machine cannot end it before BATCH_SYNC.
    let s = TestServer::start_with(|c| c.server.ws_detect_hold = Duration::from_secs(20)).await;
    let mut carol = s.tcp("carol").await;
    let mut bob = sdk(&s, "bob", Generation::V2).await;
    // A push arrives between AUTH_RSP and the v2 SDK's BATCH_SYNC.
    sent_ok(
        &carol
            .send_text("single_bob_carol", "c-1", "early")
            .await
            .unwrap(),
    );
    // Held: nothing reaches bob yet.
    assert!(
        bob.next_event(QUIET).await.unwrap().is_none(),
        "a push went out before the generation was known"
    );
    sync_ok(&bob.request(full_sync()).await.unwrap());
    // Released in v2 once BATCH_SYNC revealed it.
    expect_push(&mut bob, "early", "carol", "single_bob_carol").await;
}

#[tokio::test]
async fn a_connection_that_never_reveals_gets_the_default_after_the_hold() {
    let hold = Duration::from_secs(1);
    let s = TestServer::start_with(|c| c.server.ws_detect_hold = hold).await;
    let mut carol = s.tcp("carol").await;
    // The v1 app sends nothing revealing; its pushes go out in the default
    // generation (v1) once the hold has passed.
    let mut alice = sdk(&s, "alice", Generation::V1).await;
    sent_ok(
        &carol
            .send_text("single_alice_carol", "c-1", "first")
            .await
            .unwrap(),
    );
    expect_push(&mut alice, "first", "carol", "single_alice_carol").await;
    // Past the window nothing waits.
    let started = std::time::Instant::now();
    sent_ok(
        &carol
            .send_text("single_alice_carol", "c-2", "second")
            .await
            .unwrap(),
    );
    expect_push(&mut alice, "second", "carol", "single_alice_carol").await;
    assert!(started.elapsed() < hold, "{:?}", started.elapsed());
}

#[tokio::test]
async fn forced_generations_and_bodies_that_fit_neither() {
    // A server whose default is v2 still serves a v1 app on plain /ws.
    let s = TestServer::start_with(|c| {
        c.server.ws_default_generation = im_server::config::WsGeneration::V2;
    })
    .await;
    let mut carol = s.tcp("carol").await;
    let mut alice = sdk(&s, "alice", Generation::V1).await;
    sent_ok(
        &alice
            .send_text("single_alice_carol", "a-1", "v1 on a v2 default")
            .await
            .unwrap(),
    );
    expect_push(
        &mut carol,
        "v1 on a v2 default",
        "alice",
        "single_alice_carol",
    )
    .await;
    sent_ok(
        &carol
            .send_text("single_alice_carol", "c-1", "back")
            .await
            .unwrap(),
    );
    expect_push(&mut alice, "back", "carol", "single_alice_carol").await;

    // `?v=1` forces v1: a v2-shaped full sync is then a v1 SyncRequest.
    let token = s.token("erin");
    let mut erin = open(&s, &format!("/ws?v=1&token={token}"), Generation::V1).await;
    assert_auth_ok(erin.auth("erin", &token, "iOS").await.unwrap());
    let seq = erin.next_sequence();
    erin.send_raw(300, seq, &[0x10, 0x64]).await.unwrap();
    match erin.wait_reply(seq, WAIT).await.unwrap() {
        Reply::SyncInbox {
            code: ErrorCode::Success,
            ..
        } => {}
        other => panic!("{other:?}"),
    }

    // A send that fits neither generation: InvalidParam, and the
    // connection stays undecided (its next, v2, send works).
    let mut bob = sdk(&s, "bob", Generation::V2).await;
    let seq = bob.next_sequence();
    bob.send_raw(200, seq, &[0x0a, 0x05, 0xff, 0xff])
        .await
        .unwrap();
    match bob.wait_reply(seq, WAIT).await.unwrap() {
        Reply::Send { code, .. } | Reply::Error { code, .. } => {
            assert_eq!(code, ErrorCode::InvalidParam);
        }
        other => panic!("{other:?}"),
    }
    sent_ok(
        &bob.send_text("single_bob_carol", "b-1", "after junk")
            .await
            .unwrap(),
    );
    expect_push(&mut carol, "after junk", "bob", "single_bob_carol").await;
}

#[tokio::test]
async fn a_query_token_authenticates_without_auth() {
    // The socket never reveals its generation: its pushes wait the hold.
    let s = TestServer::start_with(|c| c.server.ws_detect_hold = Duration::from_millis(300)).await;
    let mut carol = s.tcp("carol").await;
    // The SDK's reconnect: the URL with the token, no AUTH_REQ.
    let mut alice = open(
        &s,
        &format!("/ws?token={}", s.token("alice")),
        Generation::V1,
    )
    .await;
    // Delivered to her as soon as her session exists (sending waits for
    // nothing but the commit).
    sent_ok(
        &carol
            .send_text("single_alice_carol", "c-1", "to the reconnected socket")
            .await
            .unwrap(),
    );
    expect_push(
        &mut alice,
        "to the reconnected socket",
        "carol",
        "single_alice_carol",
    )
    .await;
    // She is online through it, on the token's platform.
    match carol
        .request(Request::OnlineStatus {
            user_ids: vec!["alice".into()],
        })
        .await
        .unwrap()
    {
        Reply::OnlineStatus { statuses, .. } => {
            assert!(statuses[0].online, "{statuses:?}");
            assert_eq!(statuses[0].platforms, vec!["iOS".to_owned()]);
        }
        other => panic!("{other:?}"),
    }
    // `&token=` after another parameter, and AUTH_REQ later on the same
    // socket (re-auth) works.
    let token = s.token("bob");
    let mut bob = open(&s, &format!("/ws?v=2&token={token}"), Generation::V2).await;
    assert_auth_ok(bob.auth("bob", &token, "iOS").await.unwrap());
    sent_ok(
        &bob.send_text("single_bob_carol", "b-1", "after re-auth")
            .await
            .unwrap(),
    );
    expect_push(&mut carol, "after re-auth", "bob", "single_bob_carol").await;
}

fn refused_with(r: Result<Client, ClientError>, status: u16) {
    match r {
        Err(ClientError::Handshake { status: got, .. }) => assert_eq!(got, Some(status)),
        Err(other) => panic!("{other:?}"),
        Ok(_) => panic!("upgraded with a bad token"),
    }
}

#[tokio::test]
async fn bad_query_tokens_are_refused_at_the_upgrade() {
    let s = TestServer::start().await;
    let mut carol = s.tcp("carol").await;
    let forged = im_service::JwtAuth::new(b"another-secret", false)
        .issue(
            &im_core::UserId::parse("mallory").unwrap(),
            "iOS",
            now(),
            3600,
        )
        .unwrap();
    let expired = im_service::JwtAuth::new(b"e2e-test-secret", false)
        .issue(
            &im_core::UserId::parse("mallory").unwrap(),
            "iOS",
            now() - 7200,
            3600,
        )
        .unwrap();
    for bad in [forged.as_str(), expired.as_str(), "garbage", ""] {
        for path in [
            format!("/ws?token={bad}"),
            format!("/ws/v2?v=2&token={bad}"),
        ] {
            let r = Client::connect_ws_with(s.addrs.ws, &path, Generation::V2, s.client_options())
                .await;
            refused_with(r, 401);
        }
    }
    // No session came of it.
    match carol
        .request(Request::OnlineStatus {
            user_ids: vec!["mallory".into()],
        })
        .await
        .unwrap()
    {
        Reply::OnlineStatus { statuses, .. } => assert!(!statuses[0].online, "{statuses:?}"),
        other => panic!("{other:?}"),
    }
    // Demo tokens follow the AUTH rule (this server accepts them).
    let mut demo = open(&s, "/ws?token=demo_token_dora", Generation::V1).await;
    sent_ok(
        &carol
            .send_text("single_carol_dora", "c-1", "demo")
            .await
            .unwrap(),
    );
    expect_push(&mut demo, "demo", "carol", "single_carol_dora").await;
}

#[tokio::test]
async fn demo_query_tokens_follow_the_auth_rule() {
    let s = TestServer::start_with(|c| c.auth.allow_demo_tokens = false).await;
    let r = Client::connect_ws_with(
        s.addrs.ws,
        "/ws?token=demo_token_dora",
        Generation::V1,
        s.client_options(),
    )
    .await;
    refused_with(r, 401);
}

#[tokio::test]
async fn a_revoked_query_token_is_refused() {
    let s = TestServer::start().await;
    let (st, v) = crate::bad_input_matrix::call(
        &s,
        "POST",
        "/api/auth/register",
        None,
        r#"{"username":"frank","password":"correct horse"}"#,
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let (st, v) = crate::bad_input_matrix::call(
        &s,
        "POST",
        "/api/auth/login",
        None,
        r#"{"username":"frank","password":"correct horse","platform":"iOS"}"#,
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let token = v["data"]["token"].as_str().unwrap().to_owned();
    let mut c = open(&s, &format!("/ws?token={token}"), Generation::V1).await;
    let (st, v) =
        crate::bad_input_matrix::call(&s, "POST", "/api/auth/logout", Some(&token), "").await;
    assert_eq!(st, 200, "{v}");
    // Logout kicks the socket the token opened...
    match c.next_event(WAIT).await.unwrap() {
        Some(Event::KickOut { .. }) => {}
        other => panic!("{other:?}"),
    }
    // ...and the SDK's reconnect with it is refused.
    let r = Client::connect_ws_with(
        s.addrs.ws,
        &format!("/ws?token={token}"),
        Generation::V1,
        s.client_options(),
    )
    .await;
    refused_with(r, 401);
}

#[tokio::test]
async fn query_token_sessions_follow_the_kick_policy() {
    let s = TestServer::start().await;
    let path = format!("/ws?token={}", s.token("alice"));
    let mut first = open(&s, &path, Generation::V1).await;
    let mut second = open(&s, &path, Generation::V1).await;
    // Same user, same platform (the token's "iOS"): per_platform kicks the first.
    match first.next_event(WAIT).await.unwrap() {
        Some(Event::KickOut { reason: 1, .. }) => {}
        other => panic!("{other:?}"),
    }
    assert!(first.closed(WAIT).await.unwrap());
    let mut carol = s.tcp("carol").await;
    sent_ok(
        &carol
            .send_text("single_alice_carol", "c-1", "to the second")
            .await
            .unwrap(),
    );
    expect_push(&mut second, "to the second", "carol", "single_alice_carol").await;
}

#[tokio::test]
async fn a_v2_reconnect_by_query_token_is_pushed_in_v2() {
    let s = TestServer::start().await;
    let mut carol = s.tcp("carol").await;
    let token = s.token("bob");
    let path = format!("/ws?token={token}");
    // First connection: URL token, AUTH, BATCH_SYNC (reveals v2).
    let mut bob = open(&s, &path, Generation::V2).await;
    assert_auth_ok(bob.auth("bob", &token, "iOS").await.unwrap());
    sync_ok(&bob.request(full_sync()).await.unwrap());
    bob.close().await.unwrap();
    // The SDK's reconnect: same URL, nothing sent. It never reveals, yet
    // its pushes are v2 at once (no hold: it is known from the token).
    let mut bob = open(&s, &path, Generation::V2).await;
    let sent_at = std::time::Instant::now();
    sent_ok(
        &carol
            .send_text("single_bob_carol", "c-1", "after reconnect")
            .await
            .unwrap(),
    );
    expect_push(&mut bob, "after reconnect", "carol", "single_bob_carol").await;
    assert!(
        sent_at.elapsed() < Duration::from_secs(3),
        "held: {:?}",
        sent_at.elapsed()
    );
}

fn now() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

/// At the most verbose level, neither an accepted nor a refused query
/// token reaches the log (nor the `/metrics` page).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_tokens_never_reach_the_log() {
    use crate::durability::{Backend, Proc};
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("server.log");
    let mut backend = Backend::sqlite(dir.path());
    backend
        .env
        .push(("IM_LOGGER__LEVEL".into(), "trace".into()));
    backend
        .env
        .push(("IM_LOGGER__FORMAT".into(), "json".into()));
    let server = Proc::start(&backend, &log).await;

    let good = crate::durability::token("loguser");
    let mut c = Client::connect_ws(server.ws, &format!("/ws?token={good}"), Generation::V2)
        .await
        .unwrap();
    assert_auth_ok(c.auth("loguser", &good, "iOS").await.unwrap());
    sync_ok(&c.request(full_sync()).await.unwrap());
    c.close().await.unwrap();
    let bad = "eyJhbGciOiJIUzI1NiJ9.eyJ1c2VyX2lkIjoibG9ndXNlciJ9.cmVmdXNlZC1xdWVyeS10b2tlbg";
    let r = Client::connect_ws(server.ws, &format!("/ws?v=2&token={bad}"), Generation::V2).await;
    refused_with(r, 401);
    let (status, _, metrics) =
        crate::messaging::http(server.http, "GET", "/metrics", &[], "").await;
    server.stop();

    let logged = std::fs::read_to_string(&log).unwrap();
    for expected in ["websocket ?token= refused", "\"authenticated\""] {
        assert!(
            logged.contains(expected),
            "no {expected} in the log:\n{logged}"
        );
    }
    for (what, t) in [("accepted token", good.as_str()), ("refused token", bad)] {
        assert!(!logged.contains(t), "the log holds the {what}");
        // Nor a recognisable piece of it (its signature).
        let signature = t.rsplit('.').next().unwrap();
        assert!(
            !logged.contains(signature),
            "the log holds the {what}'s signature"
        );
        if status == 200 {
            assert!(!metrics.contains(signature), "/metrics holds the {what}");
        }
    }
}
