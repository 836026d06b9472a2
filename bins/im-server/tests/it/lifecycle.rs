//! Issue 4 end to end: groups, recall, read receipts, typing, presence,
//! conversation list — over the real server, HTTP + sockets.

use std::time::Duration;

use im_client::Client;
use im_core::command::{Event, Reply, Request};
use im_core::{ConversationType, ErrorCode, Generation};

use crate::messaging::http;
use crate::{TestServer, WAIT, assert_no_message, next_text, sent_ok};

/// An authenticated JSON call; returns (status, parsed body).
async fn api(
    s: &TestServer,
    user: &str,
    method: &str,
    path: &str,
    body: &str,
) -> (u16, serde_json::Value) {
    let auth = format!("Bearer {}", s.token(user));
    let (status, _, body) = http(
        s.addrs.http,
        method,
        path,
        &[
            ("Authorization", auth.as_str()),
            ("Content-Type", "application/json"),
        ],
        body,
    )
    .await;
    let v =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {body}"));
    (status, v)
}

async fn create_group(s: &TestServer, owner: &str, members: &[&str]) -> String {
    let body = serde_json::json!({"groupName": "team", "faceURL": "", "introduction": "hi", "memberUserIDs": members});
    let (status, v) = api(s, owner, "POST", "/api/group/create", &body.to_string()).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["code"], 0);
    assert_eq!(v["data"]["status"], 0, "0 = normal (contract §6)");
    assert_eq!(v["data"]["ownerUserID"], owner);
    assert_eq!(v["data"]["memberCount"], members.len() as i64 + 1);
    v["data"]["groupID"].as_str().unwrap().to_owned()
}

fn code(r: &Reply) -> ErrorCode {
    match r {
        Reply::Send { code, .. }
        | Reply::Revoke { code, .. }
        | Reply::ReadReceipt { code, .. }
        | Reply::SyncRange { code, .. }
        | Reply::BatchSync { code, .. }
        | Reply::OnlineStatus { code, .. }
        | Reply::Error { code, .. } => *code,
        other => panic!("no code in {other:?}"),
    }
}

async fn next_matching(c: &mut Client, pred: impl Fn(&Event) -> bool) -> Option<Event> {
    while let Some(e) = c.next_event(WAIT).await.unwrap() {
        if pred(&e) {
            return Some(e);
        }
    }
    None
}

