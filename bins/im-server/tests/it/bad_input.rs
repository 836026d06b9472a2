use std::time::Duration;

use im_client::Client;
use im_core::command::{Reply, Request};
use im_core::{ErrorCode, Generation};

use crate::{TestServer, WAIT, next_text, sent_ok};

/// After each abuse the server still serves a normal pair of users.
async fn still_serving(s: &TestServer) {
    let mut a = s.tcp("healthy_a").await;
    let mut b = s.ws("healthy_b", Generation::V2, "iOS").await;
    let id = format!(
        "ok-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    sent_ok(
        &a.send_text("single_healthy_a_healthy_b", &id, "still here")
            .await
            .unwrap(),
    );
    assert_eq!(next_text(&mut b).await.unwrap().0, "still here");
}

#[tokio::test]
async fn bad_and_expired_tokens_are_refused() {
    let s = TestServer::start().await;
    for (transport, mut c) in [
        ("tcp", Client::connect_tcp(s.addrs.tcp).await.unwrap()),
        (
            "ws",
            Client::connect_ws(s.addrs.ws, "/ws/v2", Generation::V2)
                .await
                .unwrap(),
        ),
    ] {
        let r = c.auth("alice", "not-a-token", "iOS").await.unwrap();
        assert!(
            matches!(
                r,
                Reply::Auth {
                    code: ErrorCode::AuthFailed,
                    ..
                }
            ),
            "{transport}: {r:?}"
        );
        // Signed with another secret.
        let mut other = s.config.clone();
        other.auth.jwt_secret = "someone-else".to_owned().into();
        let forged = im_server::app::mint_token(&other, "alice", "iOS", None).unwrap();
        let r = c.auth("alice", &forged, "iOS").await.unwrap();
        assert!(
            matches!(
                r,
                Reply::Auth {
                    code: ErrorCode::AuthFailed,
                    ..
                }
            ),
            "{transport}: {r:?}"
        );
        // Expired: a token that expired an hour ago.
        let auth = im_service::JwtAuth::new(b"e2e-test-secret", false);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let expired = auth
            .issue(
                &im_core::UserId::parse("alice").unwrap(),
                "iOS",
                now - 7200,
                3600,
            )
            .unwrap();
        let r = c.auth("alice", &expired, "iOS").await.unwrap();
        assert!(
            matches!(
                r,
                Reply::Auth {
                    code: ErrorCode::TokenExpired,
                    ..
                }
            ),
            "{transport}: {r:?}"
        );
        // Token of someone else than the claimed user.
        let r = c.auth("mallory", &s.token("alice"), "iOS").await.unwrap();
        assert!(
            matches!(
                r,
                Reply::Auth {
                    code: ErrorCode::AuthFailed,
                    ..
                }
            ),
            "{transport}: {r:?}"
        );
        // Nothing but AUTH works before auth.
        let r = c
            .send_text("single_alice_bob", "x-1", "sneaky")
            .await
            .unwrap();
        assert!(
            matches!(
                r,
                Reply::Error {
                    code: ErrorCode::AuthFailed,
                    ..
                } | Reply::Send {
                    code: ErrorCode::AuthFailed,
                    ..
                }
            ),
            "{transport}: {r:?}"
        );
        // The socket still accepts a good AUTH afterwards (the SDK reuses it).
        crate::assert_auth_ok(c.auth("alice", &s.token("alice"), "iOS").await.unwrap());
    }
    still_serving(&s).await;
    s.stop().await;
}

#[tokio::test]
async fn demo_tokens_are_refused_when_disabled() {
    let s = TestServer::start_with(|c| c.auth.allow_demo_tokens = Some(false)).await;
    let mut c = Client::connect_tcp(s.addrs.tcp).await.unwrap();
    let r = c.auth("alice", "demo_token_alice", "iOS").await.unwrap();
    assert!(
        matches!(
            r,
            Reply::Auth {
                code: ErrorCode::AuthFailed,
                ..
            }
        ),
        "{r:?}"
    );
    s.stop().await;
}

#[tokio::test]
async fn no_auth_in_time_closes_both_transports() {
    let s = TestServer::start_with(|c| c.server.auth_timeout = Duration::from_millis(300)).await;
    let mut tcp = Client::connect_tcp(s.addrs.tcp).await.unwrap();
    let mut ws = Client::connect_ws(s.addrs.ws, "/ws", Generation::V1)
        .await
        .unwrap();
    assert!(tcp.closed(WAIT).await.unwrap(), "tcp not closed");
    assert!(ws.closed(WAIT).await.unwrap(), "ws not closed");
    // An authenticated session is not affected by the auth timeout.
    let mut a = s.tcp("alice").await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(matches!(
        a.heartbeat().await.unwrap(),
        Reply::Heartbeat { .. }
    ));
    still_serving(&s).await;
    s.stop().await;
}

