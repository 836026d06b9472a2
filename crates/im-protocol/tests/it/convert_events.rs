//! Server pushes: encode (server side, per viewer) -> decode (client side).

use std::sync::Arc;

use im_core::command::{Event, UserStatus, cmd};
use im_core::model::StoredMessage;
use im_core::{ConversationType, Generation};
use im_protocol::{ServerFrame, decode_server_frame, pb};
use prost::Message;

use crate::fixtures::{GENS, event_bytes, event_msg, event_roundtrip, group, revoked, single};

#[test]
fn common_events_roundtrip() {
    let events = [
        Event::Typing {
            conversation_id: "single_alice_bob".into(),
            user_id: "alice".into(),
            status: 1,
        },
        Event::KickOut {
            reason: 1,
            message: "logged in elsewhere".into(),
        },
        Event::StatusChange(UserStatus {
            user_id: "bob".into(),
            online: true,
            platforms: vec!["iOS".into()],
            last_seen: 77,
        }),
        Event::StatusChange(UserStatus::default()),
        Event::ReadReceipt {
            server_msg_ids: vec!["srv1".into(), "srv2".into()],
            client_msg_ids: Vec::new(),
            sender_id: String::new(),
            conversation_id: "single_alice_bob".into(),
            user_id: "bob".into(),
            read_time: 5,
        },
    ];
    for generation in GENS {
        for event in &events {
            let (command, frame) = event_roundtrip(generation, event, "alice");
            assert_eq!(command, event.command());
            assert_eq!(frame, ServerFrame::Event(event.clone()), "{generation:?}");
        }
    }
}

#[test]
fn v2_message_push_carries_every_field() {
    for m in [single(1), group(2), revoked(3)] {
        let (command, frame) = event_roundtrip(Generation::V2, &event_msg(m.clone()), "bob");
        assert_eq!(command, cmd::PUSH_MSG);
        assert_eq!(frame, ServerFrame::Event(Event::Message(Arc::new(m))));
    }
}

#[test]
fn v2_is_read_is_true_only_for_the_sender() {
    let event = event_msg(single(1));
    for (viewer, want) in [("alice", true), ("bob", false), ("", false)] {
        let (_, body) = event_bytes(Generation::V2, &event, viewer);
        let info = pb::v2::PushMessage::decode(&body[..])
            .unwrap()
            .message
            .unwrap();
        assert_eq!(info.is_read, want, "viewer {viewer}");
        assert_eq!(info.status, 1);
        assert_eq!(info.create_time, info.server_time);
        assert_eq!(info.conversation_type, 1);
    }
}

#[test]
fn v1_message_id_is_per_viewer() {
    let event = event_msg(single(1));
    let id_for = |viewer: &str| {
        let (_, body) = event_bytes(Generation::V1, &event, viewer);
        let p = pb::v1::PushMessage::decode(&body[..]).unwrap();
        assert_eq!(p.client_msg_id, "cli1");
        p.message_id
    };
    assert_eq!(
        id_for("alice"),
        "cli1",
        "the sender's other devices know it by client_msg_id"
    );
    assert_eq!(id_for("bob"), "srv1");

    // A server-originated message without client id falls back to the server id.
    let system = StoredMessage {
        client_msg_id: String::new(),
        ..single(2)
    };
    let (_, body) = event_bytes(Generation::V1, &event_msg(system), "alice");
    assert_eq!(
        pb::v1::PushMessage::decode(&body[..]).unwrap().message_id,
        "srv2"
    );

    let revoke = Event::Revoked {
        server_msg_id: "srv1".into(),
        client_msg_id: "cli1".into(),
        sender_id: "alice".into(),
        conversation_id: "single_alice_bob".into(),
        revoked_by: "alice".into(),
        revoked_time: 9,
    };
    for (viewer, want) in [("alice", "cli1"), ("bob", "srv1")] {
        let (command, body) = event_bytes(Generation::V1, &revoke, viewer);
        assert_eq!(command, cmd::REVOKE_MSG_PUSH);
        assert_eq!(
            pb::v1::RevokeMessagePush::decode(&body[..])
                .unwrap()
                .message_id,
            want
        );
    }
    // v2 always uses the server id.
    let (_, body) = event_bytes(Generation::V2, &revoke, "alice");
    assert_eq!(
        pb::v2::RevokeMessagePush::decode(&body[..])
            .unwrap()
            .server_msg_id,
        "srv1"
    );
}

