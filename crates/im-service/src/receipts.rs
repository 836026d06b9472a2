//! Read receipts (READ_RECEIPT_REQ 500 / RSP 501 / PUSH 502).
//!
//! A receipt names messages of one conversation (server ids, or the
//! reader's own client ids), or none at all = the whole conversation. The
//! reader's read cursor moves to the highest named seq (never backwards);
//! unread counts and `is_read` in sync follow the cursor. The messages that
//! became read (after the old cursor, sent by others, not recalled; the
//! newest [`PUSH_CAP`]) are pushed to their senders — each sender gets only
//! their own messages' ids — and to the reader's other sessions (the v2 SDK
//! clears the conversation's unread count when `user_id` is itself).

use std::collections::BTreeMap;
use std::sync::Arc;

use im_core::command::{Event, Reply};
use im_core::model::StoredMessage;
use im_core::{ErrorCode, UserId};

use crate::conversations::access;
use crate::hub::SessionId;
use crate::messaging::{MessagingService, store_code, wire_error};

/// Most ids one receipt may name.
pub const MAX_RECEIPT_IDS: usize = 1000;
/// Most newly-read messages reported in the pushes of one receipt.
pub const PUSH_CAP: u32 = 500;

fn reply(code: ErrorCode, msg: impl Into<String>) -> Reply {
    Reply::ReadReceipt {
        code,
        msg: msg.into(),
    }
}

fn receipt(
    msgs: &[&StoredMessage],
    sender_id: &str,
    conversation_id: &str,
    reader: &UserId,
    now: i64,
) -> Arc<Event> {
    Arc::new(Event::ReadReceipt {
        server_msg_ids: msgs.iter().map(|m| m.server_msg_id.clone()).collect(),
        client_msg_ids: msgs.iter().map(|m| m.client_msg_id.clone()).collect(),
        sender_id: sender_id.to_owned(),
        conversation_id: conversation_id.to_owned(),
        user_id: reader.as_str().to_owned(),
        read_time: now,
    })
}

impl MessagingService {
    /// Marks messages of `conversation_id` read for `reader` (whose session
    /// `session` asked) and tells the senders and the reader's other sessions.
    pub async fn read_receipt(
        &self,
        reader: &UserId,
        session: SessionId,
        message_ids: &[String],
        conversation_id: &str,
    ) -> Reply {
        if message_ids.len() > MAX_RECEIPT_IDS {
            return reply(ErrorCode::InvalidParam, "too many message ids");
        }
        let a = match access(&self.directory, reader, conversation_id).await {
            Ok(a) => a,
            Err(e) => {
                let (code, msg) = wire_error(&e);
                return reply(code, msg);
            }
        };
        if a.conversation.room_id().is_some() {
            // Chat rooms keep no per-member state: nothing to record.
            return reply(ErrorCode::Success, "");
        }
        let conversation = a.conversation.to_string();
        let target = if message_ids.is_empty() {
            match self.conversations.history(&conversation, 0, 1).await {
                Ok(v) => v.first().map_or(0, |m| m.seq),
                Err(e) => {
                    let (code, msg) = store_code(&e);
                    return reply(code, msg);
                }
            }
        } else {
            let mut target = 0;
            for id in message_ids {
                match self.resolve_message(reader, id).await {
                    Ok(Some(m)) if m.conversation_id == conversation => target = target.max(m.seq),
                    Ok(_) => {}
                    Err(e) => {
                        let (code, msg) = store_code(&e);
                        return reply(code, msg);
                    }
                }
            }
            if target == 0 {
                return reply(
                    ErrorCode::InvalidParam,
                    "no such message in this conversation",
                );
            }
            target
        };
        if target == 0 {
            return reply(ErrorCode::Success, "");
        }
        let now = self.clock.now_ms();
        let before = match self
            .conversations
            .mark_read(reader.as_str(), &conversation, target, now)
            .await
        {
            Ok(b) => b,
            Err(e) => {
                let (code, msg) = store_code(&e);
                return reply(code, msg);
            }
        };
        if before >= target {
            return reply(ErrorCode::Success, "");
        }
        // The cursor is committed; failing to tell others is only logged.
        let newest = match self
            .conversations
            .history(&conversation, target.saturating_add(1), PUSH_CAP)
            .await
        {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e, "read receipt: listing newly read messages failed");
                return reply(ErrorCode::Success, "");
            }
        };
        let mut read: Vec<&StoredMessage> = newest
            .iter()
            .filter(|m| m.seq > before && m.sender_id != reader.as_str() && m.revoked.is_none())
            .collect();
        read.reverse();
        if read.is_empty() {
            return reply(ErrorCode::Success, "");
        }
        let mut by_sender: BTreeMap<&str, Vec<&StoredMessage>> = BTreeMap::new();
        for m in &read {
            by_sender.entry(m.sender_id.as_str()).or_default().push(m);
        }
        for (sender, msgs) in &by_sender {
            // A sender who left the group is not told.
            let still_there = match &a.group {
                Some(g) => g.member(sender).is_some(),
                None => true,
            };
            let Ok(sender_id) = UserId::parse(*sender) else {
                continue;
            };
            if still_there {
                let event = receipt(msgs, sender, &conversation, reader, now);
                self.hub.deliver(&sender_id, &event, None);
            }
        }
        let only_sender = if by_sender.len() == 1 {
            by_sender.keys().next().copied().unwrap_or("")
        } else {
            ""
        };
        let mine = receipt(&read, only_sender, &conversation, reader, now);
        self.hub.deliver(reader, &mine, Some(session));
        reply(ErrorCode::Success, "")
    }
}
