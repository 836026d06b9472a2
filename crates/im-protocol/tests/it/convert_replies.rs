//! Server replies: encode (server side) -> decode (client side).

use im_core::command::{ConversationBatch, Reply, UserStatus, cmd};
use im_core::{ErrorCode, Generation};
use im_protocol::{ServerFrame, decode_server_frame, pb};
use prost::Message;

use crate::fixtures::{GENS, group, reply_bytes, reply_roundtrip, revoked, single, view};

fn identical_in_both() -> Vec<Reply> {
    vec![
        Reply::Heartbeat {
            server_time: 1_732_000_000_000,
        },
        Reply::Auth {
            code: ErrorCode::Success,
            msg: String::new(),
            max_seq: 17,
        },
        Reply::Auth {
            code: ErrorCode::AuthFailed,
            msg: "Invalid token".into(),
            max_seq: 0,
        },
        Reply::Auth {
            code: ErrorCode::TokenExpired,
            msg: "expired".into(),
            max_seq: 0,
        },
        Reply::Revoke {
            code: ErrorCode::Success,
            msg: String::new(),
        },
        Reply::Revoke {
            code: ErrorCode::PermissionDenied,
            msg: "too late".into(),
        },
        Reply::ReadReceipt {
            code: ErrorCode::Success,
            msg: String::new(),
        },
        Reply::OnlineStatus {
            code: ErrorCode::Success,
            msg: String::new(),
            statuses: vec![
                UserStatus {
                    user_id: "bob".into(),
                    online: true,
                    platforms: vec!["iOS".into(), "Web".into()],
                    last_seen: 5,
                },
                UserStatus {
                    user_id: "carol".into(),
                    online: false,
                    platforms: vec![],
                    last_seen: 0,
                },
            ],
        },
        Reply::Error {
            request_cmd: 0,
            code: ErrorCode::InvalidParam,
            msg: "unknown command 999".into(),
        },
    ]
}

#[test]
fn common_replies_roundtrip() {
    for generation in GENS {
        for reply in identical_in_both() {
            let (_, frame) = reply_roundtrip(generation, &reply, "alice");
            assert_eq!(frame, ServerFrame::Reply(reply.clone()), "{generation:?}");
        }
    }
}

#[test]
fn auth_fail_matches_contract_bytes() {
    let reply = Reply::Auth {
        code: ErrorCode::AuthFailed,
        msg: "Invalid token".into(),
        max_seq: 0,
    };
    for generation in GENS {
        let (command, body) = reply_bytes(generation, &reply, "");
        assert_eq!(command, 101);
        assert_eq!(
            &body[..],
            &[
                0x08, 0x64, 0x12, 0x0D, b'I', b'n', b'v', b'a', b'l', b'i', b'd', b' ', b't', b'o',
                b'k', b'e', b'n'
            ]
        );
    }
}

#[test]
fn v2_send_roundtrips_and_echoes_client_msg_id() {
    for reply in [
        Reply::Send {
            code: ErrorCode::Success,
            msg: String::new(),
            server_msg_id: "srv1".into(),
            client_msg_id: "3f0e7c1a-0000-4000-8000-000000000000".into(),
            seq: 3,
            server_time: 10,
        },
        Reply::Send {
            code: ErrorCode::MessageTooLarge,
            msg: "too large".into(),
            server_msg_id: String::new(),
            client_msg_id: "cid".into(),
            seq: 0,
            server_time: 0,
        },
    ] {
        let (command, frame) = reply_roundtrip(Generation::V2, &reply, "alice");
        assert_eq!(command, 201);
        assert_eq!(frame, ServerFrame::Reply(reply.clone()));
        let (_, body) = reply_bytes(Generation::V2, &reply, "alice");
        let raw = pb::v2::SendMessageResponse::decode(&body[..]).unwrap();
        let Reply::Send { client_msg_id, .. } = &reply else {
            unreachable!()
        };
        assert_eq!(&raw.client_msg_id, client_msg_id);
    }
}

