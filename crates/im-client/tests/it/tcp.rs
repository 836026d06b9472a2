//! The TCP transport against a fake peer speaking the 16-byte header.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use im_client::{Client, ClientError, ClientOptions, TransportKind};
use im_core::command::{Event, Reply, Request};
use im_core::{ErrorCode, Generation};
use im_protocol::tcp::{Packet, decode_packet, encode_packet};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;

use crate::{PEER_WAIT, QUIET, auth_ok, batch_body, event_body, message, reply_body, summary};

/// The server end of one connection.
struct Peer {
    stream: TcpStream,
    buf: BytesMut,
}

impl Peer {
    async fn accept(listener: &TcpListener) -> Self {
        let (stream, _) = timeout(PEER_WAIT, listener.accept())
            .await
            .expect("accept timed out")
            .unwrap();
        Self {
            stream,
            buf: BytesMut::new(),
        }
    }

    /// The next packet the client sent.
    async fn read(&mut self) -> Packet {
        loop {
            if let Some(p) = decode_packet(&mut self.buf, 1 << 20).unwrap() {
                return p;
            }
            let n = timeout(PEER_WAIT, self.stream.read_buf(&mut self.buf))
                .await
                .expect("peer read timed out")
                .unwrap();
            assert_ne!(n, 0, "client closed while the peer expected a packet");
        }
    }

    async fn write(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
        self.stream.flush().await.unwrap();
    }
}

fn packet(command: i32, sequence: u32, body: &[u8]) -> BytesMut {
    let mut dst = BytesMut::new();
    encode_packet(u16::try_from(command).unwrap(), sequence, body, &mut dst);
    dst
}

async fn listener() -> (TcpListener, SocketAddr) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    (l, addr)
}

fn v2_reply(reply: &Reply, sequence: u32) -> BytesMut {
    let (command, body) = reply_body(Generation::V2, reply, "alice");
    packet(command, sequence, &body)
}

fn v2_event(event: &Event) -> BytesMut {
    let (command, body) = event_body(Generation::V2, event, "alice");
    packet(command, 0, &body)
}

