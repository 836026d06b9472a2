//! The WebSocket transport against a fake hyper + fastwebsockets server.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use fastwebsockets::{Frame, OpCode, Payload, WebSocket, upgrade};
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::upgrade::Upgraded;
use hyper::{Request as HttpRequest, Response, StatusCode};
use hyper_util::rt::TokioIo;
use im_client::{Client, ClientError, ClientOptions, CloseInfo, TransportKind};
use im_core::command::{Event, Reply, Request};
use im_core::{ErrorCode, Generation};
use im_protocol::ws::{Envelope, decode_envelope, encode_envelope};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::time::timeout;

use crate::{PEER_WAIT, QUIET, auth_ok, batch_body, event_body, message, reply_body, summary};

type ServerWs = WebSocket<TokioIo<Upgraded>>;

async fn listener() -> (TcpListener, SocketAddr) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    (l, addr)
}

/// Accepts one connection and upgrades it when the path starts with `/ws`
/// (anything else gets a 404). Returns the request target and the server end.
async fn accept_ws(listener: &TcpListener) -> (String, ServerWs) {
    let (stream, _) = timeout(PEER_WAIT, listener.accept())
        .await
        .unwrap()
        .unwrap();
    let (tx, rx) = oneshot::channel();
    let tx = Arc::new(Mutex::new(Some(tx)));
    let service = service_fn(move |mut req: HttpRequest<Incoming>| {
        let tx = Arc::clone(&tx);
        async move {
            if !req.uri().path().starts_with("/ws") {
                let mut rsp = Response::new(Empty::<Bytes>::new());
                *rsp.status_mut() = StatusCode::NOT_FOUND;
                return Ok::<_, fastwebsockets::WebSocketError>(rsp);
            }
            let target = req.uri().to_string();
            let (rsp, fut) = upgrade::upgrade(&mut req)?;
            if let Some(tx) = tx.lock().unwrap().take() {
                let _ = tx.send((target, fut));
            }
            Ok(rsp)
        }
    });
    tokio::spawn(async move {
        let _ = http1::Builder::new()
            .serve_connection(TokioIo::new(stream), service)
            .with_upgrades()
            .await;
    });
    let (target, fut) = timeout(PEER_WAIT, rx).await.unwrap().unwrap();
    (target, timeout(PEER_WAIT, fut).await.unwrap().unwrap())
}

/// The next data frame from the client (binary, decoded as an envelope).
async fn read_env(ws: &mut ServerWs) -> Envelope {
    let frame = timeout(PEER_WAIT, ws.read_frame()).await.unwrap().unwrap();
    assert_eq!(
        frame.opcode,
        OpCode::Binary,
        "the client sends binary frames"
    );
    decode_envelope(&frame.payload).unwrap()
}

async fn write_env(ws: &mut ServerWs, command: i32, sequence: u32, body: &[u8]) {
    let mut buf = bytes::BytesMut::new();
    encode_envelope(command, sequence, body, 0, &mut buf);
    ws.write_frame(Frame::binary(Payload::Owned(buf.to_vec())))
        .await
        .unwrap();
}

async fn write_reply(ws: &mut ServerWs, generation: Generation, reply: &Reply, sequence: u32) {
    let (command, body) = reply_body(generation, reply, "alice");
    write_env(ws, command, sequence, &body).await;
}

