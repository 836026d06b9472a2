//! Overload: per-user and per-address rate limits, refused-AUTH loops, the
//! connection cap and a consumer that never reads. Each test checks the
//! refusal and that other users are served meanwhile.

use std::time::Duration;

use bytes::BytesMut;
use im_client::Client;
use im_core::command::{Event, Reply, Request, cmd};
use im_core::{ErrorCode, Generation};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{QUIET, TestServer, WAIT, next_text, sent_ok};

/// Counts the pushes of `conversation` that reach `c` until it is quiet.
async fn pushes(c: &mut Client) -> usize {
    let mut n = 0;
    while let Some(e) = c.next_event(QUIET).await.unwrap() {
        if matches!(e, Event::Message(_)) {
            n += 1;
        }
    }
    n
}

#[tokio::test]
async fn a_user_over_its_rate_gets_no_send_replies_and_others_keep_sending() {
    let s = TestServer::start_with(|c| {
        c.rate_limit.requests_per_second = 1;
        c.rate_limit.burst = 5;
    })
    .await;
    let mut a = s.tcp("rl_a").await;
    let mut b = s.ws("rl_b", Generation::V2, "iOS").await;
    let mut seqs = Vec::new();
    for i in 0..20 {
        let req = Request::Send(im_core::command::SendRequest {
            client_msg_id: format!("burst-{i}"),
            conversation_id: "single_rl_a_rl_b".into(),
            receiver_id: "rl_b".into(),
            message_type: 1,
            content: bytes::Bytes::from(format!("x{i}")),
            ..Default::default()
        });
        seqs.push(a.send(&req).await.unwrap());
    }
    // Over the limit a send gets no reply (the SDK resends it; an error
    // would mark it failed for good, see sdk_send.rs); what is answered
    // is accepted.
    let mut accepted = 0;
    while let Some((seq, r)) = a.next_reply(QUIET).await.unwrap() {
        let i = seqs.iter().position(|s| *s == seq).unwrap();
        match r {
            Reply::Send {
                code: ErrorCode::Success,
                client_msg_id,
                ..
            } => {
                assert_eq!(client_msg_id, format!("burst-{i}"));
                accepted += 1;
            }
            r => panic!("unexpected reply {r:?}"),
        }
    }
    // The burst, plus what refilled at 1/s while the 20 went out.
    assert!((5..=7).contains(&accepted), "accepted {accepted} of 20");
    let r = a.heartbeat().await.unwrap();
    assert!(
        matches!(r, Reply::Heartbeat { .. }),
        "heartbeats are free: {r:?}"
    );
    // The peer has its own bucket, and got exactly the accepted messages.
    sent_ok(
        &b.send_text("single_rl_a_rl_b", "from-b", "hello")
            .await
            .unwrap(),
    );
    assert_eq!(pushes(&mut b).await, accepted);
    assert_eq!(next_text(&mut a).await.unwrap().0, "hello");
    s.stop().await;
}

