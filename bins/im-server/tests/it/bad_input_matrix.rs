//! Issue 8 part 2, the bad-input matrix over the real server: broken,
//! oversized and garbage frames on both transports, text frames, unknown and
//! client-bound commands, bodies of the other wire generation, invalid UTF-8
//! in string fields, ids outside `[A-Za-z0-9_-]`, huge counts and
//! negative/overflowing seqs on the socket and the HTTP sync routes.
//!
//! Every case names its input and the answer the contract gives it (an
//! `ErrorCode`, silence, or a close). After every case a healthy pair of
//! users (the [`Witness`]) exchanges a message each way, and at the end a
//! full sync shows that nothing the abuser sent was stored.
//! (`bad_input.rs` holds the first bad-input tests; this extends them.)

use std::collections::BTreeMap;

use im_client::Client;
use im_core::command::{Reply, Request, SyncState};
use im_core::{ErrorCode, Generation, StoredMessage};
use serde_json::{Value, json};

use crate::messaging::http;
use crate::{QUIET, TestServer, WAIT, next_text, sent_ok};

// ---- shared helpers (also used by authz.rs) --------------------------------

/// The error code of any reply that has one.
pub(crate) fn reply_code(r: &Reply) -> ErrorCode {
    match r {
        Reply::Auth { code, .. }
        | Reply::Send { code, .. }
        | Reply::Revoke { code, .. }
        | Reply::BatchSync { code, .. }
        | Reply::SyncRange { code, .. }
        | Reply::SyncInbox { code, .. }
        | Reply::ReadReceipt { code, .. }
        | Reply::OnlineStatus { code, .. }
        | Reply::Error { code, .. } => *code,
        Reply::Heartbeat { .. } => ErrorCode::Success,
    }
}

/// A protobuf body written by hand, to carry bytes no encoder would write
/// (invalid UTF-8 in strings, fields of the other generation).
#[derive(Debug, Default, Clone)]
pub(crate) struct Pb(pub Vec<u8>);

impl Pb {
    fn put_varint(&mut self, mut v: u64) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                self.0.push(b);
                return;
            }
            self.0.push(b | 0x80);
        }
    }

    pub(crate) fn varint(mut self, field: u32, v: u64) -> Self {
        self.put_varint(u64::from(field) << 3);
        self.put_varint(v);
        self
    }

    pub(crate) fn bytes(mut self, field: u32, b: &[u8]) -> Self {
        self.put_varint((u64::from(field) << 3) | 2);
        self.put_varint(b.len() as u64);
        self.0.extend_from_slice(b);
        self
    }

    pub(crate) fn msg(self, field: u32, m: Pb) -> Self {
        self.bytes(field, &m.0)
    }
}

/// A pair of users that keeps talking while others misbehave: `w_alice` on
/// TCP, `w_bob` on WebSocket v2.
pub(crate) struct Witness {
    a: Client,
    b: Client,
    n: usize,
    texts: Vec<String>,
}

pub(crate) const WITNESS_CONV: &str = "single_w_alice_w_bob";

impl Witness {
    pub(crate) async fn new(s: &TestServer) -> Self {
        Self {
            a: s.tcp("w_alice").await,
            b: s.ws("w_bob", Generation::V2, "iOS").await,
            n: 0,
            texts: Vec::new(),
        }
    }

    /// One message each way, each pushed to the other side within `WAIT`.
    pub(crate) async fn exchange(&mut self, case: &str) {
        self.n += 1;
        let n = self.n;
        let there = format!("{case} #{n} a->b");
        sent_ok(
            &self
                .a
                .send_text(WITNESS_CONV, &format!("wa-{n}"), &there)
                .await
                .unwrap_or_else(|e| panic!("witness after {case}: {e}")),
        );
        let got = next_text(&mut self.b).await.map(|(t, _)| t);
        assert_eq!(got.as_deref(), Some(there.as_str()), "witness after {case}");
        let back = format!("{case} #{n} b->a");
        sent_ok(
            &self
                .b
                .send_text(WITNESS_CONV, &format!("wb-{n}"), &back)
                .await
                .unwrap_or_else(|e| panic!("witness after {case}: {e}")),
        );
        let got = next_text(&mut self.a).await.map(|(t, _)| t);
        assert_eq!(got.as_deref(), Some(back.as_str()), "witness after {case}");
        self.texts.push(there);
        self.texts.push(back);
    }

    /// `w_bob`'s full sync: the witness conversation holds exactly what was
    /// exchanged, in order, and no other conversation reached `w_bob`.
    pub(crate) async fn check_stored(&mut self) {
        let all = sync_all(&mut self.b).await;
        let convs: Vec<&String> = all.keys().collect();
        assert_eq!(convs, [WITNESS_CONV], "w_bob's conversations");
        let texts: Vec<String> = all[WITNESS_CONV]
            .iter()
            .map(|m| String::from_utf8_lossy(&m.content).into_owned())
            .collect();
        assert_eq!(texts, self.texts);
        let seqs: Vec<i64> = all[WITNESS_CONV].iter().map(|m| m.seq).collect();
        let want: Vec<i64> = (1..=self.texts.len() as i64).collect();
        assert_eq!(seqs, want, "gapless witness seqs");
    }
}

/// Everything `c` can BATCH_SYNC, page after page, by conversation.
pub(crate) async fn sync_all(c: &mut Client) -> BTreeMap<String, Vec<StoredMessage>> {
    let mut out: BTreeMap<String, Vec<StoredMessage>> = BTreeMap::new();
    for _ in 0..1000 {
        let states = out
            .iter()
            .map(|(k, v)| SyncState {
                conversation_id: k.clone(),
                last_seq: v.last().map_or(0, |m| m.seq),
            })
            .collect();
        let r = c
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
            panic!("sync failed: {r:?}")
        };
        let more = conversations.iter().any(|c| c.has_more);
        for cb in conversations {
            out.entry(cb.conversation_id)
                .or_default()
                .extend(cb.messages.into_iter().map(|v| v.message));
        }
        if !more {
            return out;
        }
    }
    panic!("sync does not end");
}

/// A JSON HTTP call: `(status, body)`; every answer must be a JSON envelope
/// (`code`, `message`) whose `code` is the status on errors, with a stable
/// `error` name and no trace of a panic or a source path.
pub(crate) async fn call(
    s: &TestServer,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, Value) {
    let bearer;
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(t) = token {
        bearer = format!("Bearer {t}");
        headers.push(("Authorization", bearer.as_str()));
    }
    let (status, head, text) = match &s.tls {
        None => http(s.addrs.http, method, path, &headers, body).await,
        Some(tls) => tls.https(s.addrs.http, method, path, &headers, body).await,
    };
    assert!(
        head.contains("content-type: application/json"),
        "{method} {path}: {head}"
    );
    let v: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{method} {path}: {e}: {text}"));
    assert!(
        v["code"].is_i64() && v["message"].is_string(),
        "{method} {path}: {v}"
    );
    if status != 200 {
        assert_eq!(v["code"], json!(status), "{method} {path}: {v}");
        assert!(v["error"].is_string(), "{method} {path}: {v}");
        assert!(
            !text.contains("panicked") && !text.contains("src/"),
            "{text}"
        );
    }
    (status, v)
}

