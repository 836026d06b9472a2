//! One connection's view of the services: authentication state and the
//! dispatcher from [`Request`] to [`Reply`].

use std::sync::Arc;
use std::time::Instant;

use futures_util::future::BoxFuture;
use im_core::command::{Reply, Request};
use im_core::ports::{TokenRevocationStore, UserStore};
use im_core::{ErrorCode, Generation};
use tokio_util::sync::CancellationToken;

use crate::accounts::{AccountConfig, AccountService};
use crate::auth::{Identity, JwtAuth};
use crate::conversations::ConversationService;
use crate::files::FileService;
use crate::groups::GroupService;
use crate::hub::{Outbound, SessionHandle, SessionId};
use crate::limits::Limits;
use crate::messaging::{MessagingService, send_error};
use crate::presence::PresenceService;
use crate::social::SocialService;
use crate::sync::{Backlog, SyncStreams, Syncer};

/// Everything a connection (and an HTTP route) needs from the service layer.
/// The group, conversation and presence use cases share the messaging
/// service's ports and caches and are reached through the accessors.
pub struct Services {
    pub auth: JwtAuth,
    pub messaging: MessagingService,
    pub users: Arc<dyn UserStore>,
    /// Register, login, refresh, logout and the token check of every request.
    pub accounts: AccountService,
    /// Uploads and downloads (HTTP `/upload`, `/files/...`).
    pub files: FileService,
    /// Per-user and per-IP rate limits (none unless [`Self::with_limits`]).
    pub limits: Limits,
}

impl Services {
    /// The services over `messaging`; tokens are signed and checked with
    /// `auth`, revocations kept in `revocations`, uploads handled by `files`.
    pub fn new(
        auth: JwtAuth,
        messaging: MessagingService,
        users: Arc<dyn UserStore>,
        revocations: Arc<dyn TokenRevocationStore>,
        accounts: AccountConfig,
        files: FileService,
    ) -> Self {
        let accounts = AccountService::new(
            auth.clone(),
            Arc::clone(&users),
            revocations,
            Arc::clone(messaging.clock()),
            Arc::clone(messaging.hub()),
            accounts,
        );
        Self {
            auth,
            messaging,
            users,
            accounts,
            files,
            limits: Limits::unlimited(),
        }
    }

    /// The same services with `limits` enforced.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Profiles, friends and blocklists (HTTP `/api/user/...`, `/api/friend/...`).
    pub fn social(&self) -> &SocialService {
        self.messaging.social()
    }

    /// Group management (HTTP `/api/group/...`).
    pub fn groups(&self) -> &GroupService {
        self.messaging.groups()
    }

    /// Conversation list, history, unread counts (HTTP).
    pub fn conversations(&self) -> &ConversationService {
        self.messaging.conversations()
    }

    /// Online status.
    pub fn presence(&self) -> &Arc<PresenceService> {
        self.messaging.presence()
    }
}

impl std::fmt::Debug for Services {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Services").finish_non_exhaustive()
    }
}

/// The user id a connection's writer tailors per-viewer fields for; set by
/// the session on successful AUTH, before it can receive any push.
pub type ViewerCell = Arc<parking_lot::RwLock<Arc<str>>>;

/// A fresh, empty viewer cell.
pub fn viewer_cell() -> ViewerCell {
    Arc::new(parking_lot::RwLock::new(Arc::from("")))
}

/// Which transport a session arrived on (for logs and metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportKind {
    WebSocket,
    Tcp,
}

/// Per-connection state held by the transport's read loop.
#[derive(Debug)]
pub struct SessionCtx {
    pub id: SessionId,
    pub generation: Generation,
    pub transport: TransportKind,
    tx: crate::queue::Sender<Outbound>,
    close: CancellationToken,
    viewer: ViewerCell,
    identity: Option<Identity>,
    /// The platform the client announced in AUTH_REQ (device key for acks).
    platform: String,
    /// The `jti` of the token this session authenticated with.
    token_id: Option<Arc<str>>,
    /// The key of this session's MSG_ACK rows (`sync::ack_device`; v2 only).
    ack_device: Option<String>,
    /// The BATCH_SYNC backlog stream and the gate holding back pushes.
    streams: SyncStreams,
    /// The backlog of the last BATCH_SYNC reply, streamed by
    /// [`Self::after_reply`] once the transport queued the reply.
    followup: Option<Backlog>,
    last_typing: Option<Instant>,
}

