//! Recall (REVOKE_MSG_REQ 205 / RSP 206 / PUSH 207).
//!
//! The sender may recall within `recall_window`; a group's owner and admins
//! may recall any message of the group at any time. The message stays
//! stored, marked recalled (sync shows `is_revoked`, unread counts skip
//! it), and REVOKE_MSG_PUSH goes to every session of every participant,
//! the revoker's own sessions included (the v2 SDK expects it everywhere).

use std::sync::Arc;

use im_core::command::{Event, Reply};
use im_core::model::StoredMessage;
use im_core::{ErrorCode, UserId};

use crate::conversations::access;
use crate::messaging::{MessagingService, store_code, wire_error};

fn reply(code: ErrorCode, msg: impl Into<String>) -> Reply {
    Reply::Revoke {
        code,
        msg: msg.into(),
    }
}

impl MessagingService {
    /// Recalls the message `message_id` names (a server id, or the
    /// requester's own client id as v1 clients know their messages).
    /// `conversation_id`, when given, must be the message's.
    pub async fn revoke(&self, user: &UserId, message_id: &str, conversation_id: &str) -> Reply {
        let m = match self.resolve_message(user, message_id).await {
            Ok(Some(m)) => m,
            Ok(None) => return reply(ErrorCode::InvalidParam, "no such message"),
            Err(e) => {
                let (code, msg) = store_code(&e);
                return reply(code, msg);
            }
        };
        // Access first: an outsider holding a server id must not learn
        // which conversation it is in from the answer to a wrong guess.
        let a = match access(&self.directory, user, &m.conversation_id).await {
            Ok(a) => a,
            Err(e) => {
                let (code, msg) = wire_error(&e);
                return reply(code, msg);
            }
        };
        if !conversation_id.is_empty() && conversation_id != m.conversation_id {
            return reply(
                ErrorCode::InvalidParam,
                "message is not in this conversation",
            );
        }
        if m.revoked.is_some() {
            return reply(ErrorCode::Success, "");
        }
        let now = self.clock.now_ms();
        let manager = a
            .group
            .as_ref()
            .and_then(|g| g.member(user.as_str()))
            .is_some_and(|me| me.role.is_manager());
        let own = m.sender_id == user.as_str();
        let window = i64::try_from(self.cfg.recall_window.as_millis()).unwrap_or(i64::MAX);
        if !manager {
            if !own {
                return reply(
                    ErrorCode::PermissionDenied,
                    "only the sender or a group owner/admin may recall this message",
                );
            }
            if now.saturating_sub(m.server_time) > window {
                return reply(ErrorCode::PermissionDenied, "the recall window has passed");
            }
        }
        let updated = match self
            .conversations
            .revoke(&m.server_msg_id, user.as_str(), now)
            .await
        {
            Ok(Some(u)) => u,
            Ok(None) => return reply(ErrorCode::InvalidParam, "no such message"),
            Err(e) => {
                let (code, msg) = store_code(&e);
                return reply(code, msg);
            }
        };
        let targets = match &a.group {
            Some(g) => g.member_ids.clone(),
            None if a.conversation.room_id().is_some() => self
                .rooms()
                .members(a.conversation.room_id().unwrap_or_default()),
            None => {
                let mut v = vec![user.clone()];
                if let Some(peer) = a.conversation.peer_of(user) {
                    if peer != user {
                        v.push(peer.clone());
                    }
                }
                v
            }
        };
        self.push_revoked(&updated, &targets);
        reply(ErrorCode::Success, "")
    }

    fn push_revoked(&self, m: &StoredMessage, targets: &[UserId]) {
        let Some(r) = &m.revoked else { return };
        let event = Arc::new(Event::Revoked {
            server_msg_id: m.server_msg_id.clone(),
            client_msg_id: m.client_msg_id.clone(),
            sender_id: m.sender_id.clone(),
            conversation_id: m.conversation_id.clone(),
            revoked_by: r.by.clone(),
            revoked_time: r.time,
        });
        for t in targets {
            self.hub.deliver(t, &event, None);
        }
    }
}
