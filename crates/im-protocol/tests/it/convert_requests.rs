//! Client requests: encode (client side) -> decode (server side).

use std::collections::BTreeMap;

use bytes::{Bytes, BytesMut};
use im_core::Generation;
use im_core::command::{Request, SendRequest, SyncState, cmd};
use im_protocol::{DecodeError, decode_request, encode_request, pb};
use prost::Message;

use crate::fixtures::{GENS, req_roundtrip};

fn common_requests() -> Vec<Request> {
    vec![
        Request::Heartbeat {
            client_time: 1_732_000_000_000,
        },
        Request::Heartbeat { client_time: 0 },
        Request::Auth {
            user_id: "alice".into(),
            token: "demo_token_alice".into(),
            platform: "iOS".into(),
        },
        Request::Send(SendRequest {
            client_msg_id: "17320000000001234".into(),
            conversation_id: "single_alice_bob".into(),
            receiver_id: "bob".into(),
            group_id: String::new(),
            message_type: 1,
            content: Bytes::from_static("héllo".as_bytes()),
            send_time: 1_732_000_000_000,
            extra: String::new(),
        }),
        Request::Send(SendRequest {
            client_msg_id: "C0FFEE00-0000-4000-8000-000000000000".into(),
            conversation_id: "group_g1".into(),
            group_id: "g1".into(),
            message_type: 2,
            content: Bytes::from_static(b"{}"),
            extra: r#"{"a":"1","b":"two"}"#.into(),
            ..SendRequest::default()
        }),
        Request::Ack {
            message_id: "srv1".into(),
            seq: 0,
        },
        Request::Revoke {
            message_id: "srv1".into(),
            conversation_id: "single_alice_bob".into(),
        },
        Request::ReadReceipt {
            message_ids: vec!["a".into(), "b".into()],
            conversation_id: "group_g1".into(),
        },
        Request::ReadReceipt {
            message_ids: vec![],
            conversation_id: "single_alice_bob".into(),
        },
        Request::Typing {
            conversation_id: "single_alice_bob".into(),
            status: 1,
        },
        Request::Typing {
            conversation_id: "single_alice_bob".into(),
            status: 0,
        },
        Request::OnlineStatus {
            user_ids: vec!["bob".into(), "carol".into()],
        },
        Request::OnlineStatus { user_ids: vec![] },
    ]
}

#[test]
fn every_request_roundtrips_in_both_generations() {
    for generation in GENS {
        for req in common_requests() {
            assert_eq!(
                req_roundtrip(generation, &req),
                req,
                "{generation:?} {req:?}"
            );
        }
    }
    let v1_only = Request::SyncInbox {
        min_seq: 3,
        max_seq: 9,
        limit: 50,
    };
    assert_eq!(req_roundtrip(Generation::V1, &v1_only), v1_only);
    for req in [
        Request::BatchSync {
            states: vec![
                SyncState {
                    conversation_id: "single_alice_bob".into(),
                    last_seq: 5,
                },
                SyncState {
                    conversation_id: "group_g1".into(),
                    last_seq: 0,
                },
            ],
            max_per_conversation: 100,
        },
        Request::BatchSync {
            states: vec![],
            max_per_conversation: 100,
        },
        Request::SyncRange {
            request_id: "REQ-1".into(),
            conversation_id: "group_g1".into(),
            start_seq: 4,
            end_seq: 9,
            count: 6,
        },
    ] {
        assert_eq!(req_roundtrip(Generation::V2, &req), req);
    }
}

#[test]
fn heartbeat_with_empty_body() {
    for generation in GENS {
        assert_eq!(
            decode_request(generation, 5, &[]).unwrap(),
            Request::Heartbeat { client_time: 0 }
        );
    }
}

#[test]
fn sdk_auth_body_decodes() {
    let body = [
        0x0A, 0x05, b'a', b'l', b'i', b'c', b'e', 0x12, 0x10, b'd', b'e', b'm', b'o', b'_', b't',
        b'o', b'k', b'e', b'n', b'_', b'a', b'l', b'i', b'c', b'e', 0x1A, 0x03, b'i', b'O', b'S',
    ];
    for generation in GENS {
        assert_eq!(
            decode_request(generation, 100, &body).unwrap(),
            Request::Auth {
                user_id: "alice".into(),
                token: "demo_token_alice".into(),
                platform: "iOS".into()
            }
        );
    }
}