#[tokio::test]
async fn authenticated_http_calls_and_logins_are_limited() {
    let s = TestServer::start_with(|c| {
        c.rate_limit.requests_per_second = 1;
        c.rate_limit.burst = 3;
        c.rate_limit.ip_requests_per_second = 1;
        c.rate_limit.ip_burst = 4;
    })
    .await;
    let token = s.token("http_rl");
    let auth = format!("Bearer {token}");
    let mut statuses = Vec::new();
    for _ in 0..8 {
        let (status, _, body) = crate::messaging::http(
            s.addrs.http,
            "GET",
            "/api/conversations",
            &[("Authorization", auth.as_str())],
            "",
        )
        .await;
        if status == 429 {
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(v["error"], "send_too_fast", "{body}");
        }
        statuses.push(status);
    }
    let ok = statuses.iter().filter(|s| **s == 200).count();
    assert!((3..=5).contains(&ok), "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 8 - ok);
    // Another user is not affected.
    let other = format!("Bearer {}", s.token("http_other"));
    let (status, _, _) = crate::messaging::http(
        s.addrs.http,
        "GET",
        "/api/conversations",
        &[("Authorization", other.as_str())],
        "",
    )
    .await;
    assert_eq!(status, 200);

    // Logins from one address: the burst, then 429 whatever the password.
    let body = r#"{"username":"nobody_here","password":"wrong-password"}"#;
    let mut login = Vec::new();
    for _ in 0..8 {
        let (status, _, _) = crate::messaging::http(
            s.addrs.http,
            "POST",
            "/api/auth/login",
            &[("Content-Type", "application/json")],
            body,
        )
        .await;
        login.push(status);
    }
    let limited = login.iter().filter(|s| **s == 429).count();
    assert!((3..=5).contains(&limited), "{login:?}");
    assert!(login.iter().all(|s| *s == 429 || *s == 401), "{login:?}");
    s.stop().await;
}

#[tokio::test]
async fn connections_over_the_per_address_rate_are_dropped() {
    let s = TestServer::start_with(|c| {
        c.rate_limit.ip_requests_per_second = 1;
        c.rate_limit.ip_burst = 3;
    })
    .await;
    let mut kept = Vec::new();
    let mut dropped = 0;
    for _ in 0..8 {
        let mut c = Client::connect_tcp(s.addrs.tcp).await.unwrap();
        if c.closed(QUIET).await.unwrap() {
            dropped += 1;
        } else {
            kept.push(c);
        }
    }
    assert!((3..=4).contains(&kept.len()), "kept {}", kept.len());
    assert_eq!(dropped, 8 - kept.len());
    // The admitted ones work.
    let c = kept.first_mut().unwrap();
    let r = c.auth("ip_ok", &s.token("ip_ok"), "iOS").await.unwrap();
    crate::assert_auth_ok(r);
    s.stop().await;
}

#[tokio::test]
async fn the_fifth_refused_auth_in_a_row_closes_the_connection() {
    let s = TestServer::start().await;
    for transport in ["tcp", "ws"] {
        let mut c = if transport == "tcp" {
            Client::connect_tcp(s.addrs.tcp).await.unwrap()
        } else {
            Client::connect_ws(s.addrs.ws, "/ws/v2", Generation::V2)
                .await
                .unwrap()
        };
        for i in 0..5 {
            let r = c
                .auth("guess", &format!("bad-token-{i}"), "iOS")
                .await
                .unwrap_or_else(|e| panic!("{transport} attempt {i}: {e}"));
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
        }
        assert!(c.closed(WAIT).await.unwrap(), "{transport} stays open");
    }
    // A valid login on a new connection still works.
    let mut a = s.tcp("after_guess_a").await;
    let mut b = s.tcp("after_guess_b").await;
    sent_ok(
        &a.send_text("single_after_guess_a_after_guess_b", "g1", "fine")
            .await
            .unwrap(),
    );
    assert_eq!(next_text(&mut b).await.unwrap().0, "fine");
    s.stop().await;
}

#[tokio::test]
async fn the_connection_cap_refuses_then_admits_again() {
    let s = TestServer::start_with(|c| c.server.max_connections = 3).await;
    let a = s.tcp("cap_a").await;
    let _b = s.tcp("cap_b").await;
    let _w = s.ws("cap_c", Generation::V2, "iOS").await;
    let mut over = Client::connect_tcp(s.addrs.tcp).await.unwrap();
    assert!(
        over.closed(WAIT).await.unwrap(),
        "4th tcp connection admitted"
    );
    let over_ws = Client::connect_ws(s.addrs.ws, "/ws/v2", Generation::V2).await;
    match over_ws {
        Err(_) => {}
        Ok(mut c) => assert!(c.closed(WAIT).await.unwrap(), "4th ws connection admitted"),
    }
    a.close().await.unwrap();
    // The freed slot is usable once the server has seen the close.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let mut c = Client::connect_tcp(s.addrs.tcp).await.unwrap();
        if !c.closed(Duration::from_millis(100)).await.unwrap() {
            crate::assert_auth_ok(c.auth("cap_d", &s.token("cap_d"), "iOS").await.unwrap());
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "slot never freed");
    }
    s.stop().await;
}