#[tokio::test]
async fn v2_auth_pings_events_and_server_close() {
    let (l, addr) = listener().await;
    let m1 = message("s1", "bob", "alice", 1, "one");
    let server = {
        let m1 = m1.clone();
        async move {
            let (target, mut ws) = accept_ws(&l).await;
            assert_eq!(target, "/ws/v2");

            let auth = read_env(&mut ws).await;
            assert_eq!((auth.command, auth.sequence, auth.timestamp), (100, 1, 0));
            let req = im_protocol::decode_request(Generation::V2, 100, &auth.body).unwrap();
            assert_eq!(
                req,
                Request::Auth {
                    user_id: "alice".into(),
                    token: "t0k".into(),
                    platform: "iOS".into()
                }
            );
            // A server ping while the client waits for its auth reply: the
            // client's reader answers it.
            ws.set_auto_pong(false);
            ws.write_frame(Frame::new(
                true,
                OpCode::Ping,
                None,
                Payload::Borrowed(b"hb"),
            ))
            .await
            .unwrap();
            let pong = timeout(PEER_WAIT, ws.read_frame()).await.unwrap().unwrap();
            assert_eq!((pong.opcode, &pong.payload[..]), (OpCode::Pong, &b"hb"[..]));
            ws.set_auto_pong(true);

            // A push, then the 101 with sequence 0: WS takes the first 101.
            let (cmd, body) = event_body(Generation::V2, &Event::Message(m1), "alice");
            write_env(&mut ws, cmd, 0, &body).await;
            write_reply(&mut ws, Generation::V2, &auth_ok(3), 0).await;

            // The client pings (answered inside read_frame), then heartbeats.
            let hb = read_env(&mut ws).await;
            assert_eq!((hb.command, hb.body.len()), (5, 0));
            write_env(&mut ws, 6, hb.sequence, &[]).await;

            // A text frame from the client: answered with an error on command 0.
            let text = timeout(PEER_WAIT, ws.read_frame()).await.unwrap().unwrap();
            assert_eq!(
                (text.opcode, &text.payload[..]),
                (OpCode::Text, &b"hello?"[..])
            );
            let err = Reply::error(0, ErrorCode::InvalidParam, "binary frames only");
            write_reply(&mut ws, Generation::V2, &err, 0).await;

            // Raw binary garbage arrives verbatim.
            let raw = timeout(PEER_WAIT, ws.read_frame()).await.unwrap().unwrap();
            assert_eq!(
                (raw.opcode, &raw.payload[..]),
                (OpCode::Binary, &b"\xff\xfe"[..])
            );

            ws.write_frame(Frame::close(4000, b"bye")).await.unwrap();
            // The client echoes the close.
            let echo = timeout(PEER_WAIT, ws.read_frame()).await.unwrap().unwrap();
            assert_eq!(echo.opcode, OpCode::Close);
        }
    };
    let client = async move {
        let mut c = Client::connect_ws(addr, "/ws/v2", Generation::V2)
            .await
            .unwrap();
        assert_eq!(
            (c.transport(), c.generation()),
            (TransportKind::WebSocket, Generation::V2)
        );
        assert_eq!(c.auth("alice", "t0k", "iOS").await.unwrap(), auth_ok(3));

        let e = c.next_event(QUIET).await.unwrap().unwrap();
        assert_eq!(summary(&e), summary(&Event::Message(m1)));
        assert_eq!(c.next_event(QUIET).await.unwrap(), None);

        c.ping(b"p1").await.unwrap();
        assert_eq!(c.pongs_received(), 1);
        assert_eq!(
            c.heartbeat().await.unwrap(),
            Reply::Heartbeat { server_time: 0 }
        );

        c.send_ws_text("hello?").await.unwrap();
        let (seq, reply) = c.next_reply(PEER_WAIT).await.unwrap().unwrap();
        assert_eq!(seq, 0);
        assert!(
            matches!(
                reply,
                Reply::Error {
                    request_cmd: 0,
                    code: ErrorCode::InvalidParam,
                    ..
                }
            ),
            "{reply:?}"
        );
        c.send_ws_binary(b"\xff\xfe").await.unwrap();

        assert!(c.closed(PEER_WAIT).await.unwrap());
        assert_eq!(
            c.close_info(),
            Some(&CloseInfo {
                code: 4000,
                reason: "bye".into()
            })
        );
        assert!(matches!(
            c.send_ws_text("late").await,
            Err(ClientError::Closed)
        ));
        assert!(matches!(
            c.send_tcp_bytes(b"x").await,
            Err(ClientError::Closed)
        ));
    };
    tokio::join!(server, client);
}

#[tokio::test]
async fn v1_send_text_batch_and_client_close() {
    let (l, addr) = listener().await;
    let m2 = message("s2", "bob", "alice", 2, "two");
    let m3 = message("s3", "bob", "alice", 3, "three");
    let server = {
        let (m2, m3) = (m2.clone(), m3.clone());
        async move {
            let (target, mut ws) = accept_ws(&l).await;
            assert_eq!(target, "/ws?v=1");
            let auth = read_env(&mut ws).await;
            write_reply(&mut ws, Generation::V1, &auth_ok(0), auth.sequence).await;

            let send = read_env(&mut ws).await;
            assert_eq!((send.command, send.sequence), (200, auth.sequence + 1));
            let Request::Send(s) =
                im_protocol::decode_request(Generation::V1, 200, &send.body).unwrap()
            else {
                panic!("not a send request");
            };
            assert_eq!(
                (
                    s.client_msg_id.as_str(),
                    s.conversation_id.as_str(),
                    s.receiver_id.as_str(),
                    s.message_type
                ),
                ("17320000000001234", "single_alice_bob", "bob", 1)
            );
            assert_eq!(&s.content[..], "héllo".as_bytes());
            assert!(s.send_time > 0);
            let (cmd, body) = batch_body(Generation::V1, &[m2, m3], "alice");
            write_env(&mut ws, cmd, 0, &body).await;
            let reply = Reply::Send {
                code: ErrorCode::Success,
                msg: String::new(),
                server_msg_id: "srv-9".into(),
                client_msg_id: s.client_msg_id.clone(),
                seq: 4,
                server_time: 5,
            };
            write_reply(&mut ws, Generation::V1, &reply, send.sequence).await;

            // The client closes: fastwebsockets echoes the close frame.
            let close = timeout(PEER_WAIT, ws.read_frame()).await.unwrap().unwrap();
            assert_eq!(close.opcode, OpCode::Close);
            assert_eq!(&close.payload[..2], &1000u16.to_be_bytes());
        }
    };
    let client = async move {
        let mut c = Client::connect_ws(addr, "/ws?v=1", Generation::V1)
            .await
            .unwrap();
        assert_eq!(
            c.auth("alice", "demo_token_alice", "iOS").await.unwrap(),
            auth_ok(0)
        );
        let reply = c
            .send_text("single_alice_bob", "17320000000001234", "héllo")
            .await
            .unwrap();
        assert!(
            matches!(
                reply,
                Reply::Send {
                    code: ErrorCode::Success,
                    seq: 4,
                    ..
                }
            ),
            "{reply:?}"
        );
        assert_eq!(c.queued_events(), 2, "the batch arrived before the reply");
        let a = c.next_event(QUIET).await.unwrap().unwrap();
        let b = c.next_event(QUIET).await.unwrap().unwrap();
        assert_eq!(
            [summary(&a), summary(&b)],
            [summary(&Event::Message(m2)), summary(&Event::Message(m3))]
        );
        c.close().await.unwrap();
    };
    tokio::join!(server, client);
}

