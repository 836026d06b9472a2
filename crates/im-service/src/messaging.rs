//! Messaging use cases: send (1:1 and group), typing. Ack and the
//! batch/range/inbox syncs are in `sync.rs`, recall and read receipts in
//! `recall.rs` and `receipts.rs`.
//!
//! The `MessagingService` also owns the other use cases that share its
//! ports and caches ([`GroupService`], [`ConversationService`],
//! [`PresenceService`]); reach them through its accessors or through
//! `Services`.

use std::sync::Arc;

use im_core::command::{Event, Reply, SendRequest};
use im_core::model::{MessageType, MessageView, NewMessage, StoredMessage};
use im_core::ports::{
    Clock, ConversationStore, FriendStore, GroupStore, IdGen, MessageStore, PresenceStore,
    UserStore,
};
use im_core::{ConversationId, ErrorCode, StoreError, UserId, ids::validate_id};

use crate::blocks::BlockCache;
use crate::config::ServiceConfig;
use crate::conversations::{ConversationService, access};
use crate::directory::GroupDirectory;
use crate::error::{ServiceError, Transient};
use crate::groups::GroupService;
use crate::hub::{Hub, SessionId};
use crate::presence::PresenceService;
use crate::social::SocialService;
use crate::writer::{MessageWriter, Pending, WriteError};

/// The most messages [`MessagingService::inbox_backlog`] counts: a count
/// reads index entries, so a huge backlog is reported as this many.
pub const INBOX_COUNT_CAP: u32 = 10_000;

/// Every port the services use. `bins/im-server` fills it with the
/// concrete adapters; tests with `im-testkit` fakes.
pub struct Ports {
    pub messages: Arc<dyn MessageStore>,
    pub users: Arc<dyn UserStore>,
    pub groups: Arc<dyn GroupStore>,
    pub conversations: Arc<dyn ConversationStore>,
    pub presence: Arc<dyn PresenceStore>,
    pub friends: Arc<dyn FriendStore>,
    pub clock: Arc<dyn Clock>,
    pub ids: Arc<dyn IdGen>,
}

impl std::fmt::Debug for Ports {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ports").finish_non_exhaustive()
    }
}

/// The messaging use cases, shared by every session.
pub struct MessagingService {
    pub(crate) store: Arc<dyn MessageStore>,
    pub(crate) users: Arc<dyn UserStore>,
    pub(crate) conversations: Arc<dyn ConversationStore>,
    pub(crate) directory: Arc<GroupDirectory>,
    pub(crate) writer: MessageWriter,
    pub(crate) hub: Arc<Hub>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) ids: Arc<dyn IdGen>,
    pub(crate) cfg: ServiceConfig,
    group_service: GroupService,
    conversation_service: ConversationService,
    presence: Arc<PresenceService>,
    pub(crate) blocks: Arc<BlockCache>,
    social: SocialService,
    pub(crate) file_refs: crate::files::FileRefs,
}

impl std::fmt::Debug for MessagingService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessagingService").finish_non_exhaustive()
    }
}

pub(crate) fn send_error(req_client_id: &str, code: ErrorCode, msg: &str) -> Reply {
    Reply::Send {
        code,
        msg: msg.to_owned(),
        server_msg_id: String::new(),
        client_msg_id: req_client_id.to_owned(),
        seq: 0,
        server_time: 0,
    }
}

pub(crate) fn store_code(e: &StoreError) -> (ErrorCode, &'static str) {
    tracing::warn!(error = %e, "store call failed");
    if e.is_retryable() {
        (ErrorCode::Unknown, "storage temporarily unavailable, retry")
    } else {
        (ErrorCode::Unknown, "storage error")
    }
}

/// A service error as the (code, message) of a wire reply.
pub(crate) fn wire_error(e: &ServiceError) -> (ErrorCode, String) {
    if let ServiceError::Store(s) = e {
        tracing::warn!(error = %s, "store call failed");
    }
    (e.code(), e.public_message())
}

