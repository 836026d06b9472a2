//! The HTTP API end to end: auth (register/login/refresh/logout with
//! revocation on HTTP and socket AUTH), users, friends + blocklist, v1 HTTP
//! sync, and the OpenAPI document.

use im_core::ErrorCode;
use im_core::command::{Event, Reply};
use serde_json::{Value, json};

use crate::bad_input_matrix::call;
use crate::messaging::http;
use crate::{TestServer, WAIT, sent_ok};

/// A JSON call with a JSON body (`Value::Null`: none); see [`call`].
async fn api(
    s: &TestServer,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Value,
) -> (u16, Value) {
    let body = if body.is_null() {
        String::new()
    } else {
        body.to_string()
    };
    call(s, method, path, token, &body).await
}

async fn register_login(s: &TestServer, user: &str, platform: &str) -> Value {
    let (st, v) = api(
        s,
        "POST",
        "/api/auth/register",
        None,
        json!({"username": user, "password": "correct horse", "nickname": user.to_uppercase()}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    login(s, user, platform).await
}

async fn login(s: &TestServer, user: &str, platform: &str) -> Value {
    let (st, v) = api(
        s,
        "POST",
        "/api/auth/login",
        None,
        json!({"username": user, "password": "correct horse", "platform": platform}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    v["data"].clone()
}

fn tok(session: &Value) -> String {
    session["token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn register_login_refresh_logout() {
    let s = TestServer::start().await;
    let (st, v) = api(
        &s,
        "POST",
        "/api/auth/register",
        None,
        json!({"username": "alice", "password": "correct horse", "nickname": "Alice"}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["data"]["userID"], "alice");
    assert_eq!(v["data"]["nickname"], "Alice");
    // Taken, malformed, weak.
    let (st, v) = api(
        &s,
        "POST",
        "/api/auth/register",
        None,
        json!({"username": "alice", "password": "correct horse"}),
    )
    .await;
    assert_eq!((st, v["error"].as_str()), (409, Some("conflict")));
    for body in [
        json!({"username": "../etc", "password": "correct horse"}),
        json!({"username": "bob", "password": "short"}),
        json!({"username": "bob"}),
        json!({"username": 5, "password": "correct horse"}),
    ] {
        let (st, v) = api(&s, "POST", "/api/auth/register", None, body).await;
        assert_eq!(st, 400, "{v}");
    }
    // Wrong password and unknown user look the same.
    for body in [
        json!({"username": "alice", "password": "wrong horse"}),
        json!({"username": "nobody", "password": "correct horse"}),
    ] {
        let (st, v) = api(&s, "POST", "/api/auth/login", None, body).await;
        assert_eq!(
            (st, v["error"].as_str()),
            (401, Some("bad_credentials")),
            "{v}"
        );
    }
    let session = login(&s, "alice", "iOS").await;
    assert_eq!(session["userID"], "alice");
    assert_eq!(session["user"]["nickname"], "Alice");
    assert!(
        session["expireTime"].as_i64().unwrap() > 1_700_000_000_000,
        "ms: {session}"
    );
    let token = tok(&session);
    let (st, v) = api(&s, "GET", "/api/user/info/alice", Some(&token), Value::Null).await;
    assert_eq!(st, 200, "{v}");
    // The token works on a socket too.
    let mut c = im_client::Client::connect_tcp(s.addrs.tcp).await.unwrap();
    crate::assert_auth_ok(c.auth("", &token, "iOS").await.unwrap());
    // Refresh: rotation; the old refresh token is then refused.
    let rt = session["refreshToken"].as_str().unwrap();
    let (st, fresh) = api(
        &s,
        "POST",
        "/api/auth/refresh",
        None,
        json!({"refreshToken": rt}),
    )
    .await;
    assert_eq!(st, 200, "{fresh}");
    let (st, v) = api(
        &s,
        "POST",
        "/api/auth/refresh",
        None,
        json!({"refreshToken": rt}),
    )
    .await;
    assert_eq!(
        (st, v["error"].as_str()),
        (401, Some("token_revoked")),
        "{v}"
    );
    // A refresh token is not an access token.
    let (st, v) = api(&s, "GET", "/api/friend/list", Some(rt), Value::Null).await;
    assert_eq!(st, 401, "{v}");
    // Logout revokes the token on HTTP and at socket AUTH, and kicks its socket.
    let (st, v) = api(&s, "POST", "/api/auth/logout", Some(&token), Value::Null).await;
    assert_eq!(st, 200, "{v}");
    assert!(v.get("data").is_none(), "no-data endpoint: {v}");
    match c.next_event(WAIT).await.unwrap().unwrap() {
        Event::KickOut { reason, .. } => assert_eq!(reason, 2),
        other => panic!("{other:?}"),
    }
    let (st, v) = api(&s, "GET", "/api/user/info/alice", Some(&token), Value::Null).await;
    assert_eq!(
        (st, v["error"].as_str()),
        (401, Some("token_revoked")),
        "{v}"
    );
    let mut c2 = im_client::Client::connect_tcp(s.addrs.tcp).await.unwrap();
    match c2.auth("", &token, "iOS").await.unwrap() {
        Reply::Auth { code, .. } => assert_eq!(code, ErrorCode::AuthFailed),
        other => panic!("{other:?}"),
    }
    // The refreshed session still works.
    let (st, _) = api(
        &s,
        "GET",
        "/api/friend/list",
        Some(fresh["data"]["token"].as_str().unwrap()),
        Value::Null,
    )
    .await;
    assert_eq!(st, 200);
    s.stop().await;
}

#[tokio::test]
async fn bearer_is_required_everywhere_but_public_routes() {
    let s = TestServer::start().await;
    for (method, path) in [
        ("GET", "/api/user/info/alice"),
        ("POST", "/api/user/info/batch"),
        ("POST", "/api/user/update"),
        ("GET", "/api/user/search?keyword=a"),
        ("POST", "/api/friend/add"),
        ("GET", "/api/friend/list"),
        ("GET", "/api/friend/check?userID=a"),
        ("POST", "/api/friend/block"),
        ("GET", "/api/friend/blocklist"),
        ("POST", "/api/group/create"),
        ("POST", "/api/v1/messages/sync"),
        ("POST", "/messages/sync_range"),
        ("GET", "/api/conversations"),
        ("POST", "/api/auth/logout"),
    ] {
        for token in [None, Some("garbage"), Some("Bearer")] {
            let (st, v) = api(&s, method, path, token, json!({})).await;
            assert_eq!(st, 401, "{method} {path} {token:?}: {v}");
        }
    }
    for path in ["/health", "/ready", "/openapi.json"] {
        let (st, _, _) = http(s.addrs.http, "GET", path, &[], "").await;
        assert_eq!(st, 200, "{path}");
    }
    s.stop().await;
}

#[tokio::test]
async fn users_info_batch_update_search() {
    let s = TestServer::start().await;
    let a = tok(&register_login(&s, "alice", "iOS").await);
    let b = tok(&register_login(&s, "bob", "iOS").await);
    // Unknown ids: a synthetic user (the v1 SDK login needs it).
    let (st, v) = api(&s, "GET", "/api/user/info/ghost", Some(&a), Value::Null).await;
    assert_eq!(st, 200);
    assert_eq!(v["data"]["nickname"], "ghost");
    let (st, v) = api(
        &s,
        "POST",
        "/api/user/update",
        Some(&a),
        json!({
        "userID": "alice", "nickname": "Alice W", "phone": "+1555", "gender": 2,
        "birth": 946684800000i64, "signature": "hi"}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["data"]["nickname"], "Alice W");
    assert_eq!(v["data"]["phone"], "+1555");
    // Others do not see phone or email.
    let (_, v) = api(&s, "GET", "/api/user/info/alice", Some(&b), Value::Null).await;
    assert_eq!(v["data"]["nickname"], "Alice W");
    assert_eq!(v["data"]["phone"], "");
    assert_eq!(v["data"]["gender"], 2);
    let (st, v) = api(
        &s,
        "POST",
        "/api/user/info/batch",
        Some(&b),
        json!({"userIDs": ["alice", "ghost", "bob"]}),
    )
    .await;
    assert_eq!(st, 200);
    let ids: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["userID"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["alice", "ghost", "bob"]);
    // Someone else's profile, bad values.
    let (st, _) = api(
        &s,
        "POST",
        "/api/user/update",
        Some(&b),
        json!({"userID": "alice", "nickname": "x"}),
    )
    .await;
    assert_eq!(st, 403);
    let (st, _) = api(
        &s,
        "POST",
        "/api/user/update",
        Some(&b),
        json!({"gender": 9}),
    )
    .await;
    assert_eq!(st, 400);
    let (st, _) = api(
        &s,
        "POST",
        "/api/user/info/batch",
        Some(&b),
        json!({"userIDs": ["a b"]}),
    )
    .await;
    assert_eq!(st, 400);
    // Search: query string, or a JSON body on GET as the SDK sends it.
    let (st, v) = api(
        &s,
        "GET",
        "/api/user/search?keyword=alice%20w",
        Some(&b),
        Value::Null,
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["data"][0]["userID"], "alice");
    let (st, v) = api(
        &s,
        "GET",
        "/api/user/search",
        Some(&b),
        json!({"keyword": "BO"}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["data"][0]["userID"], "bob");
    let (st, v) = api(
        &s,
        "GET",
        "/api/user/search?keyword=%25",
        Some(&b),
        Value::Null,
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(
        v["data"].as_array().unwrap().len(),
        0,
        "% matches literally: {v}"
    );
    let (st, _) = api(&s, "GET", "/api/user/search", Some(&b), Value::Null).await;
    assert_eq!(st, 400);
    s.stop().await;
}

#[tokio::test]
async fn friends_and_blocklist_stop_messages() {
    let s = TestServer::start().await;
    let a = tok(&register_login(&s, "alice", "iOS").await);
    let b = tok(&register_login(&s, "bob", "iOS").await);
    let (st, v) = api(
        &s,
        "POST",
        "/api/friend/add",
        Some(&a),
        json!({"userID": "bob", "message": "hi"}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert!(v.get("data").is_none());
    let (_, v) = api(&s, "GET", "/api/friend/requests", Some(&b), Value::Null).await;
    assert_eq!(v["data"][0]["fromUserID"], "alice");
    assert_eq!(v["data"][0]["status"], 0);
    let (st, v) = api(
        &s,
        "POST",
        "/api/friend/accept",
        Some(&b),
        json!({"userID": "alice"}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["data"]["friendUserID"], "alice");
    assert_eq!(v["data"]["ownerUserID"], "bob");
    assert_eq!(v["data"]["user"]["userID"], "alice");
    let (_, v) = api(
        &s,
        "GET",
        "/api/friend/check?userID=bob",
        Some(&a),
        Value::Null,
    )
    .await;
    assert_eq!(v["data"], true);
    let (_, v) = api(
        &s,
        "GET",
        "/api/friend/check",
        Some(&a),
        json!({"userID": "nobody"}),
    )
    .await;
    assert_eq!(v["data"], false);
    let (st, v) = api(
        &s,
        "POST",
        "/api/friend/remark",
        Some(&a),
        json!({"userID": "bob", "remark": "Bobby"}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["data"]["remark"], "Bobby");
    let (_, v) = api(&s, "GET", "/api/friend/list", Some(&a), Value::Null).await;
    assert_eq!(v["data"].as_array().unwrap().len(), 1);
    assert_eq!(v["data"][0]["remark"], "Bobby");
    let (st, _) = api(
        &s,
        "POST",
        "/api/friend/add",
        Some(&a),
        json!({"userID": "bob"}),
    )
    .await;
    assert_eq!(st, 409);
    let (st, _) = api(
        &s,
        "POST",
        "/api/friend/add",
        Some(&a),
        json!({"userID": "nobody"}),
    )
    .await;
    assert_eq!(st, 404);
    let (st, _) = api(
        &s,
        "POST",
        "/api/friend/accept",
        Some(&a),
        json!({"userID": "bob"}),
    )
    .await;
    assert_eq!(st, 404);

    // Bob blocks alice: her 1:1 messages to him are refused on the socket.
    let mut ca = im_client::Client::connect_tcp(s.addrs.tcp).await.unwrap();
    crate::assert_auth_ok(ca.auth("", &a, "iOS").await.unwrap());
    let conv = "single_alice_bob";
    sent_ok(&ca.send_text(conv, "c1", "before").await.unwrap());
    let (st, _) = api(
        &s,
        "POST",
        "/api/friend/block",
        Some(&b),
        json!({"userID": "alice"}),
    )
    .await;
    assert_eq!(st, 200);
    match ca.send_text(conv, "c2", "after").await.unwrap() {
        Reply::Send { code, .. } => assert_eq!(code, ErrorCode::PermissionDenied),
        other => panic!("{other:?}"),
    }
    let (_, v) = api(&s, "GET", "/api/friend/blocklist", Some(&b), Value::Null).await;
    assert_eq!(v["data"][0]["userID"], "alice");
    let (st, _) = api(
        &s,
        "POST",
        "/api/friend/unblock",
        Some(&b),
        json!({"userID": "alice"}),
    )
    .await;
    assert_eq!(st, 200);
    sent_ok(&ca.send_text(conv, "c3", "again").await.unwrap());
    let (st, _) = api(
        &s,
        "POST",
        "/api/friend/delete",
        Some(&b),
        json!({"userID": "alice"}),
    )
    .await;
    assert_eq!(st, 200);
    let (_, v) = api(
        &s,
        "GET",
        "/api/friend/check?userID=bob",
        Some(&a),
        Value::Null,
    )
    .await;
    assert_eq!(v["data"], false);
    s.stop().await;
}

#[tokio::test]
async fn v1_http_sync_and_range() {
    let s = TestServer::start().await;
    let a = tok(&register_login(&s, "alice", "iOS").await);
    let b = tok(&register_login(&s, "bob", "iOS").await);
    let mut ca = im_client::Client::connect_tcp(s.addrs.tcp).await.unwrap();
    crate::assert_auth_ok(ca.auth("", &a, "iOS").await.unwrap());
    let conv = "single_alice_bob";
    // Interleaved with another conversation: bob's cursors (server-wide
    // positions) are not contiguous, and totalCount must still count.
    register_login(&s, "dave", "iOS").await;
    for i in 0..5 {
        sent_ok(
            &ca.send_text(conv, &format!("m{i}"), &format!("hello {i}"))
                .await
                .unwrap(),
        );
        sent_ok(
            &ca.send_text("single_alice_dave", &format!("d{i}"), "to dave")
                .await
                .unwrap(),
        );
    }
    // Page through bob's inbox, 2 at a time, with the cursor the reply gives.
    let mut cursor = 0;
    let mut got = Vec::new();
    loop {
        let (st, v) = api(
            &s,
            "POST",
            "/api/v1/messages/sync",
            Some(&b),
            json!({"lastSeq": cursor, "count": 2, "timestamp": 0}),
        )
        .await;
        assert_eq!(st, 200, "{v}");
        let d = &v["data"];
        for k in ["messages", "maxSeq", "hasMore", "totalCount"] {
            assert!(d.get(k).is_some(), "{k} missing: {d}");
        }
        assert_eq!(d["totalCount"], 5 - got.len(), "{d}");
        for m in d["messages"].as_array().unwrap() {
            for k in ["messageID", "conversationID", "senderID"] {
                assert!(m[k].as_str().is_some_and(|x| !x.is_empty()), "{m}");
            }
            got.push(m["content"].as_str().unwrap().to_owned());
        }
        cursor = d["maxSeq"].as_i64().unwrap();
        if !d["hasMore"].as_bool().unwrap() {
            break;
        }
    }
    assert_eq!(
        got,
        (0..5).map(|i| format!("hello {i}")).collect::<Vec<_>>()
    );
    // Nothing after the last cursor.
    let (_, v) = api(
        &s,
        "POST",
        "/api/v1/messages/sync",
        Some(&b),
        json!({"lastSeq": cursor, "count": 10}),
    )
    .await;
    assert_eq!(v["data"]["messages"].as_array().unwrap().len(), 0);
    assert_eq!(v["data"]["hasMore"], false);
    // Range: snake_case, no /api prefix; membership checked.
    let (st, v) = api(
        &s,
        "POST",
        "/messages/sync_range",
        Some(&b),
        json!({"conversation_id": conv, "start_seq": 2, "end_seq": 4, "count": 100}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let seqs: Vec<i64> = v["data"]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs, [2, 3, 4]);
    let c = tok(&register_login(&s, "carol", "iOS").await);
    let (st, _) = api(
        &s,
        "POST",
        "/messages/sync_range",
        Some(&c),
        json!({"conversation_id": conv, "start_seq": 1, "end_seq": 4}),
    )
    .await;
    assert_eq!(st, 403);
    for body in [
        json!({"conversation_id": conv, "start_seq": 4, "end_seq": 2}),
        json!({"conversation_id": conv, "start_seq": 1, "end_seq": 2, "count": 101}),
        json!({"conversation_id": "nonsense", "start_seq": 1, "end_seq": 2}),
    ] {
        let (st, v) = api(&s, "POST", "/messages/sync_range", Some(&b), body).await;
        assert_eq!(st, 400, "{v}");
    }
    let (st, _) = api(
        &s,
        "POST",
        "/api/v1/messages/sync",
        Some(&b),
        json!({"lastSeq": -1}),
    )
    .await;
    assert_eq!(st, 400);
    s.stop().await;
}

#[tokio::test]
async fn openapi_document_is_served() {
    let s = TestServer::start().await;
    let (st, head, body) = http(s.addrs.http, "GET", "/openapi.json", &[], "").await;
    assert_eq!(st, 200);
    assert!(head.contains("content-type: application/json"));
    let v: Value = serde_json::from_str(&body).unwrap();
    assert!(v["openapi"].as_str().unwrap().starts_with("3."));
    assert!(v["paths"]["/api/auth/login"]["post"].is_object());
    assert!(v["components"]["securitySchemes"]["bearer"].is_object());
    s.stop().await;
}