#[tokio::test]
async fn group_chat_fans_out_and_checks_membership_mute_and_kick() {
    let s = TestServer::start().await;
    let gid = create_group(&s, "alice", &["bob", "carol"]).await;
    let conv = format!("group_{gid}");
    let mut alice = s.tcp("alice").await;
    let mut bob = s.ws("bob", Generation::V2, "iOS").await;
    let mut carol = s.ws("carol", Generation::V1, "iOS").await;
    let mut dave = s.tcp("dave").await;

    let r = alice.send_text(&conv, "g-1", "hello team").await.unwrap();
    assert_eq!(sent_ok(&r).1, 1);
    for c in [&mut bob, &mut carol] {
        let (text, m) = next_text(c).await.unwrap();
        assert_eq!(text, "hello team");
        assert_eq!(m.conversation_id, conv);
        assert_eq!(m.group_id, gid);
    }
    assert_no_message(&mut alice).await;
    // v2 members see conversation_type=2 in sync.
    let r = bob
        .request(Request::BatchSync {
            states: vec![],
            max_per_conversation: 10,
        })
        .await
        .unwrap();
    let Reply::BatchSync { conversations, .. } = r else {
        panic!("{r:?}")
    };
    let g = conversations
        .iter()
        .find(|c| c.conversation_id == conv)
        .expect("group in bob's sync");
    assert_eq!(
        g.messages[0].message.conversation_type,
        ConversationType::Group
    );
    assert_eq!(g.messages[0].message.group_id, gid);

    // A non-member cannot send or read.
    let r = dave.send_text(&conv, "d-1", "let me in").await.unwrap();
    assert_eq!(code(&r), ErrorCode::PermissionDenied);
    let r = dave
        .request(Request::SyncRange {
            request_id: "x".into(),
            conversation_id: conv.clone(),
            start_seq: 1,
            end_seq: 10,
            count: 10,
        })
        .await
        .unwrap();
    assert_eq!(code(&r), ErrorCode::PermissionDenied);

    // A muted member cannot send; unmuted again they can.
    let (st, v) = api(
        &s,
        "alice",
        "POST",
        &format!("/api/group/{gid}/mute"),
        r#"{"userID":"bob","durationSeconds":600}"#,
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let r = bob.send_text(&conv, "b-1", "can I talk").await.unwrap();
    assert_eq!(code(&r), ErrorCode::PermissionDenied);
    // A member may not mute others.
    let (st, v) = api(
        &s,
        "carol",
        "POST",
        &format!("/api/group/{gid}/mute"),
        r#"{"userID":"alice","durationSeconds":60}"#,
    )
    .await;
    assert_eq!(st, 403, "{v}");
    assert_eq!(v["error"], "permission_denied");
    // Mute all: members silenced, the owner is not.
    let (st, _) = api(
        &s,
        "alice",
        "POST",
        &format!("/api/group/{gid}/mute_all"),
        r#"{"mute":true}"#,
    )
    .await;
    assert_eq!(st, 200);
    let r = carol
        .send_text(&conv, "17320000000000001", "hello?")
        .await
        .unwrap();
    assert_eq!(code(&r), ErrorCode::PermissionDenied);
    sent_ok(&alice.send_text(&conv, "g-2", "owner speaks").await.unwrap());
    api(
        &s,
        "alice",
        "POST",
        &format!("/api/group/{gid}/mute_all"),
        r#"{"mute":false}"#,
    )
    .await;

    // Kick carol: she can no longer send or sync the group.
    let (st, v) = api(
        &s,
        "bob",
        "POST",
        &format!("/api/group/{gid}/kick"),
        r#"{"userIDs":["carol"]}"#,
    )
    .await;
    assert_eq!(st, 403, "a plain member cannot kick: {v}");
    let (st, v) = api(
        &s,
        "alice",
        "POST",
        &format!("/api/group/{gid}/kick"),
        r#"{"userIDs":["carol"]}"#,
    )
    .await;
    assert_eq!(st, 200, "{v}");
    sent_ok(
        &alice
            .send_text(&conv, "g-3", "after the kick")
            .await
            .unwrap(),
    );
    let r = carol
        .send_text(&conv, "17320000000000002", "still here?")
        .await
        .unwrap();
    assert_eq!(code(&r), ErrorCode::PermissionDenied);
    let mut carol2 = s.ws("carol", Generation::V2, "Web").await;
    let r = carol2
        .request(Request::SyncRange {
            request_id: "k".into(),
            conversation_id: conv.clone(),
            start_seq: 1,
            end_seq: 10,
            count: 10,
        })
        .await
        .unwrap();
    assert_eq!(code(&r), ErrorCode::PermissionDenied);
    let r = carol2
        .request(Request::BatchSync {
            states: vec![],
            max_per_conversation: 100,
        })
        .await
        .unwrap();
    let Reply::BatchSync { conversations, .. } = r else {
        panic!("{r:?}")
    };
    assert!(
        conversations
            .iter()
            .all(|c| c.conversation_id != conv || c.messages.iter().all(|m| m.message.seq < 3)),
        "a kicked member must not sync messages sent after the kick"
    );
    // Owner cannot leave; members listing works; dismissed group refuses sends.
    let (st, _) = api(&s, "alice", "POST", &format!("/api/group/{gid}/leave"), "").await;
    assert_eq!(st, 400);
    let (st, v) = api(&s, "bob", "GET", &format!("/api/group/{gid}/members"), "").await;
    assert_eq!(st, 200);
    assert_eq!(v["data"].as_array().unwrap().len(), 2);
    let (st, _) = api(&s, "bob", "POST", &format!("/api/group/{gid}/dismiss"), "").await;
    assert_eq!(st, 403);
    let (st, _) = api(
        &s,
        "alice",
        "POST",
        &format!("/api/group/{gid}/dismiss"),
        "",
    )
    .await;
    assert_eq!(st, 200);
    let r = alice.send_text(&conv, "g-4", "anyone?").await.unwrap();
    assert_ne!(code(&r), ErrorCode::Success);
    let (st, v) = api(&s, "alice", "GET", &format!("/api/group/{gid}"), "").await;
    assert!(st == 404 || v["data"]["status"] == 1, "{st} {v}");
    s.stop().await;
}

#[tokio::test]
async fn recall_window_permissions_and_sync() {
    let s = TestServer::start_with(|c| c.message.recall_window = Duration::from_millis(400)).await;
    let mut alice = s.tcp("alice").await;
    let mut bob = s.ws("bob", Generation::V2, "iOS").await;
    let (id, _) = sent_ok(
        &bob.send_text("single_alice_bob", "r-1", "oops")
            .await
            .unwrap(),
    );
    next_text(&mut alice).await.unwrap();
    // alice cannot recall bob's message.
    let r = alice
        .request(Request::Revoke {
            message_id: id.clone(),
            conversation_id: "single_alice_bob".into(),
        })
        .await
        .unwrap();
    assert_eq!(code(&r), ErrorCode::PermissionDenied);
    // bob can, within the window; everyone (bob included) gets the push.
    let r = bob
        .request(Request::Revoke {
            message_id: id.clone(),
            conversation_id: "single_alice_bob".into(),
        })
        .await
        .unwrap();
    assert_eq!(code(&r), ErrorCode::Success);
    for c in [&mut alice, &mut bob] {
        let e = next_matching(c, |e| matches!(e, Event::Revoked { .. }))
            .await
            .expect("revoke push");
        let Event::Revoked {
            server_msg_id,
            revoked_by,
            ..
        } = e
        else {
            unreachable!()
        };
        assert_eq!(server_msg_id, id);
        assert_eq!(revoked_by, "bob");
    }
    let r = alice
        .request(Request::BatchSync {
            states: vec![],
            max_per_conversation: 10,
        })
        .await
        .unwrap();
    let Reply::BatchSync { conversations, .. } = r else {
        panic!("{r:?}")
    };
    let m = &conversations[0].messages[0].message;
    assert!(m.revoked.is_some(), "sync shows is_revoked");
    // After the window the sender cannot recall any more.
    let (late, _) = sent_ok(
        &bob.send_text("single_alice_bob", "r-2", "too late")
            .await
            .unwrap(),
    );
    tokio::time::sleep(Duration::from_millis(500)).await; // pass the 400 ms recall window
    let r = bob
        .request(Request::Revoke {
            message_id: late,
            conversation_id: "single_alice_bob".into(),
        })
        .await
        .unwrap();
    assert_eq!(code(&r), ErrorCode::PermissionDenied);
    s.stop().await;
}

#[tokio::test]
async fn read_receipts_unread_counts_and_conversation_list() {
    let s = TestServer::start().await;
    let mut alice = s.tcp("alice").await;
    let mut bob = s.ws("bob", Generation::V2, "iOS").await;
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(
            sent_ok(
                &alice
                    .send_text("single_alice_bob", &format!("u-{i}"), "x")
                    .await
                    .unwrap(),
            )
            .0,
        );
    }
    sent_ok(
        &bob.send_text("single_alice_bob", "b-own", "mine")
            .await
            .unwrap(),
    );
    let (st, v) = api(&s, "bob", "GET", "/api/conversations", "").await;
    assert_eq!(st, 200, "{v}");
    let row = &v["data"][0];
    assert_eq!(row["conversationID"], "single_alice_bob");
    assert_eq!(row["unreadCount"], 3, "own messages never count: {v}");
    assert_eq!(row["lastMessage"]["content"], "mine");
    // Empty list = the whole conversation.
    let r = bob
        .request(Request::ReadReceipt {
            message_ids: vec![],
            conversation_id: "single_alice_bob".into(),
        })
        .await
        .unwrap();
    assert_eq!(code(&r), ErrorCode::Success);
    let e = next_matching(&mut alice, |e| matches!(e, Event::ReadReceipt { .. }))
        .await
        .expect("receipt push");
    let Event::ReadReceipt {
        server_msg_ids,
        user_id,
        ..
    } = e
    else {
        unreachable!()
    };
    assert_eq!(user_id, "bob");
    let mut got = server_msg_ids.clone();
    got.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(got, want, "alice is told exactly her messages were read");
    let (_, v) = api(&s, "bob", "GET", "/api/conversations", "").await;
    assert_eq!(v["data"][0]["unreadCount"], 0);
    let r = bob
        .request(Request::BatchSync {
            states: vec![],
            max_per_conversation: 10,
        })
        .await
        .unwrap();
    let Reply::BatchSync { conversations, .. } = r else {
        panic!("{r:?}")
    };
    assert!(conversations[0].messages.iter().all(|m| m.is_read));
    // History paging over HTTP.
    let (st, v) = api(
        &s,
        "alice",
        "GET",
        "/api/messages/history?conversationID=single_alice_bob&limit=2",
        "",
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let page = v["data"].as_array().unwrap();
    assert_eq!(page.len(), 2);
    assert_eq!(page[0]["seq"], 4, "newest first");
    let (st, _) = api(
        &s,
        "carol",
        "GET",
        "/api/messages/history?conversationID=single_alice_bob",
        "",
    )
    .await;
    assert_eq!(st, 403, "others cannot read the conversation");
    s.stop().await;
}

#[tokio::test]
async fn typing_is_relayed_to_the_peer_only() {
    let s = TestServer::start().await;
    let mut alice = s.tcp("alice").await;
    let mut bob = s.ws("bob", Generation::V2, "iOS").await;
    let mut carol = s.tcp("carol").await;
    alice
        .send(&Request::Typing {
            conversation_id: "single_alice_bob".into(),
            status: 1,
        })
        .await
        .unwrap();
    let e = next_matching(&mut bob, |e| matches!(e, Event::Typing { .. }))
        .await
        .expect("typing push");
    assert!(
        matches!(e, Event::Typing { ref user_id, status: 1, .. } if user_id == "alice"),
        "{e:?}"
    );
    assert!(carol.next_event(crate::QUIET).await.unwrap().is_none());
    // Typing into someone else's conversation is dropped silently.
    carol
        .send(&Request::Typing {
            conversation_id: "single_alice_bob".into(),
            status: 1,
        })
        .await
        .unwrap();
    assert!(bob.next_event(crate::QUIET).await.unwrap().is_none());
    s.stop().await;
}

#[tokio::test]
async fn presence_query_subscribe_and_transitions() {
    let s = TestServer::start().await;
    let mut carol = s.tcp("carol").await;
    let r = carol
        .request(Request::OnlineStatus {
            user_ids: vec!["dave".into()],
        })
        .await
        .unwrap();
    let Reply::OnlineStatus {
        code: ErrorCode::Success,
        statuses,
        ..
    } = r
    else {
        panic!("{r:?}")
    };
    assert_eq!(statuses.len(), 1);
    assert!(!statuses[0].online);
    let dave = s.ws("dave", Generation::V2, "Android").await;
    let e = next_matching(&mut carol, |e| matches!(e, Event::StatusChange(_)))
        .await
        .expect("online push");
    let Event::StatusChange(st) = e else {
        unreachable!()
    };
    assert_eq!(st.user_id, "dave");
    assert!(st.online);
    assert_eq!(st.platforms, vec!["Android".to_owned()]);
    dave.close().await.unwrap();
    let e = next_matching(&mut carol, |e| matches!(e, Event::StatusChange(_)))
        .await
        .expect("offline push");
    let Event::StatusChange(st) = e else {
        unreachable!()
    };
    assert!(!st.online);
    assert!(st.last_seen > 0);
    s.stop().await;
}

/// A v1 client's cursor and AuthResponse.max_seq after `user` authenticates.
async fn v1_login(s: &TestServer, user: &str) -> (Client, i64) {
    let mut c = Client::connect_ws(s.addrs.ws, "/ws/v1", Generation::V1)
        .await
        .unwrap();
    let r = c.auth(user, &s.token(user), "iOS").await.unwrap();
    let Reply::Auth {
        code: ErrorCode::Success,
        max_seq,
        ..
    } = r
    else {
        panic!("{r:?}")
    };
    (c, max_seq)
}

/// v1 SYNC_REQ after `cursor`: (contents, server_max_seq, has_more).
async fn v1_sync(c: &mut Client, cursor: i64, limit: i32) -> (Vec<String>, i64, bool) {
    let r = c
        .request(Request::SyncInbox {
            min_seq: cursor,
            max_seq: 0,
            limit,
        })
        .await
        .unwrap();
    let Reply::SyncInbox {
        code: ErrorCode::Success,
        messages,
        server_max_seq,
        has_more,
        ..
    } = r
    else {
        panic!("{r:?}")
    };
    let texts = messages
        .iter()
        .map(|v| String::from_utf8_lossy(&v.message.content).into_owned())
        .collect();
    (texts, server_max_seq, has_more)
}

#[tokio::test]
async fn offline_group_member_catches_up_by_v1_cursor() {
    let s = TestServer::start().await;
    let gid = create_group(&s, "alice", &["bob", "carol"]).await;
    let conv = format!("group_{gid}");
    let mut alice = s.tcp("alice").await;
    let r = alice.send_text(&conv, "g-0", "before").await.unwrap();
    sent_ok(&r);
    // carol (v1) syncs everything, remembers her cursor, goes offline
    let (mut carol, head) = v1_login(&s, "carol").await;
    let (texts, cursor, has_more) = v1_sync(&mut carol, 0, 100).await;
    assert_eq!(texts, ["before"]);
    assert_eq!(cursor, head);
    assert!(!has_more);
    drop(carol);
    // the group goes on without her, with 1:1 traffic of others in between
    let mut bob = s.tcp("bob").await;
    for i in 0..5 {
        let r = alice
            .send_text(&conv, &format!("g-{}", i + 1), &format!("group {i}"))
            .await
            .unwrap();
        sent_ok(&r);
        let r = bob
            .send_text("single_alice_bob", &format!("b-{i}"), "not for carol")
            .await
            .unwrap();
        sent_ok(&r);
    }
    // back online: AuthResponse.max_seq is past her cursor; paging from it
    // returns exactly the group messages she missed, in order, once
    let (mut carol, head) = v1_login(&s, "carol").await;
    assert!(head > cursor, "{head} <= {cursor}");
    let (first, next, has_more) = v1_sync(&mut carol, cursor, 2).await;
    assert_eq!(first, ["group 0", "group 1"]);
    assert!(has_more);
    let (rest, last, has_more) = v1_sync(&mut carol, next, 100).await;
    assert_eq!(rest, ["group 2", "group 3", "group 4"]);
    assert!(!has_more);
    assert_eq!(last, head);
    let (none, same, _) = v1_sync(&mut carol, last, 100).await;
    assert!(none.is_empty(), "nothing twice: {none:?}");
    assert_eq!(same, last);
    s.stop().await;
}
