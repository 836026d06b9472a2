//! Recall, read receipts, unread counts and typing.

use std::time::Duration;

use im_core::ErrorCode;
use im_core::command::{Event, Reply, Request};
use im_service::{NewGroup, ServiceConfig};

use crate::{Conn, Env, code_of, env, env_with, send, uid};

fn server_id(r: &Reply) -> String {
    match r {
        Reply::Send { server_msg_id, .. } => server_msg_id.clone(),
        other => panic!("{other:?}"),
    }
}

fn revoke(id: &str, conv: &str) -> Request {
    Request::Revoke {
        message_id: id.into(),
        conversation_id: conv.into(),
    }
}

fn read(ids: &[&str], conv: &str) -> Request {
    Request::ReadReceipt {
        message_ids: ids.iter().map(|s| (*s).to_owned()).collect(),
        conversation_id: conv.into(),
    }
}

fn revoked_ids(events: &[Event]) -> Vec<(String, String)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Revoked {
                server_msg_id,
                revoked_by,
                ..
            } => Some((server_msg_id.clone(), revoked_by.clone())),
            _ => None,
        })
        .collect()
}

/// (reader, sender, server ids, client ids) of the receipts in `events`.
fn receipts(events: &[Event]) -> Vec<(String, String, Vec<String>, Vec<String>)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::ReadReceipt {
                user_id,
                sender_id,
                server_msg_ids,
                client_msg_ids,
                ..
            } => Some((
                user_id.clone(),
                sender_id.clone(),
                server_msg_ids.clone(),
                client_msg_ids.clone(),
            )),
            _ => None,
        })
        .collect()
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

async fn unread(env: &Env, user: &str, conv: &str) -> i64 {
    env.services
        .conversations()
        .unread_count(&uid(user), conv)
        .await
        .unwrap()
}

/// A group of alice (owner), bob (admin), carol and dave.
async fn group(env: &Env) -> String {
    let groups = env.services.groups();
    let g = groups
        .create(
            &uid("alice"),
            NewGroup {
                name: "g".into(),
                members: strs(&["bob", "carol", "dave"]),
                ..NewGroup::default()
            },
        )
        .await
        .unwrap();
    groups
        .set_role(&uid("alice"), &g.group_id, "bob", im_core::GroupRole::Admin)
        .await
        .unwrap();
    format!("group_{}", g.group_id)
}

#[tokio::test]
async fn sender_recalls_within_the_window_and_everyone_is_told() {
    let env = env();
    let conv = "single_alice_bob";
    let mut alice = Conn::login(&env, "alice", "iOS").await;
    let mut alice_web = Conn::login(&env, "alice", "Web").await;
    let mut bob = Conn::login(&env, "bob", "iOS").await;
    let id = server_id(&send(&env, &mut alice, conv, "c1", "oops").await);
    send(&env, &mut alice, conv, "c2", "fine").await;
    assert_eq!(unread(&env, "bob", conv).await, 2);
    bob.pushes();
    alice_web.pushes();

    env.clock.advance(119_000);
    let r = alice.call(&env, revoke(&id, conv)).await.unwrap();
    assert_eq!(code_of(&r), ErrorCode::Success, "{r:?}");
    let want = vec![(id.clone(), "alice".to_owned())];
    // Every participant session, the revoker's own included.
    assert_eq!(revoked_ids(&alice.pushes()), want);
    assert_eq!(revoked_ids(&alice_web.pushes()), want);
    assert_eq!(revoked_ids(&bob.pushes()), want);
    // Recalls leave unread counts.
    assert_eq!(unread(&env, "bob", conv).await, 1);
    // Sync shows it recalled.
    let r = bob
        .call(
            &env,
            Request::SyncRange {
                request_id: "r".into(),
                conversation_id: conv.into(),
                start_seq: 1,
                end_seq: 2,
                count: 10,
            },
        )
        .await
        .unwrap();
    let Reply::SyncRange { messages, .. } = r else {
        panic!()
    };
    let rev = messages[0].message.revoked.as_ref().unwrap();
    assert_eq!(rev.by, "alice");
    assert!(messages[1].message.revoked.is_none());
    // Twice is fine and pushes nothing new.
    let r = alice.call(&env, revoke(&id, conv)).await.unwrap();
    assert_eq!(code_of(&r), ErrorCode::Success);
    assert!(bob.pushes().is_empty());
}