/// Why a send got no success reply from [`MessagingService::begin_send`]
/// or [`MessagingService::finish_send`].
#[derive(Debug)]
pub enum SendRejected {
    /// Answer with this reply: a refusal a retry cannot fix (the SDK marks
    /// the message failed), or the original result of a retransmit the
    /// sender may no longer send.
    Reply(Reply),
    /// A condition a retry fixes ([`Transient`]); the session decides what
    /// the client is told.
    Transient(Transient),
}

impl SendRejected {
    fn refused(client_msg_id: &str, code: ErrorCode, msg: &str) -> Self {
        Self::Reply(send_error(client_msg_id, code, msg))
    }

    /// A writer failure: transient, or a store error a retry cannot fix.
    fn write_failed(client_msg_id: &str, e: &WriteError) -> Self {
        if let Some(t) = Transient::of_write(e) {
            tracing::warn!(error = %e, reason = t.reason(), "send not written");
            return Self::Transient(t);
        }
        let (code, m) = match e {
            WriteError::Store(s) => store_code(s),
            other => {
                tracing::warn!(error = %other, "send not written");
                (ErrorCode::Unknown, "storage error")
            }
        };
        Self::refused(client_msg_id, code, m)
    }
}

/// Why [`MessagingService::route`] refused a send.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// For good, with this wire code.
    Code(ErrorCode, &'static str),
    /// A condition a retry fixes.
    Transient(Transient),
}

