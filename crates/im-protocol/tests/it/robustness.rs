//! Bad input never panics: malformed bodies, wrong generation, noise.

use bytes::BytesMut;
use im_core::Generation;
use im_core::command::{Event, Reply, Request, SendRequest, SyncState};
use im_protocol::{
    DecodeError, decode_request, decode_server_frame, encode_event, encode_reply, encode_request,
};

use crate::fixtures::{GENS, event_msg, group, revoked, single, view};

const SERVER_BOUND: [i32; 10] = [5, 100, 200, 203, 205, 300, 303, 400, 500, 600];
const CLIENT_BOUND: [i32; 16] = [
    0, 6, 101, 104, 201, 202, 204, 206, 207, 301, 304, 401, 402, 501, 502, 601,
];

/// A length-delimited field 1 that announces 5 bytes and has 1, plus a
/// field with an invalid wire type: invalid for every message.
const TRUNCATED: &[u8] = &[0x0A, 0x05, 0x01];
const BAD_WIRE_TYPE: &[u8] = &[0x0F, 0x00];

#[test]
fn malformed_request_bodies() {
    for generation in GENS {
        for c in SERVER_BOUND {
            if generation == Generation::V1 && c == 303 {
                continue;
            }
            for body in [TRUNCATED, BAD_WIRE_TYPE, &[0xFF; 11][..]] {
                assert!(
                    matches!(decode_request(generation, c, body), Err(DecodeError::Malformed { command, .. }) if command == c),
                    "{generation:?} {c} {body:?}"
                );
            }
        }
    }
}

#[test]
fn malformed_server_frames() {
    for generation in GENS {
        for c in CLIENT_BOUND {
            if generation == Generation::V1 && c == 304 {
                assert_eq!(
                    decode_server_frame(generation, c, TRUNCATED),
                    Err(DecodeError::UnknownCommand(304))
                );
                continue;
            }
            for body in [TRUNCATED, BAD_WIRE_TYPE] {
                assert!(
                    matches!(decode_server_frame(generation, c, body), Err(DecodeError::Malformed { command, .. }) if command == c),
                    "{generation:?} {c}"
                );
            }
        }
        // Pushes with a required sub-message missing.
        assert!(decode_server_frame(generation, 402, &[]).is_err());
    }
    assert!(decode_server_frame(Generation::V2, 202, &[]).is_err());
}

#[test]
fn client_side_rejects_requests_and_unknowns() {
    for generation in GENS {
        for c in [5, 100, 200, 203, 205, 300, 400, 500, 600] {
            assert_eq!(
                decode_server_frame(generation, c, &[]),
                Err(DecodeError::NotClientBound(c))
            );
        }
        for c in [1, 2, 3, 4, 102, 103, 302, 999, -7] {
            assert_eq!(
                decode_server_frame(generation, c, &[]),
                Err(DecodeError::UnknownCommand(c))
            );
        }
    }
    assert_eq!(
        decode_server_frame(Generation::V2, 303, &[]),
        Err(DecodeError::NotClientBound(303))
    );
    assert_eq!(
        decode_server_frame(Generation::V1, 303, &[]),
        Err(DecodeError::UnknownCommand(303))
    );
}

fn all_requests() -> Vec<Request> {
    vec![
        Request::Heartbeat { client_time: 5 },
        Request::Auth {
            user_id: "a".into(),
            token: "t".into(),
            platform: "iOS".into(),
        },
        Request::Send(SendRequest {
            client_msg_id: "3f0e7c1a-0000-4000-8000-000000000000".into(),
            conversation_id: "single_a_b".into(),
            receiver_id: "b".into(),
            message_type: 1,
            content: "x".repeat(200).into(),
            send_time: 9,
            extra: r#"{"k":"v"}"#.into(),
            ..SendRequest::default()
        }),
        Request::Ack {
            message_id: "m".into(),
            seq: 3,
        },
        Request::Revoke {
            message_id: "m".into(),
            conversation_id: "c".into(),
        },
        Request::BatchSync {
            states: vec![SyncState {
                conversation_id: "c".into(),
                last_seq: 2,
            }],
            max_per_conversation: 100,
        },
        Request::SyncRange {
            request_id: "r".into(),
            conversation_id: "c".into(),
            start_seq: 1,
            end_seq: 2,
            count: 2,
        },
        Request::SyncInbox {
            min_seq: 1,
            max_seq: 2,
            limit: 3,
        },
        Request::ReadReceipt {
            message_ids: vec!["m".into()],
            conversation_id: "c".into(),
        },
        Request::Typing {
            conversation_id: "c".into(),
            status: 1,
        },
        Request::OnlineStatus {
            user_ids: vec!["u".into()],
        },
    ]
}