#[tokio::test]
async fn recall_is_refused_after_the_window_and_to_others() {
    let env = env();
    let conv = "single_alice_bob";
    let mut alice = Conn::login(&env, "alice", "iOS").await;
    let mut bob = Conn::login(&env, "bob", "iOS").await;
    let mut carol = Conn::login(&env, "carol", "iOS").await;
    let id = server_id(&send(&env, &mut alice, conv, "c1", "x").await);
    // The peer cannot recall it; an outsider cannot either.
    let r = bob.call(&env, revoke(&id, conv)).await.unwrap();
    assert_eq!(code_of(&r), ErrorCode::PermissionDenied);
    let r = carol.call(&env, revoke(&id, "")).await.unwrap();
    assert_eq!(code_of(&r), ErrorCode::PermissionDenied);
    // A wrong conversation or an unknown id is a bad request.
    let r = alice
        .call(&env, revoke(&id, "single_alice_carol"))
        .await
        .unwrap();
    assert_eq!(code_of(&r), ErrorCode::InvalidParam);
    let r = alice.call(&env, revoke("nope", conv)).await.unwrap();
    assert_eq!(code_of(&r), ErrorCode::InvalidParam);
    // Past the window the sender cannot either.
    env.clock.advance(120_001);
    let r = alice.call(&env, revoke(&id, conv)).await.unwrap();
    assert_eq!(code_of(&r), ErrorCode::PermissionDenied);
    assert!(env.store.all_messages()[0].revoked.is_none());
    assert!(revoked_ids(&bob.pushes()).is_empty());
}

#[tokio::test]
async fn a_v1_sender_recalls_by_client_id() {
    let env = env_with(ServiceConfig {
        allow_demo_tokens: true,
        recall_window: Duration::from_secs(10),
        ..ServiceConfig::default()
    });
    let mut alice = Conn::login(&env, "alice", "iOS").await;
    let mut bob = Conn::login(&env, "bob", "iOS").await;
    send(
        &env,
        &mut alice,
        "single_alice_bob",
        "17320000000001234",
        "x",
    )
    .await;
    // bob cannot use alice's client id (it names nothing of his).
    let r = bob
        .call(&env, revoke("17320000000001234", ""))
        .await
        .unwrap();
    assert_eq!(code_of(&r), ErrorCode::InvalidParam);
    let r = alice
        .call(&env, revoke("17320000000001234", ""))
        .await
        .unwrap();
    assert_eq!(code_of(&r), ErrorCode::Success, "{r:?}");
    let pushed = bob.pushes();
    assert!(
        matches!(
            &pushed[..],
            [Event::Message(_), Event::Revoked { client_msg_id, sender_id, .. }]
                if client_msg_id == "17320000000001234" && sender_id == "alice"
        ),
        "{pushed:?}"
    );
}

#[tokio::test]
async fn group_recall_by_members_and_managers() {
    let env = env();
    let conv = group(&env).await;
    let mut alice = Conn::login(&env, "alice", "iOS").await;
    let mut bob = Conn::login(&env, "bob", "iOS").await;
    let mut carol = Conn::login(&env, "carol", "iOS").await;
    let mut dave = Conn::login(&env, "dave", "iOS").await;
    let c1 = server_id(&send(&env, &mut carol, &conv, "c1", "one").await);
    let c2 = server_id(&send(&env, &mut carol, &conv, "c2", "two").await);
    let d1 = server_id(&send(&env, &mut dave, &conv, "d1", "three").await);
    env.clock.advance(10 * 60_000);
    // A member recalls someone else's message: refused, even in the window
    // (dave's is old, but carol is not its sender either way).
    let r = carol.call(&env, revoke(&d1, &conv)).await.unwrap();
    assert_eq!(code_of(&r), ErrorCode::PermissionDenied);
    // Its sender is past the window.
    let r = carol.call(&env, revoke(&c1, &conv)).await.unwrap();
    assert_eq!(code_of(&r), ErrorCode::PermissionDenied);
    // Owner and admin recall anyone's, at any time.
    let r = bob.call(&env, revoke(&c1, &conv)).await.unwrap();
    assert_eq!(code_of(&r), ErrorCode::Success, "{r:?}");
    let r = alice.call(&env, revoke(&d1, &conv)).await.unwrap();
    assert_eq!(code_of(&r), ErrorCode::Success, "{r:?}");
    for c in [&mut alice, &mut bob, &mut carol, &mut dave] {
        let got = revoked_ids(&c.pushes());
        assert_eq!(
            got,
            vec![
                (c1.clone(), "bob".to_owned()),
                (d1.clone(), "alice".to_owned())
            ]
        );
    }
    // Once kicked, not even one's own message.
    env.services
        .groups()
        .kick(&uid("alice"), &conv["group_".len()..], &strs(&["carol"]))
        .await
        .unwrap();
    env.clock.advance(-10 * 60_000);
    let r = carol.call(&env, revoke(&c2, &conv)).await.unwrap();
    assert_eq!(code_of(&r), ErrorCode::PermissionDenied);
}

