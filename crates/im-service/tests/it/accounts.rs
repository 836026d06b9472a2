//! Register, login, refresh rotation, logout/revocation (HTTP and sockets).

use im_core::ErrorCode;
use im_core::command::{Event, Reply, Request};
use im_core::ports::UserStore;
use im_service::{AuthError, ServiceError};

use crate::{Conn, code_of, env, uid};

fn auth_err(e: ServiceError) -> AuthError {
    match e {
        ServiceError::Auth(a) => a,
        other => panic!("expected an auth error, got {other:?}"),
    }
}

#[tokio::test]
async fn register_login_and_authenticate() {
    let env = env();
    let acc = &env.services.accounts;
    let p = acc
        .register("alice", "correct horse", "Alice")
        .await
        .unwrap();
    assert_eq!(p.user_id, "alice");
    assert_eq!(p.nickname, "Alice");
    let s = acc.login("alice", "correct horse", "iOS").await.unwrap();
    assert_eq!(s.user.nickname, "Alice");
    let id = acc.authenticate(&s.token, "").await.unwrap();
    assert_eq!(id.user.as_str(), "alice");
    assert_eq!(id.platform, "iOS");
    // A refresh token is not an access token.
    assert_eq!(
        auth_err(acc.authenticate(&s.refresh_token, "").await.unwrap_err()),
        AuthError::WrongKind
    );
    // The claimed user must match.
    assert_eq!(
        auth_err(acc.authenticate(&s.token, "bob").await.unwrap_err()),
        AuthError::UserMismatch
    );
}

#[tokio::test]
async fn bad_credentials_look_the_same() {
    let env = env();
    let acc = &env.services.accounts;
    acc.register("alice", "correct horse", "").await.unwrap();
    for (user, pass) in [
        ("alice", "wrong horse"),
        ("nobody", "correct horse"),
        ("bad id!", "x"),
        ("alice", ""),
    ] {
        let e = acc.login(user, pass, "iOS").await.unwrap_err();
        assert_eq!(e.http_status(), 401);
        assert_eq!(e.reason(), "bad_credentials");
    }
    // A user provisioned by a token has no password: login fails the same way.
    env.store.touch(&uid("tokenuser"), 1).await.unwrap();
    let e = acc.login("tokenuser", "anything1", "").await.unwrap_err();
    assert_eq!(e.reason(), "bad_credentials");
}

#[tokio::test]
async fn register_validates_and_refuses_taken_ids() {
    let env = env();
    let acc = &env.services.accounts;
    acc.register("alice", "correct horse", "").await.unwrap();
    let dup = acc.register("alice", "another pass", "").await.unwrap_err();
    assert_eq!(dup.http_status(), 409);
    env.store.touch(&uid("seen"), 1).await.unwrap();
    assert_eq!(
        acc.register("seen", "correct horse", "")
            .await
            .unwrap_err()
            .http_status(),
        409
    );
    for (user, pass, nick) in [
        ("", "correct horse", ""),
        ("a b", "correct horse", ""),
        ("../x", "correct horse", ""),
        ("bob", "short", ""),
        ("bob", &"x".repeat(300), ""),
        ("bob", "correct horse", &"n".repeat(65)),
    ] {
        let e = acc.register(user, pass, nick).await.unwrap_err();
        assert_eq!(e.http_status(), 400, "{user} {nick}: {e:?}");
    }
    // Empty nickname defaults to the id.
    assert_eq!(
        acc.register("carol", "correct horse", "  ")
            .await
            .unwrap()
            .nickname,
        "carol"
    );
}

