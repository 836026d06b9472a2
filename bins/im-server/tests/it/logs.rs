//! What the server logs: at the most verbose level, through a register, a
//! login, a refused and an accepted AUTH, a send and an upload, the log
//! never holds a password, a token, the JWT secret or message contents.

use bytes::Bytes;
use im_core::ErrorCode;
use im_core::command::{Reply, Request, SendRequest};
use serde_json::{Value, json};

use crate::durability::{Backend, Proc};
use crate::messaging::http;

async fn post_json(p: &Proc, path: &str, body: &Value) -> Value {
    let (status, _, text) = http(
        p.http,
        "POST",
        path,
        &[("Content-Type", "application/json")],
        &body.to_string(),
    )
    .await;
    assert_eq!(status, 200, "{path}: {text}");
    serde_json::from_str(&text).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_logs_hold_no_secrets_or_contents() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("server.log");
    let mut backend = Backend::sqlite(dir.path());
    backend
        .env
        .push(("IM_LOGGER__LEVEL".into(), "trace".into()));
    backend
        .env
        .push(("IM_LOGGER__FORMAT".into(), "json".into()));
    // Uploads go to the test's own directory, not the working directory.
    backend.env.push((
        "IM_FILES__DIR".into(),
        dir.path().join("files").display().to_string(),
    ));
    let server = Proc::start(&backend, &log).await;

    let password = "pw-4f1c9e-never-logged";
    post_json(
        &server,
        "/api/auth/register",
        &json!({"username": "logcheck", "password": password}),
    )
    .await;
    let session = post_json(
        &server,
        "/api/auth/login",
        &json!({"username": "logcheck", "password": password, "platform": "iOS"}),
    )
    .await;
    let token = session["data"]["token"].as_str().unwrap().to_owned();
    let refresh = session["data"]["refresh_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();

    let mut c = im_client::Client::connect_tcp(server.tcp).await.unwrap();
    let forged = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJsb2djaGVjayJ9.bm90LWEtc2lnbmF0dXJl";
    let r = c.auth("logcheck", forged, "iOS").await.unwrap();
    assert!(matches!(r, Reply::Auth { code, .. } if code != ErrorCode::Success));
    crate::assert_auth_ok(c.auth("logcheck", &token, "iOS").await.unwrap());
    let content = "content-9b7d2a-private-words";
    let extra = "extra-51aa07-private-meta";
    let r = c
        .request(Request::Send(SendRequest {
            client_msg_id: "log-1".into(),
            conversation_id: "single_logcheck_someone".into(),
            message_type: 1,
            content: Bytes::from(content),
            extra: extra.into(),
            ..SendRequest::default()
        }))
        .await
        .unwrap();
    crate::sent_ok(&r);
    let upload_body = "upload-e3c5f0-file-bytes";
    let auth = format!("Bearer {token}");
    let (status, _, text) = http(
        server.http,
        "POST",
        "/upload",
        &[
            ("Authorization", auth.as_str()),
            ("Content-Type", "text/plain"),
        ],
        upload_body,
    )
    .await;
    assert_eq!(status, 200, "{text}");
    server.stop();

    let logged = std::fs::read_to_string(&log).unwrap();
    // The flows above were logged, at debug level too.
    for expected in [
        "\"authenticated\"",
        "\"auth refused\"",
        "\"level\":\"DEBUG\"",
    ] {
        assert!(
            logged.contains(expected),
            "no {expected} in the log:\n{logged}"
        );
    }
    let secret = "durability-secret";
    for (what, s) in [
        ("password", password),
        ("access token", token.as_str()),
        ("refresh token", refresh.as_str()),
        ("refused token", forged),
        ("JWT secret", secret),
        ("message content", content),
        ("message extra", extra),
        ("uploaded bytes", upload_body),
    ] {
        if s.is_empty() {
            continue;
        }
        assert!(!logged.contains(s), "the log holds the {what}");
    }
}
