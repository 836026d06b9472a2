//! Property tests of the decoders: the bounded, deterministic-in-CI twin of
//! the libFuzzer targets in `fuzz/` (same invariants, from `invariants.rs`).
//! Case counts are kept small so the whole module runs in about a second.

use std::collections::BTreeMap;

use bytes::{BufMut, Bytes, BytesMut};
use im_core::Generation;
use im_core::command::{Request, SendRequest, SyncState};
use im_protocol::encode_request;
use im_protocol::tcp::{HEADER_LEN, MAGIC, VERSION, crc16, encode_packet};
use proptest::prelude::*;

use crate::invariants;

pub(crate) fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        // Failures are reported with their shrunk input; nothing to persist.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn generation() -> impl Strategy<Value = Generation> {
    prop_oneof![Just(Generation::V1), Just(Generation::V2)]
}

fn text() -> impl Strategy<Value = String> {
    "\\PC{0,12}"
}

fn texts() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(text(), 0..4)
}

/// `extra` as the generation can carry it: any string in v2; in v1 a map,
/// so "" or the canonical JSON object of a non-empty map of strings.
fn extra(generation: Generation) -> BoxedStrategy<String> {
    match generation {
        Generation::V2 => text().boxed(),
        Generation::V1 => prop::collection::btree_map(text(), text(), 0..3)
            .prop_map(|m: BTreeMap<String, String>| {
                if m.is_empty() {
                    String::new()
                } else {
                    serde_json::to_string(&m).unwrap()
                }
            })
            .boxed(),
    }
}

fn send(generation: Generation) -> impl Strategy<Value = Request> {
    (
        (text(), text(), text(), text()),
        any::<i32>(),
        prop::collection::vec(any::<u8>(), 0..48),
        any::<i64>(),
        extra(generation),
    )
        .prop_map(
            |(
                (client_msg_id, conversation_id, receiver_id, group_id),
                message_type,
                content,
                send_time,
                extra,
            )| {
                Request::Send(SendRequest {
                    client_msg_id,
                    conversation_id,
                    receiver_id,
                    group_id,
                    message_type,
                    content: Bytes::from(content),
                    send_time,
                    extra,
                })
            },
        )
}

/// Any request that exists in `generation`.
pub(crate) fn request(generation: Generation) -> BoxedStrategy<Request> {
    let common = prop_oneof![
        any::<i64>().prop_map(|client_time| Request::Heartbeat { client_time }),
        (text(), text(), text()).prop_map(|(user_id, token, platform)| Request::Auth {
            user_id,
            token,
            platform
        }),
        send(generation),
        (text(), any::<i64>()).prop_map(|(message_id, seq)| Request::Ack { message_id, seq }),
        (text(), text()).prop_map(|(message_id, conversation_id)| Request::Revoke {
            message_id,
            conversation_id
        }),
        (texts(), text()).prop_map(|(message_ids, conversation_id)| Request::ReadReceipt {
            message_ids,
            conversation_id
        }),
        (text(), any::<i32>()).prop_map(|(conversation_id, status)| Request::Typing {
            conversation_id,
            status
        }),
        texts().prop_map(|user_ids| Request::OnlineStatus { user_ids }),
    ];
    match generation {
        Generation::V1 => prop_oneof![
            3 => common,
            1 => (any::<i64>(), any::<i64>(), any::<i32>()).prop_map(|(min_seq, max_seq, limit)| {
                Request::SyncInbox { min_seq, max_seq, limit }
            }),
        ]
        .boxed(),
        Generation::V2 => prop_oneof![
            3 => common,
            1 => (
                prop::collection::vec((text(), any::<i64>()), 0..4),
                any::<i32>()
            )
                .prop_map(|(states, max_per_conversation)| Request::BatchSync {
                    states: states
                        .into_iter()
                        .map(|(conversation_id, last_seq)| SyncState {
                            conversation_id,
                            last_seq
                        })
                        .collect(),
                    max_per_conversation,
                }),
            1 => ((text(), text()), any::<i64>(), any::<i64>(), any::<i32>()).prop_map(
                |((request_id, conversation_id), start_seq, end_seq, count)| Request::SyncRange {
                    request_id,
                    conversation_id,
                    start_seq,
                    end_seq,
                    count,
                }
            ),
        ]
        .boxed(),
    }
}

fn generation_and_request() -> impl Strategy<Value = (Generation, Request)> {
    generation().prop_flat_map(|g| (Just(g), request(g)))
}

/// Byte edits: (position, xor mask) pairs; positions wrap around.
pub(crate) fn edits() -> impl Strategy<Value = Vec<(usize, u8)>> {
    prop::collection::vec((any::<usize>(), 1..=255u8), 0..4)
}

pub(crate) fn apply(bytes: &mut [u8], edits: &[(usize, u8)]) {
    if bytes.is_empty() {
        return;
    }
    let n = bytes.len();
    for &(at, mask) in edits {
        bytes[at % n] ^= mask;
    }
}