#[tokio::test]
async fn garbage_frames_get_errors_then_close() {
    let s = TestServer::start().await;
    // WS: a binary frame that is not a WebSocketMessage gets an error reply (command 0).
    let mut ws = s.ws("alice", Generation::V2, "iOS").await;
    ws.send_ws_binary(&[0xff, 0xff, 0xff, 0xff, 0x0f])
        .await
        .unwrap();
    let (_, r) = ws.next_reply(WAIT).await.unwrap().expect("error reply");
    assert!(
        matches!(
            r,
            Reply::Error {
                code: ErrorCode::InvalidParam,
                ..
            }
        ),
        "{r:?}"
    );
    // A known command with an undecodable body gets that command's error reply.
    ws.send_raw(200, 77, &[0x0a, 0xff]).await.unwrap();
    let r = ws.wait_reply(77, WAIT).await.unwrap();
    assert!(
        matches!(
            r,
            Reply::Error {
                code: ErrorCode::InvalidParam,
                ..
            } | Reply::Send {
                code: ErrorCode::InvalidParam,
                ..
            }
        ),
        "{r:?}"
    );
    // An unknown command gets an error reply on WS.
    ws.send_raw(9999, 78, &[]).await.unwrap();
    let r = ws.wait_reply(78, WAIT).await.unwrap();
    assert!(
        matches!(
            r,
            Reply::Error {
                code: ErrorCode::InvalidParam,
                ..
            }
        ),
        "{r:?}"
    );
    // The session is still usable.
    sent_ok(
        &ws.send_text("single_alice_bob", "after-garbage", "ok")
            .await
            .unwrap(),
    );
    // Repeated garbage closes the connection.
    for _ in 0..20 {
        if ws.send_ws_binary(b"\xff\xff\xff").await.is_err() {
            break;
        }
    }
    assert!(
        ws.closed(WAIT).await.unwrap(),
        "ws not closed after repeated garbage"
    );

    // TCP: a bad magic desynchronises the stream: the server closes.
    let mut tcp = s.tcp("bob").await;
    tcp.send_tcp_bytes(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    assert!(
        tcp.closed(WAIT).await.unwrap(),
        "tcp not closed after bad magic"
    );
    still_serving(&s).await;
    s.stop().await;
}

#[tokio::test]
async fn oversized_frames_close_the_connection() {
    let s = TestServer::start_with(|c| c.session.max_frame_bytes = 128 * 1024).await;
    let mut ws = s.ws("alice", Generation::V2, "iOS").await;
    let big = vec![0u8; 300 * 1024];
    let _ = ws.send_ws_binary(&big).await;
    assert!(
        ws.closed(WAIT).await.unwrap(),
        "ws not closed after an oversized frame"
    );
    // TCP: a header announcing a body over the limit is refused before the body arrives.
    let mut tcp = s.tcp("bob").await;
    let mut hdr = bytes::BytesMut::new();
    im_protocol::tcp::encode_packet(200, 5, &[], &mut hdr);
    // Patch the length to 10 MiB and fix the CRC.
    hdr[10..14].copy_from_slice(&(10u32 << 20).to_be_bytes());
    let crc = im_protocol::tcp::crc16(&hdr[..14]);
    hdr[14..16].copy_from_slice(&crc.to_be_bytes());
    tcp.send_tcp_bytes(&hdr).await.unwrap();
    assert!(
        tcp.closed(WAIT).await.unwrap(),
        "tcp not closed after an oversized header"
    );
    // A message over max_content_bytes is refused with its own code, connection kept.
    let mut c = s.tcp("carol").await;
    let huge = "x".repeat(70 * 1024);
    let r = c
        .send_text("single_carol_dan", "huge-1", &huge)
        .await
        .unwrap();
    assert!(
        matches!(&r, Reply::Send { code: ErrorCode::MessageTooLarge, client_msg_id, .. } if client_msg_id == "huge-1"),
        "{r:?}"
    );
    still_serving(&s).await;
    s.stop().await;
}

#[tokio::test]
async fn sends_to_foreign_or_malformed_conversations_are_refused() {
    let s = TestServer::start().await;
    let mut a = s.tcp("alice").await;
    for (conv, want) in [
        ("single_bob_carol", ErrorCode::PermissionDenied),
        ("single_alice", ErrorCode::InvalidParam),
        ("group_g1", ErrorCode::ConversationNotExist),
        ("weird", ErrorCode::InvalidParam),
    ] {
        let r = a
            .send_text(conv, &format!("c-{want:?}"), "x")
            .await
            .unwrap();
        assert!(
            matches!(&r, Reply::Send { code, .. } if *code == want),
            "{conv}: {r:?}"
        );
    }
    let r = a
        .request(Request::SyncRange {
            request_id: "x".into(),
            conversation_id: "single_bob_carol".into(),
            start_seq: 1,
            end_seq: 10,
            count: 10,
        })
        .await
        .unwrap();
    assert!(
        matches!(
            r,
            Reply::SyncRange {
                code: ErrorCode::PermissionDenied,
                ..
            }
        ),
        "{r:?}"
    );
    s.stop().await;
}
