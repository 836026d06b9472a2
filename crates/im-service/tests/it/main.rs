//! Service-layer tests over the in-memory fakes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod messaging;
mod writer;

use std::sync::Arc;
use std::time::Duration;

use im_core::command::{Reply, Request, SendRequest};
use im_core::{ErrorCode, Generation};
use im_service::session::TransportKind;
use im_service::{
    Dispatched, Hub, JwtAuth, MessageWriter, MessagingService, Outbound, ServiceConfig, Services,
    SessionCtx,
};
use im_testkit::{ManualClock, MemoryStore, SeqIds};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub const SECRET: &[u8] = b"test-secret";

pub struct Env {
    pub store: Arc<MemoryStore>,
    pub services: Arc<Services>,
    pub clock: Arc<ManualClock>,
    _writer_tasks: tokio::task::JoinSet<()>,
}

pub fn env_with(cfg: ServiceConfig) -> Env {
    let store = Arc::new(MemoryStore::new());
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let (writer, writer_tasks) = MessageWriter::spawn(store.clone(), &cfg.writer);
    let messaging = MessagingService::new(
        store.clone(),
        store.clone(),
        writer,
        Arc::new(Hub::new()),
        clock.clone(),
        Arc::new(SeqIds::default()),
        cfg.clone(),
    );
    let services = Arc::new(Services {
        auth: JwtAuth::new(SECRET, cfg.allow_demo_tokens),
        messaging,
        users: store.clone(),
    });
    Env {
        store,
        services,
        clock,
        _writer_tasks: writer_tasks,
    }
}

pub fn env() -> Env {
    env_with(ServiceConfig {
        allow_demo_tokens: true,
        ..ServiceConfig::default()
    })
}

pub struct Conn {
    pub ctx: SessionCtx,
    pub rx: mpsc::Receiver<Outbound>,
    pub close: CancellationToken,
}

impl Conn {
    pub fn new(env: &Env) -> Self {
        let (tx, rx) = mpsc::channel(64);
        let close = CancellationToken::new();
        let id = env.services.messaging.hub().next_session_id();
        let ctx = SessionCtx::new(
            id,
            Generation::V2,
            TransportKind::Tcp,
            tx,
            close.clone(),
            im_service::session::viewer_cell(),
        );
        Self { ctx, rx, close }
    }

    pub async fn call(&mut self, env: &Env, req: Request) -> Option<Reply> {
        match self.ctx.dispatch(&env.services, req).await {
            Dispatched::None => None,
            Dispatched::Reply(r) => Some(r),
            Dispatched::Later(f) => Some(
                tokio::time::timeout(Duration::from_secs(5), f)
                    .await
                    .expect("send timed out"),
            ),
        }
    }

    pub async fn login(env: &Env, user: &str, platform: &str) -> Self {
        let mut c = Self::new(env);
        let r = c
            .call(
                env,
                Request::Auth {
                    user_id: user.into(),
                    token: format!("demo_token_{user}"),
                    platform: platform.into(),
                },
            )
            .await;
        assert!(
            matches!(
                r,
                Some(Reply::Auth {
                    code: ErrorCode::Success,
                    ..
                })
            ),
            "{r:?}"
        );
        c
    }

    pub fn events(&mut self) -> Vec<Outbound> {
        let mut v = Vec::new();
        while let Ok(o) = self.rx.try_recv() {
            v.push(o);
        }
        v
    }
}

pub fn text(conv: &str, cid: &str, body: &str) -> Request {
    Request::Send(SendRequest {
        client_msg_id: cid.into(),
        conversation_id: conv.into(),
        message_type: 1,
        content: bytes::Bytes::copy_from_slice(body.as_bytes()),
        send_time: 1,
        ..SendRequest::default()
    })
}
