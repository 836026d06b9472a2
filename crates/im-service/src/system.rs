//! System notices: messages from the app backend to users, in each user's
//! own `system_<user>` conversation (conversation type 4; the SDK builds
//! `system_<targetID>`, IMMessageManager.swift:577-578@07bf3fe, so an app
//! opens a user's notices as `system_<that user>`).
//!
//! One conversation per user keeps its seqs contiguous for that user (the
//! SDK's gap detection needs it). A notice is stored like a 1:1 message
//! whose only participant is the recipient: it is pushed live, in the
//! user's BATCH_SYNC, v1 sync and conversation list, and counted unread.
//! Its sender is [`SYSTEM_SENDER`]; users cannot send into `system_`
//! conversations ([`READ_ONLY`]). Each notice carries a synthetic, stable,
//! non-empty client_msg_id (sdk-contract §7.7): derived from the backend's
//! `request_id` when given (so a retried backend call stores nothing
//! twice), else from the server id.

use std::collections::HashSet;
use std::sync::Arc;

use bytes::Bytes;
use im_core::command::Event;
use im_core::model::{MessageType, NewMessage};
use im_core::{ConversationId, UserId, ids::validate_id};
use sha2::{Digest, Sha256};

use crate::error::ServiceError;
use crate::messaging::MessagingService;
use crate::writer::WriteError;

/// The sender id of every notice. Registration refuses it as a username.
pub const SYSTEM_SENDER: &str = "system";

/// What a user who sends into a system conversation is told.
pub const READ_ONLY: &str =
    "system conversations are read-only: only the app backend sends notices";

/// Most recipients of one notice call.
pub const MAX_NOTICE_RECIPIENTS: usize = 1000;

/// Prefix of synthetic client_msg_ids (the SDK's own are UUIDs or digits).
const CLIENT_ID_PREFIX: &str = "sys-";

/// A notice to send.
#[derive(Debug, Clone)]
pub struct Notice {
    pub user_ids: Vec<String>,
    pub message_type: i32,
    pub content: Bytes,
    pub extra: String,
    /// The backend's idempotency key: the same key and user always make
    /// the same client_msg_id, so a retried call returns the original.
    pub request_id: Option<String>,
}

/// One stored notice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoticeSent {
    pub user_id: String,
    pub conversation_id: String,
    pub server_msg_id: String,
    pub client_msg_id: String,
    pub seq: i64,
    pub server_time: i64,
    /// A retry of an earlier call with the same request id: nothing new
    /// was stored or pushed.
    pub duplicate: bool,
}

fn client_msg_id(request_id: Option<&str>, user: &UserId, server_msg_id: &str) -> String {
    match request_id {
        Some(r) => {
            let mut h = Sha256::new();
            h.update(r.as_bytes());
            h.update([0u8]);
            h.update(user.as_str().as_bytes());
            let d = h.finalize();
            format!(
                "{CLIENT_ID_PREFIX}{}",
                hex::encode(d.get(..16).unwrap_or(&d))
            )
        }
        None => format!("{CLIENT_ID_PREFIX}{server_msg_id}"),
    }
}

