//! Groups: management permissions and group messaging.

use im_core::command::{Event, Reply, Request, SyncState};
use im_core::{ConversationType, ErrorCode, GroupPatch, GroupRole};
use im_service::{NewGroup, ServiceConfig, ServiceError};

use crate::{Conn, Env, code_of, env, env_with, msg_of, send, uid};

/// alice owns a group with bob and carol; returns its conversation id.
async fn trio(env: &Env) -> (String, String) {
    let g = env
        .services
        .groups()
        .create(
            &uid("alice"),
            NewGroup {
                name: "trio".into(),
                members: vec!["bob".into(), "carol".into(), "bob".into(), "alice".into()],
                ..NewGroup::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(g.member_count, 3);
    assert_eq!(g.owner_id, "alice");
    assert_eq!(g.status, 0);
    let conv = format!("group_{}", g.group_id);
    (g.group_id, conv)
}

fn messages(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Message(m) => Some(String::from_utf8_lossy(&m.content).into_owned()),
            _ => None,
        })
        .collect()
}

async fn group_convs(env: &Env, conn: &mut Conn) -> Vec<String> {
    let r = conn
        .call(
            env,
            Request::BatchSync {
                states: vec![],
                max_per_conversation: 100,
            },
        )
        .await
        .unwrap();
    let Reply::BatchSync { conversations, .. } = r else {
        panic!("{r:?}")
    };
    conversations
        .into_iter()
        .map(|c| c.conversation_id)
        .filter(|c| c.starts_with("group_"))
        .collect()
}

#[tokio::test]
async fn group_messages_fan_out_to_members_with_one_gapless_seq() {
    let env = env();
    let (gid, conv) = trio(&env).await;
    let mut alice = Conn::login(&env, "alice", "iOS").await;
    let mut alice_web = Conn::login(&env, "alice", "Web").await;
    let mut bob = Conn::login(&env, "bob", "iOS").await;
    let mut carol = Conn::login(&env, "carol", "iOS").await;
    let mut dave = Conn::login(&env, "dave", "iOS").await;

    let r = send(&env, &mut alice, &conv, "a1", "hello all").await;
    assert!(
        matches!(
            &r,
            Reply::Send {
                code: ErrorCode::Success,
                seq: 1,
                ..
            }
        ),
        "{r:?}"
    );
    let r = send(&env, &mut bob, &conv, "b1", "hi").await;
    assert!(matches!(&r, Reply::Send { seq: 2, .. }), "{r:?}");

    assert_eq!(messages(&alice.pushes()), vec!["hi"]);
    assert_eq!(messages(&alice_web.pushes()), vec!["hello all", "hi"]);
    assert_eq!(messages(&bob.pushes()), vec!["hello all"]);
    assert_eq!(messages(&carol.pushes()), vec!["hello all", "hi"]);
    assert!(dave.pushes().is_empty());

    let stored = env.store.all_messages();
    assert_eq!(stored.len(), 2);
    for m in &stored {
        assert_eq!(m.group_id, gid);
        assert_eq!(m.conversation_type, ConversationType::Group);
        assert_eq!(m.conversation_id, conv);
        assert!(m.receiver_id.is_empty());
    }

    // Batch sync covers the group for every member, never for outsiders.
    for c in [&mut alice, &mut bob, &mut carol] {
        assert_eq!(group_convs(&env, c).await, vec![conv.clone()]);
    }
    assert!(group_convs(&env, &mut dave).await.is_empty());

    // group_id alone addresses the group too; a mismatch is refused.
    let r = bob
        .call(
            &env,
            Request::Send(im_core::command::SendRequest {
                client_msg_id: "b2".into(),
                group_id: gid.clone(),
                message_type: 1,
                content: bytes::Bytes::from_static(b"by group id"),
                ..Default::default()
            }),
        )
        .await
        .unwrap();
    assert!(matches!(&r, Reply::Send { seq: 3, .. }), "{r:?}");
    let r = bob
        .call(
            &env,
            Request::Send(im_core::command::SendRequest {
                client_msg_id: "b3".into(),
                conversation_id: conv.clone(),
                group_id: "other".into(),
                message_type: 1,
                ..Default::default()
            }),
        )
        .await
        .unwrap();
    assert_eq!(code_of(&r), ErrorCode::InvalidParam);
}