#[test]
fn v1_push_roundtrip_for_a_non_sender() {
    // v1 has no conversation_type/revoked on the wire; these fixtures need neither.
    for m in [single(1), group(2)] {
        let (command, frame) = event_roundtrip(Generation::V1, &event_msg(m.clone()), "dave");
        assert_eq!(command, cmd::PUSH_MSG);
        assert_eq!(frame, ServerFrame::Event(Event::Message(Arc::new(m))));
    }
}

#[test]
fn revoked_push_roundtrip_keeps_what_is_on_the_wire() {
    let revoke = Event::Revoked {
        server_msg_id: "srv1".into(),
        client_msg_id: "cli1".into(),
        sender_id: "alice".into(),
        conversation_id: "single_alice_bob".into(),
        revoked_by: "alice".into(),
        revoked_time: 9,
    };
    let expected = Event::Revoked {
        server_msg_id: "srv1".into(),
        client_msg_id: String::new(),
        sender_id: String::new(),
        conversation_id: "single_alice_bob".into(),
        revoked_by: "alice".into(),
        revoked_time: 9,
    };
    for generation in GENS {
        let (_, frame) = event_roundtrip(generation, &revoke, "bob");
        assert_eq!(frame, ServerFrame::Event(expected.clone()));
    }
}

#[test]
fn extra_json_to_v1_map_and_back() {
    let with_extra = |extra: &str| StoredMessage {
        extra: extra.into(),
        ..single(1)
    };
    let map_of = |extra: &str| {
        let (_, body) = event_bytes(Generation::V1, &event_msg(with_extra(extra)), "bob");
        pb::v1::PushMessage::decode(&body[..])
            .unwrap()
            .extra
            .into_iter()
            .collect::<Vec<_>>()
    };
    let kv = |k: &str, v: &str| (k.to_owned(), v.to_owned());
    assert_eq!(map_of(""), vec![]);
    assert_eq!(
        map_of(r#"{"b":"2","a":"1"}"#),
        vec![kv("a", "1"), kv("b", "2")]
    );
    assert_eq!(map_of("plain text"), vec![kv("extra", "plain text")]);
    assert_eq!(map_of(r#"{"n":1}"#), vec![kv("extra", r#"{"n":1}"#)]);
    assert_eq!(map_of("[1,2]"), vec![kv("extra", "[1,2]")]);

    // Client side: the map comes back as a canonical JSON object.
    let (_, body) = event_bytes(
        Generation::V1,
        &event_msg(with_extra(r#"{ "b" : "2", "a":"1" }"#)),
        "bob",
    );
    let ServerFrame::Event(Event::Message(m)) =
        decode_server_frame(Generation::V1, 202, &body).unwrap()
    else {
        panic!("not a push");
    };
    assert_eq!(m.extra, r#"{"a":"1","b":"2"}"#);
}

#[test]
fn decoded_conversation_type_falls_back_on_group_id() {
    for (wire_type, group_id, want) in [
        (0, "", ConversationType::Single),
        (0, "g1", ConversationType::Group),
        (99, "g1", ConversationType::Group),
        (3, "", ConversationType::ChatRoom),
        (1, "g1", ConversationType::Single),
    ] {
        let push = pb::v2::PushMessage {
            message: Some(pb::v2::MessageInfo {
                server_msg_id: "s".into(),
                group_id: group_id.into(),
                conversation_type: wire_type,
                ..Default::default()
            }),
        };
        let ServerFrame::Event(Event::Message(m)) =
            decode_server_frame(Generation::V2, 202, &push.encode_to_vec()).unwrap()
        else {
            panic!("not a push");
        };
        assert_eq!(m.conversation_type, want, "{wire_type} {group_id:?}");
    }
}

#[test]
fn batch_messages_decode_into_events() {
    let v2 = pb::v2::BatchMessages {
        messages: vec![
            pb::v2::PushMessage {
                message: Some(pb::v2::MessageInfo {
                    server_msg_id: "a".into(),
                    seq: 1,
                    ..Default::default()
                }),
            },
            pb::v2::PushMessage {
                message: Some(pb::v2::MessageInfo {
                    server_msg_id: "b".into(),
                    seq: 2,
                    ..Default::default()
                }),
            },
        ],
    };
    let ServerFrame::Batch(events) =
        decode_server_frame(Generation::V2, 204, &v2.encode_to_vec()).unwrap()
    else {
        panic!("not a batch");
    };
    let ids: Vec<_> = events
        .iter()
        .map(|e| match e {
            Event::Message(m) => (m.server_msg_id.clone(), m.seq),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(ids, vec![("a".to_owned(), 1), ("b".to_owned(), 2)]);

    let v1 = pb::v1::BatchMessages {
        messages: vec![pb::v1::PushMessage {
            message_id: "m1".into(),
            seq: 4,
            ..Default::default()
        }],
    };
    let ServerFrame::Batch(events) =
        decode_server_frame(Generation::V1, 204, &v1.encode_to_vec()).unwrap()
    else {
        panic!("not a batch");
    };
    assert!(matches!(&events[..], [Event::Message(m)] if m.server_msg_id == "m1" && m.seq == 4));

    let hole = pb::v2::BatchMessages {
        messages: vec![pb::v2::PushMessage { message: None }],
    };
    assert!(decode_server_frame(Generation::V2, 204, &hole.encode_to_vec()).is_err());
}

#[test]
fn read_receipt_ids_are_per_viewer_in_v1() {
    let receipt = Event::ReadReceipt {
        server_msg_ids: vec!["srv1".into(), "srv2".into()],
        client_msg_ids: vec!["cli1".into(), String::new()],
        sender_id: "alice".into(),
        conversation_id: "single_alice_bob".into(),
        user_id: "bob".into(),
        read_time: 5,
    };
    // The sender knows its messages by client id (falling back to the server
    // id when there is none); anyone else by server id.
    for (viewer, want) in [
        ("alice", vec!["cli1", "srv2"]),
        ("bob", vec!["srv1", "srv2"]),
    ] {
        let (command, body) = event_bytes(Generation::V1, &receipt, viewer);
        assert_eq!(command, cmd::READ_RECEIPT_PUSH);
        let p = pb::v1::ReadReceiptPush::decode(&body[..]).unwrap();
        assert_eq!(p.message_ids, want, "viewer {viewer}");
        assert_eq!(p.user_id, "bob");
        assert_eq!(p.read_time, 5);
    }
    // v2 always carries server ids.
    let (_, body) = event_bytes(Generation::V2, &receipt, "alice");
    let p = pb::v2::ReadReceiptPush::decode(&body[..]).unwrap();
    assert_eq!(p.server_msg_ids, vec!["srv1", "srv2"]);
    // Client side: what is not on the wire comes back empty.
    for generation in GENS {
        let (_, frame) = event_roundtrip(generation, &receipt, "bob");
        let ServerFrame::Event(Event::ReadReceipt {
            server_msg_ids,
            client_msg_ids,
            sender_id,
            ..
        }) = frame
        else {
            panic!("not a receipt");
        };
        assert_eq!(server_msg_ids, vec!["srv1", "srv2"]);
        assert!(client_msg_ids.is_empty());
        assert!(sender_id.is_empty());
    }
}