#[tokio::test]
async fn auth_request_events_heartbeat_ack_and_close() {
    let (l, addr) = listener().await;
    let m1 = message("s1", "bob", "alice", 1, "one");
    let m2 = message("s2", "bob", "alice", 2, "two");
    let m3 = message("s3", "bob", "alice", 3, "three");
    let typing = Event::Typing {
        conversation_id: "single_alice_bob".into(),
        user_id: "bob".into(),
        status: 1,
    };

    let server = {
        let (m1, m2, m3, typing) = (m1.clone(), m2.clone(), m3.clone(), typing.clone());
        async move {
            let mut p = Peer::accept(&l).await;

            // AUTH_REQ: bare protobuf body, fresh sequence.
            let auth = p.read().await;
            assert_eq!((auth.command, auth.flags), (100, 0));
            let req = im_protocol::decode_request(Generation::V2, 100, &auth.body).unwrap();
            assert_eq!(
                req,
                Request::Auth {
                    user_id: "alice".into(),
                    token: "demo_token_alice".into(),
                    platform: "iOS".into()
                }
            );
            // Before the AUTH_RSP: a push, a reply to some other sequence and a
            // 101 with a foreign sequence; all in one write, the AUTH_RSP split
            // across two writes.
            let mut out = v2_event(&Event::Message(m1));
            out.extend_from_slice(&v2_reply(
                &Reply::Revoke {
                    code: ErrorCode::Success,
                    msg: String::new(),
                },
                4242,
            ));
            out.extend_from_slice(&v2_reply(&auth_ok(0), auth.sequence.wrapping_add(1000)));
            let rsp = v2_reply(&auth_ok(7), auth.sequence);
            out.extend_from_slice(&rsp[..5]);
            p.write(&out).await;
            p.write(&rsp[5..]).await;

            // SEND_MSG_REQ: a batch and a typing push arrive before the reply.
            let send = p.read().await;
            assert_eq!(send.command, 200);
            assert_ne!(send.sequence, auth.sequence);
            let Request::Send(s) =
                im_protocol::decode_request(Generation::V2, 200, &send.body).unwrap()
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
                ("c-1", "single_alice_bob", "bob", 1)
            );
            assert_eq!(&s.content[..], b"hello");
            let (cmd, body) = batch_body(Generation::V2, &[m2, m3], "alice");
            let mut out = packet(cmd, 0, &body);
            out.extend_from_slice(&v2_event(&typing));
            out.extend_from_slice(&v2_reply(
                &Reply::Send {
                    code: ErrorCode::Success,
                    msg: String::new(),
                    server_msg_id: "srv-1".into(),
                    client_msg_id: "c-1".into(),
                    seq: 9,
                    server_time: 1,
                },
                send.sequence,
            ));
            p.write(&out).await;

            // HEARTBEAT_REQ: empty body; answered with an empty 6.
            let hb = p.read().await;
            assert_eq!((hb.command, hb.body.len()), (5, 0));
            p.write(&packet(6, hb.sequence, &[])).await;

            // MSG_ACK: no reply.
            let ack = p.read().await;
            assert_eq!(ack.command, 203);
            let req = im_protocol::decode_request(Generation::V2, 203, &ack.body).unwrap();
            assert_eq!(
                req,
                Request::Ack {
                    message_id: "s2".into(),
                    seq: 0
                }
            );

            // KICK_OUT, then hang up.
            p.write(&v2_event(&Event::KickOut {
                reason: 1,
                message: "elsewhere".into(),
            }))
            .await;
        }
    };

    let client = async move {
        let mut c = Client::connect_tcp(addr).await.unwrap();
        assert_eq!(
            (c.transport(), c.generation()),
            (TransportKind::Tcp, Generation::V2)
        );

        let reply = c.auth("alice", "demo_token_alice", "iOS").await.unwrap();
        assert_eq!(reply, auth_ok(7), "TCP auth matches the AUTH_REQ sequence");
        assert_eq!(c.user_id(), "alice");
        assert_eq!(c.queued_events(), 1);
        // The stray replies were kept, in arrival order.
        let (seq, r) = c.next_reply(QUIET).await.unwrap().unwrap();
        assert_eq!(
            (seq, r),
            (
                4242,
                Reply::Revoke {
                    code: ErrorCode::Success,
                    msg: String::new()
                }
            )
        );
        let (_, r) = c.next_reply(QUIET).await.unwrap().unwrap();
        assert_eq!(r, auth_ok(0));

        let reply = c
            .send_text("single_alice_bob", "c-1", "hello")
            .await
            .unwrap();
        match reply {
            Reply::Send {
                code,
                server_msg_id,
                client_msg_id,
                seq,
                ..
            } => {
                assert_eq!(
                    (code, server_msg_id.as_str(), client_msg_id.as_str(), seq),
                    (ErrorCode::Success, "srv-1", "c-1", 9)
                );
            }
            other => panic!("unexpected reply {other:?}"),
        }

        // Push, then the batch expanded, then the typing push: in order.
        let mut got = Vec::new();
        for _ in 0..3 {
            got.push(summary(&c.next_event(QUIET).await.unwrap().unwrap()));
        }
        assert_eq!(
            got,
            [
                summary(&Event::Message(m1)),
                summary(&Event::Message(m2)),
                summary(&Event::Message(m3))
            ]
        );
        assert_eq!(c.next_event(QUIET).await.unwrap(), Some(typing));
        assert_eq!(c.next_event(QUIET).await.unwrap(), None);

        assert_eq!(
            c.heartbeat().await.unwrap(),
            Reply::Heartbeat { server_time: 0 }
        );
        c.ack("s2").await.unwrap();

        let kick = c.next_event(PEER_WAIT).await.unwrap();
        assert_eq!(
            kick,
            Some(Event::KickOut {
                reason: 1,
                message: "elsewhere".into()
            })
        );
        assert!(c.closed(PEER_WAIT).await.unwrap());
        assert!(c.is_closed());
        assert!(c.close_info().is_none());
        assert!(matches!(c.heartbeat().await, Err(ClientError::Closed)));
        assert!(matches!(
            c.next_event(QUIET).await,
            Err(ClientError::Closed)
        ));
    };

    tokio::join!(server, client);
}

