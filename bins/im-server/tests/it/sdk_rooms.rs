//! Chat rooms and system notices: the conversation kinds the SDK builds as
//! `chatroom_<id>` (type 3) and `system_<id>` (type 4)
//! (`IMMessageManager.generateConversationID`,
//! Sources/IMSDK/Business/Message/IMMessageManager.swift:561-579@07bf3fe;
//! the types in Sources/IMSDK/Core/Models/IMModels.swift:76-81@07bf3fe).

use im_core::command::{Reply, Request, SyncState};
use im_core::{ConversationType, ErrorCode, Generation};
use serde_json::{Value, json};

use crate::messaging::http;
use crate::sdk_send::{replies_until_quiet, sdk_send, suppressed, suppressed_grows};
use crate::{QUIET, TestServer, WAIT, assert_no_message, next_text, sent_ok};

const BACKEND_TOKEN: &str = "backend-token-for-e2e-0123456789";

async fn call(
    s: &TestServer,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    body: Value,
) -> (u16, Value) {
    let auth = bearer.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(a) = &auth {
        headers.push(("Authorization", a.as_str()));
    }
    let body = if body.is_null() {
        String::new()
    } else {
        body.to_string()
    };
    let (st, _, text) = http(s.addrs.http, method, path, &headers, &body).await;
    let v = serde_json::from_str(&text).unwrap_or(Value::Null);
    (st, v)
}

async fn notice(s: &TestServer, body: Value) -> (u16, Value) {
    call(s, "POST", "/api/system/notice", Some(BACKEND_TOKEN), body).await
}

fn with_backend(c: &mut im_server::config::Config) {
    c.backend.token = Some(BACKEND_TOKEN.to_owned().into());
}