#[tokio::test]
async fn one_to_one_receipts_move_the_cursor_and_tell_the_sender() {
    let env = env();
    let conv = "single_alice_bob";
    let mut alice = Conn::login(&env, "alice", "iOS").await;
    let mut bob = Conn::login(&env, "bob", "iOS").await;
    let mut bob_web = Conn::login(&env, "bob", "Web").await;
    let s1 = server_id(&send(&env, &mut alice, conv, "c1", "a").await);
    let s2 = server_id(&send(&env, &mut alice, conv, "c2", "b").await);
    let _s3 = server_id(&send(&env, &mut alice, conv, "c3", "c").await);
    bob_web.pushes();
    assert_eq!(unread(&env, "bob", conv).await, 3);

    let r = bob.call(&env, read(&[&s2], conv)).await.unwrap();
    assert_eq!(code_of(&r), ErrorCode::Success, "{r:?}");
    assert!(matches!(r, Reply::ReadReceipt { .. }));
    assert_eq!(unread(&env, "bob", conv).await, 1);
    // alice learns both messages up to the cursor, with her client ids.
    assert_eq!(
        receipts(&alice.pushes()),
        vec![(
            "bob".to_owned(),
            "alice".to_owned(),
            vec![s1.clone(), s2.clone()],
            strs(&["c1", "c2"])
        )]
    );
    // bob's other device hears it (multi-device unread); the reading session does not.
    let other = receipts(&bob_web.pushes());
    assert_eq!(other.len(), 1);
    assert_eq!(other[0].0, "bob");
    assert!(receipts(&bob.pushes()).is_empty());
    // Sync reflects the cursor.
    let r = bob
        .call(
            &env,
            Request::BatchSync {
                states: vec![],
                max_per_conversation: 10,
            },
        )
        .await
        .unwrap();
    let Reply::BatchSync { conversations, .. } = r else {
        panic!()
    };
    let flags: Vec<bool> = conversations[0]
        .messages
        .iter()
        .map(|m| m.is_read)
        .collect();
    assert_eq!(flags, vec![true, true, false]);
    // Never backwards, and nothing re-announced.
    let r = bob.call(&env, read(&[&s1], conv)).await.unwrap();
    assert_eq!(code_of(&r), ErrorCode::Success);
    assert!(alice.pushes().is_empty());
    assert_eq!(unread(&env, "bob", conv).await, 1);
    // Ids of another conversation, or unknown, are a bad request.
    let r = bob.call(&env, read(&["nope"], conv)).await.unwrap();
    assert_eq!(code_of(&r), ErrorCode::InvalidParam);
    // An outsider cannot mark it.
    let mut carol = Conn::login(&env, "carol", "iOS").await;
    let r = carol.call(&env, read(&[], conv)).await.unwrap();
    assert_eq!(code_of(&r), ErrorCode::PermissionDenied);
}

