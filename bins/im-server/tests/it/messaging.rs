use im_core::command::{Reply, Request, SyncState};
use im_core::{ErrorCode, Generation};

use crate::{TestServer, WAIT, assert_no_message, next_text, sent_ok};

#[tokio::test]
async fn tcp_v2_and_ws_v1_exchange_both_ways() {
    let s = TestServer::start().await;
    let mut alice = s.tcp("alice").await;
    let mut bob = s.ws("bob", Generation::V1, "iOS").await;
    let r = alice
        .send_text("single_alice_bob", "a-1", "hello bob")
        .await
        .unwrap();
    let (_, seq) = sent_ok(&r);
    assert_eq!(seq, 1);
    let (text, m) = next_text(&mut bob).await.unwrap();
    assert_eq!(text, "hello bob");
    assert_eq!(m.sender_id, "alice");
    assert_eq!(m.conversation_id, "single_alice_bob");
    // v1 client ids: 17 digits for text.
    let r = bob
        .send_text("single_alice_bob", "17320000000001234", "hi alice")
        .await
        .unwrap();
    match &r {
        // v1 echoes client_msg_id in message_id (contract §7.1); the client maps it back.
        Reply::Send {
            code: ErrorCode::Success,
            client_msg_id,
            ..
        } => assert_eq!(client_msg_id, "17320000000001234"),
        other => panic!("{other:?}"),
    }
    let (text, m) = next_text(&mut alice).await.unwrap();
    assert_eq!(text, "hi alice");
    assert_eq!(m.seq, 2);
    assert_eq!(m.client_msg_id, "17320000000001234");
    // Nobody gets their own message back.
    assert_no_message(&mut alice).await;
    assert_no_message(&mut bob).await;
    s.stop().await;
}

#[tokio::test]
async fn ws_v2_and_tcp_exchange_and_second_device_gets_push() {
    let s = TestServer::start().await;
    let mut alice_phone = s.tcp("alice").await;
    let mut alice_web = s.ws("alice", Generation::V2, "Web").await;
    let mut carol = s.ws("carol", Generation::V2, "Android").await;
    let r = alice_phone
        .send_text(
            "single_alice_carol",
            "6f1c2d9e-0000-4000-8000-000000000001",
            "from phone",
        )
        .await
        .unwrap();
    sent_ok(&r);
    assert_eq!(next_text(&mut carol).await.unwrap().0, "from phone");
    let (text, m) = next_text(&mut alice_web).await.unwrap();
    assert_eq!(text, "from phone");
    assert_eq!(m.sender_id, "alice");
    assert_no_message(&mut alice_phone).await;
    let r = carol
        .send_text(
            "single_alice_carol",
            "6f1c2d9e-0000-4000-8000-000000000002",
            "back",
        )
        .await
        .unwrap();
    sent_ok(&r);
    assert_eq!(next_text(&mut alice_phone).await.unwrap().0, "back");
    assert_eq!(next_text(&mut alice_web).await.unwrap().0, "back");
    s.stop().await;
}

