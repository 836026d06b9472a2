//! Profiles, friends and the blocklist (which stops 1:1 messages and typing).

use im_core::ErrorCode;
use im_core::command::{Event, Request};
use im_core::model::{FriendRequestStatus, ProfilePatch};
use im_core::ports::UserStore;
use im_service::FriendAdd;

use crate::{Conn, code_of, env, send, uid};

#[tokio::test]
async fn profiles_batch_update_and_search() {
    let env = env();
    let social = env.services.social();
    // Unknown ids get a synthetic profile (nickname = id), in request order.
    let p = social.user_info("ghost").await.unwrap();
    assert_eq!(
        (p.user_id.as_str(), p.nickname.as_str()),
        ("ghost", "ghost")
    );
    let me = uid("alice");
    let updated = social
        .update_profile(
            &me,
            "",
            ProfilePatch {
                nickname: Some("Alice W".into()),
                gender: Some(2),
                birth: Some(946_684_800_000),
                ..ProfilePatch::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(updated.nickname, "Alice W");
    assert_eq!(updated.gender, 2);
    let batch = social
        .users_info(&["ghost".into(), "alice".into(), "ghost".into()])
        .await
        .unwrap();
    let names: Vec<&str> = batch.iter().map(|p| p.nickname.as_str()).collect();
    assert_eq!(names, ["ghost", "Alice W", "ghost"]);
    // Only one's own profile; fields are checked.
    assert_eq!(
        social
            .update_profile(&me, "bob", ProfilePatch::default())
            .await
            .unwrap_err()
            .http_status(),
        403
    );
    for patch in [
        ProfilePatch {
            gender: Some(7),
            ..ProfilePatch::default()
        },
        ProfilePatch {
            nickname: Some("n".repeat(65)),
            ..ProfilePatch::default()
        },
        ProfilePatch {
            birth: Some(-1),
            ..ProfilePatch::default()
        },
    ] {
        assert_eq!(
            social
                .update_profile(&me, "alice", patch)
                .await
                .unwrap_err()
                .http_status(),
            400
        );
    }
    assert_eq!(
        social
            .users_info(&["bad id".into()])
            .await
            .unwrap_err()
            .http_status(),
        400
    );
    let many: Vec<String> = (0..501).map(|i| format!("u{i}")).collect();
    assert!(social.users_info(&many).await.is_err());
    // Search by nickname, case-insensitive; empty keyword refused.
    let found = social.search("alice w", None).await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].user_id, "alice");
    assert_eq!(
        social.search("  ", None).await.unwrap_err().http_status(),
        400
    );
}

#[tokio::test]
async fn request_accept_remark_delete() {
    let env = env();
    let social = env.services.social();
    let (alice, bob) = (uid("alice"), uid("bob"));
    env.store.touch(&alice, 1).await.unwrap();
    env.store.touch(&bob, 1).await.unwrap();
    // Unknown target, self, already friends.
    assert_eq!(
        social
            .add_friend(&alice, "nobody", "")
            .await
            .unwrap_err()
            .http_status(),
        404
    );
    assert_eq!(
        social
            .add_friend(&alice, "alice", "")
            .await
            .unwrap_err()
            .http_status(),
        400
    );
    assert_eq!(
        social.add_friend(&alice, "bob", "hi").await.unwrap(),
        FriendAdd::Requested
    );
    let incoming = social.requests(&bob, true).await.unwrap();
    assert_eq!(incoming.len(), 1);
    assert_eq!(incoming[0].message, "hi");
    assert_eq!(incoming[0].status, FriendRequestStatus::Pending);
    // Accept with no request from that user: 404.
    assert_eq!(
        social
            .accept_friend(&alice, "bob")
            .await
            .unwrap_err()
            .http_status(),
        404
    );
    let f = social.accept_friend(&bob, "alice").await.unwrap();
    assert_eq!(f.friend.owner_id, "bob");
    assert_eq!(f.friend.friend_id, "alice");
    assert_eq!(f.user.user_id, "alice");
    assert!(social.is_friend(&alice, "bob").await.unwrap());
    assert!(social.is_friend(&bob, "alice").await.unwrap());
    assert_eq!(
        social
            .add_friend(&alice, "bob", "")
            .await
            .unwrap_err()
            .http_status(),
        409
    );
    let r = social.set_remark(&alice, "bob", "Bobby").await.unwrap();
    assert_eq!(r.friend.remark, "Bobby");
    let list = social.friends(&alice).await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].friend.remark, "Bobby");
    social.delete_friend(&bob, "alice").await.unwrap();
    assert!(!social.is_friend(&alice, "bob").await.unwrap());
    assert_eq!(
        social
            .delete_friend(&bob, "alice")
            .await
            .unwrap_err()
            .http_status(),
        404
    );
    assert_eq!(
        social
            .set_remark(&alice, "bob", "x")
            .await
            .unwrap_err()
            .http_status(),
        404
    );
}