#[tokio::test]
async fn empty_receipt_marks_the_whole_conversation() {
    let env = env();
    let conv = "single_alice_bob";
    let mut alice = Conn::login(&env, "alice", "iOS").await;
    let mut bob = Conn::login(&env, "bob", "iOS").await;
    for i in 0..4 {
        send(&env, &mut alice, conv, &format!("c{i}"), "x").await;
    }
    send(&env, &mut bob, conv, "b0", "mine").await;
    assert_eq!(unread(&env, "bob", conv).await, 4);
    assert_eq!(unread(&env, "alice", conv).await, 1);
    let r = bob.call(&env, read(&[], conv)).await.unwrap();
    assert_eq!(code_of(&r), ErrorCode::Success);
    assert_eq!(unread(&env, "bob", conv).await, 0);
    let got = receipts(&alice.pushes());
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].3, strs(&["c0", "c1", "c2", "c3"]));
    // The list shows it too.
    let list = env
        .services
        .conversations()
        .list(&uid("bob"), 0)
        .await
        .unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].unread_count, 0);
    assert_eq!(list[0].read_seq, 5);
    assert_eq!(list[0].max_seq, 5);
}

#[tokio::test]
async fn group_receipts_go_to_each_sender_with_only_their_ids() {
    let env = env();
    let conv = group(&env).await;
    let mut alice = Conn::login(&env, "alice", "iOS").await;
    let mut bob = Conn::login(&env, "bob", "iOS").await;
    let mut carol = Conn::login(&env, "carol", "iOS").await;
    let mut dave = Conn::login(&env, "dave", "iOS").await;
    let a1 = server_id(&send(&env, &mut alice, &conv, "a1", "x").await);
    let c1 = server_id(&send(&env, &mut carol, &conv, "c1", "x").await);
    let a2 = server_id(&send(&env, &mut alice, &conv, "a2", "x").await);
    let b1 = server_id(&send(&env, &mut bob, &conv, "b1", "x").await);
    for c in [&mut alice, &mut bob, &mut carol, &mut dave] {
        c.pushes();
    }
    assert_eq!(unread(&env, "dave", &conv).await, 4);
    assert_eq!(unread(&env, "bob", &conv).await, 3);

    // dave reads up to a2 (seq 3).
    let r = dave.call(&env, read(&[&a2], &conv)).await.unwrap();
    assert_eq!(code_of(&r), ErrorCode::Success);
    assert_eq!(
        receipts(&alice.pushes()),
        vec![(
            "dave".to_owned(),
            "alice".to_owned(),
            vec![a1.clone(), a2.clone()],
            strs(&["a1", "a2"])
        )]
    );
    assert_eq!(
        receipts(&carol.pushes()),
        vec![(
            "dave".to_owned(),
            "carol".to_owned(),
            vec![c1.clone()],
            strs(&["c1"])
        )]
    );
    // bob's message is not read yet: he hears nothing.
    assert!(bob.pushes().is_empty());
    assert_eq!(unread(&env, "dave", &conv).await, 1);
    // The rest, by an empty list: only bob is concerned now.
    let r = dave.call(&env, read(&[], &conv)).await.unwrap();
    assert_eq!(code_of(&r), ErrorCode::Success);
    assert_eq!(
        receipts(&bob.pushes()),
        vec![(
            "dave".to_owned(),
            "bob".to_owned(),
            vec![b1.clone()],
            strs(&["b1"])
        )]
    );
    assert!(alice.pushes().is_empty());
    assert!(carol.pushes().is_empty());
    assert_eq!(unread(&env, "dave", &conv).await, 0);
    // Who read what.
    let cursors = env
        .services
        .conversations()
        .read_cursors(&uid("alice"), &conv)
        .await
        .unwrap();
    assert!(cursors.contains(&("dave".to_owned(), 4)));
}

