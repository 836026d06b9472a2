//! End-to-end tests: the real server on port 0, the real client.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod authz;
mod bad_input;
mod bad_input_matrix;
mod chaos;
mod cluster;
mod demo;
mod durability;
mod embed;
// The embedding example itself (its `main` is unused here).
#[path = "../../examples/embed.rs"]
#[allow(dead_code)]
mod embed_example;
mod files;
mod http_api;
mod lifecycle;
mod logs;
mod messaging;
mod overload;
mod sdk_login;
mod sdk_rooms;
mod sdk_send;
mod sdk_sync;
mod sdk_upload;
mod sdk_ws;
mod tls;

use std::time::Duration;

use im_client::Client;
use im_core::command::{Event, Reply};
use im_core::{ErrorCode, Generation};
use im_server::app::{App, LocalAddrs, mint_token};
use im_server::config::Config;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const WAIT: Duration = Duration::from_secs(5);
/// How long we wait to be sure something does NOT arrive.
pub const QUIET: Duration = Duration::from_millis(300);

pub struct TestServer {
    pub addrs: LocalAddrs,
    pub config: Config,
    /// With TLS on every listener ([`TestServer::start_tls`]): the test
    /// CA, and the certificate store the server uses. `tcp()`, `ws()` and
    /// `bad_input_matrix::call` then speak TLS.
    pub tls: Option<tls::TestTls>,
    pub certs: Option<std::sync::Arc<im_transport::tls::CertStore>>,
    /// The server's use cases (weak: the server's shutdown waits for the
    /// last handle); see [`TestServer::services`].
    services: std::sync::Weak<im_service::Services>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
    _dir: tempfile::TempDir,
}

pub fn test_config(dir: &std::path::Path) -> Config {
    let mut c = Config::default();
    c.server.host = "127.0.0.1".parse().unwrap();
    c.server.http_port = 0;
    c.server.ws_port = 0;
    c.server.tcp_port = 0;
    c.database.path = dir.join("im.db");
    c.files.dir = dir.join("files");
    c.auth.jwt_secret = "e2e-test-secret".to_owned().into();
    c.auth.allow_demo_tokens = Some(true);
    c
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> Self {
        im_server::telemetry::init_for_tests();
        let dir = tempfile::tempdir().unwrap();
        let mut config = test_config(dir.path());
        tweak(&mut config);
        let app = App::build(config.clone()).await.unwrap();
        let addrs = app.local_addrs();
        let certs = app.tls_certs();
        let services = std::sync::Arc::downgrade(&app.services());
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(app.run_until(async move {
            let _ = rx.await;
        }));
        Self {
            addrs,
            config,
            tls: None,
            certs,
            services,
            stop: Some(tx),
            task: Some(task),
            _dir: dir,
        }
    }

    /// The running server's use cases, to drive periodic work (such as
    /// file sweeps) deterministically. Drop the handle before `stop`.
    pub fn services(&self) -> std::sync::Arc<im_service::Services> {
        self.services.upgrade().expect("the server is running")
    }

    pub fn token(&self, user: &str) -> String {
        mint_token(&self.config, user, "iOS", None).unwrap()
    }

    /// Stops the server and waits for a clean shutdown.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(20), t)
                .await
                .unwrap()
                .unwrap()
                .unwrap();
        }
    }

    /// Starts a server with TLS on all three listeners (a fresh test CA),
    /// after `tweak`.
    pub async fn start_tls(tweak: impl FnOnce(&mut Config)) -> Self {
        let tls = tls::TestTls::new();
        let mut s = Self::start_with(|c| {
            tls.configure(c);
            tweak(c);
        })
        .await;
        s.tls = Some(tls);
        s
    }

    /// Options of a client of this server (TLS when it serves TLS).
    pub fn client_options(&self) -> im_client::ClientOptions {
        im_client::ClientOptions {
            tls: self.tls.as_ref().map(tls::TestTls::client),
            ..im_client::ClientOptions::default()
        }
    }

    pub async fn tcp(&self, user: &str) -> Client {
        let mut c = Client::connect_tcp_with(self.addrs.tcp, self.client_options())
            .await
            .unwrap();
        assert_auth_ok(c.auth(user, &self.token(user), "iOS").await.unwrap());
        c
    }

    pub async fn ws(&self, user: &str, generation: Generation, platform: &str) -> Client {
        let path = match generation {
            Generation::V1 => "/ws/v1",
            Generation::V2 => "/ws/v2",
        };
        let mut c = Client::connect_ws_with(self.addrs.ws, path, generation, self.client_options())
            .await
            .unwrap();
        assert_auth_ok(c.auth(user, &self.token(user), platform).await.unwrap());
        c
    }
}

pub fn assert_auth_ok(r: Reply) {
    assert!(
        matches!(
            r,
            Reply::Auth {
                code: ErrorCode::Success,
                ..
            }
        ),
        "auth failed: {r:?}"
    );
}

/// The text of the next pushed message, if one arrives within `WAIT`.
pub async fn next_text(c: &mut Client) -> Option<(String, im_core::StoredMessage)> {
    loop {
        match c.next_event(WAIT).await.unwrap()? {
            Event::Message(m) => {
                return Some((
                    String::from_utf8_lossy(&m.content).into_owned(),
                    (*m).clone(),
                ));
            }
            _ => continue,
        }
    }
}

/// Asserts that no message is pushed to `c` within `QUIET`.
pub async fn assert_no_message(c: &mut Client) {
    while let Some(e) = c.next_event(QUIET).await.unwrap() {
        assert!(!matches!(e, Event::Message(_)), "unexpected push {e:?}");
    }
}

pub fn sent_ok(r: &Reply) -> (String, i64) {
    match r {
        Reply::Send {
            code: ErrorCode::Success,
            server_msg_id,
            seq,
            ..
        } => (server_msg_id.clone(), *seq),
        other => panic!("send failed: {other:?}"),
    }
}