#[tokio::test]
async fn refresh_rotates_and_a_reused_refresh_token_fails() {
    let env = env();
    let acc = &env.services.accounts;
    acc.register("alice", "correct horse", "").await.unwrap();
    let s1 = acc
        .login("alice", "correct horse", "android")
        .await
        .unwrap();
    let s2 = acc.refresh(&s1.refresh_token).await.unwrap();
    assert_ne!(s1.refresh_token, s2.refresh_token);
    assert_eq!(
        acc.authenticate(&s2.token, "").await.unwrap().platform,
        "android"
    );
    assert_eq!(
        auth_err(acc.refresh(&s1.refresh_token).await.unwrap_err()),
        AuthError::Revoked
    );
    assert_eq!(
        auth_err(acc.refresh(&s2.token).await.unwrap_err()),
        AuthError::WrongKind
    );
    assert_eq!(
        auth_err(acc.refresh("garbage").await.unwrap_err()),
        AuthError::Invalid
    );
    // The old access token stays valid until it expires or is logged out.
    assert!(acc.authenticate(&s1.token, "").await.is_ok());
}

#[tokio::test]
async fn logout_revokes_and_closes_sockets_of_that_token_only() {
    let env = env();
    let acc = &env.services.accounts;
    acc.register("alice", "correct horse", "").await.unwrap();
    let phone = acc.login("alice", "correct horse", "iOS").await.unwrap();
    let web = acc.login("alice", "correct horse", "web").await.unwrap();
    let mut c_phone = Conn::new(&env);
    let mut c_web = Conn::new(&env);
    for (c, s) in [(&mut c_phone, &phone), (&mut c_web, &web)] {
        let r = c
            .call(
                &env,
                Request::Auth {
                    user_id: String::new(),
                    token: s.token.clone(),
                    platform: String::new(),
                },
            )
            .await
            .unwrap();
        assert_eq!(code_of(&r), ErrorCode::Success, "{r:?}");
    }
    let id = acc.authenticate(&phone.token, "").await.unwrap();
    let closed = acc
        .logout(&id, Some(phone.refresh_token.as_str()))
        .await
        .unwrap();
    assert_eq!(closed, 1);
    assert!(
        c_phone
            .pushes()
            .iter()
            .any(|e| matches!(e, Event::KickOut { reason: 2, .. }))
    );
    assert!(c_web.pushes().is_empty());
    assert_eq!(
        auth_err(acc.authenticate(&phone.token, "").await.unwrap_err()),
        AuthError::Revoked
    );
    assert_eq!(
        auth_err(acc.refresh(&phone.refresh_token).await.unwrap_err()),
        AuthError::Revoked
    );
    assert!(acc.authenticate(&web.token, "").await.is_ok());
    // A socket AUTH with the revoked token is refused.
    let mut again = Conn::new(&env);
    let r = again
        .call(
            &env,
            Request::Auth {
                user_id: String::new(),
                token: phone.token.clone(),
                platform: String::new(),
            },
        )
        .await
        .unwrap();
    assert_eq!(code_of(&r), ErrorCode::AuthFailed);
    assert!(matches!(r, Reply::Auth { .. }));
    // Logging out with someone else's refresh token is refused.
    acc.register("mallory", "correct horse", "").await.unwrap();
    let m = acc.login("mallory", "correct horse", "").await.unwrap();
    let wid = acc.authenticate(&web.token, "").await.unwrap();
    assert_eq!(
        acc.logout(&wid, Some(m.refresh_token.as_str()))
            .await
            .unwrap_err()
            .http_status(),
        403
    );
    // Demo tokens carry no id: they cannot be revoked.
    let demo = env.services.auth.verify("demo_token_alice").unwrap();
    assert_eq!(
        acc.logout(&demo, None).await.unwrap_err().http_status(),
        400
    );
}

#[tokio::test]
async fn purge_forgets_expired_revocations() {
    use im_core::ports::TokenRevocationStore;
    let env = env();
    let acc = &env.services.accounts;
    acc.register("alice", "correct horse", "").await.unwrap();
    let s = acc.login("alice", "correct horse", "").await.unwrap();
    let id = acc.authenticate(&s.token, "").await.unwrap();
    acc.logout(&id, None).await.unwrap();
    // A live token's revocation is kept; one whose token expired is dropped.
    env.store.revoke("old-jti", "alice", 1).await.unwrap();
    assert_eq!(acc.purge_expired().await.unwrap(), 1);
    assert!(
        env.store
            .is_revoked(id.token_id.as_deref().unwrap())
            .await
            .unwrap()
    );
    assert!(!env.store.is_revoked("old-jti").await.unwrap());
}
