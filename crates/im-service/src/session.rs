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
use crate::error::Transient;
use crate::files::FileService;
use crate::groups::GroupService;
use crate::hub::{Outbound, SessionHandle, SessionId};
use crate::limits::Limits;
use crate::messaging::{MessagingService, SendRejected};
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
    /// The app backend's token (backend API off unless [`Self::with_backend`]).
    pub backend: crate::backend::BackendAuth,
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
            backend: crate::backend::BackendAuth::disabled(),
        }
    }

    /// The same services accepting backend calls authorised by `backend`.
    pub fn with_backend(mut self, backend: crate::backend::BackendAuth) -> Self {
        self.backend = backend;
        self
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

/// The wire generation of a connection, shared by its read loop (which
/// decodes with it and may detect it) and its writer (which encodes with
/// it): fixed by the transport or the URL, or detected on plain `/ws` from
/// the first request whose encoding differs between generations.
#[derive(Debug, Clone)]
pub struct GenerationCell(Arc<GenerationState>);

#[derive(Debug)]
struct GenerationState {
    /// 0: not known yet; 1: v1; 2: v2.
    value: std::sync::atomic::AtomicU8,
    /// Whether a request may still decide it.
    detecting: std::sync::atomic::AtomicBool,
    /// What encodes and decodes while nothing is known.
    fallback: Generation,
    known: tokio::sync::Notify,
}

fn generation_code(g: Generation) -> u8 {
    match g {
        Generation::V1 => 1,
        Generation::V2 => 2,
    }
}

impl GenerationCell {
    fn with(value: u8, detecting: bool, fallback: Generation) -> Self {
        Self(Arc::new(GenerationState {
            value: std::sync::atomic::AtomicU8::new(value),
            detecting: std::sync::atomic::AtomicBool::new(detecting),
            fallback,
            known: tokio::sync::Notify::new(),
        }))
    }

    /// A generation no request changes (TCP, `/ws/v1`, `/ws/v2`, `?v=`).
    pub fn fixed(generation: Generation) -> Self {
        Self::with(generation_code(generation), false, generation)
    }

    /// Not known yet: `fallback` until a request reveals it.
    pub fn detecting(fallback: Generation) -> Self {
        Self::with(0, true, fallback)
    }

    /// The generation, if fixed, detected or presumed.
    pub fn get(&self) -> Option<Generation> {
        match self.0.value.load(std::sync::atomic::Ordering::Acquire) {
            1 => Some(Generation::V1),
            2 => Some(Generation::V2),
            _ => None,
        }
    }

    /// The generation to encode and decode with now.
    pub fn current(&self) -> Generation {
        self.get().unwrap_or(self.0.fallback)
    }

    /// Whether a request may still decide the generation.
    pub fn is_detecting(&self) -> bool {
        self.0.detecting.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Takes `generation` for now (e.g. what the same token's last
    /// connection revealed); a revealing request still decides.
    pub fn presume(&self, generation: Generation) {
        if self.is_detecting() {
            self.0.value.store(
                generation_code(generation),
                std::sync::atomic::Ordering::Release,
            );
            self.0.known.notify_waiters();
        }
    }

    /// Settles the generation; true if this call decided it (false when it
    /// was fixed or already decided).
    pub fn decide(&self, generation: Generation) -> bool {
        if !self
            .0
            .detecting
            .swap(false, std::sync::atomic::Ordering::AcqRel)
        {
            return false;
        }
        self.0.value.store(
            generation_code(generation),
            std::sync::atomic::Ordering::Release,
        );
        self.0.known.notify_waiters();
        true
    }

    /// Resolves once the generation is known (fixed, presumed or decided).
    pub async fn known(&self) {
        loop {
            let notified = self.0.known.notified();
            if self.get().is_some() {
                return;
            }
            notified.await;
        }
    }
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
    pub generation: GenerationCell,
    pub transport: TransportKind,
    tx: crate::queue::Sender<Outbound>,
    close: CancellationToken,
    viewer: ViewerCell,
    identity: Option<Identity>,
    /// The platform the client announced in AUTH_REQ (device key for acks).
    platform: String,
    /// The `jti` of the token this session authenticated with.
    token_id: Option<Arc<str>>,
    /// The key of this session's MSG_ACK rows (`sync::ack_device`; used on v2 only).
    ack_device: Option<String>,
    /// The BATCH_SYNC backlog stream and the gate holding back pushes.
    streams: SyncStreams,
    /// The backlog of the last BATCH_SYNC reply, streamed by
    /// [`Self::after_reply`] once the transport queued the reply.
    followup: Option<Backlog>,
    /// Whether this session is sent its user's own messages (by platform).
    echo_own: bool,
    last_typing: Option<Instant>,
}

/// What the dispatcher made of a request.
pub enum Dispatched {
    /// Nothing to send back (ACK, typing).
    None,
    /// Send this reply now.
    Reply(Reply),
    /// The reply, if any, is ready when this future resolves (a send
    /// awaiting its commit; `None`: a transient failure, see
    /// `answer_transient`). It is already ordered with respect to other
    /// sends of the connection; the transport may run it concurrently with
    /// later frames.
    Later(BoxFuture<'static, Option<Reply>>),
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

/// The requests the client resends by itself when no reply comes, with
/// their `request` label; an error reply instead fails them for good:
/// - SEND_MSG_REQ: the SDK's send queue resends the same request (same
///   client_msg_id) after 5 s without a reply, at most 3 times
///   (IMMessageQueue.swift:36-37, 181-230, same at 5529e01 and 07bf3fe);
///   any non-zero SEND_MSG_RSP marks the message failed
///   (IMClient.swift:1163-1170 -> IMMessageManager.swift:369-392@07bf3fe;
///   IMClient.swift:864-868@5529e01).
/// - v2 BATCH_SYNC_REQ and SYNC_RANGE_REQ: 30 s without a reply, then
///   retried after 2, 4, 6 s (IMMessageSyncManager.swift:279-289, 305-352,
///   481-483, 513-563@07bf3fe); an error reply ends the sync
///   (:644-648, :584-587).
///
/// Revoke, read receipts and presence requests are sent once and their
/// replies only logged, and the v1 SDK syncs over HTTP: those keep their
/// error codes, which tell other clients what happened.
fn resent_on_silence(req: &Request) -> Option<&'static str> {
    match req {
        Request::Send(_) => Some("send"),
        Request::BatchSync { .. } => Some("batch_sync"),
        Request::SyncRange { .. } => Some("sync_range"),
        _ => None,
    }
}

/// The one rule for a request that a transient condition (a retry would
/// fix it: writer queue full, shutting down, rate limit, store briefly
/// unavailable) stopped: when the client resends it on silence (`resend`,
/// from [`resent_on_silence`]), nothing is answered and the suppressed
/// reply is counted (`im_replies_suppressed_total`); the resend then
/// succeeds once the condition is over (sends are idempotent on
/// (sender, client_msg_id)). Otherwise the answer is the condition's error
/// code and message.
fn answer_transient(
    resend: Option<&'static str>,
    t: Transient,
) -> Option<(ErrorCode, &'static str)> {
    match resend {
        Some(request) => {
            metrics::counter!(crate::metrics::REPLIES_SUPPRESSED, "request" => request, "reason" => t.reason())
                .increment(1);
            tracing::debug!(
                request,
                reason = t.reason(),
                "transient condition: no reply, the client resends"
            );
            None
        }
        None => Some((t.code(), t.message())),
    }
}

/// What a send that was not stored gets: its reply, or for a transient
/// condition what [`answer_transient`] says.
fn send_answer(
    resend: Option<&'static str>,
    client_msg_id: &str,
    rejected: SendRejected,
) -> Option<Reply> {
    match rejected {
        SendRejected::Reply(reply) => Some(reply),
        SendRejected::Transient(t) => answer_transient(resend, t)
            .map(|(code, msg)| crate::messaging::send_error(client_msg_id, code, msg)),
    }
}

impl SessionCtx {
    /// A new unauthenticated session writing into `tx`; `close` is cancelled
    /// when the session must be closed (kick, slow consumer).
    pub fn new(
        id: SessionId,
        generation: GenerationCell,
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
            echo_own: true,
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
            echo_own: self.echo_own,
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
        // BATCH_SYNC exists only in v2.
        let generation = Generation::V2;
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
            let command = req.command();
            return match answer_transient(resent_on_silence(&req), Transient::RateLimited) {
                Some((code, msg)) => Dispatched::Reply(Reply::error(command, code, msg)),
                None => Dispatched::None,
            };
        }
        let resend = resent_on_silence(&req);
        match req {
            Request::Send(send) => {
                let client_msg_id = send.client_msg_id.clone();
                match m.begin_send(&me.user, send).await {
                    Err(rejected) => match send_answer(resend, &client_msg_id, rejected) {
                        Some(reply) => Dispatched::Reply(reply),
                        None => Dispatched::None,
                    },
                    Ok((pending, recipients)) => {
                        let services = Arc::clone(services);
                        let session = self.id;
                        Dispatched::Later(Box::pin(async move {
                            let cid = client_msg_id.clone();
                            services
                                .messaging
                                .finish_send(&me.user, session, client_msg_id, pending, recipients)
                                .await
                                .map_or_else(|r| send_answer(resend, &cid, r), Some)
                        }))
                    }
                }
            }
            Request::Ack { message_id, .. } => {
                // Per-message rows serve BATCH_SYNC only: v2.
                let device = self
                    .ack_device
                    .as_deref()
                    .filter(|_| self.generation.current() == Generation::V2);
                match m.ack(&me.user, &self.platform, device, &message_id).await {
                    // The stored row leaves it out of streams from now on;
                    // only then may the connection's own record forget it
                    // (a stream running meanwhile would send it again).
                    Ok(true) => self.streams.gate.acked(&message_id),
                    Ok(false) => {}
                    Err(e) => tracing::warn!(error = %e, "recording MSG_ACK failed"),
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
        self.authenticate_as(services, identity, platform).await
    }

    /// Makes the session `identity`'s, whose token the caller has checked
    /// with [`AccountService::authenticate`] (a WebSocket's `?token=` at the
    /// upgrade): what a successful AUTH_REQ does (user recorded, presence,
    /// hub registration with the kick policy, re-auth of an authenticated
    /// session). An empty `platform` takes the token's. Returns the AUTH
    /// reply (`Success`, or `Unknown` when storage failed).
    pub async fn authenticate_as(
        &mut self,
        services: &Services,
        identity: Identity,
        platform: String,
    ) -> Reply {
        let fail = |code: ErrorCode, msg: &str| Reply::Auth {
            code,
            msg: msg.to_owned(),
            max_seq: 0,
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
        self.echo_own = services.messaging.config().echoes_own_messages(&platform);
        self.platform = platform.clone();
        self.token_id = identity.token_id.as_deref().map(Arc::from);
        self.streams.stop();
        self.ack_device = crate::sync::ack_device(&platform, identity.token_id.as_deref());
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
