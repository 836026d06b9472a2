//! The v1 sample app's login on a default server (issue 18, item 4).
//!
//! The v1 Talk app authenticates with `demo_token_<userID>` unless the user
//! typed a token (Talk/Talk/ViewControllers/SettingsViewController.swift:251
//! @5529e01). A default config (debug mode, public default secret) accepts
//! it; a secret of your own, or `auth.allow_demo_tokens: false`, refuses it.

use im_client::Client;
use im_core::command::Reply;
use im_core::{ErrorCode, Generation};
use im_server::config::DEFAULT_JWT_SECRET;

use crate::{TestServer, assert_auth_ok, next_text, sent_ok};

/// AUTH over a v1 WebSocket with `token`, as the v1 Talk app does.
async fn v1_auth(s: &TestServer, user: &str, token: &str) -> (Client, Reply) {
    let mut c = Client::connect_ws(s.addrs.ws, "/ws/v1", Generation::V1)
        .await
        .unwrap();
    let r = c.auth(user, token, "iOS").await.unwrap();
    (c, r)
}

fn assert_refused(r: &Reply) {
    assert!(
        matches!(
            r,
            Reply::Auth {
                code: ErrorCode::AuthFailed,
                ..
            }
        ),
        "{r:?}"
    );
}

#[tokio::test]
async fn a_default_config_accepts_demo_tokens_and_an_own_secret_refuses_them() {
    // The default config's auth: the public secret, allow_demo_tokens unset.
    let s = TestServer::start_with(|c| {
        c.auth.jwt_secret = DEFAULT_JWT_SECRET.to_owned().into();
        c.auth.allow_demo_tokens = None;
    })
    .await;
    assert!(s.config.demo_tokens_accepted());
    let (mut alice, r) = v1_auth(&s, "alice", "demo_token_alice").await;
    assert_auth_ok(r);
    let (mut bob, r) = v1_auth(&s, "bob", "demo_token_bob").await;
    assert_auth_ok(r);
    // The token names the user: alice's message reaches bob from alice.
    sent_ok(
        &alice
            .send_text("single_alice_bob", "10000000000000001", "hi")
            .await
            .unwrap(),
    );
    let (text, m) = next_text(&mut bob).await.unwrap();
    assert_eq!((text.as_str(), m.sender_id.as_str()), ("hi", "alice"));
    s.stop().await;

    // Explicitly off, even with the default secret.
    let s = TestServer::start_with(|c| {
        c.auth.jwt_secret = DEFAULT_JWT_SECRET.to_owned().into();
        c.auth.allow_demo_tokens = Some(false);
    })
    .await;
    assert_refused(&v1_auth(&s, "alice", "demo_token_alice").await.1);
    s.stop().await;

    // A secret of your own, key unset: refused; real tokens work.
    let s = TestServer::start_with(|c| c.auth.allow_demo_tokens = None).await;
    assert!(!s.config.uses_default_secret());
    assert_refused(&v1_auth(&s, "alice", "demo_token_alice").await.1);
    let token = s.token("alice");
    assert_auth_ok(v1_auth(&s, "alice", &token).await.1);
    s.stop().await;
}