/// A TCP client that authenticates and then does not read: its pushes
/// fill the kernel buffers, then its bounded queue, and the server closes it
/// instead of buffering without bound. The sender is never slowed down.
/// When the client finally reads, it gets what was in flight, then EOF.
#[tokio::test]
async fn a_consumer_that_never_reads_is_disconnected() {
    let s = TestServer::start_with(|c| {
        c.rate_limit.enabled = false;
        c.session.outbound_queue = 8;
    })
    .await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    // A small receive window, so the server's writes block soon.
    socket.set_recv_buffer_size(8 * 1024).unwrap();
    let mut sink = socket.connect(s.addrs.tcp).await.unwrap();
    let auth = Request::Auth {
        user_id: "sink".into(),
        token: s.token("sink"),
        platform: "iOS".into(),
    };
    let mut body = BytesMut::new();
    let command = im_protocol::encode_request(Generation::V2, &auth, &mut body);
    assert_eq!(command, cmd::AUTH_REQ);
    let mut frame = BytesMut::new();
    im_protocol::encode_packet(u16::try_from(command).unwrap(), 1, &body, &mut frame);
    sink.write_all(&frame).await.unwrap();

    let mut sender = s.tcp("flooder").await;
    let mut watcher = s.tcp("watcher").await;
    // Wait until the sink is online, so the flood is pushed to it.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let r = sender
            .request(Request::OnlineStatus {
                user_ids: vec!["sink".into()],
            })
            .await
            .unwrap();
        if let Reply::OnlineStatus { statuses, .. } = &r {
            if statuses.iter().any(|st| st.user_id == "sink" && st.online) {
                break;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "sink never online: {r:?}"
        );
        tokio::task::yield_now().await;
    }
    let big = "x".repeat(60_000);
    const SENT: usize = 150; // ~9 MB: far beyond the socket buffers + 8 queued
    for i in 0..SENT {
        sent_ok(
            &sender
                .send_text("single_flooder_sink", &format!("f{i}"), &big)
                .await
                .unwrap(),
        );
    }
    // Others are served throughout.
    sent_ok(
        &sender
            .send_text("single_flooder_watcher", "w1", "still fine")
            .await
            .unwrap(),
    );
    assert_eq!(next_text(&mut watcher).await.unwrap().0, "still fine");

    // Without reading anything, the client sees the server let go of the
    // socket: once both of its halves are closed, what the client writes is
    // answered with a reset (a writer task stuck on the full socket would
    // keep it open, and its buffers, for as long as the peer stays silent).
    let mut hb = BytesMut::new();
    let hb_cmd = im_protocol::encode_request(
        Generation::V2,
        &Request::Heartbeat { client_time: 0 },
        &mut hb,
    );
    let mut ping = BytesMut::new();
    im_protocol::encode_packet(u16::try_from(hb_cmd).unwrap(), 2, &hb, &mut ping);
    let deadline = tokio::time::Instant::now() + WAIT;
    while sink.write_all(&ping).await.is_ok() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the server still holds the silent consumer's socket"
        );
        // Polling the peer's state: nothing to wait on from this side.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Now read: at most a prefix of the pushes, then the end of the stream.
    let mut buf = BytesMut::new();
    let mut pushed = 0usize;
    let eof = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            while let Some(p) = im_protocol::decode_packet(&mut buf, 2 << 20).unwrap() {
                if i32::from(p.command) == cmd::PUSH_MSG {
                    pushed += 1;
                }
            }
            if sink.read_buf(&mut buf).await.unwrap_or(0) == 0 {
                return;
            }
        }
    })
    .await;
    assert!(eof.is_ok(), "the server kept the silent consumer open");
    assert!(pushed < SENT, "all {pushed} pushes were buffered for it");
    s.stop().await;
}