/// A system notice from the backend reaches an online v2 TCP session as a
/// push, and an offline user by BATCH_SYNC, counted unread; every copy has
/// a non-empty client_msg_id (the SDK's local key: sdk-contract §7.7).
#[tokio::test]
async fn system_notice_reaches_online_push_and_offline_batch_sync() {
    let s = TestServer::start_with(with_backend).await;
    let mut alice = s.tcp("alice").await;

    let (st, v) = notice(
        &s,
        json!({"userIds": ["alice", "bob", "alice"], "content": "maintenance at 22:00",
               "messageType": 8, "requestId": "notice-1"}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let sent = v["data"].as_array().unwrap();
    assert_eq!(sent.len(), 2, "one notice per distinct user: {v}");
    assert_eq!(sent[0]["conversationID"], "system_alice");
    assert_eq!(sent[1]["conversationID"], "system_bob");
    assert_eq!(sent[0]["seq"], 1);
    let first_id = sent[0]["serverMsgID"].as_str().unwrap().to_owned();
    assert!(!sent[0]["clientMsgID"].as_str().unwrap().is_empty());

    // Online: pushed (SDK push path IMClient.swift handles PUSH_MSG 202).
    let (text, m) = next_text(&mut alice).await.expect("notice pushed");
    assert_eq!(text, "maintenance at 22:00");
    assert_eq!(m.conversation_id, "system_alice");
    assert_eq!(m.conversation_type, ConversationType::System);
    assert_eq!(m.sender_id, "system");
    assert_eq!(m.message_type, 8);
    assert!(!m.client_msg_id.is_empty());
    assert_eq!(m.server_msg_id, first_id);

    // The backend retries the same call: nothing new is stored or pushed.
    let (st, v) = notice(
        &s,
        json!({"userIds": ["alice"], "content": "maintenance at 22:00", "messageType": 8,
               "requestId": "notice-1"}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["data"][0]["duplicate"], true);
    assert_eq!(v["data"][0]["serverMsgID"], first_id.as_str());
    assert_no_message(&mut alice).await;

    // Offline bob: the v2 SDK sends BATCH_SYNC right after AUTH
    // (IMMessageSyncManager.swift) and counts the unread ones.
    let mut bob = s.tcp("bob").await;
    let r = bob
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
        panic!("batch sync failed: {r:?}");
    };
    let sys = conversations
        .iter()
        .find(|c| c.conversation_id == "system_bob")
        .expect("system_bob in BATCH_SYNC");
    assert_eq!(sys.messages.len(), 1);
    let m = &sys.messages[0];
    assert!(!m.is_read);
    assert_eq!(m.message.sender_id, "system");
    assert_eq!(m.message.conversation_type, ConversationType::System);
    assert!(!m.message.client_msg_id.is_empty());
    assert_eq!(sys.max_seq, 1);

    // Unread in the conversation list.
    let (st, v) = call(
        &s,
        "GET",
        "/api/conversations",
        Some(&s.token("bob")),
        Value::Null,
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let row = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["conversationID"] == "system_bob")
        .cloned()
        .expect("system_bob listed");
    assert_eq!(row["conversationType"], 4);
    assert_eq!(row["unreadCount"], 1);
    assert_eq!(row["lastMessage"]["content"], "maintenance at 22:00");
    // Only the owner reads a system conversation.
    let (st, v) = call(
        &s,
        "GET",
        "/api/messages/history?conversationID=system_bob",
        Some(&s.token("alice")),
        Value::Null,
    )
    .await;
    assert_eq!(st, 403, "{v}");
    s.stop().await;
}

/// Users cannot send into any system conversation, their own included:
/// PermissionDenied with a message that says why.
#[tokio::test]
async fn users_cannot_send_into_system_conversations() {
    let s = TestServer::start_with(with_backend).await;
    let mut alice = s.tcp("alice").await;
    let mut bob = s.tcp("bob").await;
    for conv in ["system_alice", "system_bob", "system_system"] {
        let r = alice
            .send_text(conv, &format!("c-{conv}"), "hi")
            .await
            .unwrap();
        match r {
            Reply::Send {
                code,
                msg,
                client_msg_id,
                ..
            } => {
                assert_eq!(code, ErrorCode::PermissionDenied, "{conv}");
                assert!(msg.contains("read-only"), "{conv}: {msg}");
                assert_eq!(client_msg_id, format!("c-{conv}"));
            }
            other => panic!("{other:?}"),
        }
    }
    assert_no_message(&mut bob).await;
    // Nor can anyone register as the notices' sender.
    let (st, v) = call(
        &s,
        "POST",
        "/api/auth/register",
        None,
        json!({"username": "system", "password": "long enough pw", "nickname": "x"}),
    )
    .await;
    assert_eq!(st, 409, "{v}");
    s.stop().await;
}

/// The notice route takes the backend token only: none, a wrong one or a
/// user's JWT is 401; without `backend.token` the route is off (404).
#[tokio::test]
async fn notice_needs_the_backend_token() {
    let s = TestServer::start_with(with_backend).await;
    let body = json!({"userIds": ["alice"], "content": "x"});
    let user_jwt = s.token("alice");
    for bearer in [None, Some("wrong-token"), Some(user_jwt.as_str()), Some("")] {
        let (st, v) = call(&s, "POST", "/api/system/notice", bearer, body.clone()).await;
        assert_eq!(st, 401, "{bearer:?}: {v}");
        assert_eq!(v["error"], "unauthorized");
    }
    // Bad input is 400, not a store error.
    for bad in [
        json!({"userIds": [], "content": "x"}),
        json!({"userIds": ["a b"], "content": "x"}),
        json!({"userIds": ["alice"], "content": ""}),
        json!({"userIds": ["alice"], "content": "x", "messageType": 55}),
        json!({"userIds": ["alice"], "content": "x", "requestId": "no spaces"}),
    ] {
        let (st, v) = notice(&s, bad.clone()).await;
        assert_eq!(st, 400, "{bad}: {v}");
    }
    s.stop().await;

    let off = TestServer::start().await;
    let (st, v) = call(
        &off,
        "POST",
        "/api/system/notice",
        Some(BACKEND_TOKEN),
        body,
    )
    .await;
    assert_eq!(st, 404, "{v}");
    assert_eq!(v["error"], "backend_disabled");
    off.stop().await;
}

async fn join(s: &TestServer, user: &str, room: &str) -> Value {
    let (st, v) = call(
        s,
        "POST",
        &format!("/api/chatroom/{room}/join"),
        Some(&s.token(user)),
        Value::Null,
    )
    .await;
    assert_eq!(st, 200, "{v}");
    v
}

async fn leave(s: &TestServer, user: &str, room: &str) -> Value {
    let (st, v) = call(
        s,
        "POST",
        &format!("/api/chatroom/{room}/leave"),
        Some(&s.token(user)),
        Value::Null,
    )
    .await;
    assert_eq!(st, 200, "{v}");
    v
}

async fn range(c: &mut im_client::Client, conv: &str) -> Reply {
    c.request(Request::SyncRange {
        request_id: "r".into(),
        conversation_id: conv.to_owned(),
        start_seq: 1,
        end_seq: i64::MAX,
        count: 100,
    })
    .await
    .unwrap()
}

/// Join, send, live fan-out to members only (v2 TCP and v1 WS), leave
/// stops pushes, the readable history is the newest N, and a room is in
/// nobody's conversation list or BATCH_SYNC.
#[tokio::test]
async fn chat_room_join_fan_out_leave_and_bounded_history() {
    let s = TestServer::start_with(|c| {
        c.chatroom.history_messages = 3;
        c.chatroom.join_on_send = false;
    })
    .await;
    let mut alice = s.tcp("alice").await;
    let mut bob = s.tcp("bob").await;
    let mut bob_v1 = s.ws("bob", Generation::V1, "Web").await;
    let mut carol = s.tcp("carol").await;
    let room = "lobby";
    let conv = "chatroom_lobby";

    let v = join(&s, "alice", room).await;
    assert_eq!(v["data"]["conversationID"], conv);
    assert_eq!(v["data"]["memberCount"], 1);
    let v = join(&s, "bob", room).await;
    assert_eq!(v["data"]["memberCount"], 2);
    assert_eq!(join(&s, "bob", room).await["data"]["changed"], false);

    let (_, seq) = sent_ok(&alice.send_text(conv, "m1", "hello room").await.unwrap());
    assert_eq!(seq, 1);
    let (text, m) = next_text(&mut bob).await.expect("member bob gets it");
    assert_eq!(text, "hello room");
    assert_eq!(m.conversation_id, conv);
    assert_eq!(m.conversation_type, ConversationType::ChatRoom);
    assert_eq!(m.sender_id, "alice");
    let (text, _) = next_text(&mut bob_v1).await.expect("bob's v1 session too");
    assert_eq!(text, "hello room");
    assert_no_message(&mut carol).await;
    assert_no_message(&mut alice).await;

    // A non-member can neither send (join_on_send is off) nor read.
    match carol.send_text(conv, "c1", "let me in").await.unwrap() {
        Reply::Send { code, msg, .. } => {
            assert_eq!(code, ErrorCode::PermissionDenied);
            assert!(msg.contains("join"), "{msg}");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        range(&mut carol, conv).await,
        Reply::SyncRange {
            code: ErrorCode::PermissionDenied,
            ..
        }
    ));

    // Leaving stops the pushes (both of bob's sessions).
    let v = leave(&s, "bob", room).await;
    assert_eq!(v["data"]["joined"], false);
    assert_eq!(v["data"]["memberCount"], 1);
    for i in 2..=6 {
        sent_ok(
            &alice
                .send_text(conv, &format!("m{i}"), &format!("n{i}"))
                .await
                .unwrap(),
        );
    }
    assert_no_message(&mut bob).await;
    assert_no_message(&mut bob_v1).await;

    // History is bounded: only the newest 3 of 6 are served.
    let Reply::SyncRange {
        code: ErrorCode::Success,
        messages,
        has_more,
        ..
    } = range(&mut alice, conv).await
    else {
        panic!("range failed");
    };
    let seqs: Vec<i64> = messages.iter().map(|m| m.message.seq).collect();
    assert_eq!(seqs, vec![4, 5, 6]);
    assert!(!has_more);
    let (st, v) = call(
        &s,
        "GET",
        "/api/messages/history?conversationID=chatroom_lobby&limit=50",
        Some(&s.token("alice")),
        Value::Null,
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let seqs: Vec<i64> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs, vec![6, 5, 4]);

    // No per-member state: not listed, not in BATCH_SYNC.
    let (_, v) = call(
        &s,
        "GET",
        "/api/conversations",
        Some(&s.token("alice")),
        Value::Null,
    )
    .await;
    assert!(
        !v["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["conversationID"] == conv),
        "{v}"
    );
    let r = alice
        .request(Request::BatchSync {
            states: vec![SyncState {
                conversation_id: conv.into(),
                last_seq: 0,
            }],
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
        panic!("{r:?}");
    };
    assert!(conversations.iter().all(|c| c.conversation_id != conv));

    // Bob rejoins: pushes resume.
    join(&s, "bob", room).await;
    sent_ok(&alice.send_text(conv, "m7", "welcome back").await.unwrap());
    assert_eq!(next_text(&mut bob).await.unwrap().0, "welcome back");
    s.stop().await;
}

/// With `join_on_send` (the default: the SDK has no join call), a send
/// into a room joins the sender; limits refuse with clear errors.
#[tokio::test]
async fn chat_room_join_on_send_and_limits() {
    let s = TestServer::start_with(|c| {
        c.chatroom.max_members = 2;
        c.chatroom.max_rooms_per_user = 1;
        c.chatroom.max_messages_per_second = 3;
    })
    .await;
    let mut alice = s.tcp("alice").await;
    let mut bob = s.tcp("bob").await;
    join(&s, "alice", "r1").await;
    // bob joins by sending; alice gets it.
    sent_ok(&bob.send_text("chatroom_r1", "b1", "first").await.unwrap());
    assert_eq!(next_text(&mut alice).await.unwrap().0, "first");
    // Then bob gets alice's.
    sent_ok(
        &alice
            .send_text("chatroom_r1", "a1", "second")
            .await
            .unwrap(),
    );
    assert_eq!(next_text(&mut bob).await.unwrap().0, "second");

    // Full (both members online): carol is refused.
    let (st, v) = call(
        &s,
        "POST",
        "/api/chatroom/r1/join",
        Some(&s.token("carol")),
        Value::Null,
    )
    .await;
    assert_eq!(st, 409, "{v}");
    assert!(v["message"].as_str().unwrap().contains("full"), "{v}");
    // One room per user.
    let (st, v) = call(
        &s,
        "POST",
        "/api/chatroom/r2/join",
        Some(&s.token("alice")),
        Value::Null,
    )
    .await;
    assert_eq!(st, 409, "{v}");
    // A malformed room id.
    let (st, v) = call(
        &s,
        "POST",
        "/api/chatroom/a%20b/join",
        Some(&s.token("alice")),
        Value::Null,
    )
    .await;
    assert_eq!(st, 400, "{v}");

    // Message rate: 3 per second per room. Beyond it a send gets no reply
    // (a rate limit is a condition a retry fixes, issue 18 item 6: any
    // non-zero SEND_MSG_RSP marks the message failed for good,
    // IMMessageManager.swift:369-392@07bf3fe), and the suppression is counted.
    let before = suppressed(&s, "send", "rate_limited").await;
    let mut seqs = Vec::new();
    for i in 0..6 {
        let req = sdk_send(&format!("x{i}"), "chatroom_r1", "", "spam");
        seqs.push(alice.send(&req).await.unwrap());
    }
    let replies = replies_until_quiet(&mut alice).await;
    for (_, r) in &replies {
        sent_ok(r);
    }
    let unanswered = seqs.len() - replies.len();
    assert!(
        unanswered >= 2,
        "rate limit left {unanswered} of 6 unanswered"
    );
    suppressed_grows(&s, "send", "rate_limited", before, unanswered as f64).await;

    // A member whose last session ended is dropped when the room is full.
    bob.close().await.unwrap();
    let until = tokio::time::Instant::now() + WAIT;
    loop {
        let (st, _) = call(
            &s,
            "POST",
            "/api/chatroom/r1/join",
            Some(&s.token("carol")),
            Value::Null,
        )
        .await;
        if st == 200 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "carol never got bob's seat"
        );
        tokio::time::sleep(QUIET / 10).await;
    }
    assert_eq!(
        join(&s, "carol", "r1").await["data"]["memberCount"],
        2,
        "alice and carol"
    );
    s.stop().await;
}

/// User ids stay `[A-Za-z0-9_-]{1,64}` everywhere (registration, tokens,
/// AUTH): the SDK interpolates them unescaped into SQLite statements
/// (IMDatabaseManager+Friend.swift:350, IMDatabaseManager+Message.swift:687@07bf3fe)
/// and URL paths (IMUserManager.swift:169@07bf3fe). The v2 Talk app logs in
/// with password = username (Talk/Talk/ViewControllers/SettingsViewController.swift:282@07bf3fe):
/// that works for usernames of at least `auth.min_password_len` bytes; a
/// shorter one cannot be registered with itself as password.
#[tokio::test]
async fn user_id_charset_and_the_talk_apps_password_equals_username_login() {
    let s = TestServer::start().await;
    for bad in ["bob@example.com", "Zoë", "o'brien", "a.b"] {
        let (st, v) = call(
            &s,
            "POST",
            "/api/auth/register",
            None,
            json!({"username": bad, "password": "long enough pw", "nickname": "x"}),
        )
        .await;
        assert_eq!(st, 400, "{bad}: {v}");
        assert!(v["message"].as_str().unwrap().contains("e-mail"), "{v}");
        assert!(im_server::app::mint_token(&s.config, bad, "iOS", None).is_err());
    }
    // Talk: register once, then log in the way the app does.
    let (st, v) = call(
        &s,
        "POST",
        "/api/auth/register",
        None,
        json!({"username": "talkuser1", "password": "talkuser1", "nickname": "T"}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let (st, v) = call(
        &s,
        "POST",
        "/api/auth/login",
        None,
        json!({"username": "talkuser1", "password": "talkuser1", "platform": "iOS"}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert!(v["data"]["token"].as_str().is_some_and(|t| !t.is_empty()));
    // A short username: its password (itself) is below the minimum.
    let (st, v) = call(
        &s,
        "POST",
        "/api/auth/register",
        None,
        json!({"username": "bob", "password": "bob", "nickname": "B"}),
    )
    .await;
    assert_eq!(st, 400, "{v}");
    assert!(v["message"].as_str().unwrap().contains("at least 8"), "{v}");
    let (st, v) = call(
        &s,
        "POST",
        "/api/auth/login",
        None,
        json!({"username": "bob", "password": "bob", "platform": "iOS"}),
    )
    .await;
    assert_eq!(st, 401, "{v}");
    s.stop().await;
}

/// With `chatroom.self_join: false` only the app backend puts users into
/// rooms (backend token); users can neither join nor join by sending, but
/// may leave; a user's JWT on the backend route is 401.
#[tokio::test]
async fn backend_managed_chat_rooms() {
    let s = TestServer::start_with(|c| {
        with_backend(c);
        c.chatroom.self_join = false;
    })
    .await;
    let mut alice = s.tcp("alice").await;
    let mut bob = s.tcp("bob").await;
    let (st, v) = call(
        &s,
        "POST",
        "/api/chatroom/vip/join",
        Some(&s.token("alice")),
        Value::Null,
    )
    .await;
    assert_eq!(st, 403, "{v}");
    match bob
        .send_text("chatroom_vip", "b0", "let me in")
        .await
        .unwrap()
    {
        Reply::Send { code, .. } => assert_eq!(code, ErrorCode::PermissionDenied),
        other => panic!("{other:?}"),
    }
    let body = json!({"userIds": ["alice", "bob"]});
    let (st, v) = call(
        &s,
        "POST",
        "/api/system/chatroom/vip/join",
        Some(&s.token("alice")),
        body.clone(),
    )
    .await;
    assert_eq!(st, 401, "{v}");
    let (st, v) = call(
        &s,
        "POST",
        "/api/system/chatroom/vip/join",
        Some(BACKEND_TOKEN),
        body,
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["data"]["memberCount"], 2);
    assert_eq!(v["data"]["conversationID"], "chatroom_vip");
    sent_ok(
        &alice
            .send_text("chatroom_vip", "a1", "welcome")
            .await
            .unwrap(),
    );
    assert_eq!(next_text(&mut bob).await.unwrap().0, "welcome");
    // Users may leave on their own.
    leave(&s, "bob", "vip").await;
    sent_ok(&alice.send_text("chatroom_vip", "a2", "bye").await.unwrap());
    assert_no_message(&mut bob).await;
    // The backend takes alice out too.
    let (st, v) = call(
        &s,
        "POST",
        "/api/system/chatroom/vip/leave",
        Some(BACKEND_TOKEN),
        json!({"userIds": ["alice"]}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["data"]["memberCount"], 0);
    match alice
        .send_text("chatroom_vip", "a3", "hello?")
        .await
        .unwrap()
    {
        Reply::Send { code, .. } => assert_eq!(code, ErrorCode::PermissionDenied),
        other => panic!("{other:?}"),
    }
    s.stop().await;
}