#[tokio::test]
async fn unread_counts_follow_receipts_and_recalls() {
    let env = env();
    let conv = group(&env).await;
    let mut alice = Conn::login(&env, "alice", "iOS").await;
    let mut carol = Conn::login(&env, "carol", "iOS").await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(server_id(
            &send(&env, &mut alice, &conv, &format!("a{i}"), "x").await,
        ));
    }
    send(&env, &mut carol, &conv, "c0", "own").await;
    assert_eq!(unread(&env, "carol", &conv).await, 5);
    assert_eq!(unread(&env, "alice", &conv).await, 1);
    carol.call(&env, read(&[&ids[1]], &conv)).await.unwrap();
    assert_eq!(unread(&env, "carol", &conv).await, 3);
    // Recalling an unread message lowers the count; a read one does not.
    alice.call(&env, revoke(&ids[4], &conv)).await.unwrap();
    assert_eq!(unread(&env, "carol", &conv).await, 2);
    alice.call(&env, revoke(&ids[0], &conv)).await.unwrap();
    assert_eq!(unread(&env, "carol", &conv).await, 2);
    assert_eq!(unread(&env, "dave", &conv).await, 4);
    let list = env
        .services
        .conversations()
        .list(&uid("carol"), 10)
        .await
        .unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].conversation_id, conv);
    assert_eq!(list[0].unread_count, 2);
    assert_eq!(
        list[0]
            .last_message
            .as_ref()
            .map(|m| m.client_msg_id.as_str()),
        Some("c0")
    );
    // History pages newest first with per-user is_read.
    let page = env
        .services
        .conversations()
        .history(&uid("carol"), &conv, 6, 3)
        .await
        .unwrap();
    let seqs: Vec<(i64, bool)> = page.iter().map(|v| (v.message.seq, v.is_read)).collect();
    assert_eq!(seqs, vec![(5, false), (4, false), (3, false)]);
    let page = env
        .services
        .conversations()
        .history(&uid("carol"), &conv, 3, 10)
        .await
        .unwrap();
    let seqs: Vec<(i64, bool)> = page.iter().map(|v| (v.message.seq, v.is_read)).collect();
    assert_eq!(seqs, vec![(2, true), (1, true)]);
}

#[tokio::test]
async fn typing_reaches_the_other_participants_only_and_is_rate_limited() {
    let env = env_with(ServiceConfig {
        allow_demo_tokens: true,
        typing_min_interval: Duration::from_millis(50),
        ..ServiceConfig::default()
    });
    let conv = group(&env).await;
    let mut alice = Conn::login(&env, "alice", "iOS").await;
    let mut alice_web = Conn::login(&env, "alice", "Web").await;
    let mut bob = Conn::login(&env, "bob", "iOS").await;
    let mut carol = Conn::login(&env, "carol", "iOS").await;
    let mut erin = Conn::login(&env, "erin", "iOS").await;
    let typing = |c: &str, status| Request::Typing {
        conversation_id: c.into(),
        status,
    };
    let typed = |events: Vec<Event>| -> Vec<(String, String, i32)> {
        events
            .into_iter()
            .filter_map(|e| match e {
                Event::Typing {
                    conversation_id,
                    user_id,
                    status,
                } => Some((conversation_id, user_id, status)),
                _ => None,
            })
            .collect()
    };
    assert!(alice.call(&env, typing(&conv, 1)).await.is_none());
    let want = vec![(conv.clone(), "alice".to_owned(), 1)];
    assert_eq!(typed(bob.pushes()), want);
    assert_eq!(typed(carol.pushes()), want);
    assert!(alice_web.pushes().is_empty());
    assert!(erin.pushes().is_empty());
    // Too soon: dropped.
    alice.call(&env, typing(&conv, 0)).await;
    assert!(bob.pushes().is_empty());
    tokio::time::sleep(Duration::from_millis(60)).await;
    alice.call(&env, typing(&conv, 7)).await;
    let stopped = vec![(conv.clone(), "alice".to_owned(), 0)];
    assert_eq!(typed(bob.pushes()), stopped);
    assert_eq!(typed(carol.pushes()), stopped);
    // 1:1: the peer only.
    erin.call(&env, typing("single_bob_erin", 1)).await;
    assert_eq!(
        typed(bob.pushes()),
        vec![("single_bob_erin".to_owned(), "erin".to_owned(), 1)]
    );
    assert!(carol.pushes().is_empty());
    // A non-member's typing goes nowhere.
    tokio::time::sleep(Duration::from_millis(60)).await;
    erin.call(&env, typing(&conv, 1)).await;
    assert!(bob.pushes().is_empty());
    assert!(carol.pushes().is_empty());
    // Nothing is stored.
    assert!(env.store.all_messages().is_empty());
}
