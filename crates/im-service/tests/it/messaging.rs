use im_core::ErrorCode;
use im_core::command::{Event, Reply, Request, SyncState};
use im_service::{Outbound, ServiceConfig};

use crate::{Conn, env, env_with, text};

fn pushed(out: &[Outbound]) -> Vec<String> {
    out.iter()
        .filter_map(|o| match o {
            Outbound::Event(e) => match e.as_ref() {
                Event::Message(m) => Some(String::from_utf8_lossy(&m.content).into_owned()),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn send_pushes_to_peer_and_other_devices_not_sender() {
    let env = env();
    let mut alice = Conn::login(&env, "alice", "iOS").await;
    let mut alice_web = Conn::login(&env, "alice", "Web").await;
    let mut bob = Conn::login(&env, "bob", "iOS").await;
    let r = alice
        .call(&env, text("single_alice_bob", "c1", "hi"))
        .await
        .unwrap();
    match r {
        Reply::Send {
            code,
            seq,
            client_msg_id,
            ref server_msg_id,
            ..
        } => {
            assert_eq!(code, ErrorCode::Success);
            assert_eq!(seq, 1);
            assert_eq!(client_msg_id, "c1");
            assert!(!server_msg_id.is_empty());
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(pushed(&bob.events()), vec!["hi"]);
    assert_eq!(pushed(&alice_web.events()), vec!["hi"]);
    assert!(pushed(&alice.events()).is_empty());
}

#[tokio::test]
async fn retry_returns_original_and_stores_nothing() {
    let env = env();
    let mut alice = Conn::login(&env, "alice", "iOS").await;
    let mut bob = Conn::login(&env, "bob", "iOS").await;
    let first = alice
        .call(&env, text("single_alice_bob", "c1", "hi"))
        .await
        .unwrap();
    let again = alice
        .call(&env, text("single_alice_bob", "c1", "hi"))
        .await
        .unwrap();
    assert_eq!(first, again);
    let next = alice
        .call(&env, text("single_alice_bob", "c2", "yo"))
        .await
        .unwrap();
    assert!(matches!(next, Reply::Send { seq: 2, .. }), "{next:?}");
    assert_eq!(env.store.all_messages().len(), 2);
    assert_eq!(pushed(&bob.events()), vec!["hi", "yo"]);
}

#[tokio::test]
async fn bad_sends_get_error_codes_echoing_client_id() {
    let env = env_with(ServiceConfig {
        allow_demo_tokens: true,
        max_content_bytes: 10,
        ..ServiceConfig::default()
    });
    let mut alice = Conn::login(&env, "alice", "iOS").await;
    let cases = [
        (
            text("single_alice_bob", "c1", "this is far too long"),
            ErrorCode::MessageTooLarge,
        ),
        (
            text("single_bob_carol", "c2", "x"),
            ErrorCode::PermissionDenied,
        ),
        (text("nonsense", "c3", "x"), ErrorCode::InvalidParam),
        (
            text("single_alice_bob", "bad id", "x"),
            ErrorCode::InvalidParam,
        ),
    ];
    for (req, want) in cases {
        let cid = match &req {
            Request::Send(s) => s.client_msg_id.clone(),
            _ => unreachable!(),
        };
        match alice.call(&env, req).await.unwrap() {
            Reply::Send {
                code,
                client_msg_id,
                ..
            } => {
                assert_eq!(code, want);
                assert_eq!(client_msg_id, cid);
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(env.store.all_messages().is_empty());
}

#[tokio::test]
async fn requests_before_auth_are_refused() {
    let env = env();
    let mut c = Conn::new(&env);
    let r = c
        .call(&env, text("single_alice_bob", "c1", "x"))
        .await
        .unwrap();
    assert!(
        matches!(&r, Reply::Send { code: ErrorCode::AuthFailed, client_msg_id, .. } if client_msg_id == "c1"),
        "{r:?}"
    );
    let hb = c
        .call(&env, Request::Heartbeat { client_time: 0 })
        .await
        .unwrap();
    assert!(matches!(hb, Reply::Heartbeat { .. }));
    let bad = c
        .call(
            &env,
            Request::Auth {
                user_id: "alice".into(),
                token: "garbage".into(),
                platform: "iOS".into(),
            },
        )
        .await
        .unwrap();
    assert!(matches!(
        bad,
        Reply::Auth {
            code: ErrorCode::AuthFailed,
            ..
        }
    ));
    let mismatch = c
        .call(
            &env,
            Request::Auth {
                user_id: "bob".into(),
                token: "demo_token_alice".into(),
                platform: "iOS".into(),
            },
        )
        .await
        .unwrap();
    assert!(matches!(
        mismatch,
        Reply::Auth {
            code: ErrorCode::AuthFailed,
            ..
        }
    ));
}

#[tokio::test]
async fn batch_sync_after_cursor_exactly_once_and_caps() {
    let env = env();
    let mut alice = Conn::login(&env, "alice", "iOS").await;
    for i in 0..5 {
        alice
            .call(
                &env,
                text("single_alice_bob", &format!("c{i}"), &format!("m{i}")),
            )
            .await
            .unwrap();
    }
    alice
        .call(&env, text("single_alice_carol", "d0", "to carol"))
        .await
        .unwrap();
    let mut bob = Conn::login(&env, "bob", "Android").await;
    let r = bob
        .call(
            &env,
            Request::BatchSync {
                states: vec![],
                max_per_conversation: 3,
            },
        )
        .await
        .unwrap();
    let Reply::BatchSync {
        conversations,
        total,
        ..
    } = r
    else {
        panic!()
    };
    assert_eq!(total, 3);
    assert_eq!(conversations.len(), 1);
    let c = &conversations[0];
    assert_eq!(c.conversation_id, "single_alice_bob");
    assert_eq!(c.max_seq, 3);
    assert!(c.has_more);
    assert!(c.messages.iter().all(|m| !m.is_read));
    let r = bob
        .call(
            &env,
            Request::BatchSync {
                states: vec![SyncState {
                    conversation_id: "single_alice_bob".into(),
                    last_seq: 3,
                }],
                max_per_conversation: 100,
            },
        )
        .await
        .unwrap();
    let Reply::BatchSync { conversations, .. } = r else {
        panic!()
    };
    let seqs: Vec<i64> = conversations[0]
        .messages
        .iter()
        .map(|m| m.message.seq)
        .collect();
    assert_eq!(seqs, vec![4, 5]);
    assert!(!conversations[0].has_more);
    // Own messages are read for the sender.
    let r = alice
        .call(
            &env,
            Request::BatchSync {
                states: vec![],
                max_per_conversation: 0,
            },
        )
        .await
        .unwrap();
    let Reply::BatchSync {
        conversations,
        total,
        ..
    } = r
    else {
        panic!()
    };
    assert_eq!(total, 6);
    assert!(
        conversations
            .iter()
            .flat_map(|c| &c.messages)
            .all(|m| m.is_read)
    );
}

#[tokio::test]
async fn range_and_inbox_sync() {
    let env = env();
    let mut alice = Conn::login(&env, "alice", "iOS").await;
    for i in 0..6 {
        alice
            .call(&env, text("single_alice_bob", &format!("c{i}"), "x"))
            .await
            .unwrap();
    }
    let mut bob = Conn::login(&env, "bob", "iOS").await;
    let r = bob
        .call(
            &env,
            Request::SyncRange {
                request_id: "R".into(),
                conversation_id: "single_alice_bob".into(),
                start_seq: 2,
                end_seq: 5,
                count: 2,
            },
        )
        .await
        .unwrap();
    let Reply::SyncRange {
        messages,
        has_more,
        end_seq,
        request_id,
        ..
    } = r
    else {
        panic!()
    };
    assert_eq!(request_id, "R");
    assert_eq!(
        messages.iter().map(|m| m.message.seq).collect::<Vec<_>>(),
        vec![2, 3]
    );
    assert!(has_more);
    assert_eq!(end_seq, 3);
    let mut carol = Conn::login(&env, "carol", "iOS").await;
    let r = carol
        .call(
            &env,
            Request::SyncRange {
                request_id: "R".into(),
                conversation_id: "single_alice_bob".into(),
                start_seq: 1,
                end_seq: 5,
                count: 10,
            },
        )
        .await
        .unwrap();
    assert!(
        matches!(
            r,
            Reply::SyncRange {
                code: ErrorCode::PermissionDenied,
                ..
            }
        ),
        "{r:?}"
    );
    let r = bob
        .call(
            &env,
            Request::SyncInbox {
                min_seq: 0,
                max_seq: 0,
                limit: 4,
            },
        )
        .await
        .unwrap();
    let Reply::SyncInbox {
        messages,
        server_max_seq,
        has_more,
        ..
    } = r
    else {
        panic!()
    };
    assert_eq!(messages.len(), 4);
    assert_eq!(server_max_seq, 4);
    assert!(has_more);
    let r = bob
        .call(
            &env,
            Request::SyncInbox {
                min_seq: 4,
                max_seq: 0,
                limit: 4,
            },
        )
        .await
        .unwrap();
    let Reply::SyncInbox {
        messages,
        server_max_seq,
        has_more,
        ..
    } = r
    else {
        panic!()
    };
    assert_eq!(messages.len(), 2);
    assert_eq!(server_max_seq, 6);
    assert!(!has_more);
}

#[tokio::test]
async fn per_platform_login_kicks_the_old_session() {
    let env = env();
    let mut old = Conn::login(&env, "alice", "iOS").await;
    let _new = Conn::login(&env, "alice", "iOS").await;
    let ev = old.events();
    assert!(ev.iter().any(|o| matches!(o, Outbound::Event(e) if matches!(e.as_ref(), Event::KickOut { reason: 1, .. }))));
    // The old session no longer gets pushes.
    let mut bob = Conn::login(&env, "bob", "iOS").await;
    bob.call(&env, text("single_alice_bob", "b1", "hey"))
        .await
        .unwrap();
    assert!(pushed(&old.events()).is_empty());
}

#[tokio::test]
async fn ack_records_delivery_for_the_device() {
    let env = env();
    let mut alice = Conn::login(&env, "alice", "iOS").await;
    let mut bob = Conn::login(&env, "bob", "Android").await;
    let Reply::Send { server_msg_id, .. } = alice
        .call(&env, text("single_alice_bob", "c1", "x"))
        .await
        .unwrap()
    else {
        panic!()
    };
    assert!(
        bob.call(
            &env,
            Request::Ack {
                message_id: server_msg_id,
                seq: 0
            }
        )
        .await
        .is_none()
    );
    use im_core::ports::MessageStore;
    let bob_id = im_core::UserId::parse("bob").unwrap();
    assert_eq!(
        env.store
            .delivered_seq(&bob_id, "Android", "single_alice_bob")
            .await
            .unwrap(),
        1
    );
    // An ack for a message bob cannot see records nothing.
    let mut carol = Conn::login(&env, "carol", "iOS").await;
    let Reply::Send { server_msg_id, .. } = carol
        .call(&env, text("single_alice_carol", "x1", "x"))
        .await
        .unwrap()
    else {
        panic!()
    };
    bob.call(
        &env,
        Request::Ack {
            message_id: server_msg_id,
            seq: 0,
        },
    )
    .await;
    assert_eq!(
        env.store
            .delivered_seq(&bob_id, "Android", "single_alice_carol")
            .await
            .unwrap(),
        0
    );
    let _ = env.clock;
}

/// The client msg ids of the messages pushed to `c` so far.
fn pushed_ids(c: &mut Conn) -> Vec<String> {
    c.pushes()
        .into_iter()
        .filter_map(|e| match e {
            Event::Message(m) => Some(m.client_msg_id.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_store_outage_past_the_writers_retries_gets_no_reply_and_the_resend_recovers() {
    let env = env();
    let mut alice = Conn::login(&env, "alice", "iOS").await;
    let mut bob = Conn::login(&env, "bob", "iOS").await;
    // More failures than the writer retries (4): the batch fails for good
    // with a retryable error.
    env.store.fail_next_appends(5);
    let r = alice.call(&env, text("single_alice_bob", "c1", "hi")).await;
    assert_eq!(r, None, "a transient store failure is not answered");
    assert!(pushed_ids(&mut bob).is_empty());
    // The SDK resends the same request: stored once, answered, pushed once.
    let r = alice
        .call(&env, text("single_alice_bob", "c1", "hi"))
        .await
        .unwrap();
    assert_eq!(crate::code_of(&r), ErrorCode::Success);
    assert_eq!(pushed_ids(&mut bob), ["c1"]);
}

#[tokio::test]
async fn a_send_while_shutting_down_gets_no_reply_but_refusals_keep_their_code() {
    let mut env = env();
    let mut alice = Conn::login(&env, "alice", "iOS").await;
    // The writer is gone, as during shutdown.
    env._writer_tasks.abort_all();
    while env._writer_tasks.join_next().await.is_some() {}
    let r = alice.call(&env, text("single_alice_bob", "c1", "hi")).await;
    assert_eq!(
        r, None,
        "shutting down is transient: the client resends elsewhere"
    );
    // A request a retry cannot fix is still refused with its code.
    let r = alice
        .call(&env, text("single_carol_dave", "c2", "hi"))
        .await
        .unwrap();
    assert_eq!(crate::code_of(&r), ErrorCode::PermissionDenied);
}
