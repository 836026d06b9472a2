//! Keeps the worked byte examples of `docs/protocol.md` in step with the
//! encoders: every dump in the guide is recomputed here with the real
//! `encode_request` / `encode_reply` / `encode_packet` / `encode_envelope`
//! and compared with the text of the guide.
//!
//! The guide marks each example with an HTML comment right before a fenced
//! block:
//!
//! * `<!-- wire:NAME -->`: the raw dump, `OFFSET  XX XX …` with 16 bytes a
//!   line; compared character for character.
//! * `<!-- wire:NAME:fields -->`: the same bytes, split into annotated lines.
//!   The leading two-digit hex tokens of every line, concatenated, must be
//!   the packet; an annotation `field N … wire type W` must match the tag
//!   byte(s) it stands beside, and `length L` / `= V` the varint after it.
//!
//! When an encoder changes, the failure message prints the new raw dump.

use bytes::{Bytes, BytesMut};
use im_core::command::{Reply, Request, SendRequest, cmd};
use im_core::{ErrorCode, Generation};
use im_protocol::tcp::{HEADER_LEN, crc16, decode_packet};
use im_protocol::{
    ServerFrame, decode_envelope, decode_request, decode_server_frame, encode_envelope,
    encode_packet, encode_reply, encode_request,
};

const GUIDE: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../docs/protocol.md"
));

const CLIENT_MSG_ID: &str = "3f2b8c1e-5d4a-4e6f-9a7b-0c1d2e3f4a5b";
const SERVER_MSG_ID: &str = "019ad4654d2a7c3e9b10f4a6d2e85b17";

fn auth_request() -> Request {
    Request::Auth {
        user_id: "alice".into(),
        token: "demo_token_alice".into(),
        platform: "iOS".into(),
    }
}

fn send_request() -> Request {
    Request::Send(SendRequest {
        client_msg_id: CLIENT_MSG_ID.into(),
        conversation_id: "single_alice_bob".into(),
        receiver_id: "bob".into(),
        group_id: String::new(),
        message_type: 1,
        content: Bytes::from_static(b"hi bob"),
        send_time: 1_764_500_000_000,
        extra: String::new(),
    })
}

fn auth_reply() -> Reply {
    Reply::Auth {
        code: ErrorCode::Success,
        msg: String::new(),
        max_seq: 7,
    }
}

fn send_reply() -> Reply {
    Reply::Send {
        code: ErrorCode::Success,
        msg: String::new(),
        server_msg_id: SERVER_MSG_ID.into(),
        client_msg_id: CLIENT_MSG_ID.into(),
        seq: 3,
        server_time: 1_764_500_000_042,
    }
}

fn tcp_request(req: &Request, sequence: u32) -> Vec<u8> {
    let mut body = BytesMut::new();
    let command = encode_request(Generation::V2, req, &mut body);
    let mut packet = BytesMut::new();
    encode_packet(
        u16::try_from(command).unwrap(),
        sequence,
        &body,
        &mut packet,
    );
    packet.to_vec()
}

fn tcp_reply(reply: &Reply, sequence: u32) -> Vec<u8> {
    let mut body = BytesMut::new();
    let command = encode_reply(Generation::V2, reply, "alice", &mut body);
    let mut packet = BytesMut::new();
    encode_packet(
        u16::try_from(command).unwrap(),
        sequence,
        &body,
        &mut packet,
    );
    packet.to_vec()
}

fn ws_request(req: &Request, generation: Generation, sequence: u32) -> Vec<u8> {
    let mut body = BytesMut::new();
    let command = encode_request(generation, req, &mut body);
    let mut frame = BytesMut::new();
    encode_envelope(command, sequence, &body, 0, &mut frame);
    frame.to_vec()
}

/// Every example of the guide: (name, bytes).
fn examples() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("tcp-auth-req", tcp_request(&auth_request(), 1)),
        ("tcp-auth-rsp", tcp_reply(&auth_reply(), 1)),
        ("tcp-send-req", tcp_request(&send_request(), 2)),
        ("tcp-send-rsp", tcp_reply(&send_reply(), 2)),
        (
            "ws-auth-req",
            ws_request(&auth_request(), Generation::V2, 1),
        ),
    ]
}

/// `0000  EF 89 …`, 16 bytes a line.
fn raw_dump(bytes: &[u8]) -> String {
    let mut out = String::new();
    for (i, line) in bytes.chunks(16).enumerate() {
        let hex: Vec<String> = line.iter().map(|b| format!("{b:02X}")).collect();
        out.push_str(&format!("{:04X}  {}\n", i * 16, hex.join(" ")));
    }
    out
}

/// The content of the fenced block right after `<!-- marker -->`.
fn block<'a>(marker: &str) -> Option<&'a str> {
    let tag = format!("<!-- {marker} -->\n");
    let start = GUIDE.find(&tag)? + tag.len();
    let rest = GUIDE[start..].strip_prefix("```text\n")?;
    let end = rest.find("```")?;
    Some(&rest[..end])
}