#[tokio::test]
async fn crossing_requests_make_friends_and_reject_works() {
    let env = env();
    let social = env.services.social();
    let (alice, bob, carol) = (uid("alice"), uid("bob"), uid("carol"));
    for u in [&alice, &bob, &carol] {
        env.store.touch(u, 1).await.unwrap();
    }
    social.add_friend(&alice, "bob", "").await.unwrap();
    match social.add_friend(&bob, "alice", "").await.unwrap() {
        FriendAdd::Friends(f) => assert_eq!(f.owner_id, "bob"),
        other => panic!("{other:?}"),
    }
    assert!(social.is_friend(&alice, "bob").await.unwrap());
    social.add_friend(&carol, "alice", "").await.unwrap();
    social.reject_friend(&alice, "carol").await.unwrap();
    assert_eq!(
        social
            .reject_friend(&alice, "carol")
            .await
            .unwrap_err()
            .http_status(),
        404
    );
    assert_eq!(
        social.requests(&carol, false).await.unwrap()[0].status,
        FriendRequestStatus::Rejected
    );
    // A rejected requester may ask again.
    assert_eq!(
        social.add_friend(&carol, "alice", "please").await.unwrap(),
        FriendAdd::Requested
    );
}

#[tokio::test]
async fn blocking_stops_messages_typing_and_requests() {
    let env = env();
    let social = env.services.social();
    let mut alice = Conn::login(&env, "alice", "iOS").await;
    let mut bob = Conn::login(&env, "bob", "iOS").await;
    let conv = "single_alice_bob";
    assert_eq!(
        code_of(&send(&env, &mut alice, conv, "c1", "hello").await),
        ErrorCode::Success
    );
    social.block(&uid("bob"), "alice").await.unwrap();
    // Idempotent, and visible at once on this node.
    social.block(&uid("bob"), "alice").await.unwrap();
    let r = send(&env, &mut alice, conv, "c2", "still there?").await;
    assert_eq!(code_of(&r), ErrorCode::PermissionDenied);
    // A retry of a message accepted before the block still gets its result.
    assert_eq!(
        code_of(&send(&env, &mut alice, conv, "c1", "hello").await),
        ErrorCode::Success
    );
    // Bob can still write to alice: blocking is one-way.
    assert_eq!(
        code_of(&send(&env, &mut bob, conv, "b1", "bye").await),
        ErrorCode::Success
    );
    bob.pushes();
    alice
        .call(
            &env,
            Request::Typing {
                conversation_id: conv.into(),
                status: 1,
            },
        )
        .await;
    assert!(
        !bob.pushes()
            .iter()
            .any(|e| matches!(e, Event::Typing { .. }))
    );
    assert_eq!(
        social
            .add_friend(&uid("alice"), "bob", "")
            .await
            .unwrap_err()
            .http_status(),
        403
    );
    let list = social.blocklist(&uid("bob")).await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].blocked_id, "alice");
    social.unblock(&uid("bob"), "alice").await.unwrap();
    assert_eq!(
        social
            .unblock(&uid("bob"), "alice")
            .await
            .unwrap_err()
            .http_status(),
        404
    );
    assert_eq!(
        code_of(&send(&env, &mut alice, conv, "c3", "again").await),
        ErrorCode::Success
    );
    assert_eq!(
        social
            .block(&uid("bob"), "bob")
            .await
            .unwrap_err()
            .http_status(),
        400
    );
}

#[tokio::test]
async fn nul_characters_are_refused_before_storage() {
    let env = env();
    let social = env.services.social();
    let me = uid("alice");
    let e = social
        .update_profile(
            &me,
            "",
            ProfilePatch {
                nickname: Some("a\0b".into()),
                ..ProfilePatch::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(e.http_status(), 400);
    assert_eq!(
        social.search("a\0", None).await.unwrap_err().http_status(),
        400
    );
    let mut alice = Conn::login(&env, "alice", "iOS").await;
    let r = alice
        .call(
            &env,
            Request::Send(im_core::command::SendRequest {
                client_msg_id: "c1".into(),
                conversation_id: "single_alice_bob".into(),
                message_type: 1,
                content: bytes::Bytes::from_static(b"hi"),
                extra: "x\0y".into(),
                ..im_core::command::SendRequest::default()
            }),
        )
        .await
        .unwrap();
    assert_eq!(code_of(&r), ErrorCode::InvalidParam);
}