#[tokio::test]
async fn a_non_member_cannot_send_sync_or_type_in_a_group() {
    let env = env();
    let (_, conv) = trio(&env).await;
    let mut bob = Conn::login(&env, "bob", "iOS").await;
    let mut dave = Conn::login(&env, "dave", "iOS").await;
    let r = send(&env, &mut dave, &conv, "d1", "let me in").await;
    assert!(
        matches!(&r, Reply::Send { code: ErrorCode::PermissionDenied, client_msg_id, .. } if client_msg_id == "d1"),
        "{r:?}"
    );
    assert!(env.store.all_messages().is_empty());
    let r = dave
        .call(
            &env,
            Request::SyncRange {
                request_id: "r".into(),
                conversation_id: conv.clone(),
                start_seq: 1,
                end_seq: 10,
                count: 10,
            },
        )
        .await
        .unwrap();
    assert_eq!(code_of(&r), ErrorCode::PermissionDenied);
    dave.call(
        &env,
        Request::Typing {
            conversation_id: conv.clone(),
            status: 1,
        },
    )
    .await;
    assert!(bob.pushes().is_empty());
    // An unknown group does not exist.
    let r = send(&env, &mut dave, "group_nope", "d2", "x").await;
    assert_eq!(code_of(&r), ErrorCode::ConversationNotExist);
}