impl From<(ErrorCode, &'static str)> for Refusal {
    fn from((code, msg): (ErrorCode, &'static str)) -> Self {
        Self::Code(code, msg)
    }
}

impl Refusal {
    /// A store error while routing: transient when a retry may fix it.
    fn store(e: &StoreError) -> Self {
        match Transient::of_store(e) {
            Some(t) => {
                tracing::warn!(error = %e, "store call failed");
                Self::Transient(t)
            }
            None => store_code(e).into(),
        }
    }
}

/// Where a message goes once it is committed.
struct Route {
    conversation: ConversationId,
    recipients: Vec<UserId>,
}

impl MessagingService {
    /// Every use case over `ports`. `writer` must write into
    /// `ports.messages` (see [`MessageWriter::spawn`]).
    pub fn from_ports(
        ports: Ports,
        writer: MessageWriter,
        hub: Arc<Hub>,
        cfg: ServiceConfig,
    ) -> Self {
        let Ports {
            messages,
            users,
            groups,
            conversations,
            presence,
            friends,
            clock,
            ids,
        } = ports;
        let link = hub.cluster().cloned();
        let blocks = Arc::new(BlockCache::new(
            Arc::clone(&friends),
            cfg.group_cache_capacity,
            cfg.group_cache_ttl,
            link.clone(),
        ));
        let social = SocialService::new(
            Arc::clone(&users),
            friends,
            Arc::clone(&blocks),
            Arc::clone(&clock),
        );
        let directory = Arc::new(
            GroupDirectory::new(
                Arc::clone(&groups),
                cfg.group_cache_capacity,
                cfg.group_cache_ttl,
                link.clone(),
            )
            .with_rooms(cfg.chat_rooms.clone()),
        );
        let group_service = GroupService::new(
            groups,
            Arc::clone(&users),
            Arc::clone(&directory),
            Arc::clone(&clock),
            Arc::clone(&ids),
            cfg.max_group_members,
            cfg.require_registered_users,
        );
        let conversation_service =
            ConversationService::new(Arc::clone(&conversations), Arc::clone(&directory));
        let presence = Arc::new(PresenceService::new(
            presence,
            Arc::clone(&clock),
            cfg.max_presence_subscriptions,
            link,
        ));
        Self {
            store: messages,
            users,
            conversations,
            directory,
            writer,
            hub,
            clock,
            ids,
            cfg,
            group_service,
            conversation_service,
            presence,
            blocks,
            social,
            file_refs: crate::files::FileRefs::none(),
        }
    }

    /// Notes the file ids of every stored message with `refs`, so those
    /// files stop being pending (see [`crate::FileService::with_reference_tracking`]).
    #[must_use]
    pub fn with_file_refs(mut self, refs: crate::files::FileRefs) -> Self {
        self.file_refs = refs;
        self
    }

    /// Connects this node to the others through its hub's link
    /// ([`Hub::clustered`], made with `outbox` by
    /// [`Cluster::new`](crate::cluster::Cluster::new)):
    /// pushes, kicks, presence changes and cache invalidations then reach
    /// sessions and caches on every node. Returns the cluster's tasks, which
    /// end when `shutdown` is cancelled. A hub without a link has nothing
    /// to connect: the set is empty.
    pub fn connect_cluster(
        &self,
        outbox: crate::cluster::Outbox,
        shutdown: &tokio_util::sync::CancellationToken,
    ) -> tokio::task::JoinSet<()> {
        let Some(link) = self.hub.cluster() else {
            return tokio::task::JoinSet::new();
        };
        let receiver = crate::cluster::Receiver {
            node_id: link.node_id().to_owned(),
            hub: Arc::clone(&self.hub),
            presence: Arc::clone(&self.presence),
            directory: Arc::clone(&self.directory),
            blocks: Arc::clone(&self.blocks),
            stats: Arc::clone(link.stats()),
        };
        crate::cluster::connect(link, outbox, receiver, shutdown)
    }

    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    pub fn config(&self) -> &ServiceConfig {
        &self.cfg
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Group management.
    pub fn groups(&self) -> &GroupService {
        &self.group_service
    }

    /// Conversation list, history, unread counts, read cursors.
    pub fn conversations(&self) -> &ConversationService {
        &self.conversation_service
    }

    /// Online status and its subscriptions.
    /// Profiles, friends and blocklists.
    pub fn social(&self) -> &SocialService {
        &self.social
    }

    pub fn presence(&self) -> &Arc<PresenceService> {
        &self.presence
    }

    /// Resolves the conversation of a send and who receives it.
    async fn route(&self, sender: &UserId, req: &SendRequest) -> Result<Route, Refusal> {
        if req.conversation_id.starts_with("system_") {
            return Err(Refusal::Code(
                ErrorCode::PermissionDenied,
                crate::system::READ_ONLY,
            ));
        }
        let conversation = if req.conversation_id.is_empty() && !req.group_id.is_empty() {
            ConversationId::group(&req.group_id)
                .map_err(|_| (ErrorCode::InvalidParam, "malformed group_id"))?
        } else if req.conversation_id.is_empty() {
            let peer = UserId::parse(req.receiver_id.as_str()).map_err(|_| {
                (
                    ErrorCode::InvalidParam,
                    "conversation_id or receiver_id required",
                )
            })?;
            ConversationId::single(sender, &peer)
        } else {
            ConversationId::parse_for(&req.conversation_id, sender).map_err(|e| match e {
                im_core::IdError::NotParticipant => (
                    ErrorCode::PermissionDenied,
                    "not a participant of this conversation",
                ),
                _ => (ErrorCode::InvalidParam, "malformed conversation_id"),
            })?
        };
        match &conversation {
            ConversationId::Single { .. } => {
                let peer = conversation
                    .peer_of(sender)
                    .cloned()
                    .ok_or((ErrorCode::InvalidParam, "malformed conversation_id"))?;
                if !req.receiver_id.is_empty() && req.receiver_id != peer.as_str() {
                    return Err(Refusal::Code(
                        ErrorCode::InvalidParam,
                        "receiver_id does not match conversation_id",
                    ));
                }
                if !req.group_id.is_empty() {
                    return Err(Refusal::Code(
                        ErrorCode::InvalidParam,
                        "group_id set on a single conversation",
                    ));
                }
                match self.blocks.is_blocked(peer.as_str(), sender.as_str()).await {
                    Ok(false) => {}
                    Ok(true) => {
                        return Err(Refusal::Code(
                            ErrorCode::PermissionDenied,
                            "the receiver blocked you",
                        ));
                    }
                    Err(e) => return Err(Refusal::store(&e)),
                }
                if self.cfg.require_registered_users {
                    match self.users.exists(&peer).await {
                        Ok(true) => {}
                        Ok(false) => {
                            return Err(Refusal::Code(
                                ErrorCode::UserNotExist,
                                "receiver does not exist",
                            ));
                        }
                        Err(e) => return Err(Refusal::store(&e)),
                    }
                }
                Ok(Route {
                    conversation,
                    recipients: vec![peer],
                })
            }
            ConversationId::Group { group_id } => {
                if !req.group_id.is_empty() && req.group_id != *group_id {
                    return Err(Refusal::Code(
                        ErrorCode::InvalidParam,
                        "group_id does not match conversation_id",
                    ));
                }
                if !req.receiver_id.is_empty() {
                    return Err(Refusal::Code(
                        ErrorCode::InvalidParam,
                        "receiver_id set on a group conversation",
                    ));
                }
                let group = match self.directory.get(group_id).await {
                    Ok(Some(g)) if !g.is_dismissed() => g,
                    Ok(_) => {
                        return Err(Refusal::Code(
                            ErrorCode::ConversationNotExist,
                            "no such group",
                        ));
                    }
                    Err(e) => return Err(Refusal::store(&e)),
                };
                let Some(me) = group.member(sender.as_str()) else {
                    return Err(Refusal::Code(
                        ErrorCode::PermissionDenied,
                        "not a member of this group",
                    ));
                };
                let now = self.clock.now_ms();
                if me.muted_until > now || (group.group.mute_all && !me.role.is_manager()) {
                    return Err(Refusal::Code(ErrorCode::PermissionDenied, "muted"));
                }
                let recipients = group
                    .member_ids
                    .iter()
                    .filter(|u| *u != sender)
                    .cloned()
                    .collect();
                Ok(Route {
                    conversation,
                    recipients,
                })
            }
            ConversationId::ChatRoom { room_id } => {
                if !req.receiver_id.is_empty() || !req.group_id.is_empty() {
                    return Err(Refusal::Code(
                        ErrorCode::InvalidParam,
                        "receiver_id/group_id set on a chat room conversation",
                    ));
                }
                let recipients = self.chat_room_recipients(sender, room_id)?;
                Ok(Route {
                    conversation,
                    recipients,
                })
            }
            ConversationId::System { .. } => Err(Refusal::Code(
                ErrorCode::PermissionDenied,
                crate::system::READ_ONLY,
            )),
        }
    }

    /// Validates and queues a send. On success the returned [`Pending`] resolves
    /// after commit; [`Self::finish_send`] then pushes and builds the reply.
    /// `Err` is a reply to send at once (a refusal, or the original result
    /// of a retransmit the sender may no longer send), or a transient
    /// condition (writer queue full, shutting down, store unavailable).
    pub async fn begin_send(
        &self,
        sender: &UserId,
        req: SendRequest,
    ) -> Result<(Pending, Vec<UserId>), SendRejected> {
        let r = self.begin_send_unmetered(sender, req).await;
        if let Err(SendRejected::Reply(Reply::Send { code, .. })) = &r {
            if *code != ErrorCode::Success {
                let code = (*code as i32).to_string();
                metrics::counter!(crate::metrics::MESSAGES_REFUSED, "code" => code).increment(1);
            }
        }
        r
    }

    async fn begin_send_unmetered(
        &self,
        sender: &UserId,
        req: SendRequest,
    ) -> Result<(Pending, Vec<UserId>), SendRejected> {
        let cid = req.client_msg_id.as_str();
        if validate_id(cid).is_err() {
            return Err(SendRejected::refused(
                cid,
                ErrorCode::InvalidParam,
                "client_msg_id must be 1-64 chars of [A-Za-z0-9_-]",
            ));
        }
        if req.content.len() > self.cfg.max_content_bytes {
            return Err(SendRejected::refused(
                cid,
                ErrorCode::MessageTooLarge,
                "content too large",
            ));
        }
        if req.extra.len() > self.cfg.max_content_bytes {
            return Err(SendRejected::refused(
                cid,
                ErrorCode::MessageTooLarge,
                "extra too large",
            ));
        }
        if req.extra.contains('\0') {
            // PostgreSQL text cannot hold NUL: refuse it here rather than
            // fail the writer batch it would share with other messages.
            return Err(SendRejected::refused(
                cid,
                ErrorCode::InvalidParam,
                "extra must not contain NUL characters",
            ));
        }
        if !MessageType(req.message_type).is_known() {
            return Err(SendRejected::refused(
                cid,
                ErrorCode::InvalidParam,
                "unknown message_type",
            ));
        }
        let route = match self.route(sender, &req).await {
            Ok(r) => r,
            Err(Refusal::Transient(t)) => return Err(SendRejected::Transient(t)),
            Err(Refusal::Code(code, m)) => {
                // A retransmit of a message accepted before the sender lost
                // the right to send (blocked, kicked, muted) still gets its
                // original result: the client must not mark it failed.
                if code == ErrorCode::PermissionDenied {
                    if let Ok(Some(orig)) = self.store.find_by_client_id(sender, cid).await {
                        return Err(SendRejected::Reply(Reply::Send {
                            code: ErrorCode::Success,
                            msg: String::new(),
                            server_msg_id: orig.server_msg_id,
                            client_msg_id: orig.client_msg_id,
                            seq: orig.seq,
                            server_time: orig.server_time,
                        }));
                    }
                }
                return Err(SendRejected::refused(cid, code, m));
            }
        };
        let mut participants = Vec::with_capacity(route.recipients.len() + 1);
        participants.push(sender.clone());
        participants.extend(route.recipients.iter().filter(|u| *u != sender).cloned());
        if route.conversation.room_id().is_some() {
            // A chat room is nobody's conversation in the store: no
            // membership rows, so no conversation list entry, no unread
            // count, no BATCH_SYNC (see chatrooms.rs).
            participants.clear();
        }
        let msg = NewMessage {
            server_msg_id: self.ids.server_msg_id(),
            client_msg_id: req.client_msg_id,
            conversation_id: route.conversation.to_string(),
            conversation_type: route.conversation.kind(),
            sender_id: sender.clone(),
            receiver_id: route
                .conversation
                .peer_of(sender)
                .map(|p| p.as_str().to_owned())
                .unwrap_or_default(),
            group_id: route.conversation.group_id().unwrap_or_default().to_owned(),
            message_type: req.message_type,
            content: req.content,
            send_time: req.send_time,
            server_time: self.clock.now_ms(),
            extra: req.extra,
            participants,
        };
        let client_msg_id = msg.client_msg_id.clone();
        match self.writer.submit(msg).await {
            Ok(p) => Ok((p, route.recipients)),
            Err(e) => Err(SendRejected::write_failed(&client_msg_id, &e)),
        }
    }

    /// Awaits the commit of a queued send, pushes it (only if it is new) to
    /// every recipient session and to the sender's other sessions (those
    /// that take echoes of their own messages, see [`crate::hub`]), and
    /// builds the SEND_MSG_RSP; `Err` as for [`Self::begin_send`].
    pub async fn finish_send(
        &self,
        sender: &UserId,
        session: SessionId,
        client_msg_id: String,
        pending: Pending,
        recipients: Vec<UserId>,
    ) -> Result<Reply, SendRejected> {
        let kind = crate::metrics::conversation_kind(pending.conversation_type());
        let result = pending.wait().await;
        let outcome = match &result {
            Ok(a) if a.duplicate => "duplicate",
            Ok(_) => "stored",
            Err(_) => "failed",
        };
        metrics::counter!(crate::metrics::MESSAGES_SENT, "kind" => kind, "outcome" => outcome)
            .increment(1);
        match result {
            Ok(appended) => {
                let m = appended.message;
                self.file_refs.note(&m.content);
                let reply = Reply::Send {
                    code: ErrorCode::Success,
                    msg: String::new(),
                    server_msg_id: m.server_msg_id.clone(),
                    client_msg_id: m.client_msg_id.clone(),
                    seq: m.seq,
                    server_time: m.server_time,
                };
                if !appended.duplicate {
                    let event = Arc::new(Event::Message(Arc::new(m)));
                    for r in &recipients {
                        self.hub.deliver(r, &event, None);
                    }
                    if !recipients.contains(sender) {
                        self.hub.deliver(sender, &event, Some(session));
                    }
                }
                Ok(reply)
            }
            Err(e) => Err(SendRejected::write_failed(&client_msg_id, &e)),
        }
    }

    /// Finds a message by the id a client holds: a server id, or (for v1
    /// clients and own messages) the sender's client_msg_id.
    pub async fn resolve_message(
        &self,
        user: &UserId,
        id: &str,
    ) -> Result<Option<StoredMessage>, StoreError> {
        if validate_id(id).is_err() {
            return Ok(None);
        }
        if let Some(m) = self.store.find_by_server_id(id).await? {
            return Ok(Some(m));
        }
        self.store.find_by_client_id(user, id).await
    }

    /// Whether `user` takes part in the conversation of `m` now.
    pub(crate) async fn is_participant(
        &self,
        user: &UserId,
        m: &StoredMessage,
    ) -> Result<bool, StoreError> {
        match access(&self.directory, user, &m.conversation_id).await {
            Ok(_) => Ok(true),
            Err(ServiceError::Store(e)) => Err(e),
            Err(_) => Ok(false),
        }
    }

    /// `m` as `user` sees it: read when it is their own or at or below their
    /// read cursor (`read`) in its conversation.
    pub(crate) fn view(user: &UserId, read: i64, m: StoredMessage) -> MessageView {
        let is_read = m.sender_id == user.as_str() || m.seq <= read;
        MessageView {
            message: m,
            is_read,
        }
    }

    /// `user`'s read cursor in `conversation_id`.
    pub(crate) async fn read_seq(
        &self,
        user: &UserId,
        conversation_id: &str,
    ) -> Result<i64, StoreError> {
        self.conversations
            .read_seq(user.as_str(), conversation_id)
            .await
    }

    pub(crate) fn clamp_count(&self, asked: i32) -> u32 {
        if asked <= 0 {
            self.cfg.sync_default_per_conversation
        } else {
            u32::try_from(asked)
                .unwrap_or(u32::MAX)
                .min(self.cfg.sync_max_per_conversation)
        }
    }

    /// Cursor of the newest message in `user`'s conversations (AuthResponse.max_seq).
    pub async fn inbox_head(&self, user: &UserId) -> Result<i64, StoreError> {
        self.store.inbox_head(user).await
    }

    /// How many messages v1 sync has for `user` after `after`, counted up
    /// to [`INBOX_COUNT_CAP`] (the HTTP sync's `totalCount`).
    pub async fn inbox_backlog(&self, user: &UserId, after: i64) -> Result<u64, StoreError> {
        self.store
            .inbox_count_after(user, after, INBOX_COUNT_CAP)
            .await
    }

    /// Relays a typing notification to the other participants' sessions:
    /// the peer of a 1:1 conversation, every other member of a group (the
    /// typist must be a member). Never stored. Rate limiting is per session,
    /// in the dispatcher.
    pub async fn typing(
        &self,
        user: &UserId,
        conversation_id: &str,
        status: i32,
    ) -> Result<(), ServiceError> {
        let a = access(&self.directory, user, conversation_id).await?;
        let event = Arc::new(Event::Typing {
            conversation_id: a.conversation.to_string(),
            user_id: user.as_str().to_owned(),
            status: i32::from(status == 1),
        });
        match &a.group {
            Some(g) => {
                for member in g.member_ids.iter().filter(|m| *m != user) {
                    self.hub.deliver(member, &event, None);
                }
            }
            None => {
                if let Some(peer) = a.conversation.peer_of(user) {
                    // A blocked typist is not relayed (a store error: not either).
                    let blocked = self
                        .blocks
                        .is_blocked(peer.as_str(), user.as_str())
                        .await
                        .unwrap_or(true);
                    if peer != user && !blocked {
                        self.hub.deliver(peer, &event, None);
                    }
                }
            }
        }
        Ok(())
    }
}