/// What the dispatcher made of a request.
pub enum Dispatched {
    /// Nothing to send back (ACK, typing).
    None,
    /// Send this reply now.
    Reply(Reply),
    /// The reply is ready when this future resolves (a send awaiting its
    /// commit). It is already ordered with respect to other sends of the
    /// connection; the transport may run it concurrently with later frames.
    Later(BoxFuture<'static, Reply>),
}

impl std::fmt::Debug for Dispatched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::None => f.write_str("None"),
            Self::Reply(r) => f.debug_tuple("Reply").field(r).finish(),
            Self::Later(_) => f.write_str("Later(..)"),
        }
    }
}

impl SessionCtx {
    /// A new unauthenticated session writing into `tx`; `close` is cancelled
    /// when the session must be closed (kick, slow consumer).
    pub fn new(
        id: SessionId,
        generation: Generation,
        transport: TransportKind,
        tx: crate::queue::Sender<Outbound>,
        close: CancellationToken,
        viewer: ViewerCell,
    ) -> Self {
        Self {
            id,
            generation,
            transport,
            tx,
            close,
            viewer,
            identity: None,
            platform: String::new(),
            token_id: None,
            ack_device: None,
            streams: SyncStreams::default(),
            followup: None,
            last_typing: None,
        }
    }

    pub fn identity(&self) -> Option<&Identity> {
        self.identity.as_ref()
    }

    pub fn is_authenticated(&self) -> bool {
        self.identity.is_some()
    }

    /// The user id the wire encoders use to tailor per-viewer fields.
    pub fn viewer(&self) -> &str {
        self.identity.as_ref().map_or("", |i| i.user.as_str())
    }

    /// Called once by the transport when the connection is gone: leaves the
    /// hub and drops the session's presence subscriptions at once; the
    /// presence store is updated by a spawned task (see [`Self::close`]).
    pub fn on_close(&mut self, services: &Services) {
        let presence = Arc::clone(services.presence());
        if let Some((user, key)) = self.leave(services) {
            match tokio::runtime::Handle::try_current() {
                Ok(rt) => {
                    rt.spawn(async move { presence.session_down(&user, &key).await });
                }
                Err(_) => tracing::warn!(user = %user, "no runtime: presence not updated on close"),
            }
        }
    }

    /// Like [`Self::on_close`], but awaits the presence update (offline
    /// transition pushed to watchers) before returning.
    pub async fn close(&mut self, services: &Services) {
        if let Some((user, key)) = self.leave(services) {
            services.presence().session_down(&user, &key).await;
        }
    }