#[tokio::test]
async fn muted_members_and_mute_all() {
    let env = env();
    let (gid, conv) = trio(&env).await;
    let groups = env.services.groups();
    let (alice_id, bob_id, carol_id) = (uid("alice"), uid("bob"), uid("carol"));
    let mut alice = Conn::login(&env, "alice", "iOS").await;
    let mut bob = Conn::login(&env, "bob", "iOS").await;
    let mut carol = Conn::login(&env, "carol", "iOS").await;

    let now = env.services.messaging.clock().now_ms();
    groups
        .mute_member(&alice_id, &gid, "bob", now + 60_000)
        .await
        .unwrap();
    let r = send(&env, &mut bob, &conv, "b1", "x").await;
    assert_eq!(code_of(&r), ErrorCode::PermissionDenied);
    assert_eq!(msg_of(&r), "muted");
    // The mute ends by itself.
    env.clock.advance(60_001);
    let r = send(&env, &mut bob, &conv, "b2", "x").await;
    assert_eq!(code_of(&r), ErrorCode::Success, "{r:?}");
    // Mute again, and lift it explicitly.
    groups
        .mute_member_for(&alice_id, &gid, "bob", std::time::Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(
        code_of(&send(&env, &mut bob, &conv, "b3", "x").await),
        ErrorCode::PermissionDenied
    );
    groups.unmute_member(&alice_id, &gid, "bob").await.unwrap();
    assert_eq!(
        code_of(&send(&env, &mut bob, &conv, "b4", "x").await),
        ErrorCode::Success
    );

    // Mute everyone: members are silenced, owner and admins are not.
    groups
        .set_role(&alice_id, &gid, "bob", GroupRole::Admin)
        .await
        .unwrap();
    let g = groups.mute_all(&bob_id, &gid, true).await.unwrap();
    assert!(g.mute_all);
    let r = send(&env, &mut carol, &conv, "c1", "x").await;
    assert_eq!(code_of(&r), ErrorCode::PermissionDenied);
    assert_eq!(msg_of(&r), "muted");
    assert_eq!(
        code_of(&send(&env, &mut bob, &conv, "b5", "x").await),
        ErrorCode::Success
    );
    assert_eq!(
        code_of(&send(&env, &mut alice, &conv, "a1", "x").await),
        ErrorCode::Success
    );
    // A member may not lift it; an admin may.
    assert!(matches!(
        groups.mute_all(&carol_id, &gid, false).await,
        Err(ServiceError::PermissionDenied(_))
    ));
    groups.mute_all(&bob_id, &gid, false).await.unwrap();
    assert_eq!(
        code_of(&send(&env, &mut carol, &conv, "c2", "x").await),
        ErrorCode::Success
    );
    // Mute rules: nobody mutes the owner; an admin does not mute an admin;
    // the end must be in the future.
    let later = env.services.messaging.clock().now_ms() + 1000;
    assert!(matches!(
        groups.mute_member(&bob_id, &gid, "alice", later).await,
        Err(ServiceError::PermissionDenied(_))
    ));
    assert!(matches!(
        groups.mute_member(&carol_id, &gid, "bob", later).await,
        Err(ServiceError::PermissionDenied(_))
    ));
    assert!(matches!(
        groups.mute_member(&alice_id, &gid, "bob", 5).await,
        Err(ServiceError::InvalidParam(_))
    ));
}

#[tokio::test]
async fn a_kicked_member_loses_send_sync_and_history_at_once() {
    let env = env();
    let (gid, conv) = trio(&env).await;
    let mut alice = Conn::login(&env, "alice", "iOS").await;
    let mut bob = Conn::login(&env, "bob", "iOS").await;
    // bob is in, and his send warms the member cache.
    send(&env, &mut bob, &conv, "b1", "before").await;
    assert_eq!(group_convs(&env, &mut bob).await, vec![conv.clone()]);

    let removed = env
        .services
        .groups()
        .kick(&uid("alice"), &gid, &["bob".into(), "nobody".into()])
        .await
        .unwrap();
    assert_eq!(removed, vec!["bob".to_owned()]);

    let r = send(&env, &mut bob, &conv, "b2", "after").await;
    assert_eq!(code_of(&r), ErrorCode::PermissionDenied);
    assert!(group_convs(&env, &mut bob).await.is_empty());
    // Even with his old cursor, nothing comes back.
    let r = bob
        .call(
            &env,
            Request::BatchSync {
                states: vec![SyncState {
                    conversation_id: conv.clone(),
                    last_seq: 0,
                }],
                max_per_conversation: 100,
            },
        )
        .await
        .unwrap();
    assert!(matches!(&r, Reply::BatchSync { conversations, .. } if conversations.is_empty()));
    let r = bob
        .call(
            &env,
            Request::SyncRange {
                request_id: "r".into(),
                conversation_id: conv.clone(),
                start_seq: 1,
                end_seq: 5,
                count: 5,
            },
        )
        .await
        .unwrap();
    assert_eq!(code_of(&r), ErrorCode::PermissionDenied);
    assert!(matches!(
        env.services
            .conversations()
            .history(&uid("bob"), &conv, 0, 10)
            .await,
        Err(ServiceError::PermissionDenied(_))
    ));
    // Later group messages do not reach him.
    send(&env, &mut alice, &conv, "a1", "secret").await;
    assert!(messages(&bob.pushes()).is_empty());
    assert!(
        env.services
            .groups()
            .my_groups(&uid("bob"))
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn kick_permissions() {
    let env = env();
    let (gid, _) = trio(&env).await;
    let groups = env.services.groups();
    let (alice, bob, carol) = (uid("alice"), uid("bob"), uid("carol"));
    groups
        .invite(&carol, &gid, &["dave".into(), "erin".into()])
        .await
        .unwrap();
    groups
        .set_role(&alice, &gid, "bob", GroupRole::Admin)
        .await
        .unwrap();
    groups
        .set_role(&alice, &gid, "dave", GroupRole::Admin)
        .await
        .unwrap();
    // A member cannot kick.
    assert!(matches!(
        groups.kick(&carol, &gid, &["erin".into()]).await,
        Err(ServiceError::PermissionDenied(_))
    ));
    // An admin cannot kick the owner, nor another admin; nothing is removed.
    assert!(matches!(
        groups.kick(&bob, &gid, &["alice".into()]).await,
        Err(ServiceError::PermissionDenied(_))
    ));
    assert!(matches!(
        groups
            .kick(&bob, &gid, &["erin".into(), "dave".into()])
            .await,
        Err(ServiceError::PermissionDenied(_))
    ));
    assert_eq!(groups.members(&alice, &gid).await.unwrap().len(), 5);
    // Kicking oneself is leaving.
    assert!(matches!(
        groups.kick(&bob, &gid, &["bob".into()]).await,
        Err(ServiceError::InvalidParam(_))
    ));
    // An admin kicks a member; the owner kicks an admin.
    assert_eq!(
        groups.kick(&bob, &gid, &["erin".into()]).await.unwrap(),
        vec!["erin".to_owned()]
    );
    assert_eq!(
        groups.kick(&alice, &gid, &["dave".into()]).await.unwrap(),
        vec!["dave".to_owned()]
    );
    // Roles: only the owner sets them; no transfer.
    assert!(matches!(
        groups.set_role(&bob, &gid, "carol", GroupRole::Admin).await,
        Err(ServiceError::PermissionDenied(_))
    ));
    assert!(matches!(
        groups
            .set_role(&alice, &gid, "carol", GroupRole::Owner)
            .await,
        Err(ServiceError::InvalidParam(_))
    ));
    let members = groups.members(&carol, &gid).await.unwrap();
    let roles: Vec<(String, GroupRole)> =
        members.into_iter().map(|m| (m.user_id, m.role)).collect();
    assert_eq!(
        roles,
        vec![
            ("alice".to_owned(), GroupRole::Owner),
            ("bob".to_owned(), GroupRole::Admin),
            ("carol".to_owned(), GroupRole::Member),
        ]
    );
}

#[tokio::test]
async fn leave_join_update_and_visibility() {
    let env = env();
    let (gid, _) = trio(&env).await;
    let groups = env.services.groups();
    let (alice, bob, carol, dave) = (uid("alice"), uid("bob"), uid("carol"), uid("dave"));
    assert!(matches!(
        groups.leave(&alice, &gid).await,
        Err(ServiceError::InvalidParam(_))
    ));
    groups.leave(&carol, &gid).await.unwrap();
    assert!(matches!(
        groups.leave(&carol, &gid).await,
        Err(ServiceError::PermissionDenied(_))
    ));
    assert!(groups.my_groups(&carol).await.unwrap().is_empty());
    assert_eq!(groups.my_groups(&bob).await.unwrap().len(), 1);

    // Anyone may look a group up and join; twice is a conflict.
    assert_eq!(groups.get(&dave, &gid).await.unwrap().member_count, 2);
    assert!(matches!(
        groups.members(&dave, &gid).await,
        Err(ServiceError::PermissionDenied(_))
    ));
    let g = groups.join(&dave, &gid).await.unwrap();
    assert_eq!(g.member_count, 3);
    let e = groups.join(&dave, &gid).await.unwrap_err();
    assert!(matches!(e, ServiceError::Conflict(_)));
    assert_eq!(e.http_status(), 409);
    // Outsiders cannot invite.
    assert!(matches!(
        groups.invite(&carol, &gid, &["erin".into()]).await,
        Err(ServiceError::PermissionDenied(_))
    ));

    // Update: owner/admin only, limits checked.
    let patch = GroupPatch {
        name: Some("renamed".into()),
        notification: Some("be nice".into()),
        ..GroupPatch::default()
    };
    assert!(matches!(
        groups.update(&bob, &gid, patch.clone()).await,
        Err(ServiceError::PermissionDenied(_))
    ));
    let g = groups.update(&alice, &gid, patch).await.unwrap();
    assert_eq!(g.name, "renamed");
    assert_eq!(g.notification, "be nice");
    assert!(matches!(
        groups
            .update(
                &alice,
                &gid,
                GroupPatch {
                    name: Some("x".repeat(1000)),
                    ..GroupPatch::default()
                }
            )
            .await,
        Err(ServiceError::InvalidParam(_))
    ));
    let e = groups.get(&dave, "no-such-group").await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::ConversationNotExist);
    assert_eq!(e.http_status(), 404);
    assert!(matches!(
        groups.get(&dave, "bad/id").await,
        Err(ServiceError::NotFound(_))
    ));
    assert!(matches!(
        groups
            .create(
                &alice,
                NewGroup {
                    members: vec!["bad id".into()],
                    ..NewGroup::default()
                }
            )
            .await,
        Err(ServiceError::InvalidParam(_))
    ));
}

#[tokio::test]
async fn a_dismissed_group_refuses_everything() {
    let env = env();
    let (gid, conv) = trio(&env).await;
    let groups = env.services.groups();
    let mut bob = Conn::login(&env, "bob", "iOS").await;
    send(&env, &mut bob, &conv, "b1", "warm the cache").await;
    assert!(matches!(
        groups.dismiss(&uid("bob"), &gid).await,
        Err(ServiceError::PermissionDenied(_))
    ));
    groups.dismiss(&uid("alice"), &gid).await.unwrap();
    let r = send(&env, &mut bob, &conv, "b2", "anyone?").await;
    assert_eq!(code_of(&r), ErrorCode::ConversationNotExist, "{r:?}");
    // Still visible, as dismissed (status 1); no longer joinable or listed.
    assert_eq!(groups.get(&uid("bob"), &gid).await.unwrap().status, 1);
    assert!(matches!(
        groups.join(&uid("dave"), &gid).await,
        Err(ServiceError::NotFound(_))
    ));
    assert!(matches!(
        groups.dismiss(&uid("alice"), &gid).await,
        Err(ServiceError::NotFound(_))
    ));
    assert!(groups.my_groups(&uid("alice")).await.unwrap().is_empty());
    assert!(group_convs(&env, &mut bob).await.is_empty());
}

#[tokio::test]
async fn member_limit_is_enforced() {
    let env = env_with(ServiceConfig {
        allow_demo_tokens: true,
        max_group_members: 3,
        ..ServiceConfig::default()
    });
    let groups = env.services.groups();
    let too_many = groups
        .create(
            &uid("alice"),
            NewGroup {
                members: vec!["b".into(), "c".into(), "d".into()],
                ..NewGroup::default()
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(too_many, ServiceError::Full { max: 3 }));
    assert_eq!(too_many.http_status(), 409);
    assert_eq!(too_many.reason(), "group_full");
    let (gid, _) = trio(&env).await;
    assert!(matches!(
        groups.invite(&uid("bob"), &gid, &["dave".into()]).await,
        Err(ServiceError::Full { max: 3 })
    ));
    assert!(matches!(
        groups.join(&uid("dave"), &gid).await,
        Err(ServiceError::Full { .. })
    ));
    // Re-inviting a member is not growth.
    assert!(
        groups
            .invite(&uid("bob"), &gid, &["carol".into()])
            .await
            .unwrap()
            .is_empty()
    );
    groups.leave(&uid("carol"), &gid).await.unwrap();
    assert_eq!(
        groups
            .invite(&uid("bob"), &gid, &["dave".into()])
            .await
            .unwrap(),
        vec!["dave".to_owned()]
    );
}

#[tokio::test]
async fn new_members_see_history_as_read() {
    let env = env();
    let (gid, conv) = trio(&env).await;
    let mut alice = Conn::login(&env, "alice", "iOS").await;
    for i in 0..3 {
        send(&env, &mut alice, &conv, &format!("a{i}"), "old").await;
    }
    env.services
        .groups()
        .invite(&uid("bob"), &gid, &["dave".into()])
        .await
        .unwrap();
    let convs = env.services.conversations();
    assert_eq!(convs.unread_count(&uid("dave"), &conv).await.unwrap(), 0);
    assert_eq!(convs.unread_count(&uid("bob"), &conv).await.unwrap(), 3);
    let mut dave = Conn::login(&env, "dave", "iOS").await;
    let r = dave
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
    assert_eq!(conversations.len(), 1);
    assert_eq!(conversations[0].messages.len(), 3);
    assert!(conversations[0].messages.iter().all(|m| m.is_read));
    send(&env, &mut alice, &conv, "a9", "new").await;
    assert_eq!(convs.unread_count(&uid("dave"), &conv).await.unwrap(), 1);
}
