//! Generation detection on plain `/ws` (`im_protocol::detect`), fed every
//! request shape of both generations.
//!
//! What must hold:
//! * a v1 body never fits only the v2 schema, and a v2 body never fits only
//!   the v1 schema;
//! * a v2 body is never detected as v1;
//! * a v1 body is detected as v2 only by one of the two documented
//!   tie-breaks, each checked here on the v1 reading of the body: a send
//!   that names no conversation (the server refuses it as v1), or a 300
//!   without `min_seq`/`limit` (the v1 SDK never sends 300 on a WebSocket);
//! * what the SDKs send is decided: a v1 send (the v1 SDK always sets
//!   `conversation_id`, IMMessageManager.swift:281@5529e01), a v2 send with a
//!   conversation (IMMessageManager.swift:291-292@07bf3fe), every v2 300 and
//!   303 (IMMessageSyncManager.swift:259-261@07bf3fe);
//! * commands encoded alike stay undecided and decode alike;
//! * whatever is detected as `g` decodes as `g`, on any bytes.

use bytes::{Bytes, BytesMut};
use im_core::Generation;
use im_core::command::{Request, SendRequest, cmd};
use im_protocol::detect::{Evidence, detect, evidence};
use im_protocol::{decode_request, encode_request};
use proptest::prelude::*;

use crate::props::{apply, command, config, edits, request};

fn encode(g: Generation, req: &Request) -> (i32, BytesMut) {
    let mut body = BytesMut::new();
    let c = encode_request(g, req, &mut body);
    (c, body)
}

fn names_conversation(s: &SendRequest) -> bool {
    !(s.conversation_id.is_empty() && s.receiver_id.is_empty() && s.group_id.is_empty())
}

const ALIKE: [i32; 7] = [
    cmd::HEARTBEAT_REQ,
    cmd::AUTH_REQ,
    cmd::MSG_ACK,
    cmd::REVOKE_MSG_REQ,
    cmd::ONLINE_STATUS_REQ,
    cmd::READ_RECEIPT_REQ,
    cmd::TYPING_STATUS_REQ,
];

fn check_v1(req: &Request) {
    let (c, body) = encode(Generation::V1, req);
    assert_ne!(
        evidence(c, &body),
        Evidence::Only(Generation::V2),
        "{req:?}"
    );
    let detected = detect(c, &body);
    if detected == Some(Generation::V2) {
        // Only the documented tie-breaks, checked on the v1 reading.
        match decode_request(Generation::V1, c, &body).unwrap() {
            Request::Send(s) => assert!(!names_conversation(&s), "{req:?}"),
            Request::SyncInbox {
                min_seq: 0,
                limit: 0,
                ..
            } => {}
            other => panic!("v1 {other:?} detected as v2"),
        }
    }
    match req {
        Request::Send(s) if !s.conversation_id.is_empty() => {
            assert_eq!(detected, Some(Generation::V1), "{req:?}");
        }
        Request::SyncInbox { min_seq, limit, .. } if *min_seq != 0 || *limit != 0 => {
            assert_eq!(detected, Some(Generation::V1), "{req:?}");
        }
        _ => {}
    }
    if ALIKE.contains(&c) {
        assert_eq!(detected, None);
    }
}

fn check_v2(req: &Request) {
    let (c, body) = encode(Generation::V2, req);
    assert_ne!(
        evidence(c, &body),
        Evidence::Only(Generation::V1),
        "{req:?}"
    );
    let detected = detect(c, &body);
    assert_ne!(detected, Some(Generation::V1), "{req:?}");
    match req {
        Request::Send(s) if names_conversation(s) => {
            assert_eq!(detected, Some(Generation::V2), "{req:?}");
        }
        Request::BatchSync { .. } | Request::SyncRange { .. } => {
            assert_eq!(detected, Some(Generation::V2), "{req:?}");
        }
        _ => {}
    }
    if ALIKE.contains(&c) {
        assert_eq!(detected, None);
    }
}

/// A v1 send whose `client_msg_id` is the bytes of a v2 `MessageInfo` (when
/// they are UTF-8): the bodies that are valid in both generations.
fn v1_send_shaped_like_v2() -> impl Strategy<Value = Option<Request>> {
    request(Generation::V2).prop_map(|req| {
        let Request::Send(_) = &req else {
            return None;
        };
        let (_, body) = encode(Generation::V2, &req);
        // Field 1's content: skip the key byte and the length varint.
        let mut rest = body.get(1..)?;
        while rest.first()? & 0x80 != 0 {
            rest = rest.get(1..)?;
        }
        let info = String::from_utf8(rest.get(1..)?.to_vec()).ok()?;
        Some(Request::Send(SendRequest {
            client_msg_id: info,
            conversation_id: String::new(),
            receiver_id: String::new(),
            group_id: String::new(),
            message_type: 0,
            content: Bytes::new(),
            send_time: 0,
            extra: String::new(),
        }))
    })
}

proptest! {
    #![proptest_config(config(1024))]

    #[test]
    fn v1_requests_are_never_taken_for_v2(req in request(Generation::V1)) {
        check_v1(&req);
    }

    #[test]
    fn v2_requests_are_never_taken_for_v1(req in request(Generation::V2)) {
        check_v2(&req);
    }

    #[test]
    fn v1_sends_that_read_as_v2_are_refused_as_v1(req in v1_send_shaped_like_v2()) {
        if let Some(req) = req {
            check_v1(&req);
        }
    }

    /// Requests of either generation, damaged, under any command: a
    /// detected generation always decodes the body.
    #[test]
    fn detected_generation_decodes(g in prop_oneof![Just(Generation::V1), Just(Generation::V2)]
                                       .prop_flat_map(|g| (Just(g), request(g))),
                                   edits in edits(), other in command()) {
        let (g, req) = g;
        let (c, mut body) = encode(g, &req);
        apply(&mut body, &edits);
        for command in [c, other] {
            if let Some(d) = detect(command, &body) {
                prop_assert!(decode_request(d, command, &body).is_ok());
            }
        }
        if ALIKE.contains(&c) {
            prop_assert_eq!(
                decode_request(Generation::V1, c, &body).ok(),
                decode_request(Generation::V2, c, &body).ok()
            );
        }
    }

    #[test]
    fn noise_is_detected_only_when_it_decodes(command in command(),
                                              body in prop::collection::vec(any::<u8>(), 0..64)) {
        if let Some(d) = detect(command, &body) {
            prop_assert!(decode_request(d, command, &body).is_ok());
        }
    }
}