#[tokio::test]
async fn offline_user_syncs_everything_in_order_exactly_once() {
    let s = TestServer::start().await;
    let mut alice = s.tcp("alice").await;
    let n = 250;
    for i in 0..n {
        let r = alice
            .send_text("single_alice_dave", &format!("c-{i}"), &format!("m{i}"))
            .await
            .unwrap();
        assert_eq!(sent_ok(&r).1, i64::from(i) + 1);
    }
    alice
        .send_text("single_alice_erin", "e-1", "to erin")
        .await
        .unwrap();
    // dave was offline: v2 batch sync with an empty state = full sync, 100 per conversation.
    let mut dave = s.tcp("dave").await;
    let mut got: Vec<i64> = Vec::new();
    let mut cursor = 0;
    loop {
        let states = if cursor == 0 {
            vec![]
        } else {
            vec![SyncState {
                conversation_id: "single_alice_dave".into(),
                last_seq: cursor,
            }]
        };
        let r = dave
            .request(Request::BatchSync {
                states,
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
        if conversations.is_empty() {
            break;
        }
        assert_eq!(conversations.len(), 1, "dave only sees his conversation");
        let c = &conversations[0];
        assert_eq!(c.conversation_id, "single_alice_dave");
        got.extend(c.messages.iter().map(|m| m.message.seq));
        assert!(
            c.messages
                .iter()
                .all(|m| !m.is_read && m.message.sender_id == "alice")
        );
        assert_eq!(c.max_seq, c.messages.last().unwrap().message.seq);
        cursor = c.max_seq;
        if !c.has_more {
            break;
        }
    }
    assert_eq!(got, (1..=i64::from(n)).collect::<Vec<_>>());
    // Range sync fills a gap exactly.
    let r = dave
        .request(Request::SyncRange {
            request_id: "R-1".into(),
            conversation_id: "single_alice_dave".into(),
            start_seq: 10,
            end_seq: 12,
            count: 3,
        })
        .await
        .unwrap();
    let Reply::SyncRange {
        messages,
        request_id,
        has_more,
        ..
    } = r
    else {
        panic!("{r:?}")
    };
    assert_eq!(request_id, "R-1");
    assert!(!has_more);
    assert_eq!(
        messages.iter().map(|m| m.message.seq).collect::<Vec<_>>(),
        vec![10, 11, 12]
    );

    // A v1 client syncs by its per-user cursor, AuthResponse.max_seq tells the
    // head: the position of erin's one message, after dave's 250 (positions
    // are server-wide, opaque to the client).
    let mut erin = im_client::Client::connect_ws(s.addrs.ws, "/ws/v1", Generation::V1)
        .await
        .unwrap();
    let r = erin.auth("erin", &s.token("erin"), "iOS").await.unwrap();
    let Reply::Auth {
        code: ErrorCode::Success,
        max_seq: head,
        ..
    } = r
    else {
        panic!("{r:?}")
    };
    assert!(head > i64::from(n), "{head}");
    let r = erin
        .request(Request::SyncInbox {
            min_seq: 0,
            max_seq: 0,
            limit: 100,
        })
        .await
        .unwrap();
    let Reply::SyncInbox {
        messages,
        server_max_seq,
        has_more,
        ..
    } = r
    else {
        panic!("{r:?}")
    };
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].message.content.as_ref(), b"to erin");
    assert_eq!(server_max_seq, head);
    assert!(!has_more);
    let r = erin
        .request(Request::SyncInbox {
            min_seq: head,
            max_seq: 0,
            limit: 100,
        })
        .await
        .unwrap();
    let Reply::SyncInbox { messages, .. } = r else {
        panic!("{r:?}")
    };
    assert!(messages.is_empty(), "nothing twice");
    s.stop().await;
}

#[tokio::test]
async fn retried_send_returns_original_ids_and_stores_nothing() {
    let s = TestServer::start().await;
    let mut alice = s.tcp("alice").await;
    let mut bob = s.tcp("bob").await;
    let first = alice
        .send_text("single_alice_bob", "retry-1", "once")
        .await
        .unwrap();
    let (id, seq) = sent_ok(&first);
    assert_eq!(next_text(&mut bob).await.unwrap().0, "once");
    // The SDK resends the same request (same client_msg_id, new frame sequence).
    for _ in 0..3 {
        let again = alice
            .send_text("single_alice_bob", "retry-1", "once")
            .await
            .unwrap();
        assert_eq!(sent_ok(&again), (id.clone(), seq));
    }
    assert_no_message(&mut bob).await;
    let next = alice
        .send_text("single_alice_bob", "retry-2", "twice")
        .await
        .unwrap();
    assert_eq!(sent_ok(&next).1, seq + 1, "no seq consumed by the retries");
    let r = bob
        .request(Request::BatchSync {
            states: vec![],
            max_per_conversation: 100,
        })
        .await
        .unwrap();
    let Reply::BatchSync { total, .. } = r else {
        panic!("{r:?}")
    };
    assert_eq!(total, 2);
    s.stop().await;
}