#[tokio::test]
async fn unknown_path_is_a_handshake_error() {
    let (l, addr) = listener().await;
    let server = tokio::spawn(async move {
        let _ = accept_ws(&l).await;
    });
    let err = Client::connect_ws(addr, "/nope", Generation::V2)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::Handshake {
                status: Some(404),
                ..
            }
        ),
        "{err:?}"
    );
    server.abort();
}

#[tokio::test]
async fn text_and_garbage_from_the_server_are_protocol_errors() {
    let (l, addr) = listener().await;
    let server = async move {
        let (_, mut ws) = accept_ws(&l).await;
        ws.write_frame(Frame::text(Payload::Borrowed(b"{}")))
            .await
            .unwrap();
        ws.write_frame(Frame::binary(Payload::Borrowed(b"\xff\xff\xff")))
            .await
            .unwrap();
        write_env(&mut ws, 6, 1, &[]).await;
        // Wait for the client's close.
        let close = timeout(PEER_WAIT, ws.read_frame()).await.unwrap().unwrap();
        assert_eq!(close.opcode, OpCode::Close);
    };
    let client = async move {
        let options = ClientOptions {
            timeout: PEER_WAIT,
            ..ClientOptions::default()
        };
        let mut c = Client::connect_ws_with(addr, "/ws/v2", Generation::V2, options)
            .await
            .unwrap();
        let err = c.next_event(PEER_WAIT).await.unwrap_err();
        assert!(
            matches!(&err, ClientError::Protocol(m) if m.contains("text frame")),
            "{err:?}"
        );
        let err = c.next_event(PEER_WAIT).await.unwrap_err();
        assert!(
            matches!(&err, ClientError::Protocol(m) if m.contains("WebSocketMessage")),
            "{err:?}"
        );
        assert_eq!(
            c.wait_reply(1, PEER_WAIT).await.unwrap(),
            Reply::Heartbeat { server_time: 0 }
        );
        assert!(matches!(
            c.send_tcp_bytes(b"x").await,
            Err(ClientError::Unsupported(_))
        ));
        c.close().await.unwrap();
    };
    tokio::join!(server, client);
}

#[tokio::test]
async fn pings_go_unanswered_without_auto_pong() {
    let (l, addr) = listener().await;
    let server = async move {
        let (_, mut ws) = accept_ws(&l).await;
        ws.set_auto_pong(false);
        ws.write_frame(Frame::new(
            true,
            OpCode::Ping,
            None,
            Payload::Borrowed(b"1"),
        ))
        .await
        .unwrap();
        write_env(&mut ws, 6, 9, &[]).await;
        // The next thing from the client is its heartbeat, not a pong.
        let next = read_env(&mut ws).await;
        assert_eq!(next.command, 5);
    };
    let client = async move {
        let options = ClientOptions {
            auto_pong: false,
            ..ClientOptions::default()
        };
        let mut c = Client::connect_ws_with(addr, "/ws/v2", Generation::V2, options)
            .await
            .unwrap();
        assert_eq!(
            c.wait_reply(9, PEER_WAIT).await.unwrap(),
            Reply::Heartbeat { server_time: 0 }
        );
        c.send(&Request::Heartbeat { client_time: 0 })
            .await
            .unwrap();
        assert!(c.closed(PEER_WAIT).await.unwrap());
    };
    tokio::join!(server, client);
}