    /// The synchronous part of closing; returns the presence session to end.
    fn leave(&mut self, services: &Services) -> Option<(im_core::UserId, String)> {
        self.streams.stop();
        self.followup = None;
        services.presence().unwatch_all(self.id);
        let id = self.identity.take()?;
        let hub = services.messaging.hub();
        hub.unregister(&id.user, self.id);
        let key = hub.session_key(self.id);
        if let Some(c) = hub.cluster() {
            let (c, user, key) = (Arc::clone(c), id.user.clone(), key.clone());
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move { c.session_down(&user, &key).await });
            }
        }
        Some((id.user, key))
    }

    fn handle(&self, user: &im_core::UserId) -> SessionHandle {
        SessionHandle {
            id: self.id,
            user: user.clone(),
            platform: self.platform.clone(),
            tx: self.tx.clone(),
            close: self.close.clone(),
            token_id: self.token_id.clone(),
            sync_gate: Arc::clone(&self.streams.gate),
        }
    }

    /// Starts what the last reply left to send (the backlog of a
    /// BATCH_SYNC): call right after queueing each reply.
    pub fn after_reply(&mut self, services: &Arc<Services>) {
        let Some(backlog) = self.followup.take() else {
            return;
        };
        if backlog.conversations() == 0 && !self.streams.gate_active() {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        self.streams.cancel();
        let cancel = self.close.child_token();
        self.streams.set_current(cancel.clone());
        let (services, streams, tx) = (Arc::clone(services), self.streams.clone(), self.tx.clone());
        let generation = self.generation;
        rt.spawn(async move {
            services
                .messaging
                .stream_backlog(backlog, &streams, generation, &tx, &cancel)
                .await;
        });
    }

    /// Handles one decoded request.
    pub async fn dispatch(&mut self, services: &Arc<Services>, req: Request) -> Dispatched {
        let command = req.command();
        match req {
            Request::Heartbeat { .. } => Dispatched::Reply(Reply::Heartbeat {
                server_time: services.messaging.clock.now_ms(),
            }),
            Request::Auth {
                user_id,
                token,
                platform,
            } => Dispatched::Reply(
                self.authenticate(services, &user_id, &token, platform)
                    .await,
            ),
            other => {
                let Some(identity) = self.identity.clone() else {
                    return match other {
                        Request::Ack { .. } | Request::Typing { .. } => Dispatched::None,
                        // The SDK matches SEND_MSG_RSP by client id, errors included.
                        Request::Send(s) => Dispatched::Reply(Reply::Send {
                            code: ErrorCode::AuthFailed,
                            msg: "not authenticated".into(),
                            server_msg_id: String::new(),
                            client_msg_id: s.client_msg_id,
                            seq: 0,
                            server_time: 0,
                        }),
                        _ => Dispatched::Reply(Reply::error(
                            command,
                            ErrorCode::AuthFailed,
                            "not authenticated",
                        )),
                    };
                };
                self.dispatch_authed(services, identity, other).await
            }
        }
    }

    async fn dispatch_authed(
        &mut self,
        services: &Arc<Services>,
        me: Identity,
        req: Request,
    ) -> Dispatched {
        let m = &services.messaging;
        // Delivery ACKs are owed by the client and typing has its own
        // throttle; everything else counts against the user's rate.
        let metered = !matches!(req, Request::Ack { .. } | Request::Typing { .. });
        if metered && !services.limits.user(&me.user) {
            tracing::debug!(user = %me.user, "rate limit exceeded");
            const MSG: &str = "rate limit exceeded, slow down";
            return Dispatched::Reply(match req {
                Request::Send(s) => send_error(&s.client_msg_id, ErrorCode::SendTooFast, MSG),
                other => Reply::error(other.command(), ErrorCode::SendTooFast, MSG),
            });
        }
        match req {
            Request::Send(send) => {
                let client_msg_id = send.client_msg_id.clone();
                match m.begin_send(&me.user, send).await {
                    Err(reply) => Dispatched::Reply(reply),
                    Ok((pending, recipients)) => {
                        let services = Arc::clone(services);
                        let session = self.id;
                        Dispatched::Later(Box::pin(async move {
                            services
                                .messaging
                                .finish_send(&me.user, session, client_msg_id, pending, recipients)
                                .await
                        }))
                    }
                }
            }
            Request::Ack { message_id, .. } => {
                let device = self.ack_device.as_deref();
                if let Err(e) = m.ack(&me.user, &self.platform, device, &message_id).await {
                    tracing::warn!(error = %e, "recording MSG_ACK failed");
                }
                Dispatched::None
            }
            Request::BatchSync {
                states,
                max_per_conversation,
            } => {
                // A new sync replaces a running backlog stream.
                self.streams.cancel();
                let who = Syncer {
                    user: &me.user,
                    device: self.ack_device.as_deref(),
                };
                let (reply, backlog) = m
                    .batch_sync(who, states, max_per_conversation, Some(&self.streams.gate))
                    .await;
                self.followup = Some(backlog);
                Dispatched::Reply(reply)
            }
            Request::SyncRange {
                request_id,
                conversation_id,
                start_seq,
                end_seq,
                count,
            } => Dispatched::Reply(
                m.sync_range(
                    &me.user,
                    request_id,
                    conversation_id,
                    start_seq,
                    end_seq,
                    count,
                )
                .await,
            ),
            Request::SyncInbox {
                min_seq,
                max_seq,
                limit,
            } => Dispatched::Reply(m.sync_inbox(&me.user, min_seq, max_seq, limit).await),
            Request::Typing {
                conversation_id,
                status,
            } => {
                let now = Instant::now();
                let too_soon = self
                    .last_typing
                    .is_some_and(|t| now.duration_since(t) < m.config().typing_min_interval);
                if !too_soon {
                    self.last_typing = Some(now);
                    if let Err(e) = m.typing(&me.user, &conversation_id, status).await {
                        tracing::debug!(reason = e.reason(), "typing notification refused");
                    }
                }
                Dispatched::None
            }
            Request::Revoke {
                message_id,
                conversation_id,
            } => Dispatched::Reply(m.revoke(&me.user, &message_id, &conversation_id).await),
            Request::ReadReceipt {
                message_ids,
                conversation_id,
            } => Dispatched::Reply(
                m.read_receipt(&me.user, self.id, &message_ids, &conversation_id)
                    .await,
            ),
            Request::OnlineStatus { user_ids } => {
                let handle = self.handle(&me.user);
                Dispatched::Reply(m.presence().query_and_watch(&handle, user_ids).await)
            }
            // Handled by `dispatch` before authentication matters.
            other @ (Request::Heartbeat { .. } | Request::Auth { .. }) => Dispatched::Reply(
                Reply::error(other.command(), ErrorCode::Unknown, "unexpected request"),
            ),
        }
    }

    async fn authenticate(
        &mut self,
        services: &Services,
        claimed: &str,
        token: &str,
        platform: String,
    ) -> Reply {
        let fail = |code: ErrorCode, msg: &str| Reply::Auth {
            code,
            msg: msg.to_owned(),
            max_seq: 0,
        };
        let identity = match services.accounts.authenticate(token, claimed).await {
            Ok(id) => id,
            Err(e) => {
                tracing::info!(session = self.id.0, reason = %e, "auth refused");
                if matches!(e, crate::error::ServiceError::Store(_)) {
                    return fail(ErrorCode::Unknown, "storage temporarily unavailable");
                }
                return fail(e.code(), &e.public_message());
            }
        };
        let now = services.messaging.clock.now_ms();
        if let Err(e) = services.users.touch(&identity.user, now).await {
            tracing::error!(error = %e, "recording user failed");
            return fail(ErrorCode::Unknown, "storage temporarily unavailable");
        }
        let max_seq = match services.messaging.inbox_head(&identity.user).await {
            Ok(h) => h,
            Err(e) => {
                tracing::error!(error = %e, "reading inbox head failed");
                return fail(ErrorCode::Unknown, "storage temporarily unavailable");
            }
        };
        let hub = services.messaging.hub();
        let presence = services.presence();
        let key = hub.session_key(self.id);
        // Re-auth on an authenticated socket: drop the old registration first.
        if let Some(old) = self.identity.take() {
            hub.unregister(&old.user, self.id);
            if old.user != identity.user {
                presence.unwatch_all(self.id);
                presence.session_down(&old.user, &key).await;
            }
        }
        let platform = if platform.is_empty() {
            identity.platform.clone()
        } else {
            platform
        };
        self.platform = platform.clone();
        self.token_id = identity.token_id.as_deref().map(Arc::from);
        self.streams.stop();
        self.ack_device = match self.generation {
            Generation::V2 => crate::sync::ack_device(&platform, identity.token_id.as_deref()),
            Generation::V1 => None,
        };
        *self.viewer.write() = Arc::from(identity.user.as_str());
        // Up before any older session is kicked: the kicked session's close
        // then never looks like the user's last session going away.
        presence.session_up(&identity.user, &key, &platform).await;
        let handle = self.handle(&identity.user);
        let policy = services.messaging.config().kick_policy;
        let kicked = hub.register(handle, policy);
        if let Some(c) = hub.cluster() {
            c.session_up(&identity.user, &key, &platform).await;
            c.kick_elsewhere(&identity.user, &platform, policy, &key);
        }
        if !kicked.is_empty() {
            let event = crate::hub::kicked_by_login();
            for s in kicked {
                // KICK_OUT is written, then the connection closes (transport rule).
                s.kick(&event);
            }
        }
        tracing::info!(session = self.id.0, user = %identity.user, "authenticated");
        self.identity = Some(identity);
        Reply::Auth {
            code: ErrorCode::Success,
            msg: String::new(),
            max_seq,
        }
    }
}