#[tokio::test]
async fn pipelined_sends_keep_order_and_all_get_replies() {
    let s = TestServer::start().await;
    let mut alice = s.tcp("alice").await;
    let mut bob = s.ws("bob", Generation::V2, "iOS").await;
    let n = 200u32;
    let mut seqs = Vec::new();
    for i in 0..n {
        let req = Request::Send(im_core::command::SendRequest {
            client_msg_id: format!("p-{i}"),
            conversation_id: "single_alice_bob".into(),
            message_type: 1,
            content: bytes::Bytes::from(format!("{i}")),
            ..Default::default()
        });
        seqs.push(alice.send(&req).await.unwrap());
    }
    for (i, sq) in seqs.into_iter().enumerate() {
        let r = alice.wait_reply(sq, WAIT).await.unwrap();
        let Reply::Send {
            code: ErrorCode::Success,
            seq,
            client_msg_id,
            ..
        } = r
        else {
            panic!("{r:?}")
        };
        assert_eq!(client_msg_id, format!("p-{i}"));
        assert_eq!(seq, i as i64 + 1, "arrival order is seq order");
    }
    for i in 0..n {
        assert_eq!(next_text(&mut bob).await.unwrap().0, format!("{i}"));
    }
    s.stop().await;
}

#[tokio::test]
async fn ack_and_heartbeat_and_reauth_on_same_socket() {
    let s = TestServer::start().await;
    let mut alice = s.tcp("alice").await;
    let mut bob = s.tcp("bob").await;
    let r = alice
        .send_text("single_alice_bob", "k-1", "x")
        .await
        .unwrap();
    let (id, _) = sent_ok(&r);
    next_text(&mut bob).await.unwrap();
    bob.ack(&id).await.unwrap();
    let hb = bob.heartbeat().await.unwrap();
    assert!(
        matches!(hb, Reply::Heartbeat { server_time } if server_time > 0),
        "{hb:?}"
    );
    // The SDK re-sends AUTH_REQ on an already authenticated socket.
    crate::assert_auth_ok(bob.auth("bob", &s.token("bob"), "iOS").await.unwrap());
    alice
        .send_text("single_alice_bob", "k-2", "after reauth")
        .await
        .unwrap();
    assert_eq!(next_text(&mut bob).await.unwrap().0, "after reauth");
    s.stop().await;
}

#[tokio::test]
async fn same_platform_login_kicks_the_old_session() {
    let s = TestServer::start().await;
    let mut old = s.tcp("alice").await;
    let _new = s.tcp("alice").await;
    let e = old.next_event(WAIT).await.unwrap();
    assert!(
        matches!(e, Some(im_core::command::Event::KickOut { .. })),
        "{e:?}"
    );
    assert!(old.closed(WAIT).await.unwrap(), "kicked session is closed");
    s.stop().await;
}

/// A raw HTTP/1.1 request; returns (status line, lower-cased headers, body).
pub async fn http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String, String) {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    http_on(stream, method, path, headers, body).await
}

/// [`http`] on an open stream (plain or TLS).
pub async fn http_on<S>(
    mut stream: S,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String, String)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    stream.read_to_end(&mut out).await.unwrap();
    let out = String::from_utf8(out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head.to_ascii_lowercase(), body.to_owned())
}

#[tokio::test]
async fn health_ready_and_json_errors() {
    let s = TestServer::start().await;
    let (status, head, body) = http(s.addrs.http, "GET", "/health", &[], "").await;
    assert_eq!(status, 200);
    assert!(head.contains("content-type: application/json"), "{head}");
    assert_eq!(
        body,
        r#"{"code":0,"message":"OK","data":{"status":"healthy"}}"#
    );
    let (status, _, body) = http(s.addrs.http, "GET", "/ready", &[], "").await;
    assert_eq!(status, 200, "{body}");
    // Unknown routes and wrong methods are JSON errors with the status as code.
    let (status, head, body) = http(s.addrs.http, "GET", "/nope", &[], "").await;
    assert_eq!(status, 404);
    assert!(head.contains("content-type: application/json"), "{head}");
    assert!(
        body.contains(r#""code":404"#) && body.contains(r#""error":"not_found""#),
        "{body}"
    );
    let (status, _, body) = http(s.addrs.http, "POST", "/health", &[], "").await;
    assert_eq!(status, 405, "{body}");
    assert!(body.contains(r#""code":405"#), "{body}");
    s.stop().await;
}