#[tokio::test]
async fn replies_are_matched_by_sequence_out_of_order() {
    let (l, addr) = listener().await;
    let server = async move {
        let mut p = Peer::accept(&l).await;
        let a = p.read().await;
        let b = p.read().await;
        assert_eq!((a.command, b.command), (205, 500));
        assert_eq!(b.sequence, a.sequence + 1);
        let mut out = v2_reply(
            &Reply::ReadReceipt {
                code: ErrorCode::Success,
                msg: "b".into(),
            },
            b.sequence,
        );
        out.extend_from_slice(&v2_reply(
            &Reply::Revoke {
                code: ErrorCode::PermissionDenied,
                msg: "a".into(),
            },
            a.sequence,
        ));
        p.write(&out).await;
        // A request that is never answered.
        let c = p.read().await;
        assert_eq!(c.command, 5);
        // Keep the connection open until the client is done.
        let mut rest = [0u8; 1];
        let n = timeout(PEER_WAIT, p.stream.read(&mut rest))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(n, 0);
    };
    let client = async move {
        let mut c = Client::connect_tcp(addr).await.unwrap();
        let revoke = Request::Revoke {
            message_id: "m".into(),
            conversation_id: "single_a_b".into(),
        };
        let read = Request::ReadReceipt {
            message_ids: vec![],
            conversation_id: "single_a_b".into(),
        };
        let a = c.send(&revoke).await.unwrap();
        let b = c.send(&read).await.unwrap();
        assert_eq!(b, a + 1);
        assert_eq!(
            c.wait_reply(a, PEER_WAIT).await.unwrap(),
            Reply::Revoke {
                code: ErrorCode::PermissionDenied,
                msg: "a".into()
            }
        );
        assert_eq!(
            c.wait_reply(b, QUIET).await.unwrap(),
            Reply::ReadReceipt {
                code: ErrorCode::Success,
                msg: "b".into()
            }
        );

        c.set_timeout(QUIET);
        let err = c.heartbeat().await.unwrap_err();
        assert!(err.is_timeout(), "{err:?}");
        assert_eq!(
            err.to_string(),
            format!("timed out after {QUIET:?} waiting for reply")
        );
        c.set_timeout(PEER_WAIT);
        c.close().await.unwrap();
    };
    tokio::join!(server, client);
}

#[tokio::test]
async fn raw_writes_reach_the_peer_verbatim() {
    let (l, addr) = listener().await;
    let server = async move {
        let mut p = Peer::accept(&l).await;
        let a = p.read().await;
        assert_eq!(
            (a.command, a.sequence, &a.body[..]),
            (300, 7, &b"\xff\x00"[..])
        );
        let b = p.read().await;
        assert_eq!((b.command, b.sequence, &b.body[..]), (65535, 0, &b"x"[..]));
        // Not a packet: the bytes follow verbatim (maybe already buffered).
        while p.buf.len() < 4 {
            let n = timeout(PEER_WAIT, p.stream.read_buf(&mut p.buf))
                .await
                .unwrap()
                .unwrap();
            assert_ne!(n, 0);
        }
        assert_eq!(&p.buf[..], b"junk");
    };
    let client = async move {
        let mut c = Client::connect_tcp(addr).await.unwrap();
        c.send_raw(300, 7, b"\xff\x00").await.unwrap();
        // One packet written in two pieces.
        let whole = packet(65535, 0, b"x");
        c.send_tcp_bytes(&whole[..3]).await.unwrap();
        c.send_tcp_bytes(&whole[3..]).await.unwrap();
        c.send_tcp_bytes(b"junk").await.unwrap();

        assert!(matches!(
            c.send_raw(65536, 1, &[]).await,
            Err(ClientError::Unsupported(_))
        ));
        assert!(matches!(
            c.send_raw(-1, 1, &[]).await,
            Err(ClientError::Unsupported(_))
        ));
        assert!(matches!(
            c.send_ws_binary(b"x").await,
            Err(ClientError::Unsupported(_))
        ));
        assert!(matches!(
            c.send_ws_text("x").await,
            Err(ClientError::Unsupported(_))
        ));
        assert!(matches!(
            c.ping(b"x").await,
            Err(ClientError::Unsupported(_))
        ));
    };
    tokio::join!(server, client);
}