#[test]
fn v1_send_response_message_id_is_the_client_msg_id() {
    for code in [ErrorCode::Success, ErrorCode::SendTooFast] {
        let reply = Reply::Send {
            code,
            msg: String::new(),
            server_msg_id: "srv-not-on-the-v1-wire".into(),
            client_msg_id: "17320000000001234".into(),
            seq: 8,
            server_time: 11,
        };
        let (command, body) = reply_bytes(Generation::V1, &reply, "alice");
        assert_eq!(command, 201);
        let raw = pb::v1::SendMessageResponse::decode(&body[..]).unwrap();
        assert_eq!(raw.message_id, "17320000000001234");
        assert_eq!(raw.error_code, code.code());
        assert_eq!((raw.seq, raw.server_time), (8, 11));
        // Client side: message_id comes back as client_msg_id; the server id is not on the v1 wire.
        let frame = decode_server_frame(Generation::V1, command, &body).unwrap();
        assert_eq!(
            frame,
            ServerFrame::Reply(Reply::Send {
                code,
                msg: String::new(),
                server_msg_id: String::new(),
                client_msg_id: "17320000000001234".into(),
                seq: 8,
                server_time: 11,
            })
        );
    }
}

#[test]
fn v2_batch_sync_and_range_roundtrip_with_every_message_field() {
    let batch = Reply::BatchSync {
        code: ErrorCode::Success,
        msg: String::new(),
        conversations: vec![
            ConversationBatch {
                conversation_id: "single_alice_bob".into(),
                messages: vec![
                    view(single(1), true),
                    view(revoked(2), false),
                    view(single(3), false),
                ],
                max_seq: 3,
                synced_seq: 3,
                has_more: false,
            },
            ConversationBatch {
                conversation_id: "group_g1".into(),
                messages: vec![view(group(7), false)],
                max_seq: 7,
                synced_seq: 7,
                has_more: true,
            },
        ],
        server_time: 123,
        total: 4,
    };
    let (command, frame) = reply_roundtrip(Generation::V2, &batch, "bob");
    assert_eq!(command, 301);
    assert_eq!(frame, ServerFrame::Reply(batch.clone()));

    // Wire details: status 1 (never 4), create_time = server_time, recall fields, type.
    let (_, body) = reply_bytes(Generation::V2, &batch, "bob");
    let raw = pb::v2::BatchSyncResponse::decode(&body[..]).unwrap();
    let msgs = &raw.conversation_messages[0].messages;
    assert!(msgs.iter().all(|m| m.status == 1));
    assert!(msgs.iter().all(|m| m.create_time == m.server_time));
    assert_eq!((msgs[0].is_read, msgs[1].is_read), (true, false));
    assert!(msgs[1].is_revoked);
    assert_eq!(
        (msgs[1].revoked_by.as_str(), msgs[1].revoked_time),
        ("alice", 99_000)
    );
    assert!(!msgs[0].is_revoked);
    assert_eq!(msgs[0].conversation_type, 1);
    let g = &raw.conversation_messages[1].messages[0];
    assert_eq!((g.conversation_type, g.group_id.as_str()), (2, "g1"));
    assert_eq!(g.extra, r#"{"k":"v","z":"1"}"#);

    let range = Reply::SyncRange {
        code: ErrorCode::Success,
        msg: String::new(),
        request_id: "REQ-1".into(),
        conversation_id: "single_alice_bob".into(),
        messages: vec![view(single(4), false), view(revoked(5), true)],
        start_seq: 4,
        end_seq: 5,
        has_more: true,
    };
    let (command, frame) = reply_roundtrip(Generation::V2, &range, "bob");
    assert_eq!(command, 304);
    assert_eq!(frame, ServerFrame::Reply(range));
}

#[test]
fn v1_sync_inbox_roundtrips_with_per_viewer_ids() {
    let reply = Reply::SyncInbox {
        code: ErrorCode::Success,
        msg: String::new(),
        messages: vec![view(single(1), false), view(group(2), false)],
        server_max_seq: 9,
        has_more: true,
    };
    // bob is not the sender of either message: public ids are the server ids.
    let (command, frame) = reply_roundtrip(Generation::V1, &reply, "bob");
    assert_eq!(command, 301);
    assert_eq!(frame, ServerFrame::Reply(reply.clone()));

    // alice sent message 1: she knows it by its client_msg_id.
    let (_, body) = reply_bytes(Generation::V1, &reply, "alice");
    let raw = pb::v1::SyncResponse::decode(&body[..]).unwrap();
    assert_eq!(raw.messages[0].message_id, "cli1");
    assert_eq!(raw.messages[1].message_id, "gsrv2");
    assert_eq!(
        raw.messages[1].extra.get("k").map(String::as_str),
        Some("v")
    );
}

#[test]
fn reply_kinds_missing_from_a_generation_become_invalid_param() {
    let inbox = Reply::SyncInbox {
        code: ErrorCode::Success,
        msg: String::new(),
        messages: vec![view(single(1), false)],
        server_max_seq: 1,
        has_more: false,
    };
    let (command, frame) = reply_roundtrip(Generation::V2, &inbox, "bob");
    assert_eq!(command, 301);
    let ServerFrame::Reply(Reply::BatchSync {
        code,
        conversations,
        ..
    }) = frame
    else {
        panic!("{frame:?}")
    };
    assert_eq!(code, ErrorCode::InvalidParam);
    assert!(conversations.is_empty());

    let batch = Reply::BatchSync {
        code: ErrorCode::Success,
        msg: String::new(),
        conversations: vec![],
        server_time: 1,
        total: 0,
    };
    let (command, frame) = reply_roundtrip(Generation::V1, &batch, "bob");
    assert_eq!(command, 301);
    let ServerFrame::Reply(Reply::SyncInbox { code, messages, .. }) = frame else {
        panic!("{frame:?}")
    };
    assert_eq!(code, ErrorCode::InvalidParam);
    assert!(messages.is_empty());

    // v1 has no 304 at all: command 0 + ErrorResponse.
    let range = Reply::SyncRange {
        code: ErrorCode::Success,
        msg: String::new(),
        request_id: "r".into(),
        conversation_id: "c".into(),
        messages: vec![],
        start_seq: 0,
        end_seq: 0,
        has_more: false,
    };
    let (command, frame) = reply_roundtrip(Generation::V1, &range, "bob");
    assert_eq!(command, 0);
    assert!(matches!(
        frame,
        ServerFrame::Reply(Reply::Error {
            request_cmd: 0,
            code: ErrorCode::InvalidParam,
            ..
        })
    ));
}

#[test]
fn error_replies_use_the_response_command_when_there_is_one() {
    let cases: [(i32, i32, i32); 12] = [
        // (request, v1 command, v2 command)
        (cmd::AUTH_REQ, 101, 101),
        (cmd::SEND_MSG_REQ, 201, 201),
        (cmd::REVOKE_MSG_REQ, 206, 206),
        (cmd::SYNC_REQ, 301, 301),
        (cmd::SYNC_RANGE_REQ, 0, 304),
        (cmd::ONLINE_STATUS_REQ, 401, 401),
        (cmd::READ_RECEIPT_REQ, 501, 501),
        // No response command, or one without an error field:
        (cmd::HEARTBEAT_REQ, 0, 0),
        (cmd::MSG_ACK, 0, 0),
        (cmd::TYPING_STATUS_REQ, 0, 0),
        (cmd::UNKNOWN, 0, 0),
        (999, 0, 0),
    ];
    for (request_cmd, v1_cmd, v2_cmd) in cases {
        for (generation, want) in [(Generation::V1, v1_cmd), (Generation::V2, v2_cmd)] {
            let reply = Reply::error(request_cmd, ErrorCode::PermissionDenied, "nope");
            let (command, frame) = reply_roundtrip(generation, &reply, "alice");
            assert_eq!(command, want, "{generation:?} request {request_cmd}");
            let (code, msg) = match frame {
                ServerFrame::Reply(
                    Reply::Error { code, msg, .. }
                    | Reply::Auth { code, msg, .. }
                    | Reply::Send { code, msg, .. }
                    | Reply::Revoke { code, msg }
                    | Reply::SyncInbox { code, msg, .. }
                    | Reply::BatchSync { code, msg, .. }
                    | Reply::SyncRange { code, msg, .. }
                    | Reply::OnlineStatus { code, msg, .. }
                    | Reply::ReadReceipt { code, msg },
                ) => (code, msg),
                other => panic!("{other:?}"),
            };
            assert_eq!((code, msg.as_str()), (ErrorCode::PermissionDenied, "nope"));
        }
    }
}

#[test]
fn unknown_wire_error_codes_become_unknown() {
    let body = pb::v2::AuthResponse {
        error_code: 777,
        error_msg: "x".into(),
        max_seq: 0,
    }
    .encode_to_vec();
    let frame = decode_server_frame(Generation::V2, 101, &body).unwrap();
    assert_eq!(
        frame,
        ServerFrame::Reply(Reply::Auth {
            code: ErrorCode::Unknown,
            msg: "x".into(),
            max_seq: 0
        })
    );
}