fn is_hex_byte(t: &str) -> bool {
    t.len() == 2
        && t.bytes()
            .all(|c| c.is_ascii_digit() || (b'A'..=b'F').contains(&c))
}

fn varint(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for (i, b) in bytes.iter().enumerate().take(10) {
        v |= u64::from(b & 0x7F) << (7 * i);
        if b & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

/// The number right after `word` in `text`, if `word` occurs.
fn number_after(text: &str, word: &str) -> Option<u64> {
    let at = text.find(word)? + word.len();
    let digits: String = text[at..]
        .chars()
        .skip_while(|c| *c == ' ')
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// Checks one annotated line; returns its bytes.
fn check_fields_line(name: &str, line: &str) -> Vec<u8> {
    let mut bytes = Vec::new();
    let mut rest = line.trim_start();
    while let Some((tok, tail)) = rest.split_once(' ').or(Some((rest, ""))) {
        if !is_hex_byte(tok) {
            break;
        }
        bytes.push(u8::from_str_radix(tok, 16).unwrap());
        rest = tail.trim_start();
        if rest.is_empty() {
            break;
        }
    }
    let note = rest;
    if let (Some(field), Some(wire)) = (
        number_after(note, "field "),
        number_after(note, "wire type "),
    ) {
        let (tag, n) = varint(&bytes).unwrap_or_else(|| panic!("{name}: no tag on line {line:?}"));
        assert_eq!(tag, (field << 3) | wire, "{name}: tag byte of {line:?}");
        if let Some(len) = number_after(note, "length ") {
            let (v, _) =
                varint(&bytes[n..]).unwrap_or_else(|| panic!("{name}: no length on line {line:?}"));
            assert_eq!(v, len, "{name}: length on {line:?}");
        }
        if let Some(value) = number_after(note, "= ") {
            let (v, _) =
                varint(&bytes[n..]).unwrap_or_else(|| panic!("{name}: no varint on line {line:?}"));
            assert_eq!(v, value, "{name}: varint value on {line:?}");
        }
    }
    bytes
}

#[test]
fn guide_shows_the_bytes_the_encoders_produce() {
    for (name, bytes) in examples() {
        let want = raw_dump(&bytes);
        let raw = block(&format!("wire:{name}")).unwrap_or_else(|| {
            panic!("docs/protocol.md lacks <!-- wire:{name} -->; it is:\n{want}")
        });
        assert_eq!(raw, want, "raw dump {name} drifted; it is now:\n{want}");

        let fields = block(&format!("wire:{name}:fields"))
            .unwrap_or_else(|| panic!("docs/protocol.md lacks <!-- wire:{name}:fields -->"));
        let annotated: Vec<u8> = fields
            .lines()
            .flat_map(|l| check_fields_line(name, l))
            .collect();
        assert_eq!(
            annotated,
            bytes,
            "the annotated bytes of {name} differ from the packet:\n{}",
            raw_dump(&annotated)
        );
    }
}

#[test]
fn guide_examples_decode_to_what_they_claim() {
    let ex = examples();
    let get = |n: &str| ex.iter().find(|(name, _)| *name == n).unwrap().1.clone();

    // Requests, as the server reads them.
    for (name, seq, want) in [
        ("tcp-auth-req", 1, auth_request()),
        ("tcp-send-req", 2, send_request()),
    ] {
        let mut src = BytesMut::from(&get(name)[..]);
        let p = decode_packet(&mut src, 1 << 20).unwrap().unwrap();
        assert!(src.is_empty());
        assert_eq!(p.sequence, seq);
        assert_eq!(p.flags, 0);
        let got = decode_request(Generation::V2, i32::from(p.command), &p.body).unwrap();
        assert_eq!(got, want, "{name}");
    }

    // Replies, as a client reads them.
    for (name, command, want) in [
        ("tcp-auth-rsp", cmd::AUTH_RSP, auth_reply()),
        ("tcp-send-rsp", cmd::SEND_MSG_RSP, send_reply()),
    ] {
        let mut src = BytesMut::from(&get(name)[..]);
        let p = decode_packet(&mut src, 1 << 20).unwrap().unwrap();
        assert_eq!(i32::from(p.command), command);
        let frame = decode_server_frame(Generation::V2, command, &p.body).unwrap();
        assert_eq!(frame, ServerFrame::Reply(want), "{name}");
    }

    // The WebSocket frame wraps the same body as the TCP packet.
    let tcp = get("tcp-auth-req");
    let env = decode_envelope(&get("ws-auth-req")).unwrap();
    assert_eq!((env.command, env.sequence), (cmd::AUTH_REQ, 1));
    assert_eq!(&env.body[..], &tcp[HEADER_LEN..]);

    // The CRC of each header is CRC-16/CCITT-FALSE of its first 14 bytes.
    for (name, bytes) in ex.iter().filter(|(n, _)| n.starts_with("tcp-")) {
        let crc = u16::from_be_bytes([bytes[14], bytes[15]]);
        assert_eq!(crc, crc16(&bytes[..14]), "{name}");
    }
    assert_eq!(crc16(b"123456789"), 0x29B1);
}
