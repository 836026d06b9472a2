//! Issue 8 part 3, the authentication and authorization matrix over the real
//! server: forged, expired, not-yet-valid, empty-user, revoked and demo
//! tokens on socket AUTH (TCP, WebSocket v1 and v2) and on HTTP Bearer; then
//! a user who takes part in nothing trying to send to, read, sync, recall,
//! mark read, type into and administer other users' conversations and
//! groups, and to reach their files.
//!
//! Each case states the exact answer (wire `ErrorCode`, or HTTP status and
//! the stable `error` name), and afterwards the victims' state is checked
//! unchanged while a healthy pair keeps talking.

use im_client::Client;
use im_core::command::{Event, Reply, Request, SendRequest, SyncState};
use im_core::{ErrorCode, Generation};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::bad_input_matrix::{Witness, call, reply_code, sync_all};
use crate::messaging::http;
use crate::{QUIET, TestServer, WAIT, next_text, sent_ok};

const SECRET: &[u8] = b"e2e-test-secret";

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn sign(secret: &[u8], alg: Algorithm, claims: &Value) -> String {
    jsonwebtoken::encode(&Header::new(alg), claims, &EncodingKey::from_secret(secret)).unwrap()
}

/// base64url without padding (the JWT encoding).
fn b64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

fn claims(user: &str) -> Value {
    json!({"user_id": user, "platform": "iOS", "iat": now(), "exp": now() + 3600, "jti": format!("j-{user}-{}", now())})
}