#[test]
fn cross_generation_requests_never_panic() {
    for (from, to) in [
        (Generation::V1, Generation::V2),
        (Generation::V2, Generation::V1),
    ] {
        for req in all_requests() {
            let mut buf = BytesMut::new();
            let c = encode_request(from, &req, &mut buf);
            let _ = decode_request(to, c, &buf);
        }
    }
    // The v2 send read as v1: no panic, and certainly not a clean v1 send with the same id.
    let mut buf = BytesMut::new();
    let send = &all_requests()[2];
    encode_request(Generation::V2, send, &mut buf);
    assert_ne!(
        decode_request(Generation::V1, 200, &buf).ok().as_ref(),
        Some(send)
    );
}

#[test]
fn cross_generation_server_frames_never_panic() {
    let replies = [
        Reply::Send {
            code: im_core::ErrorCode::Success,
            msg: String::new(),
            server_msg_id: "s".into(),
            client_msg_id: "c".into(),
            seq: 1,
            server_time: 2,
        },
        Reply::SyncInbox {
            code: im_core::ErrorCode::Success,
            msg: String::new(),
            messages: vec![view(group(1), false)],
            server_max_seq: 1,
            has_more: false,
        },
        Reply::BatchSync {
            code: im_core::ErrorCode::Success,
            msg: String::new(),
            conversations: vec![im_core::command::ConversationBatch {
                conversation_id: "c".into(),
                messages: vec![view(revoked(1), true)],
                max_seq: 1,
                synced_seq: 1,
                has_more: false,
            }],
            server_time: 1,
            total: 1,
        },
    ];
    let events = [
        event_msg(single(1)),
        event_msg(group(2)),
        event_msg(revoked(3)),
    ];
    for (from, to) in [
        (Generation::V1, Generation::V2),
        (Generation::V2, Generation::V1),
    ] {
        for reply in &replies {
            let mut buf = BytesMut::new();
            let c = encode_reply(from, reply, "bob", &mut buf);
            let _ = decode_server_frame(to, c, &buf);
        }
        for event in &events {
            let mut buf = BytesMut::new();
            let c = encode_event(from, event, "bob", &mut buf);
            let _ = decode_server_frame(to, c, &buf);
        }
    }
    // A v2 push read by a v1 client: field 1 (MessageInfo) lands in message_id or fails.
    let mut buf = BytesMut::new();
    encode_event(Generation::V2, &events[0], "bob", &mut buf);
    match decode_server_frame(Generation::V1, 202, &buf) {
        Ok(im_protocol::ServerFrame::Event(Event::Message(m))) => {
            assert_ne!(m.server_msg_id, "srv1")
        }
        Ok(other) => panic!("{other:?}"),
        Err(e) => assert!(matches!(e, DecodeError::Malformed { command: 202, .. })),
    }
}

/// Deterministic noise (xorshift) into every command number, both sides.
#[test]
fn noise_never_panics() {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut commands: Vec<i32> = (0..=700).collect();
    commands.extend([-1, i32::MIN, i32::MAX]);
    let mut body = Vec::with_capacity(64);
    for generation in GENS {
        for &c in &commands {
            for _ in 0..8 {
                body.clear();
                let len = (next() % 48) as usize;
                body.extend((0..len).map(|_| next() as u8));
                let _ = decode_request(generation, c, &body);
                let _ = decode_server_frame(generation, c, &body);
            }
        }
    }
}