/// Command numbers worth trying: every one the contract names, plus noise.
pub(crate) fn command() -> impl Strategy<Value = i32> {
    prop_oneof![
        3 => prop::sample::select(vec![
            0, 1, 5, 6, 100, 101, 104, 200, 201, 202, 203, 204, 205, 206, 207, 300, 301, 302,
            303, 304, 400, 401, 402, 500, 501, 502, 600, 601,
        ]),
        1 => any::<i32>(),
    ]
}

/// A valid header (CRC included) announcing `len` body bytes, with no body.
fn bare_header(command: u16, sequence: u32, len: u32) -> BytesMut {
    let mut h = BytesMut::with_capacity(HEADER_LEN);
    h.put_u16(MAGIC);
    h.put_u8(VERSION);
    h.put_u8(0);
    h.put_u16(command);
    h.put_u32(sequence);
    h.put_u32(len);
    let crc = crc16(&h);
    h.put_u16(crc);
    h
}

fn packet() -> impl Strategy<Value = (u16, u32, Vec<u8>)> {
    (
        any::<u16>(),
        any::<u32>(),
        prop::collection::vec(any::<u8>(), 0..40),
    )
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn requests_roundtrip((g, req) in generation_and_request()) {
        invariants::request_roundtrip(g, &req);
    }

    /// Encoded requests with a few bytes flipped, decoded as any command of
    /// either generation: no panic, and what decodes survives a round trip.
    #[test]
    fn damaged_request_bodies((g, req) in generation_and_request(), edits in edits(),
                              to in generation(), command in command()) {
        let mut buf = BytesMut::new();
        let c = encode_request(g, &req, &mut buf);
        apply(&mut buf, &edits);
        for (gen_, cmd) in [(g, c), (to, c), (to, command)] {
            invariants::request_body(gen_, cmd, &buf);
            invariants::server_frame(gen_, cmd, &buf);
        }
    }

    #[test]
    fn noise_bodies(g in generation(), command in command(),
                    body in prop::collection::vec(any::<u8>(), 0..64)) {
        invariants::request_body(g, command, &body);
        invariants::server_frame(g, command, &body);
    }

    #[test]
    fn envelopes_roundtrip(command in any::<i32>(), sequence in any::<u32>(),
                           body in prop::collection::vec(any::<u8>(), 0..64), timestamp in any::<i64>()) {
        invariants::envelope_roundtrip(command, sequence, &body, timestamp);
    }

    /// Envelopes around real request bodies, damaged or not: the envelope and
    /// then its body, in both generations.
    #[test]
    fn damaged_envelopes((g, req) in generation_and_request(), sequence in any::<u32>(),
                         timestamp in any::<i64>(), edits in edits()) {
        let mut body = BytesMut::new();
        let c = encode_request(g, &req, &mut body);
        let mut frame = BytesMut::new();
        im_protocol::ws::encode_envelope(c, sequence, &body, timestamp, &mut frame);
        apply(&mut frame, &edits);
        if let Some((command, body)) = invariants::envelope(&frame) {
            for gen_ in invariants::GENERATIONS {
                invariants::request_body(gen_, command, &body);
            }
        }
    }

    #[test]
    fn noise_envelopes(frame in prop::collection::vec(any::<u8>(), 0..64)) {
        invariants::envelope(&frame);
    }

    /// Packets coalesced in one stream and cut anywhere decode to themselves;
    /// a body above the limit stops the stream with `TooLarge`.
    #[test]
    fn tcp_packets_roundtrip(packets in prop::collection::vec(packet(), 0..6),
                             chunks in prop::collection::vec(0..48usize, 0..12),
                             max_body in 0..48usize) {
        invariants::packets_roundtrip(&packets, &chunks, max_body);
    }

    /// A stream of packets with bytes flipped or cut short decodes the same
    /// however it is chunked.
    #[test]
    fn damaged_tcp_streams(packets in prop::collection::vec(packet(), 1..5), edits in edits(),
                           truncate in any::<usize>(),
                           chunks in prop::collection::vec(0..48usize, 0..12),
                           max_body in 0..48usize) {
        let mut stream = BytesMut::new();
        for (command, sequence, body) in &packets {
            encode_packet(*command, *sequence, body, &mut stream);
        }
        apply(&mut stream, &edits);
        stream.truncate(truncate % (stream.len() + 1));
        invariants::chunking_invariance(&stream, &chunks, max_body);
    }

    #[test]
    fn noise_tcp_streams(stream in prop::collection::vec(any::<u8>(), 0..96),
                         chunks in prop::collection::vec(0..32usize, 0..8),
                         max_body in 0..64usize) {
        invariants::chunking_invariance(&stream, &chunks, max_body);
        invariants::bounded_allocation(&stream, max_body);
    }

    /// The frame limit: whatever length a valid header declares, one decode
    /// call reserves at most header + `max_body` (the server's 1 MiB
    /// included), and nothing at all for a length above it.
    #[test]
    fn declared_length_is_bounded(command in any::<u16>(), len in any::<u32>(),
                                  max_body in prop_oneof![0..4096usize, Just(1 << 20)],
                                  body_prefix in prop::collection::vec(any::<u8>(), 0..32)) {
        let mut input = bare_header(command, 1, len);
        input.extend_from_slice(&body_prefix);
        invariants::bounded_allocation(&input, max_body);
        invariants::chunking_invariance(&input, &[3, 16, 1], max_body);
    }
}