/// What a token must get: the socket AUTH code, and the HTTP status with
/// its `error` name.
struct TokenCase {
    name: &'static str,
    token: String,
    wire: ErrorCode,
    http: (u16, &'static str),
}

fn token_cases(valid: &str) -> Vec<TokenCase> {
    let parts: Vec<&str> = valid.split('.').collect();
    let none_header = b64(br#"{"alg":"none","typ":"JWT"}"#);
    let t = |name, token: String, wire, http| TokenCase {
        name,
        token,
        wire,
        http,
    };
    use ErrorCode::{AuthFailed, TokenExpired};
    const UNAUTH: (u16, &str) = (401, "unauthorized");
    let with = |f: &dyn Fn(&mut Value)| {
        let mut c = claims("alice");
        f(&mut c);
        sign(SECRET, Algorithm::HS256, &c)
    };
    vec![
        t(
            "alg=none, no signature",
            format!(
                "{none_header}.{}.",
                b64(claims("alice").to_string().as_bytes())
            ),
            AuthFailed,
            UNAUTH,
        ),
        t(
            "alg=none header on a validly signed token",
            format!("{none_header}.{}.{}", parts[1], parts[2]),
            AuthFailed,
            UNAUTH,
        ),
        t(
            "alg=HS512 with the right secret (alg pinned)",
            sign(SECRET, Algorithm::HS512, &claims("alice")),
            AuthFailed,
            UNAUTH,
        ),
        t(
            "wrong key",
            sign(b"someone-else", Algorithm::HS256, &claims("alice")),
            AuthFailed,
            UNAUTH,
        ),
        t(
            "payload swapped to another user, signature kept",
            format!(
                "{}.{}.{}",
                parts[0],
                b64(claims("alice").to_string().as_bytes()),
                parts[2]
            ),
            AuthFailed,
            UNAUTH,
        ),
        t(
            "signature stripped",
            format!("{}.{}.", parts[0], parts[1]),
            AuthFailed,
            UNAUTH,
        ),
        t(
            "expired an hour ago",
            with(&|c| {
                c["iat"] = json!(now() - 7200);
                c["exp"] = json!(now() - 3600);
            }),
            TokenExpired,
            (401, "token_expired"),
        ),
        t(
            "exp missing",
            with(&|c| {
                c.as_object_mut().unwrap().remove("exp");
            }),
            AuthFailed,
            UNAUTH,
        ),
        t(
            "nbf an hour in the future",
            with(&|c| c["nbf"] = json!(now() + 3600)),
            AuthFailed,
            UNAUTH,
        ),
        t(
            "empty user_id",
            with(&|c| c["user_id"] = json!("")),
            AuthFailed,
            UNAUTH,
        ),
        t(
            "no user_id, sub=alice",
            with(&|c| {
                c.as_object_mut().unwrap().remove("user_id");
                c["sub"] = json!("alice");
            }),
            AuthFailed,
            UNAUTH,
        ),
        t(
            "empty sub and empty user_id",
            with(&|c| {
                c["user_id"] = json!("");
                c["sub"] = json!("");
            }),
            AuthFailed,
            UNAUTH,
        ),
        t(
            "user_id outside [A-Za-z0-9_-]",
            with(&|c| c["user_id"] = json!("../alice")),
            AuthFailed,
            UNAUTH,
        ),
        t(
            "user_id a number",
            with(&|c| c["user_id"] = json!(42)),
            AuthFailed,
            UNAUTH,
        ),
        t(
            "refresh token used as an access token",
            with(&|c| c["typ"] = json!("refresh")),
            AuthFailed,
            (401, "wrong_token_kind"),
        ),
        t("empty token", String::new(), AuthFailed, UNAUTH),
        t("three empty parts", "..".into(), AuthFailed, UNAUTH),
        t("not a JWT", "not-a-token".into(), AuthFailed, UNAUTH),
        t("64 KiB of junk", "x".repeat(64 * 1024), AuthFailed, UNAUTH),
        t(
            "demo token with an empty user",
            "demo_token_".into(),
            AuthFailed,
            UNAUTH,
        ),
        t(
            "demo token with a bad user id",
            "demo_token_a b".into(),
            AuthFailed,
            UNAUTH,
        ),
    ]
}

async fn connect(s: &TestServer, transport: &str) -> Client {
    match transport {
        "tcp" => Client::connect_tcp(s.addrs.tcp).await.unwrap(),
        "ws1" => Client::connect_ws(s.addrs.ws, "/ws/v1", Generation::V1)
            .await
            .unwrap(),
        _ => Client::connect_ws(s.addrs.ws, "/ws/v2", Generation::V2)
            .await
            .unwrap(),
    }
}

/// Runs one token on every transport and on HTTP; returns the inputs tried.
async fn check_token(
    s: &TestServer,
    name: &str,
    token: &str,
    wire: ErrorCode,
    http: (u16, &str),
) -> usize {
    for transport in ["tcp", "ws1", "ws2"] {
        let mut c = connect(s, transport).await;
        // Claimed user empty: the token alone decides (as after HTTP login).
        let r = c.auth("", token, "iOS").await.unwrap();
        assert_eq!(reply_code(&r), wire, "{name} on {transport}: {r:?}");
        if wire != ErrorCode::Success {
            // Refused: the socket can do nothing but AUTH again.
            let r = c
                .send_text("single_alice_mallory", "sneak", "x")
                .await
                .unwrap();
            assert_eq!(
                reply_code(&r),
                ErrorCode::AuthFailed,
                "{name} on {transport}: {r:?}"
            );
        }
    }
    let (st, v) = call(s, "GET", "/api/conversations", Some(token), "").await;
    if http.0 == 200 {
        assert_eq!(st, 200, "{name} on HTTP: {v}");
    } else {
        assert_eq!(
            (st, v["error"].as_str()),
            (http.0, Some(http.1)),
            "{name} on HTTP: {v}"
        );
    }
    4
}

async fn start() -> TestServer {
    TestServer::start_with(|c| c.rate_limit.enabled = false).await
}

#[tokio::test]
async fn token_matrix() {
    let s = start().await;
    let mut w = Witness::new(&s).await;
    let mut inputs = 0;
    let valid = s.token("mallory");
    inputs += check_token(
        &s,
        "valid token (control)",
        &valid,
        ErrorCode::Success,
        (200, ""),
    )
    .await;
    for k in token_cases(&valid) {
        inputs += check_token(&s, k.name, &k.token, k.wire, k.http).await;
        w.exchange(k.name).await;
    }
    // Revoked: logout, then the same token everywhere. The session that used
    // it is kicked (KICK_OUT reason 2).
    let doomed = s.token("alice");
    let mut live = connect(&s, "tcp").await;
    crate::assert_auth_ok(live.auth("alice", &doomed, "iOS").await.unwrap());
    let (st, v) = call(&s, "POST", "/api/auth/logout", Some(&doomed), "").await;
    assert_eq!(st, 200, "{v}");
    let kicked = loop {
        match live.next_event(WAIT).await.unwrap() {
            Some(Event::KickOut { reason, .. }) => break reason,
            Some(_) => continue,
            None => panic!("no KICK_OUT after logout"),
        }
    };
    assert_eq!(kicked, 2);
    inputs += check_token(
        &s,
        "revoked by logout",
        &doomed,
        ErrorCode::AuthFailed,
        (401, "token_revoked"),
    )
    .await;
    // A fresh token of the same user still works (revocation is per token).
    inputs += check_token(
        &s,
        "a new token after logout",
        &s.token("alice"),
        ErrorCode::Success,
        (200, ""),
    )
    .await;
    // Demo tokens are on in the e2e config: accepted on both socket and HTTP.
    inputs += check_token(
        &s,
        "demo token, enabled",
        "demo_token_mallory",
        ErrorCode::Success,
        (200, ""),
    )
    .await;
    w.exchange("tokens").await;
    // Nobody managed to write as alice.
    let mut a = s.tcp("alice").await;
    assert!(sync_all(&mut a).await.is_empty(), "alice has no messages");
    w.check_stored().await;
    s.stop().await;

    // Demo tokens when disabled: refused on sockets and HTTP alike.
    let s = TestServer::start_with(|c| {
        c.auth.allow_demo_tokens = Some(false);
        c.rate_limit.enabled = false;
    })
    .await;
    inputs += check_token(
        &s,
        "demo token, disabled",
        "demo_token_alice",
        ErrorCode::AuthFailed,
        (401, "unauthorized"),
    )
    .await;
    let mut w = Witness::new(&s).await;
    w.exchange("demo disabled").await;
    w.check_stored().await;
    s.stop().await;
    eprintln!("token_matrix: {inputs} inputs");
}

async fn group_members(s: &TestServer, gid: &str) -> Vec<String> {
    let (st, v) = call(
        s,
        "GET",
        &format!("/api/group/{gid}/members"),
        Some(&s.token("alice")),
        "",
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let mut m: Vec<String> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["userID"].as_str().unwrap().to_owned())
        .collect();
    m.sort();
    m
}

/// What alice sees: every message (conversation, seq, revoked?) and her profile.
async fn alice_state(s: &TestServer) -> (Vec<(String, i64, bool, bool)>, Value) {
    // Another platform: the per-platform kick policy leaves her iOS socket be.
    let mut a = s.ws("alice", Generation::V2, "Android").await;
    let all = sync_all(&mut a).await;
    let msgs = all
        .into_iter()
        .flat_map(|(c, ms)| {
            ms.into_iter()
                .map(move |m| (c.clone(), m.seq, m.revoked.is_some(), m.content.is_empty()))
        })
        .collect();
    let (st, v) = call(
        s,
        "GET",
        "/api/user/info/alice",
        Some(&s.token("alice")),
        "",
    )
    .await;
    assert_eq!(st, 200);
    (msgs, v["data"].clone())
}

#[tokio::test]
async fn authorization_matrix() {
    let s = start().await;
    let mut w = Witness::new(&s).await;
    let mut alice = s.tcp("alice").await;
    let mut bob = s.ws("bob", Generation::V2, "iOS").await;
    let mut carol = s.tcp("carol").await;
    let mut carol_v1 = s.ws("carol", Generation::V1, "Web").await;
    // alice and bob talk; alice owns a group with bob and dave.
    let (gid, conv_g) = {
        let body = json!({"groupName": "team", "memberUserIDs": ["bob", "dave"]}).to_string();
        let (st, v) = call(
            &s,
            "POST",
            "/api/group/create",
            Some(&s.token("alice")),
            &body,
        )
        .await;
        assert_eq!(st, 200, "{v}");
        let gid = v["data"]["groupID"].as_str().unwrap().to_owned();
        let conv = format!("group_{gid}");
        (gid, conv)
    };
    const AB: &str = "single_alice_bob";
    let (a1, _) = sent_ok(&alice.send_text(AB, "a-1", "hello bob").await.unwrap());
    next_text(&mut bob).await.unwrap();
    let (b1, _) = sent_ok(&bob.send_text(AB, "b-1", "hi alice").await.unwrap());
    next_text(&mut alice).await.unwrap();
    let (g1, _) = sent_ok(&alice.send_text(&conv_g, "g-1", "team msg").await.unwrap());
    next_text(&mut bob).await.unwrap();
    let members_before = group_members(&s, &gid).await;
    assert_eq!(members_before, ["alice", "bob", "dave"]);
    let before = alice_state(&s).await;
    let mut cases = 0usize;
    use ErrorCode::PermissionDenied as DENIED;

    // ---- sockets: carol takes part in nothing ----
    let send = |conv: &str, receiver: &str, group: &str, cid: &str| {
        Request::Send(SendRequest {
            client_msg_id: cid.to_owned(),
            conversation_id: conv.to_owned(),
            receiver_id: receiver.to_owned(),
            group_id: group.to_owned(),
            message_type: 1,
            content: bytes::Bytes::from_static(b"intruder"),
            ..SendRequest::default()
        })
    };
    let range = |conv: &str| Request::SyncRange {
        request_id: "r".into(),
        conversation_id: conv.to_owned(),
        start_seq: 1,
        end_seq: i64::MAX,
        count: 100,
    };
    let socket_cases: Vec<(&str, Request, ErrorCode)> = vec![
        (
            "send to a group she is not in",
            send(&conv_g, "", "", "c-1"),
            DENIED,
        ),
        (
            "send to a group by group_id only",
            send("", "", &gid, "c-2"),
            DENIED,
        ),
        (
            "send to a group, group_id agreeing",
            send(&conv_g, "", &gid, "c-3"),
            DENIED,
        ),
        (
            "send into another pair's 1:1",
            send(AB, "", "", "c-4"),
            DENIED,
        ),
        (
            "send into another pair's 1:1 naming alice as receiver",
            send(AB, "alice", "", "c-5"),
            DENIED,
        ),
        ("SYNC_RANGE another pair's 1:1", range(AB), DENIED),
        ("SYNC_RANGE a group she is not in", range(&conv_g), DENIED),
        (
            "read receipt (all) on another pair's 1:1",
            Request::ReadReceipt {
                message_ids: vec![],
                conversation_id: AB.into(),
            },
            DENIED,
        ),
        (
            "read receipt naming bob's message",
            Request::ReadReceipt {
                message_ids: vec![b1.clone()],
                conversation_id: AB.into(),
            },
            DENIED,
        ),
        (
            "read receipt (all) on a group she is not in",
            Request::ReadReceipt {
                message_ids: vec![],
                conversation_id: conv_g.clone(),
            },
            DENIED,
        ),
        (
            "recall alice's 1:1 message",
            Request::Revoke {
                message_id: a1.clone(),
                conversation_id: AB.into(),
            },
            DENIED,
        ),
        (
            "recall alice's message naming her own conversation",
            Request::Revoke {
                message_id: a1.clone(),
                conversation_id: "single_alice_carol".into(),
            },
            DENIED,
        ),
        (
            "recall alice's group message",
            Request::Revoke {
                message_id: g1.clone(),
                conversation_id: conv_g.clone(),
            },
            DENIED,
        ),
    ];
    for (name, req, want) in socket_cases {
        let r = carol.request(req).await.unwrap();
        // Whatever conversation she names, an outsider gets the same
        // refusal: access is checked before the conversation matches.
        assert_eq!(reply_code(&r), want, "carol: {name}: {r:?}");
        if let Reply::SyncRange { messages, .. } = &r {
            assert!(messages.is_empty(), "{name}");
        }
        cases += 1;
        w.exchange(name).await;
    }
    // BATCH_SYNC naming the foreign conversations: they are not returned.
    let r = carol
        .request(Request::BatchSync {
            states: vec![
                SyncState {
                    conversation_id: AB.into(),
                    last_seq: 0,
                },
                SyncState {
                    conversation_id: conv_g.clone(),
                    last_seq: 0,
                },
            ],
            max_per_conversation: 100,
        })
        .await
        .unwrap();
    let Reply::BatchSync {
        code: ErrorCode::Success,
        conversations,
        ..
    } = &r
    else {
        panic!("{r:?}")
    };
    assert!(conversations.is_empty(), "carol synced {conversations:?}");
    cases += 1;
    // v1 inbox sync: nothing of theirs.
    let r = carol_v1
        .request(Request::SyncInbox {
            min_seq: 0,
            max_seq: 0,
            limit: 100,
        })
        .await
        .unwrap();
    let Reply::SyncInbox {
        code: ErrorCode::Success,
        messages,
        ..
    } = &r
    else {
        panic!("{r:?}")
    };
    assert!(messages.is_empty(), "carol v1 synced {messages:?}");
    cases += 1;
    // Members recalling and reading what is not theirs.
    let r = bob
        .request(Request::Revoke {
            message_id: a1.clone(),
            conversation_id: AB.into(),
        })
        .await
        .unwrap();
    assert_eq!(
        reply_code(&r),
        DENIED,
        "bob recalls alice's 1:1 message: {r:?}"
    );
    cases += 1;
    let r = bob
        .request(Request::Revoke {
            message_id: g1.clone(),
            conversation_id: conv_g.clone(),
        })
        .await
        .unwrap();
    assert_eq!(
        reply_code(&r),
        DENIED,
        "plain member recalls the owner's group message: {r:?}"
    );
    cases += 1;
    // Typing and ACK into foreign conversations: no reply, nothing relayed.
    carol
        .send(&Request::Typing {
            conversation_id: AB.into(),
            status: 1,
        })
        .await
        .unwrap();
    carol
        .send(&Request::Ack {
            message_id: a1.clone(),
            seq: 0,
        })
        .await
        .unwrap();
    carol
        .send(&Request::Ack {
            message_id: "a-1".into(),
            seq: 0,
        })
        .await
        .unwrap();
    cases += 3;
    let r = carol.heartbeat().await.unwrap();
    assert!(matches!(r, Reply::Heartbeat { .. }));
    assert!(
        carol.next_reply(QUIET).await.unwrap().is_none(),
        "typing/ack answered"
    );
    for (who, c) in [("alice", &mut alice), ("bob", &mut bob)] {
        while let Some(e) = c.next_event(QUIET).await.unwrap() {
            assert!(
                !matches!(&e, Event::Typing { user_id, .. } | Event::ReadReceipt { user_id, .. } if user_id == "carol"),
                "{who} got {e:?}"
            );
            assert!(
                !matches!(e, Event::Revoked { .. } | Event::Message(_)),
                "{who} got {e:?}"
            );
        }
    }
    w.exchange("typing/ack").await;

    // ---- HTTP ----
    let carol_t = s.token("carol");
    let bob_t = s.token("bob");
    let dave_t = s.token("dave");
    let range_body =
        |conv: &str| json!({"conversation_id": conv, "start_seq": 1, "end_seq": 100}).to_string();
    let http_cases: Vec<(&str, &str, String, &str, String, u16, &str)> = vec![
        (
            "carol: v1 sync_range of another pair's 1:1",
            "POST",
            "/messages/sync_range".into(),
            &carol_t,
            range_body(AB),
            403,
            "permission_denied",
        ),
        (
            "carol: v1 sync_range of a group she is not in",
            "POST",
            "/messages/sync_range".into(),
            &carol_t,
            range_body(&conv_g),
            403,
            "permission_denied",
        ),
        (
            "carol: history of another pair's 1:1",
            "GET",
            format!("/api/messages/history?conversationID={AB}"),
            &carol_t,
            String::new(),
            403,
            "permission_denied",
        ),
        (
            "carol: history of a group she is not in",
            "GET",
            format!("/api/messages/history?conversationID={conv_g}"),
            &carol_t,
            String::new(),
            403,
            "permission_denied",
        ),
        (
            "carol: members of a group she is not in",
            "GET",
            format!("/api/group/{gid}/members"),
            &carol_t,
            String::new(),
            403,
            "permission_denied",
        ),
        (
            "carol: invite herself to a group she is not in",
            "POST",
            format!("/api/group/{gid}/invite"),
            &carol_t,
            r#"{"userIDs":["carol"]}"#.into(),
            403,
            "permission_denied",
        ),
        (
            "carol: kick from a group she is not in",
            "POST",
            format!("/api/group/{gid}/kick"),
            &carol_t,
            r#"{"userIDs":["dave"]}"#.into(),
            403,
            "permission_denied",
        ),
        (
            "carol: dismiss a group she is not in",
            "POST",
            format!("/api/group/{gid}/dismiss"),
            &carol_t,
            String::new(),
            403,
            "permission_denied",
        ),
        (
            "carol: update a group she is not in",
            "POST",
            "/api/group/update".into(),
            &carol_t,
            json!({"groupID": gid, "groupName": "pwned"}).to_string(),
            403,
            "permission_denied",
        ),
        (
            "carol: mute in a group she is not in",
            "POST",
            format!("/api/group/{gid}/mute"),
            &carol_t,
            r#"{"userID":"bob","durationSeconds":600}"#.into(),
            403,
            "permission_denied",
        ),
        (
            "bob (member): kick a member",
            "POST",
            format!("/api/group/{gid}/kick"),
            &bob_t,
            r#"{"userIDs":["dave"]}"#.into(),
            403,
            "permission_denied",
        ),
        (
            "bob (member): kick the owner",
            "POST",
            format!("/api/group/{gid}/kick"),
            &bob_t,
            r#"{"userIDs":["alice"]}"#.into(),
            403,
            "permission_denied",
        ),
        (
            "dave (member): kick bob and himself",
            "POST",
            format!("/api/group/{gid}/kick"),
            &dave_t,
            r#"{"userIDs":["bob","dave"]}"#.into(),
            403,
            "permission_denied",
        ),
        (
            "bob (member): promote himself to admin",
            "POST",
            format!("/api/group/{gid}/role"),
            &bob_t,
            r#"{"userID":"bob","role":2}"#.into(),
            403,
            "permission_denied",
        ),
        (
            "bob (member): mute a member",
            "POST",
            format!("/api/group/{gid}/mute"),
            &bob_t,
            r#"{"userID":"dave","durationSeconds":600}"#.into(),
            403,
            "permission_denied",
        ),
        (
            "bob (member): mute all",
            "POST",
            format!("/api/group/{gid}/mute_all"),
            &bob_t,
            r#"{"mute":true}"#.into(),
            403,
            "permission_denied",
        ),
        (
            "bob (member): update the group",
            "POST",
            "/api/group/update".into(),
            &bob_t,
            json!({"groupID": gid, "groupName": "pwned"}).to_string(),
            403,
            "permission_denied",
        ),
        (
            "bob (member): dismiss the group",
            "POST",
            format!("/api/group/{gid}/dismiss"),
            &bob_t,
            String::new(),
            403,
            "permission_denied",
        ),
    ];
    for (name, method, path, token, body, status, error) in http_cases {
        let (st, v) = call(&s, method, &path, Some(token), &body).await;
        assert_eq!(
            (st, v["error"].as_str()),
            (status, Some(error)),
            "{name}: {v}"
        );
        cases += 1;
    }
    // carol's own HTTP views show nothing of theirs.
    let (st, v) = call(
        &s,
        "POST",
        "/api/v1/messages/sync",
        Some(&carol_t),
        r#"{"lastSeq":0,"count":500}"#,
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["data"]["messages"], json!([]), "carol's v1 HTTP sync");
    cases += 1;
    let (st, v) = call(&s, "GET", "/api/conversations", Some(&carol_t), "").await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["data"], json!([]), "carol's conversation list");
    cases += 1;
    // A profile update names no other user: it changes the caller's own.
    let (st, v) = call(
        &s,
        "POST",
        "/api/user/update",
        Some(&carol_t),
        r#"{"userID":"alice","nickname":"pwned"}"#,
    )
    .await;
    assert!(st == 200 || st == 403 || st == 400, "{v}");
    if st == 200 {
        assert_eq!(
            v["data"]["userID"], "carol",
            "update applied to the caller: {v}"
        );
    }
    cases += 1;
    w.exchange("http authz").await;

    // ---- files: there are no private files ----
    // Uploads without a token are anonymous (files.anonymous_upload, on by
    // default: the SDK sends none) and owned by nobody; downloads are
    // capability URLs: whoever holds the 128-bit id can read the file, as
    // the SDK loads media without headers. There is no delete or overwrite.
    let up = |token: Option<String>, data: &'static str| {
        let addr = s.addrs.http;
        async move {
            let auth = token.map(|t| format!("Bearer {t}"));
            let mut h = vec![("Content-Type", "application/octet-stream")];
            if let Some(a) = &auth {
                h.push(("Authorization", a.as_str()));
            }
            http(addr, "POST", "/upload", &h, data).await
        }
    };
    let (st, _, body) = up(Some(bob_t.clone()), "bob's private notes").await;
    assert_eq!(st, 200, "{body}");
    let file_id = serde_json::from_str::<Value>(&body).unwrap()["file_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (st, _, body) = up(None, "anonymous").await;
    assert_eq!(st, 200, "anonymous upload: {body}");
    let (st, _, body) = up(Some("Bearer-less garbage".into()), "forged").await;
    assert_eq!(st, 401, "a token that is present must be valid: {body}");
    cases += 1;
    let path = format!("/files/{file_id}");
    for (who, headers) in [
        (
            "carol with her token",
            vec![("Authorization", format!("Bearer {carol_t}"))],
        ),
        ("anyone, no token", vec![]),
    ] {
        let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (st, _, body) = http(s.addrs.http, "GET", &path, &h, "").await;
        assert_eq!(
            (st, body.as_str()),
            (200, "bob's private notes"),
            "{who}: capability URL"
        );
        cases += 1;
    }
    let guessed = format!("/files/{}", "0".repeat(32));
    let (st, _, _) = http(s.addrs.http, "GET", &guessed, &[], "").await;
    assert_eq!(st, 404, "a guessed id");
    cases += 1;
    for method in ["DELETE", "PUT", "POST"] {
        let auth = format!("Bearer {carol_t}");
        let (st, _, body) = http(
            s.addrs.http,
            method,
            &path,
            &[("Authorization", &auth)],
            "overwritten",
        )
        .await;
        assert_eq!(st, 405, "carol {method} {path}: {body}");
        cases += 1;
    }
    // An upload cannot choose its id.
    let (st, _, body) = http(
        s.addrs.http,
        "POST",
        &format!("/upload?file_id={file_id}"),
        &[
            ("Authorization", &format!("Bearer {carol_t}")),
            ("Content-Type", "application/octet-stream"),
        ],
        "carol's overwrite",
    )
    .await;
    assert_eq!(st, 200, "{body}");
    assert_ne!(
        serde_json::from_str::<Value>(&body).unwrap()["file_id"].as_str(),
        Some(file_id.as_str())
    );
    cases += 1;
    let (st, _, body) = http(s.addrs.http, "GET", &path, &[], "").await;
    assert_eq!(
        (st, body.as_str()),
        (200, "bob's private notes"),
        "bob's file unchanged"
    );
    w.exchange("files").await;

    // ---- nothing changed ----
    assert_eq!(
        group_members(&s, &gid).await,
        members_before,
        "group members"
    );
    let (st, v) = call(
        &s,
        "GET",
        &format!("/api/group/{gid}"),
        Some(&s.token("alice")),
        "",
    )
    .await;
    assert_eq!(
        (
            st,
            v["data"]["groupName"].as_str(),
            v["data"]["status"].as_i64()
        ),
        (200, Some("team"), Some(0)),
        "{v}"
    );
    let after = alice_state(&s).await;
    assert_eq!(after, before, "alice's messages and profile");
    assert!(
        after.0.iter().all(|(_, _, revoked, _)| !revoked),
        "nothing recalled"
    );
    // The group still works for its members, and still refuses carol.
    sent_ok(&bob.send_text(&conv_g, "b-g", "still a team").await.unwrap());
    assert_eq!(next_text(&mut alice).await.unwrap().0, "still a team");
    let r = carol.send_text(&conv_g, "c-9", "let me in").await.unwrap();
    assert_eq!(reply_code(&r), DENIED);
    w.exchange("end").await;
    w.check_stored().await;
    eprintln!("authorization_matrix: {cases} cases");
    s.stop().await;
}
