//! Presence: queries, subscriptions, transitions, multi-device.

use im_core::ErrorCode;
use im_core::command::{Event, Reply, Request, UserStatus};
use im_service::ServiceConfig;

use crate::{Conn, code_of, env, env_with};

fn query(users: &[&str]) -> Request {
    Request::OnlineStatus {
        user_ids: users.iter().map(|s| (*s).to_owned()).collect(),
    }
}

fn changes(events: Vec<Event>) -> Vec<UserStatus> {
    events
        .into_iter()
        .filter_map(|e| match e {
            Event::StatusChange(s) => Some(s),
            _ => None,
        })
        .collect()
}

fn statuses(r: Reply) -> Vec<UserStatus> {
    match r {
        Reply::OnlineStatus {
            code: ErrorCode::Success,
            statuses,
            ..
        } => statuses,
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn watchers_hear_online_and_offline_transitions_only() {
    let env = env();
    let mut bob = Conn::login(&env, "bob", "iOS").await;
    let mut carol = Conn::login(&env, "carol", "iOS").await;
    let s = statuses(bob.call(&env, query(&["alice", "carol"])).await.unwrap());
    assert_eq!(s.len(), 2);
    assert!(!s[0].online);
    assert_eq!(s[1].user_id, "carol");
    assert!(s[1].online);
    assert_eq!(s[1].platforms, vec!["iOS".to_owned()]);

    let alice = Conn::login(&env, "alice", "iOS").await;
    let got = changes(bob.pushes());
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].user_id, "alice");
    assert!(got[0].online);
    assert_eq!(got[0].platforms, vec!["iOS".to_owned()]);
    // carol did not ask.
    assert!(changes(carol.pushes()).is_empty());

    // A second device is no transition; neither is closing one of two.
    let alice_web = Conn::login(&env, "alice", "Web").await;
    assert!(changes(bob.pushes()).is_empty());
    alice_web.close(&env).await;
    assert!(changes(bob.pushes()).is_empty());

    env.clock.advance(5000);
    let closed_at = env.services.messaging.clock().now_ms();
    alice.close(&env).await;
    let got = changes(bob.pushes());
    assert_eq!(got.len(), 1);
    assert!(!got[0].online);
    assert!(got[0].platforms.is_empty());
    assert_eq!(got[0].last_seen, closed_at);
    let s = statuses(bob.call(&env, query(&["alice"])).await.unwrap());
    assert!(!s[0].online);
    assert_eq!(s[0].last_seen, closed_at);
}

#[tokio::test]
async fn a_kicked_session_closing_does_not_take_the_user_offline() {
    let env = env();
    let mut bob = Conn::login(&env, "bob", "iOS").await;
    let mut old = Conn::login(&env, "alice", "iOS").await;
    statuses(bob.call(&env, query(&["alice"])).await.unwrap());
    let new = Conn::login(&env, "alice", "iOS").await;
    assert!(
        old.pushes()
            .iter()
            .any(|e| matches!(e, Event::KickOut { reason: 1, .. }))
    );
    old.close(&env).await;
    assert!(changes(bob.pushes()).is_empty(), "no offline flap");
    let s = statuses(bob.call(&env, query(&["alice"])).await.unwrap());
    assert!(s[0].online);
    assert_eq!(s[0].platforms, vec!["iOS".to_owned()]);
    new.close(&env).await;
    let got = changes(bob.pushes());
    assert_eq!(got.len(), 1);
    assert!(!got[0].online);
}

#[tokio::test]
async fn subscriptions_end_with_the_session_and_are_capped() {
    let env = env_with(ServiceConfig {
        allow_demo_tokens: true,
        max_presence_subscriptions: 2,
        ..ServiceConfig::default()
    });
    let mut bob = Conn::login(&env, "bob", "iOS").await;
    let r = bob.call(&env, query(&["a", "b", "c"])).await.unwrap();
    assert_eq!(code_of(&r), ErrorCode::InvalidParam);
    let r = bob.call(&env, query(&["bad id"])).await.unwrap();
    assert_eq!(code_of(&r), ErrorCode::InvalidParam);
    statuses(bob.call(&env, query(&["a", "b"])).await.unwrap());
    // Answered, but no room left to watch "c".
    let s = statuses(bob.call(&env, query(&["c", "a"])).await.unwrap());
    assert_eq!(s.len(), 2);
    let presence = env.services.presence();
    assert_eq!(presence.watch_count(bob.ctx.id), 2);
    let _c = Conn::login(&env, "c", "iOS").await;
    assert!(changes(bob.pushes()).is_empty());
    let _a = Conn::login(&env, "a", "iOS").await;
    assert_eq!(changes(bob.pushes()).len(), 1);

    let id = bob.ctx.id;
    bob.close(&env).await;
    assert_eq!(presence.watch_count(id), 0);
    // The store agrees with the transitions.
    let s = presence
        .statuses(&["bob".into(), "a".into()])
        .await
        .unwrap();
    assert!(!s[0].online);
    assert!(s[1].online);
    let _ = &env.presence;
}

#[tokio::test]
async fn the_transport_close_path_updates_presence_in_the_background() {
    let env = env();
    let mut bob = Conn::login(&env, "bob", "iOS").await;
    statuses(bob.call(&env, query(&["alice"])).await.unwrap());
    let mut alice = Conn::login(&env, "alice", "iOS").await;
    bob.pushes();
    alice.ctx.on_close(&env.services);
    let mut got = Vec::new();
    for _ in 0..100 {
        tokio::task::yield_now().await;
        got = changes(bob.pushes());
        if !got.is_empty() {
            break;
        }
    }
    assert_eq!(got.len(), 1);
    assert!(!got[0].online);
}
