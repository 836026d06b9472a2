//! Hand-computed bytes for a few bodies, so a schema drift cannot hide
//! behind symmetric encode/decode bugs.

use bytes::{Bytes, BytesMut};
use im_core::Generation;
use im_core::command::{Request, SendRequest};
use im_protocol::encode_request;

fn send() -> Request {
    Request::Send(SendRequest {
        client_msg_id: "c1".into(),
        conversation_id: "single_a_b".into(),
        receiver_id: "b".into(),
        group_id: String::new(),
        message_type: 1,
        content: Bytes::from_static(b"hi"),
        send_time: 123,
        extra: String::new(),
    })
}

fn hex(s: &str) -> Vec<u8> {
    s.split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect()
}

#[test]
fn v2_send_message_request_bytes() {
    let mut buf = BytesMut::new();
    assert_eq!(encode_request(Generation::V2, &send(), &mut buf), 200);
    let want = hex("0A 1B \
         12 02 63 31 \
         1A 0A 73 69 6E 67 6C 65 5F 61 5F 62 \
         2A 01 62 \
         38 01 \
         42 02 68 69 \
         48 7B");
    assert_eq!(&buf[..], &want[..]);
    // Contract §8: inside field 1 the first byte is the client_msg_id tag 0x12.
    assert_eq!(&buf[..3], &[0x0A, 0x1B, 0x12]);
}

#[test]
fn v1_send_message_request_bytes() {
    let Request::Send(mut s) = send() else {
        unreachable!()
    };
    s.extra = r#"{"k":"v"}"#.into();
    let mut buf = BytesMut::new();
    assert_eq!(
        encode_request(Generation::V1, &Request::Send(s), &mut buf),
        200
    );
    let want = hex("0A 02 63 31 \
         12 0A 73 69 6E 67 6C 65 5F 61 5F 62 \
         22 01 62 \
         30 01 \
         3A 02 68 69 \
         40 7B \
         52 06 0A 01 6B 12 01 76");
    assert_eq!(&buf[..], &want[..]);
}

#[test]
fn generated_enums_match_the_core_numbers() {
    use im_core::ErrorCode;
    use im_core::command::cmd;
    use im_protocol::pb::{v1, v2};

    let v2_pairs = [
        (v2::CommandType::CmdUnknown, cmd::UNKNOWN),
        (v2::CommandType::CmdHeartbeatReq, cmd::HEARTBEAT_REQ),
        (v2::CommandType::CmdHeartbeatRsp, cmd::HEARTBEAT_RSP),
        (v2::CommandType::CmdAuthReq, cmd::AUTH_REQ),
        (v2::CommandType::CmdAuthRsp, cmd::AUTH_RSP),
        (v2::CommandType::CmdKickOut, cmd::KICK_OUT),
        (v2::CommandType::CmdSendMsgReq, cmd::SEND_MSG_REQ),
        (v2::CommandType::CmdSendMsgRsp, cmd::SEND_MSG_RSP),
        (v2::CommandType::CmdPushMsg, cmd::PUSH_MSG),
        (v2::CommandType::CmdMsgAck, cmd::MSG_ACK),
        (v2::CommandType::CmdBatchMsg, cmd::BATCH_MSG),
        (v2::CommandType::CmdRevokeMsgReq, cmd::REVOKE_MSG_REQ),
        (v2::CommandType::CmdRevokeMsgRsp, cmd::REVOKE_MSG_RSP),
        (v2::CommandType::CmdRevokeMsgPush, cmd::REVOKE_MSG_PUSH),
        (v2::CommandType::CmdBatchSyncReq, cmd::SYNC_REQ),
        (v2::CommandType::CmdBatchSyncRsp, cmd::SYNC_RSP),
        (v2::CommandType::CmdSyncRangeReq, cmd::SYNC_RANGE_REQ),
        (v2::CommandType::CmdSyncRangeRsp, cmd::SYNC_RANGE_RSP),
        (v2::CommandType::CmdOnlineStatusReq, cmd::ONLINE_STATUS_REQ),
        (v2::CommandType::CmdOnlineStatusRsp, cmd::ONLINE_STATUS_RSP),
        (
            v2::CommandType::CmdStatusChangePush,
            cmd::STATUS_CHANGE_PUSH,
        ),
        (v2::CommandType::CmdReadReceiptReq, cmd::READ_RECEIPT_REQ),
        (v2::CommandType::CmdReadReceiptRsp, cmd::READ_RECEIPT_RSP),
        (v2::CommandType::CmdReadReceiptPush, cmd::READ_RECEIPT_PUSH),
        (v2::CommandType::CmdTypingStatusReq, cmd::TYPING_STATUS_REQ),
        (
            v2::CommandType::CmdTypingStatusPush,
            cmd::TYPING_STATUS_PUSH,
        ),
    ];
    for (wire, core) in v2_pairs {
        assert_eq!(wire as i32, core, "{wire:?}");
    }
    assert_eq!(v1::CommandType::CmdSyncReq as i32, cmd::SYNC_REQ);
    assert_eq!(v1::CommandType::CmdSyncRsp as i32, cmd::SYNC_RSP);
    assert!(
        v1::CommandType::try_from(303).is_err(),
        "v1 has no range sync"
    );
    // Every v1 command number (except the 300/301 names) is also a v2 one.
    for n in 0..=700 {
        if let Ok(c) = v1::CommandType::try_from(n) {
            assert!(v2::CommandType::try_from(n).is_ok(), "{c:?}");
        }
    }

    let codes = [
        (v2::ErrorCode::ErrSuccess, ErrorCode::Success),
        (v2::ErrorCode::ErrUnknown, ErrorCode::Unknown),
        (v2::ErrorCode::ErrInvalidParam, ErrorCode::InvalidParam),
        (v2::ErrorCode::ErrAuthFailed, ErrorCode::AuthFailed),
        (v2::ErrorCode::ErrTokenExpired, ErrorCode::TokenExpired),
        (
            v2::ErrorCode::ErrPermissionDenied,
            ErrorCode::PermissionDenied,
        ),
        (v2::ErrorCode::ErrUserNotExist, ErrorCode::UserNotExist),
        (
            v2::ErrorCode::ErrMessageTooLarge,
            ErrorCode::MessageTooLarge,
        ),
        (v2::ErrorCode::ErrSendTooFast, ErrorCode::SendTooFast),
        (
            v2::ErrorCode::ErrConversationNotExist,
            ErrorCode::ConversationNotExist,
        ),
    ];
    for (wire, core) in codes {
        assert_eq!(wire as i32, core.code());
        assert_eq!(ErrorCode::from_code(wire as i32), core);
        assert_eq!(
            v1::ErrorCode::try_from(wire as i32).map(|c| c as i32),
            Ok(wire as i32)
        );
    }
}