// ---- the matrix --------------------------------------------------------------

/// What a bad input must get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    /// A reply with this code (to the frame's sequence).
    Code(ErrorCode),
    /// No reply at all; the connection stays usable.
    Silent,
    /// The server closes the connection.
    Close,
    /// Served normally: a HEARTBEAT_RSP.
    Heartbeat,
}

/// How a case reaches the server.
#[derive(Debug, Clone)]
enum Input {
    /// A WebSocket envelope (or a TCP packet) with this command and body.
    Frame(i32, Vec<u8>),
    /// A binary WebSocket message, not an envelope.
    WsBinary(Vec<u8>),
    /// A text WebSocket message (its bytes as given, UTF-8 or not).
    WsText(Vec<u8>),
    /// Raw bytes on the TCP stream.
    TcpBytes(Vec<u8>),
}

struct Case {
    name: String,
    input: Input,
    want: Want,
}

fn case(name: impl Into<String>, input: Input, want: Want) -> Case {
    Case {
        name: name.into(),
        input,
        want,
    }
}

fn tcp_packet(command: u16, seq: u32, body: &[u8]) -> Vec<u8> {
    let mut b = bytes::BytesMut::new();
    im_protocol::tcp::encode_packet(command, seq, body, &mut b);
    b.to_vec()
}

/// Rewrites header bytes, then fixes the CRC unless `keep_crc`.
fn patch_header(mut p: Vec<u8>, at: usize, with: &[u8], fix_crc: bool) -> Vec<u8> {
    p[at..at + with.len()].copy_from_slice(with);
    if fix_crc {
        let crc = im_protocol::tcp::crc16(&p[..14]);
        p[14..16].copy_from_slice(&crc.to_be_bytes());
    }
    p
}

fn envelope(command: i32, seq: u32, body: &[u8]) -> Vec<u8> {
    let mut b = bytes::BytesMut::new();
    im_protocol::encode_envelope(command, seq, body, 0, &mut b);
    b.to_vec()
}

/// Sends one case on `c` (whose user is `mallory`) and checks its answer.
/// Frames carry a fresh sequence; envelope-level errors answer on sequence 0.
async fn run_case(c: &mut Client, k: &Case) {
    let name = &k.name;
    let seq = c.next_sequence();
    let reply_seq = match &k.input {
        Input::Frame(cmd, body) => {
            c.send_raw(*cmd, seq, body).await.unwrap();
            seq
        }
        Input::WsBinary(b) => {
            let _ = c.send_ws_binary(b).await;
            0
        }
        Input::WsText(b) => {
            let _ = c.send_ws_text_bytes(b).await;
            // A text frame that is a valid envelope answers on its own sequence.
            im_protocol::decode_envelope(b).map_or(0, |e| e.sequence)
        }
        Input::TcpBytes(b) => {
            let _ = c.send_tcp_bytes(b).await;
            // Packets in the bytes answer on their own sequence; take the first.
            let mut buf = bytes::BytesMut::from(&b[..]);
            match im_protocol::tcp::decode_packet(&mut buf, 1 << 20) {
                Ok(Some(p)) => p.sequence,
                _ => 0,
            }
        }
    };
    match k.want {
        Want::Close => {
            assert!(
                c.closed(WAIT).await.unwrap(),
                "{name}: connection not closed"
            );
            return;
        }
        Want::Code(code) => {
            let r = c
                .wait_reply(reply_seq, WAIT)
                .await
                .unwrap_or_else(|e| panic!("{name}: no reply: {e}"));
            assert_eq!(reply_code(&r), code, "{name}: {r:?}");
            if let Reply::Send { client_msg_id, .. } = &r {
                // The SDK matches SEND_MSG_RSP by client id (contract §7.1-2).
                if let Input::Frame(200, body) = &k.input {
                    if let Ok(Request::Send(req)) =
                        im_protocol::decode_request(c.generation(), 200, body)
                    {
                        assert_eq!(client_msg_id, &req.client_msg_id, "{name}: echo");
                    }
                }
            }
        }
        Want::Heartbeat => {
            let r = c
                .wait_reply(reply_seq, WAIT)
                .await
                .unwrap_or_else(|e| panic!("{name}: no reply: {e}"));
            assert!(matches!(r, Reply::Heartbeat { .. }), "{name}: {r:?}");
        }
        Want::Silent => {}
    }
    // Still usable (this also resets the bad-frame counter); nothing else
    // was answered.
    let r = c
        .heartbeat()
        .await
        .unwrap_or_else(|e| panic!("{name}: heartbeat after: {e}"));
    assert!(matches!(r, Reply::Heartbeat { .. }), "{name}: {r:?}");
    let extra = c.next_reply(QUIET).await.unwrap();
    assert!(extra.is_none(), "{name}: unexpected reply {extra:?}");
}

const BAD: ErrorCode = ErrorCode::InvalidParam;

/// The frame size limit of the matrix servers (small, so oversized frames are cheap).
const MAX_FRAME: usize = 256 * 1024;
/// The per-conversation sync cap of the matrix servers.
const SYNC_CAP: u32 = 20;
/// The per-conversation sync page when the client asks for 0 or less.
const SYNC_DEFAULT: u32 = 10;

async fn matrix_server() -> TestServer {
    TestServer::start_with(|c| {
        c.session.max_frame_bytes = MAX_FRAME;
        c.message.sync_max_per_conversation = SYNC_CAP;
        c.message.sync_default_per_conversation = SYNC_DEFAULT;
        c.message.sync_max_reply_bytes = 128 * 1024;
        // Hundreds of requests and connections from one user and address
        // in a second: rate limits are tested in overload.rs.
        c.rate_limit.enabled = false;
    })
    .await
}

/// Connects `mallory` on the given transport ("tcp", "ws1", "ws2").
async fn abuser(s: &TestServer, transport: &str) -> Client {
    match transport {
        // One platform each: the per-platform kick policy keeps them all.
        "tcp" => s.tcp("mallory").await,
        "ws1" => s.ws("mallory", Generation::V1, "Web").await,
        _ => s.ws("mallory", Generation::V2, "Android").await,
    }
}

/// v2 SEND_MSG_REQ body with these MessageInfo string fields.
fn v2_send(client_msg_id: &[u8], conversation_id: &[u8], content: &[u8]) -> Vec<u8> {
    Pb::default()
        .msg(
            1,
            Pb::default()
                .bytes(2, client_msg_id)
                .bytes(3, conversation_id)
                .varint(7, 1)
                .bytes(8, content),
        )
        .0
}