impl MessagingService {
    /// Stores one notice per recipient in their `system_<user>`
    /// conversation and pushes it to their sessions. All or nothing for
    /// validation; a store failure after some commits returns the error
    /// (a retry with the same `request_id` then completes the rest).
    pub async fn send_notices(&self, n: Notice) -> Result<Vec<NoticeSent>, ServiceError> {
        if n.user_ids.is_empty() || n.user_ids.len() > MAX_NOTICE_RECIPIENTS {
            return Err(ServiceError::invalid(format!(
                "userIds must list 1-{MAX_NOTICE_RECIPIENTS} users"
            )));
        }
        let mut seen = HashSet::new();
        let mut users = Vec::with_capacity(n.user_ids.len());
        for raw in &n.user_ids {
            let u = UserId::parse(raw.as_str())
                .map_err(|e| ServiceError::invalid(format!("userIds: {e}")))?;
            if seen.insert(u.clone()) {
                users.push(u);
            }
        }
        if let Some(r) = &n.request_id {
            validate_id(r).map_err(|_| {
                ServiceError::invalid("requestId must be 1-64 chars of [A-Za-z0-9_-]")
            })?;
        }
        if n.content.is_empty() {
            return Err(ServiceError::invalid("content must not be empty"));
        }
        if n.content.len() > self.cfg.max_content_bytes
            || n.extra.len() > self.cfg.max_content_bytes
        {
            return Err(ServiceError::invalid(format!(
                "content and extra are limited to {} bytes each",
                self.cfg.max_content_bytes
            )));
        }
        crate::error::check_no_nul("extra", &n.extra)?;
        if !MessageType(n.message_type).is_known() {
            return Err(ServiceError::invalid("unknown messageType"));
        }
        if self.cfg.require_registered_users {
            for u in &users {
                if !self.users.exists(u).await? {
                    return Err(ServiceError::UserNotExist(u.as_str().to_owned()));
                }
            }
        }
        let sender = UserId::parse(SYSTEM_SENDER)
            .map_err(|_| ServiceError::invalid("bad system sender id"))?;
        let now = self.clock.now_ms();
        let mut pending = Vec::with_capacity(users.len());
        for u in users {
            let server_msg_id = self.ids.server_msg_id();
            let conversation = ConversationId::system(&u);
            let msg = NewMessage {
                client_msg_id: client_msg_id(n.request_id.as_deref(), &u, &server_msg_id),
                server_msg_id,
                conversation_id: conversation.to_string(),
                conversation_type: conversation.kind(),
                sender_id: sender.clone(),
                receiver_id: u.as_str().to_owned(),
                group_id: String::new(),
                message_type: n.message_type,
                content: n.content.clone(),
                send_time: now,
                server_time: now,
                extra: n.extra.clone(),
                // The recipient only: the system sender takes part in no
                // conversation (it would list every user's notices).
                participants: vec![u.clone()],
            };
            let p = self.writer.submit(msg).await.map_err(write_error)?;
            pending.push((u, p));
        }
        let mut out = Vec::with_capacity(pending.len());
        let mut failure = None;
        for (u, p) in pending {
            let r = p.wait().await;
            let outcome = match &r {
                Ok(a) if a.duplicate => "duplicate",
                Ok(_) => "stored",
                Err(_) => "failed",
            };
            metrics::counter!(crate::metrics::MESSAGES_SENT, "kind" => "system", "outcome" => outcome)
                .increment(1);
            match r {
                Ok(a) => {
                    let m = a.message;
                    out.push(NoticeSent {
                        user_id: u.as_str().to_owned(),
                        conversation_id: m.conversation_id.clone(),
                        server_msg_id: m.server_msg_id.clone(),
                        client_msg_id: m.client_msg_id.clone(),
                        seq: m.seq,
                        server_time: m.server_time,
                        duplicate: a.duplicate,
                    });
                    if !a.duplicate {
                        let event = Arc::new(Event::Message(Arc::new(m)));
                        self.hub.deliver(&u, &event, None);
                    }
                }
                Err(e) => failure = Some(write_error(e)),
            }
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }
}

fn write_error(e: WriteError) -> ServiceError {
    match e {
        WriteError::Store(s) => ServiceError::from(s),
        WriteError::Overloaded => {
            ServiceError::Store(im_core::StoreError::Unavailable("writer queue full".into()))
        }
        WriteError::Closed => {
            ServiceError::Store(im_core::StoreError::Unavailable("shutting down".into()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_client_ids_are_valid_stable_and_per_user() {
        let a = UserId::parse("alice").unwrap();
        let b = UserId::parse("bob").unwrap();
        let x = client_msg_id(Some("req-1"), &a, "s1");
        assert_eq!(x, client_msg_id(Some("req-1"), &a, "s2"));
        assert_ne!(x, client_msg_id(Some("req-1"), &b, "s1"));
        assert_ne!(x, client_msg_id(Some("req-2"), &a, "s1"));
        assert!(validate_id(&x).is_ok() && x.starts_with(CLIENT_ID_PREFIX));
        let y = client_msg_id(None, &a, "0123456789abcdef0123456789abcdef");
        assert!(validate_id(&y).is_ok());
        assert!(UserId::parse(SYSTEM_SENDER).is_ok());
    }
}