#[tokio::test]
async fn bad_header_and_oversized_body_are_protocol_errors() {
    let (l, addr) = listener().await;
    let server = async move {
        let mut p = Peer::accept(&l).await;
        // A valid header announcing 2 MiB: refused from the header alone.
        let mut big = BytesMut::new();
        encode_packet(202, 0, &vec![0u8; 2 << 20], &mut big);
        p.write(&big[..16]).await;
        let mut p2 = Peer::accept(&l).await;
        p2.write(b"GET / HTTP/1.1\r\n\r\n").await;
        // Hold both connections until the client is done with them.
        let mut rest = [0u8; 1];
        let _ = timeout(PEER_WAIT, p.stream.read(&mut rest)).await;
        let _ = timeout(PEER_WAIT, p2.stream.read(&mut rest)).await;
    };
    let client = async move {
        let mut c = Client::connect_tcp(addr).await.unwrap();
        let err = c.next_event(PEER_WAIT).await.unwrap_err();
        assert!(
            matches!(&err, ClientError::Protocol(m) if m.contains("exceeds")),
            "{err:?}"
        );

        let mut c2 = Client::connect_tcp_with(
            addr,
            ClientOptions {
                timeout: PEER_WAIT,
                ..ClientOptions::default()
            },
        )
        .await
        .unwrap();
        let err = c2.next_event(PEER_WAIT).await.unwrap_err();
        assert!(
            matches!(&err, ClientError::Protocol(m) if m.contains("magic")),
            "{err:?}"
        );
        // The stream is desynchronised: the error sticks.
        assert!(matches!(
            c2.next_event(QUIET).await,
            Err(ClientError::Protocol(_))
        ));
        drop((c, c2));
    };
    tokio::join!(server, client);
}

#[tokio::test]
async fn undecodable_body_is_a_protocol_error_and_the_stream_goes_on() {
    let (l, addr) = listener().await;
    let server = async move {
        let mut p = Peer::accept(&l).await;
        let mut out = packet(202, 0, b"\xff\xff\xff");
        out.extend_from_slice(&packet(6, 3, &[]));
        p.write(&out).await;
    };
    let client = async move {
        let mut c = Client::connect_tcp(addr).await.unwrap();
        let err = c.next_event(PEER_WAIT).await.unwrap_err();
        assert!(
            matches!(&err, ClientError::Protocol(m) if m.contains("command 202")),
            "{err:?}"
        );
        assert_eq!(
            c.wait_reply(3, PEER_WAIT).await.unwrap(),
            Reply::Heartbeat { server_time: 0 }
        );
        assert!(c.closed(PEER_WAIT).await.unwrap());
    };
    tokio::join!(server, client);
}

#[tokio::test]
async fn connect_refused_is_io() {
    let (l, addr) = listener().await;
    drop(l);
    let err = Client::connect_tcp(addr).await.unwrap_err();
    assert!(matches!(err, ClientError::Io(_)), "{err:?}");
}

#[tokio::test]
async fn quiet_server_times_out_without_losing_data() {
    let (l, addr) = listener().await;
    let server = async move {
        let mut p = Peer::accept(&l).await;
        let hb = p.read().await;
        // Half a packet, then (after the client gave up waiting once) the rest.
        let rsp = packet(6, hb.sequence, &[]);
        p.write(&rsp[..10]).await;
        let again = p.read().await;
        assert_eq!(again.command, 5);
        p.write(&rsp[10..]).await;
        p.write(&packet(6, again.sequence, &[])).await;
    };
    let client = async move {
        let mut c = Client::connect_tcp(addr).await.unwrap();
        let first = c
            .send(&Request::Heartbeat { client_time: 0 })
            .await
            .unwrap();
        let err = c
            .wait_reply(first, Duration::from_millis(30))
            .await
            .unwrap_err();
        assert!(err.is_timeout());
        let second = c
            .send(&Request::Heartbeat { client_time: 0 })
            .await
            .unwrap();
        assert_eq!(
            c.wait_reply(second, PEER_WAIT).await.unwrap(),
            Reply::Heartbeat { server_time: 0 }
        );
        assert_eq!(
            c.wait_reply(first, QUIET).await.unwrap(),
            Reply::Heartbeat { server_time: 0 }
        );
    };
    tokio::join!(server, client);
}