/// v1 SEND_MSG_REQ body (flat).
fn v1_send(client_msg_id: &[u8], conversation_id: &[u8], content: &[u8]) -> Vec<u8> {
    Pb::default()
        .bytes(1, client_msg_id)
        .bytes(2, conversation_id)
        .varint(6, 1)
        .bytes(7, content)
        .0
}

const FF: &[u8] = b"\xff\xfe";
/// Where mallory's refused sends would land: a conversation with w_bob.
const TO_WITNESS: &[u8] = b"single_mallory_w_bob";

/// Frame-level cases valid on any WebSocket generation.
fn ws_cases(generation: Generation) -> Vec<Case> {
    use Input::*;
    use Want::*;
    let g = match generation {
        Generation::V1 => "ws1",
        Generation::V2 => "ws2",
    };
    // Sequence 42: every byte of this envelope is ASCII, so valid UTF-8.
    let hb = envelope(5, 42, &[]);
    let mut v = vec![
        case(
            format!("{g}: empty binary message"),
            WsBinary(vec![]),
            Code(BAD),
        ),
        case(
            format!("{g}: garbage binary"),
            WsBinary(vec![0xff, 0xff, 0xff, 0xff, 0x0f]),
            Code(BAD),
        ),
        case(
            format!("{g}: envelope cut inside its body"),
            WsBinary(vec![0x08, 0x05, 0x10, 0x07, 0x1a, 0x0a, 1, 2, 3]),
            Code(BAD),
        ),
        case(
            format!("{g}: envelope cut inside a varint"),
            WsBinary(vec![0x08, 0xc8]),
            Code(BAD),
        ),
        case(
            format!("{g}: SEND with a truncated body"),
            Frame(200, vec![0x0a, 0xff]),
            Code(BAD),
        ),
        case(
            format!("{g}: AUTH with a truncated body"),
            Frame(100, vec![0x0a, 0x05, b'a']),
            Code(BAD),
        ),
        case(
            format!("{g}: SYNC with a garbage body"),
            Frame(300, vec![0xff; 7]),
            Code(BAD),
        ),
        case(
            format!("{g}: text \"hello\""),
            WsText(b"hello".to_vec()),
            Code(BAD),
        ),
        case(
            format!("{g}: text JSON auth of the old TCP"),
            WsText(br#"{"type":"auth","token":"x","platform":"iOS"}"#.to_vec()),
            Code(BAD),
        ),
        case(
            format!("{g}: text frame holding a heartbeat envelope (lenient)"),
            WsText(hb),
            Heartbeat,
        ),
        case(
            format!("{g}: unknown command 9999"),
            Frame(9999, vec![]),
            Code(BAD),
        ),
        case(
            format!("{g}: command 0"),
            Frame(0, vec![1, 2, 3]),
            Code(BAD),
        ),
        case(
            format!("{g}: negative command -1"),
            Frame(-1, vec![]),
            Code(BAD),
        ),
        case(
            format!("{g}: command i32::MAX"),
            Frame(i32::MAX, vec![]),
            Code(BAD),
        ),
        case(
            format!("{g}: CONNECT_REQ (1, unused)"),
            Frame(1, vec![]),
            Code(BAD),
        ),
        case(
            format!("{g}: REAUTH_REQ (102, unused)"),
            Frame(102, vec![]),
            Code(BAD),
        ),
        case(
            format!("{g}: SYNC_FINISHED (302)"),
            Frame(302, vec![]),
            Code(BAD),
        ),
        case(
            format!("{g}: client sends AUTH_RSP (101)"),
            Frame(101, vec![]),
            Code(BAD),
        ),
        case(
            format!("{g}: client sends PUSH_MSG (202)"),
            Frame(202, vec![]),
            Code(BAD),
        ),
        case(
            format!("{g}: client sends KICK_OUT (104)"),
            Frame(104, vec![]),
            Code(BAD),
        ),
        case(
            format!("{g}: client sends SEND_MSG_RSP (201)"),
            Frame(201, vec![]),
            Code(BAD),
        ),
        case(
            format!("{g}: SEND with an empty body"),
            Frame(200, vec![]),
            Code(BAD),
        ),
    ];
    // Invalid UTF-8 in string fields of this generation's bodies.
    let (send_bad_cid, send_bad_conv, send_bad_extra, sync_bad) = match generation {
        Generation::V2 => (
            v2_send(FF, TO_WITNESS, b"x"),
            v2_send(b"u8-2", b"single_mallory_w_bob\xff", b"x"),
            Pb::default()
                .msg(
                    1,
                    Pb::default()
                        .bytes(2, b"u8-3")
                        .bytes(3, TO_WITNESS)
                        .varint(7, 1)
                        .bytes(8, b"x")
                        .bytes(15, FF),
                )
                .0,
            Pb::default()
                .msg(1, Pb::default().bytes(1, FF).varint(2, 0))
                .varint(2, 10)
                .0,
        ),
        Generation::V1 => (
            v1_send(FF, TO_WITNESS, b"x"),
            v1_send(b"u8-2", b"single_mallory_w_bob\xff", b"x"),
            Pb::default()
                .bytes(1, b"u8-3")
                .bytes(2, TO_WITNESS)
                .varint(6, 1)
                .bytes(7, b"x")
                .msg(10, Pb::default().bytes(1, b"k").bytes(2, FF))
                .0,
            // v1 SyncRequest has no strings: a wrong wire type instead.
            Pb::default().bytes(1, b"12").0,
        ),
    };
    v.extend([
        case(
            format!("{g}: client_msg_id invalid UTF-8"),
            Frame(200, send_bad_cid),
            Code(BAD),
        ),
        case(
            format!("{g}: conversation_id invalid UTF-8"),
            Frame(200, send_bad_conv),
            Code(BAD),
        ),
        case(
            format!("{g}: extra invalid UTF-8"),
            Frame(200, send_bad_extra),
            Code(BAD),
        ),
        case(
            format!("{g}: sync request with an invalid string / wire type"),
            Frame(300, sync_bad),
            Code(BAD),
        ),
        case(
            format!("{g}: AUTH user_id invalid UTF-8"),
            Frame(100, Pb::default().bytes(1, FF).bytes(2, b"t").0),
            Code(BAD),
        ),
        case(
            format!("{g}: AUTH token invalid UTF-8"),
            Frame(100, Pb::default().bytes(2, FF).0),
            Code(BAD),
        ),
        case(
            format!("{g}: REVOKE id invalid UTF-8"),
            Frame(205, Pb::default().bytes(1, FF).bytes(2, TO_WITNESS).0),
            Code(BAD),
        ),
        case(
            format!("{g}: READ_RECEIPT id invalid UTF-8"),
            Frame(500, Pb::default().bytes(1, FF).bytes(2, TO_WITNESS).0),
            Code(BAD),
        ),
        case(
            format!("{g}: ONLINE_STATUS user id invalid UTF-8"),
            Frame(400, Pb::default().bytes(1, FF).0),
            Code(BAD),
        ),
    ]);
    // Bodies of the other generation.
    match generation {
        Generation::V2 => v.extend([
            case(
                "ws2: v1 SEND body".to_owned(),
                Frame(200, v1_send(b"17320000000001234", TO_WITNESS, b"v1 body")),
                Code(BAD),
            ),
            case(
                "ws2: v1 SyncRequest body".to_owned(),
                Frame(
                    300,
                    Pb::default().varint(1, 5).varint(2, 10).varint(3, 100).0,
                ),
                Code(BAD),
            ),
        ]),
        Generation::V1 => v.extend([
            case(
                "ws1: v2 SEND body".to_owned(),
                Frame(
                    200,
                    v2_send(
                        b"0a1b2c3d-0000-4000-8000-000000000001",
                        TO_WITNESS,
                        b"v2 body",
                    ),
                ),
                Code(BAD),
            ),
            case(
                "ws1: v2 BatchSync body with states".to_owned(),
                Frame(
                    300,
                    Pb::default()
                        .msg(1, Pb::default().bytes(1, TO_WITNESS).varint(2, 0))
                        .varint(2, 100)
                        .0,
                ),
                Code(BAD),
            ),
            case(
                "ws1: v2-only SYNC_RANGE (303)".to_owned(),
                Frame(
                    303,
                    Pb::default()
                        .bytes(1, b"r")
                        .bytes(2, TO_WITNESS)
                        .varint(3, 1)
                        .0,
                ),
                Code(BAD),
            ),
        ]),
    }
    v
}

#[tokio::test]
async fn websocket_frame_matrix() {
    let s = matrix_server().await;
    let mut w = Witness::new(&s).await;
    w.exchange("start").await;
    let mut cases = 0usize;
    for generation in [Generation::V1, Generation::V2] {
        let mut c = abuser(
            &s,
            if generation == Generation::V1 {
                "ws1"
            } else {
                "ws2"
            },
        )
        .await;
        for k in ws_cases(generation) {
            run_case(&mut c, &k).await;
            w.exchange(&k.name).await;
            cases += 1;
        }
        // Closing cases, each on a fresh connection.
        let path = if generation == Generation::V1 {
            "ws1"
        } else {
            "ws2"
        };
        let closing = [
            case(
                format!("{path}: text frame with invalid UTF-8"),
                Input::WsText(vec![0x08, 0x05, 0xff, 0xfe]),
                Want::Close,
            ),
            case(
                format!("{path}: message over max_frame_bytes"),
                Input::WsBinary(vec![0u8; MAX_FRAME + 1]),
                Want::Close,
            ),
        ];
        for k in closing {
            let mut c = abuser(&s, path).await;
            run_case(&mut c, &k).await;
            w.exchange(&k.name).await;
            cases += 1;
        }
        // max_bad_frames (8) + 1 undecodable frames in a row: closed.
        let mut c = abuser(&s, path).await;
        let mut closed = false;
        for _ in 0..9 {
            if c.send_ws_binary(b"\xff\xff\xff").await.is_err() {
                closed = true;
                break;
            }
        }
        assert!(
            closed || c.closed(WAIT).await.unwrap(),
            "{path}: 9 bad frames"
        );
        w.exchange(&format!("{path}: 9 bad frames")).await;
        cases += 1;
    }
    w.check_stored().await;
    eprintln!("websocket_frame_matrix: {cases} cases");
    s.stop().await;
}

#[tokio::test]
async fn tcp_packet_matrix() {
    use Input::*;
    use Want::*;
    let s = matrix_server().await;
    let mut w = Witness::new(&s).await;
    w.exchange("start").await;
    let mut cases = 0usize;
    let hb = |seq| tcp_packet(5, seq, &[]);
    // Cases that keep the connection.
    let mut c = abuser(&s, "tcp").await;
    let keep = vec![
        case(
            "tcp: unknown command 9999 (ignored)",
            Frame(9999, vec![]),
            Silent,
        ),
        case("tcp: command 0 (ignored)", Frame(0, vec![1, 2]), Silent),
        case("tcp: command 65535 (ignored)", Frame(65535, vec![]), Silent),
        case(
            "tcp: client sends PUSH_MSG 202 (ignored)",
            Frame(202, vec![]),
            Silent,
        ),
        case(
            "tcp: client sends KICK_OUT 104 (ignored)",
            Frame(104, vec![]),
            Silent,
        ),
        case(
            "tcp: SYNC_FINISHED 302 (ignored)",
            Frame(302, vec![]),
            Silent,
        ),
        case(
            "tcp: SEND with a truncated body",
            Frame(200, vec![0x0a, 0xff]),
            Code(BAD),
        ),
        case(
            "tcp: SEND with an empty body",
            Frame(200, vec![]),
            Code(BAD),
        ),
        case(
            "tcp: AUTH with a garbage body",
            Frame(100, vec![0xff; 5]),
            Code(BAD),
        ),
        case(
            "tcp: BATCH_SYNC with a garbage body",
            Frame(300, vec![0xff; 5]),
            Code(BAD),
        ),
        case(
            "tcp: SYNC_RANGE with a garbage body",
            Frame(303, vec![0x1a]),
            Code(BAD),
        ),
        case(
            "tcp: REVOKE with a garbage body",
            Frame(205, vec![0x0a, 0x09]),
            Code(BAD),
        ),
        case(
            "tcp: READ_RECEIPT with a garbage body",
            Frame(500, vec![0x12]),
            Code(BAD),
        ),
        case(
            "tcp: ONLINE_STATUS with a garbage body",
            Frame(400, vec![0x0a, 0x7f]),
            Code(BAD),
        ),
        case(
            "tcp: MSG_ACK with a garbage body (no response command)",
            Frame(203, vec![0xff]),
            Silent,
        ),
        case(
            "tcp: TYPING with a garbage body (no response command)",
            Frame(600, vec![0xff]),
            Silent,
        ),
        case(
            "tcp: v1 SEND body on TCP (v2)",
            Frame(200, v1_send(b"17320000000001235", TO_WITNESS, b"v1 body")),
            Code(BAD),
        ),
        case(
            "tcp: v1 SyncRequest body on TCP (v2)",
            Frame(300, Pb::default().varint(1, 5).varint(2, 10).0),
            Code(BAD),
        ),
        case(
            "tcp: client_msg_id invalid UTF-8",
            Frame(200, v2_send(FF, TO_WITNESS, b"x")),
            Code(BAD),
        ),
        case(
            "tcp: conversation_id invalid UTF-8",
            Frame(200, v2_send(b"tu8-2", b"single_mallory_w_bob\xff", b"x")),
            Code(BAD),
        ),
        case(
            "tcp: SYNC_RANGE request_id invalid UTF-8",
            Frame(
                303,
                Pb::default()
                    .bytes(1, FF)
                    .bytes(2, TO_WITNESS)
                    .varint(3, 1)
                    .varint(4, 2)
                    .0,
            ),
            Code(BAD),
        ),
        case(
            "tcp: TYPING conversation_id invalid UTF-8 (no response command)",
            Frame(600, Pb::default().bytes(1, FF).varint(2, 1).0),
            Silent,
        ),
        case(
            "tcp: flags byte 0xff (ignored, CRC fixed)",
            TcpBytes(patch_header(hb(777), 3, &[0xff], true)),
            Heartbeat,
        ),
    ];
    for k in keep {
        run_case(&mut c, &k).await;
        w.exchange(&k.name).await;
        cases += 1;
    }
    // Three packets coalesced in one write: three replies.
    {
        let bytes = [hb(778), hb(779), tcp_packet(200, 780, &[0x0a, 0xff])].concat();
        c.send_tcp_bytes(&bytes).await.unwrap();
        for seq in [778, 779] {
            let r = c.wait_reply(seq, WAIT).await.unwrap();
            assert!(
                matches!(r, Reply::Heartbeat { .. }),
                "coalesced {seq}: {r:?}"
            );
        }
        let r = c.wait_reply(780, WAIT).await.unwrap();
        assert_eq!(reply_code(&r), BAD, "coalesced 780: {r:?}");
        w.exchange("tcp: three packets coalesced in one write")
            .await;
        cases += 1;
    }
    // One packet split over three writes (no sleeps: the server must wait
    // for the rest whatever the timing).
    {
        let p = hb(880);
        for part in [&p[..5], &p[5..14], &p[14..]] {
            c.send_tcp_bytes(part).await.unwrap();
        }
        let r = c.wait_reply(880, WAIT).await.unwrap();
        assert!(matches!(r, Reply::Heartbeat { .. }), "split: {r:?}");
        w.exchange("tcp: a packet split over three writes").await;
        cases += 1;
    }
    // Closing cases, each on a fresh connection.
    let big_len = patch_header(
        tcp_packet(200, 5, &[]),
        10,
        &(10u32 << 20).to_be_bytes(),
        true,
    );
    let closing = vec![
        case(
            "tcp: bad magic (HTTP request)",
            TcpBytes(b"GET / HTTP/1.1\r\n\r\n".to_vec()),
            Close,
        ),
        case(
            "tcp: bad version 2",
            TcpBytes(patch_header(hb(1), 2, &[2], true)),
            Close,
        ),
        case(
            "tcp: bad CRC",
            TcpBytes(patch_header(hb(1), 14, &[0, 0], false)),
            Close,
        ),
        case(
            "tcp: body length 10 MiB announced",
            TcpBytes(big_len),
            Close,
        ),
        case(
            "tcp: body length u32::MAX announced",
            TcpBytes(patch_header(
                tcp_packet(200, 5, &[]),
                10,
                &u32::MAX.to_be_bytes(),
                true,
            )),
            Close,
        ),
        case(
            "tcp: a valid packet then garbage",
            TcpBytes([hb(9), [0xde, 0xad, 0xbe, 0xef].repeat(4)].concat()),
            Close,
        ),
    ];
    for k in closing {
        let mut c = abuser(&s, "tcp").await;
        run_case(&mut c, &k).await;
        w.exchange(&k.name).await;
        cases += 1;
    }
    // max_bad_frames (8) + 1 unknown commands in a row: closed, silently.
    let mut c = abuser(&s, "tcp").await;
    for i in 0..9 {
        let _ = c.send_raw(9999, 100 + i, &[]).await;
    }
    assert!(c.closed(WAIT).await.unwrap(), "tcp: 9 unknown commands");
    w.exchange("tcp: 9 unknown commands in a row").await;
    cases += 1;
    // A packet cut short, then the client goes away: nothing to answer,
    // nothing breaks.
    let mut c = abuser(&s, "tcp").await;
    let p = tcp_packet(200, 5, &v2_send(b"cut-1", TO_WITNESS, b"never whole"));
    c.send_tcp_bytes(&p[..p.len() - 3]).await.unwrap();
    drop(c);
    w.exchange("tcp: packet cut short, client gone").await;
    cases += 1;
    // Before AUTH: a partial header then the auth deadline is the only way
    // out (tested in bad_input.rs); here a header-only packet before AUTH is
    // answered like any unauthenticated request.
    let mut c = Client::connect_tcp(s.addrs.tcp).await.unwrap();
    c.send_raw(300, 1, &[]).await.unwrap();
    let r = c.wait_reply(1, WAIT).await.unwrap();
    assert_eq!(reply_code(&r), ErrorCode::AuthFailed, "{r:?}");
    w.exchange("tcp: BATCH_SYNC before AUTH").await;
    cases += 1;
    w.check_stored().await;
    eprintln!("tcp_packet_matrix: {cases} cases");
    s.stop().await;
}

/// Ids outside `[A-Za-z0-9_-]` (or too long, or empty) in every id field
/// of a send, and in the other requests that name users, messages and
/// conversations.
#[tokio::test]
async fn id_charset_matrix() {
    let s = matrix_server().await;
    let mut w = Witness::new(&s).await;
    w.exchange("start").await;
    let mut cases = 0usize;
    let long = "a".repeat(65);
    let bad_ids: Vec<&str> = vec![
        "",
        "has space",
        "slash/x",
        "back\\slash",
        "quote'--",
        "semi;colon",
        "dot.x",
        "../../etc/passwd",
        "%2e%2e",
        "ü",
        "emoji😀",
        "nul\0byte",
        "tab\tx",
        "new\nline",
        long.as_str(),
    ];
    for transport in ["tcp", "ws1", "ws2"] {
        let mut c = abuser(&s, transport).await;
        for id in &bad_ids {
            // client_msg_id
            let r = c.send_text("single_mallory_w_bob", id, "x").await.unwrap();
            assert!(
                matches!(&r, Reply::Send { code: BAD, client_msg_id, .. } if client_msg_id == id),
                "{transport} client_msg_id {id:?}: {r:?}"
            );
            cases += 1;
            if id.is_empty() {
                continue;
            }
            // conversation ids built from a bad user or group id
            for conv in [
                format!("single_mallory_{id}"),
                format!("single_{id}_mallory"),
                format!("group_{id}"),
            ] {
                let r = c.send_text(&conv, &format!("c{cases}"), "x").await.unwrap();
                assert_eq!(
                    reply_code(&r),
                    BAD,
                    "{transport} conversation {conv:?}: {r:?}"
                );
                cases += 1;
            }
            // receiver_id / group_id alone (no conversation_id)
            for (receiver, group) in [(*id, ""), ("", *id)] {
                let r = c
                    .request(Request::Send(im_core::command::SendRequest {
                        client_msg_id: format!("r{cases}"),
                        receiver_id: receiver.to_owned(),
                        group_id: group.to_owned(),
                        message_type: 1,
                        content: bytes::Bytes::from_static(b"x"),
                        ..Default::default()
                    }))
                    .await
                    .unwrap();
                assert_eq!(
                    reply_code(&r),
                    BAD,
                    "{transport} receiver {receiver:?} group {group:?}: {r:?}"
                );
                cases += 1;
            }
            // sync range / read receipt / revoke naming a bad conversation
            if transport != "ws1" {
                let r = c
                    .request(Request::SyncRange {
                        request_id: "r".into(),
                        conversation_id: format!("single_mallory_{id}"),
                        start_seq: 1,
                        end_seq: 10,
                        count: 10,
                    })
                    .await
                    .unwrap();
                assert_eq!(reply_code(&r), BAD, "{transport} sync_range {id:?}: {r:?}");
                cases += 1;
            }
            let r = c
                .request(Request::ReadReceipt {
                    message_ids: vec![],
                    conversation_id: format!("single_mallory_{id}"),
                })
                .await
                .unwrap();
            assert_eq!(
                reply_code(&r),
                BAD,
                "{transport} read receipt {id:?}: {r:?}"
            );
            cases += 1;
            let r = c
                .request(Request::Revoke {
                    message_id: (*id).to_owned(),
                    conversation_id: "single_mallory_w_bob".into(),
                })
                .await
                .unwrap();
            assert_ne!(
                reply_code(&r),
                ErrorCode::Success,
                "{transport} revoke {id:?}: {r:?}"
            );
            cases += 1;
        }
        // Presence of bad user ids: refused as a whole.
        let r = c
            .request(Request::OnlineStatus {
                user_ids: bad_ids.iter().map(|s| (*s).to_owned()).collect(),
            })
            .await
            .unwrap();
        assert_eq!(reply_code(&r), BAD, "{transport} presence: {r:?}");
        cases += 1;
        // AUTH claiming a malformed user id with mallory's valid token.
        let mut fresh = match transport {
            "tcp" => Client::connect_tcp(s.addrs.tcp).await.unwrap(),
            "ws1" => Client::connect_ws(s.addrs.ws, "/ws/v1", Generation::V1)
                .await
                .unwrap(),
            _ => Client::connect_ws(s.addrs.ws, "/ws/v2", Generation::V2)
                .await
                .unwrap(),
        };
        for id in ["mal lory", "mallory/..", "MALLORY"] {
            let r = fresh.auth(id, &s.token("mallory"), "iOS").await.unwrap();
            assert_eq!(
                reply_code(&r),
                ErrorCode::AuthFailed,
                "{transport} auth as {id:?}"
            );
            cases += 1;
        }
        w.exchange(&format!("{transport}: bad ids")).await;
    }
    // HTTP routes that take user, group or conversation ids.
    let t = s.token("mallory");
    let enc = |id: &str| {
        id.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect::<String>()
    };
    for id in bad_ids.iter().filter(|i| !i.is_empty()) {
        let e = enc(id);
        let json_id = serde_json::to_string(id).unwrap();
        for (method, path, body, want) in [
            ("GET", format!("/api/user/info/{e}"), String::new(), 400),
            (
                "POST",
                "/api/user/info/batch".to_owned(),
                format!(r#"{{"userIDs":[{json_id}]}}"#),
                400,
            ),
            (
                "POST",
                "/api/friend/add".to_owned(),
                format!(r#"{{"userID":{json_id}}}"#),
                400,
            ),
            (
                "POST",
                "/api/friend/block".to_owned(),
                format!(r#"{{"userID":{json_id}}}"#),
                400,
            ),
            (
                "POST",
                "/api/group/create".to_owned(),
                format!(r#"{{"groupName":"g","memberUserIDs":[{json_id}]}}"#),
                400,
            ),
            ("GET", format!("/api/group/{e}"), String::new(), 400),
            ("POST", format!("/api/group/{e}/join"), String::new(), 400),
            (
                "GET",
                format!("/api/messages/history?conversationID=single_mallory_{e}"),
                String::new(),
                400,
            ),
            (
                "POST",
                "/messages/sync_range".to_owned(),
                format!(
                    r#"{{"conversation_id":{},"start_seq":1,"end_seq":5}}"#,
                    serde_json::to_string(&format!("single_mallory_{id}")).unwrap()
                ),
                400,
            ),
        ] {
            let (st, v) = call(&s, method, &path, Some(&t), &body).await;
            // A path segment that cannot be a route (e.g. an encoded `/`)
            // may also be 404; never a success and never a 5xx.
            // A group id in the path that cannot exist is "no such group".
            let group_path = path.starts_with("/api/group/") && path != "/api/group/create";
            assert!(
                st == want || (st == 404 && group_path),
                "{method} {path} {body}: {st} {v}"
            );
            cases += 1;
        }
    }
    w.exchange("http: bad ids").await;
    // Nothing stored anywhere mallory could have written.
    let mut m = abuser(&s, "tcp").await;
    let mine = sync_all(&mut m).await;
    assert!(mine.is_empty(), "mallory stored nothing: {mine:?}");
    w.check_stored().await;
    eprintln!("id_charset_matrix: {cases} cases");
    s.stop().await;
}

/// Huge counts and negative/overflowing seqs in every sync request, socket
/// and HTTP: clamped to the server's caps or refused, never an error of the
/// server, never someone else's data.
#[tokio::test]
async fn sync_limits_and_seq_matrix() {
    let s = matrix_server().await;
    let mut w = Witness::new(&s).await;
    w.exchange("start").await;
    let mut cases = 0usize;
    // mallory has SYNC_CAP + 5 messages with zed.
    const CONV: &str = "single_mallory_zed";
    let total = i64::from(SYNC_CAP) + 5;
    let mut m = abuser(&s, "tcp").await;
    for i in 1..=total {
        sent_ok(
            &m.send_text(CONV, &format!("m-{i}"), &format!("n{i}"))
                .await
                .unwrap(),
        );
    }
    let seqs = |msgs: &[im_core::model::MessageView]| -> Vec<i64> {
        msgs.iter().map(|v| v.message.seq).collect()
    };
    let cap = i64::from(SYNC_CAP);
    let dflt = i64::from(SYNC_DEFAULT);
    // BATCH_SYNC: (cursor, max_count) -> (first seq, count, has_more).
    for (last_seq, max, want) in [
        (0, i32::MAX, Some((1, cap, true))),
        (0, i32::MIN, Some((1, dflt, true))),
        (0, -1, Some((1, dflt, true))),
        (0, 0, Some((1, dflt, true))),
        (0, 3, Some((1, 3, true))),
        (i64::MIN, 3, Some((1, 3, true))),
        (-1, 3, Some((1, 3, true))),
        (total - 2, i32::MAX, Some((total - 1, 2, false))),
        (total, i32::MAX, None),
        (i64::MAX, i32::MAX, None),
    ] {
        let r = m
            .request(Request::BatchSync {
                states: vec![SyncState {
                    conversation_id: CONV.into(),
                    last_seq,
                }],
                max_per_conversation: max,
            })
            .await
            .unwrap();
        let Reply::BatchSync {
            code: ErrorCode::Success,
            conversations,
            ..
        } = &r
        else {
            panic!("batch {last_seq} {max}: {r:?}")
        };
        let got = conversations.iter().find(|c| c.conversation_id == CONV);
        match (want, got) {
            (None, None) => {}
            (Some((first, n, more)), Some(c)) => {
                let want_seqs: Vec<i64> = (first..first + n).collect();
                assert_eq!(seqs(&c.messages), want_seqs, "batch {last_seq} {max}");
                assert_eq!(c.has_more, more, "batch {last_seq} {max}");
                assert_eq!(c.max_seq, first + n - 1, "batch {last_seq} {max}: cursor");
            }
            other => panic!("batch {last_seq} {max}: {other:?}"),
        }
        cases += 1;
    }
    // Many states, most of them junk or foreign: only mallory's own
    // conversation comes back.
    let mut states: Vec<SyncState> = (0..5000)
        .map(|i| SyncState {
            conversation_id: format!("single_x{i}_y{i}"),
            last_seq: i64::from(i) - 2500,
        })
        .collect();
    states.push(SyncState {
        conversation_id: WITNESS_CONV.into(),
        last_seq: i64::MIN,
    });
    let r = m
        .request(Request::BatchSync {
            states,
            max_per_conversation: i32::MAX,
        })
        .await
        .unwrap();
    let Reply::BatchSync {
        code,
        conversations,
        ..
    } = &r
    else {
        panic!("{r:?}")
    };
    assert_eq!(*code, ErrorCode::Success);
    let names: Vec<&str> = conversations
        .iter()
        .map(|c| c.conversation_id.as_str())
        .collect();
    assert_eq!(names, [CONV], "only mallory's own conversations");
    cases += 1;
    // SYNC_RANGE: (start, end, count) -> Ok(first, n, has_more) or the refusal.
    for (start, end, count, want) in [
        (1, i64::MAX, i32::MAX, Ok((1, cap, true))),
        (1, total, i32::MIN, Ok((1, dflt, true))),
        (1, 5, -7, Ok((1, 5, false))),
        (3, 3, 1, Ok((3, 1, false))),
        (total, i64::MAX, i32::MAX, Ok((total, 1, false))),
        (i64::MAX, i64::MAX, 10, Ok((0, 0, false))),
        (i64::MAX - 1, i64::MAX, i32::MAX, Ok((0, 0, false))),
        (0, 10, 10, Err(BAD)),
        (-1, 10, 10, Err(BAD)),
        (i64::MIN, i64::MAX, 10, Err(BAD)),
        (i64::MIN, i64::MIN, 10, Err(BAD)),
        (-10, -1, 10, Err(BAD)),
        (10, 5, 10, Err(BAD)),
        (i64::MAX, 1, 10, Err(BAD)),
    ] {
        let r = m
            .request(Request::SyncRange {
                request_id: "q".into(),
                conversation_id: CONV.into(),
                start_seq: start,
                end_seq: end,
                count,
            })
            .await
            .unwrap();
        let name = format!("range {start}..={end} count {count}");
        match (want, &r) {
            (
                Ok((first, n, more)),
                Reply::SyncRange {
                    code: ErrorCode::Success,
                    messages,
                    has_more,
                    request_id,
                    ..
                },
            ) => {
                let want_seqs: Vec<i64> = (first..first + n).collect();
                assert_eq!(seqs(messages), want_seqs, "{name}");
                assert_eq!(*has_more, more, "{name}");
                assert_eq!(request_id, "q", "{name}");
            }
            (
                Err(code),
                Reply::SyncRange {
                    code: got,
                    messages,
                    ..
                },
            ) => {
                assert_eq!(*got, code, "{name}");
                assert!(messages.is_empty(), "{name}");
            }
            _ => panic!("{name}: {r:?}"),
        }
        cases += 1;
    }
    // MSG_ACK with absurd seqs and ids: no reply, nothing breaks.
    for (id, seq) in [("m-1", i64::MIN), ("m-1", i64::MAX), ("nope", -1), ("", 0)] {
        m.send(&Request::Ack {
            message_id: id.into(),
            seq,
        })
        .await
        .unwrap();
        cases += 1;
    }
    let r = m.heartbeat().await.unwrap();
    assert!(matches!(r, Reply::Heartbeat { .. }));
    assert!(
        m.next_reply(QUIET).await.unwrap().is_none(),
        "ACK got a reply"
    );
    w.exchange("socket sync limits").await;
    // v1 SYNC_REQ over the socket (by the inbox cursor). Cursors are
    // server-wide positions (the witnesses' messages take some): the bound
    // that stops after four messages is the cursor of the fourth.
    let mut v1 = abuser(&s, "ws1").await;
    let r = v1
        .request(Request::SyncInbox {
            min_seq: 0,
            max_seq: 0,
            limit: 4,
        })
        .await
        .unwrap();
    let Reply::SyncInbox {
        code: ErrorCode::Success,
        server_max_seq: fourth,
        ..
    } = r
    else {
        panic!("{r:?}")
    };
    for (min, max, limit, want_n) in [
        (0, 0, i32::MAX, cap),
        (i64::MIN, i64::MIN, i32::MIN, dflt),
        (-5, -5, 3, 3),
        (0, fourth, i32::MAX, 4),
        (i64::MAX, 0, 10, 0),
        (i64::MAX, i64::MAX, i32::MAX, 0),
        (3, 1, 10, 0),
    ] {
        let r = v1
            .request(Request::SyncInbox {
                min_seq: min,
                max_seq: max,
                limit,
            })
            .await
            .unwrap();
        let Reply::SyncInbox {
            code: ErrorCode::Success,
            messages,
            ..
        } = &r
        else {
            panic!("inbox {min} {max} {limit}: {r:?}")
        };
        assert_eq!(messages.len() as i64, want_n, "inbox {min} {max} {limit}");
        assert!(
            messages.iter().all(|v| v.message.conversation_id == CONV),
            "inbox {min} {max} {limit}: foreign messages"
        );
        cases += 1;
    }
    w.exchange("v1 socket sync limits").await;
    // HTTP v1 sync and range.
    let t = s.token("mallory");
    for (body, want) in [
        (r#"{"lastSeq":0,"count":2147483647}"#, Ok(cap)),
        (r#"{"lastSeq":0,"count":0}"#, Ok(dflt)),
        (r#"{"lastSeq":0}"#, Ok(dflt)),
        (r#"{}"#, Ok(dflt)),
        (r#"{"lastSeq":9223372036854775807,"count":5}"#, Ok(0)),
        (r#"{"lastSeq":-1,"count":5}"#, Err(400)),
        (r#"{"lastSeq":-9223372036854775808}"#, Err(400)),
        (r#"{"lastSeq":0,"count":-1}"#, Err(400)),
        (r#"{"lastSeq":0,"count":-2147483648}"#, Err(400)),
        (r#"{"lastSeq":0,"count":2147483648}"#, Err(400)),
        (r#"{"lastSeq":9223372036854775808}"#, Err(400)),
        (r#"{"lastSeq":1e300}"#, Err(400)),
        (r#"{"lastSeq":"0"}"#, Err(400)),
        (r#"{"lastSeq":1.5}"#, Err(400)),
        (r#"{"lastSeq":null,"count":null}"#, Err(400)),
        (r#"{"lastSeq":0"#, Err(400)),
        ("\u{0}", Err(400)),
    ] {
        let (st, v) = call(&s, "POST", "/api/v1/messages/sync", Some(&t), body).await;
        match want {
            Ok(n) => {
                assert_eq!(st, 200, "{body}: {v}");
                assert_eq!(
                    v["data"]["messages"].as_array().unwrap().len() as i64,
                    n,
                    "{body}"
                );
            }
            Err(code) => assert_eq!(st, code, "{body}: {v}"),
        }
        cases += 1;
    }
    for (body, want) in [
        (
            format!(
                r#"{{"conversation_id":"{CONV}","start_seq":1,"end_seq":9223372036854775807,"count":100}}"#
            ),
            Ok(cap),
        ),
        (
            format!(
                r#"{{"conversation_id":"{CONV}","start_seq":1,"end_seq":9223372036854775807}}"#
            ),
            Ok(cap),
        ),
        (
            format!(r#"{{"conversation_id":"{CONV}","start_seq":2,"end_seq":4,"count":100}}"#),
            Ok(3),
        ),
        (
            format!(
                r#"{{"conversation_id":"{CONV}","start_seq":9223372036854775807,"end_seq":9223372036854775807}}"#
            ),
            Ok(0),
        ),
        (
            format!(r#"{{"conversation_id":"{CONV}","start_seq":1,"end_seq":5,"count":101}}"#),
            Err(400),
        ),
        (
            format!(
                r#"{{"conversation_id":"{CONV}","start_seq":1,"end_seq":5,"count":2147483647}}"#
            ),
            Err(400),
        ),
        (
            format!(r#"{{"conversation_id":"{CONV}","start_seq":1,"end_seq":5,"count":-1}}"#),
            Err(400),
        ),
        (
            format!(r#"{{"conversation_id":"{CONV}","start_seq":0,"end_seq":5}}"#),
            Err(400),
        ),
        (
            format!(
                r#"{{"conversation_id":"{CONV}","start_seq":-9223372036854775808,"end_seq":9223372036854775807}}"#
            ),
            Err(400),
        ),
        (
            format!(r#"{{"conversation_id":"{CONV}","start_seq":-5,"end_seq":-1}}"#),
            Err(400),
        ),
        (
            format!(r#"{{"conversation_id":"{CONV}","start_seq":9,"end_seq":2}}"#),
            Err(400),
        ),
        (
            format!(
                r#"{{"conversation_id":"{CONV}","start_seq":1,"end_seq":9223372036854775808}}"#
            ),
            Err(400),
        ),
        (
            format!(r#"{{"conversation_id":"{CONV}","start_seq":1}}"#),
            Err(400),
        ),
        (r#"{"start_seq":1,"end_seq":5}"#.to_owned(), Err(400)),
        (
            format!(r#"{{"conversation_id":"{WITNESS_CONV}","start_seq":1,"end_seq":5}}"#),
            Err(403),
        ),
    ] {
        let (st, v) = call(&s, "POST", "/messages/sync_range", Some(&t), &body).await;
        match want {
            Ok(n) => {
                assert_eq!(st, 200, "{body}: {v}");
                assert_eq!(
                    v["data"]["messages"].as_array().unwrap().len() as i64,
                    n.min(100),
                    "{body}"
                );
            }
            Err(code) => assert_eq!(st, code, "{body}: {v}"),
        }
        cases += 1;
    }
    // History paging with absurd values.
    for (q, want) in [
        ("beforeSeq=-9223372036854775808&limit=4294967295", 200),
        ("beforeSeq=9223372036854775807&limit=0", 200),
        ("beforeSeq=9223372036854775808", 400),
        ("limit=-1", 400),
        ("limit=4294967296", 400),
    ] {
        let path = format!("/api/messages/history?conversationID={CONV}&{q}");
        let (st, v) = call(&s, "GET", &path, Some(&t), "").await;
        assert_eq!(st, want, "{path}: {v}");
        if st == 200 {
            assert!(
                v["data"].as_array().unwrap().len() as i64 <= total,
                "{path}"
            );
        }
        cases += 1;
    }
    w.exchange("http sync limits").await;
    // mallory's own conversation is intact: exactly its messages, gapless.
    let mine = sync_all(&mut m).await;
    assert_eq!(mine.keys().collect::<Vec<_>>(), [CONV]);
    let got: Vec<i64> = mine[CONV].iter().map(|m| m.seq).collect();
    assert_eq!(got, (1..=total).collect::<Vec<_>>());
    w.check_stored().await;
    eprintln!("sync_limits_and_seq_matrix: {cases} cases");
    s.stop().await;
}

/// `content` is `bytes` in both generations: invalid UTF-8 there is data,
/// stored and synced byte for byte (only string fields must be UTF-8).
#[tokio::test]
async fn invalid_utf8_content_is_data() {
    let s = matrix_server().await;
    let mut w = Witness::new(&s).await;
    let mut m = abuser(&s, "tcp").await;
    let body = v2_send(b"bin-1", b"single_mallory_zed", b"\xff\xfe\x00binary");
    m.send_raw(200, 9, &body).await.unwrap();
    let r = m.wait_reply(9, WAIT).await.unwrap();
    sent_ok(&r);
    let mine = sync_all(&mut m).await;
    assert_eq!(
        &mine["single_mallory_zed"][0].content[..],
        b"\xff\xfe\x00binary"
    );
    w.exchange("binary content").await;
    w.check_stored().await;
    s.stop().await;
}