#[test]
fn v1_send_drops_sender_and_turns_extra_map_into_json() {
    let m = pb::v1::SendMessageRequest {
        client_msg_id: "17320000000001234".into(),
        conversation_id: "single_alice_bob".into(),
        sender_id: "mallory".into(),
        receiver_id: "bob".into(),
        message_type: 1,
        content: Bytes::from_static(b"hi"),
        send_time: 7,
        extra: BTreeMap::from([("z".into(), "1".into()), ("a".into(), "x\"y".into())]),
        ..Default::default()
    };
    let Request::Send(s) = decode_request(Generation::V1, 200, &m.encode_to_vec()).unwrap() else {
        panic!("not a send");
    };
    assert_eq!(s.extra, r#"{"a":"x\"y","z":"1"}"#);
    assert_eq!(s.client_msg_id, "17320000000001234");
    assert_eq!((s.receiver_id.as_str(), s.send_time), ("bob", 7));

    let empty = pb::v1::SendMessageRequest {
        client_msg_id: "c".into(),
        ..Default::default()
    };
    let Request::Send(s) = decode_request(Generation::V1, 200, &empty.encode_to_vec()).unwrap()
    else {
        panic!("not a send");
    };
    assert_eq!(s.extra, "");
}

#[test]
fn v2_send_keeps_extra_string_and_drops_sender() {
    let m = pb::v2::SendMessageRequest {
        message: Some(pb::v2::MessageInfo {
            client_msg_id: "3f0e7c1a-0000-4000-8000-000000000000".into(),
            sender_id: "mallory".into(),
            server_msg_id: "forged".into(),
            seq: 42,
            extra: "not json at all".into(),
            ..Default::default()
        }),
    };
    let Request::Send(s) = decode_request(Generation::V2, 200, &m.encode_to_vec()).unwrap() else {
        panic!("not a send");
    };
    assert_eq!(s.extra, "not json at all");
    assert_eq!(s.client_msg_id, "3f0e7c1a-0000-4000-8000-000000000000");
}

#[test]
fn v2_send_without_message_is_malformed() {
    for body in [
        &[][..],
        &pb::v2::SendMessageRequest { message: None }.encode_to_vec()[..],
    ] {
        assert!(matches!(
            decode_request(Generation::V2, 200, body),
            Err(DecodeError::Malformed { command: 200, .. })
        ));
    }
}

#[test]
fn ack_revoke_read_use_the_generation_id_field() {
    let v1_ack = pb::v1::MessageAck {
        message_id: "m1".into(),
        seq: 0,
    }
    .encode_to_vec();
    let v2_ack = pb::v2::MessageAck {
        server_msg_id: "m1".into(),
        seq: 0,
    }
    .encode_to_vec();
    assert_eq!(v1_ack, v2_ack, "same field number");
    for generation in GENS {
        assert_eq!(
            decode_request(generation, cmd::MSG_ACK, &v1_ack).unwrap(),
            Request::Ack {
                message_id: "m1".into(),
                seq: 0
            }
        );
    }
}

#[test]
fn requests_missing_from_a_generation() {
    // SyncRange does not exist in v1: the client still encodes it (v2 body), the server says unknown.
    let range = Request::SyncRange {
        request_id: "r".into(),
        conversation_id: "single_alice_bob".into(),
        start_seq: 1,
        end_seq: 2,
        count: 2,
    };
    let mut buf = BytesMut::new();
    assert_eq!(encode_request(Generation::V1, &range, &mut buf), 303);
    assert_eq!(
        decode_request(Generation::V1, 303, &buf),
        Err(DecodeError::UnknownCommand(303))
    );

    // v1 BatchSync: a v2 body under 300, which v1 reads as SyncRequest -> error or harmless.
    let batch = Request::BatchSync {
        states: vec![SyncState {
            conversation_id: "single_alice_bob".into(),
            last_seq: 1,
        }],
        max_per_conversation: 100,
    };
    let mut buf = BytesMut::new();
    assert_eq!(encode_request(Generation::V1, &batch, &mut buf), 300);
    assert!(matches!(
        decode_request(Generation::V1, 300, &buf),
        Err(DecodeError::Malformed { command: 300, .. })
    ));

    // v2 SyncInbox: a v1 SyncRequest body under 300, which v2 reads as BatchSyncRequest.
    let inbox = Request::SyncInbox {
        min_seq: 1,
        max_seq: 0,
        limit: 10,
    };
    let mut buf = BytesMut::new();
    assert_eq!(encode_request(Generation::V2, &inbox, &mut buf), 300);
    assert!(matches!(
        decode_request(Generation::V2, 300, &buf),
        Err(DecodeError::Malformed { command: 300, .. })
    ));
}

#[test]
fn unknown_and_wrong_direction_commands() {
    for generation in GENS {
        for c in [
            0,
            1,
            2,
            3,
            4,
            102,
            103,
            302,
            304,
            700,
            9999,
            -1,
            i32::MAX,
            i32::MIN,
        ] {
            if generation == Generation::V2 && c == 304 {
                continue;
            }
            assert_eq!(
                decode_request(generation, c, &[]),
                Err(DecodeError::UnknownCommand(c)),
                "{generation:?} {c}"
            );
        }
        for c in [
            6, 101, 104, 201, 202, 204, 206, 207, 301, 401, 402, 501, 502, 601,
        ] {
            assert_eq!(
                decode_request(generation, c, &[]),
                Err(DecodeError::NotServerBound(c)),
                "{generation:?} {c}"
            );
        }
    }
    assert_eq!(
        decode_request(Generation::V2, 304, &[]),
        Err(DecodeError::NotServerBound(304))
    );
    assert_eq!(
        decode_request(Generation::V1, 303, &[]),
        Err(DecodeError::UnknownCommand(303))
    );
}
