//! Per-user conversation state for the HTTP API: the conversation list
//! (last message, unread count, updated time), history paging and read
//! cursors, with the same access rules as the socket: a 1:1 conversation
//! is readable by its two ends, a group conversation by its current members,
//! a chat room by its members (its newest messages only), a system
//! conversation by its owner.

use std::sync::Arc;

use im_core::model::MessageView;
use im_core::ports::ConversationStore;
use im_core::{ConversationId, ConversationSummary, IdError, UserId};

use crate::directory::{GroupDirectory, GroupSnapshot};
use crate::error::ServiceError;

/// Default and ceiling of conversations in one list.
pub const LIST_DEFAULT: u32 = 100;
pub const LIST_MAX: u32 = 1000;
/// Default and ceiling of messages in one history page.
pub const HISTORY_DEFAULT: u32 = 50;
pub const HISTORY_MAX: u32 = 500;

type Result<T> = std::result::Result<T, ServiceError>;

/// A conversation `user` may read, and its group when it is one.
pub(crate) struct Access {
    pub conversation: ConversationId,
    pub group: Option<Arc<GroupSnapshot>>,
}

/// Checks that `user` takes part in `raw` now: one of the two ends of a 1:1
/// conversation, a current member of a live group.
pub(crate) async fn access(dir: &GroupDirectory, user: &UserId, raw: &str) -> Result<Access> {
    let conversation = ConversationId::parse_for(raw, user).map_err(|e| match e {
        IdError::NotParticipant => ServiceError::denied("not a participant of this conversation"),
        _ => ServiceError::invalid("malformed conversation_id"),
    })?;
    if let Some(room) = conversation.room_id() {
        if !dir.rooms.is_member(room, user) {
            return Err(ServiceError::denied("not in this chat room: join it first"));
        }
    }
    let group = match conversation.group_id() {
        None => None,
        Some(gid) => {
            let g = match dir.get(gid).await? {
                Some(g) if !g.is_dismissed() => g,
                _ => return Err(ServiceError::not_found("no such conversation")),
            };
            if g.member(user.as_str()).is_none() {
                return Err(ServiceError::denied("not a member of this group"));
            }
            Some(g)
        }
    };
    Ok(Access {
        conversation,
        group,
    })
}

fn clamp(asked: u32, default: u32, max: u32) -> u32 {
    if asked == 0 { default } else { asked.min(max) }
}

/// The conversation-state use cases.
pub struct ConversationService {
    store: Arc<dyn ConversationStore>,
    directory: Arc<GroupDirectory>,
}

impl std::fmt::Debug for ConversationService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConversationService")
            .finish_non_exhaustive()
    }
}

impl ConversationService {
    pub(crate) fn new(store: Arc<dyn ConversationStore>, directory: Arc<GroupDirectory>) -> Self {
        Self { store, directory }
    }

    /// `user`'s conversations, most recently updated first, at most `limit`
    /// (0 = 100, at most 1000).
    pub async fn list(&self, user: &UserId, limit: u32) -> Result<Vec<ConversationSummary>> {
        Ok(self
            .store
            .conversation_list(user.as_str(), clamp(limit, LIST_DEFAULT, LIST_MAX))
            .await?)
    }

    /// One page of history: messages with `seq < before_seq` (0 = from the
    /// newest), newest first, at most `limit` (0 = 50, at most 500), with
    /// `is_read` for `user`.
    pub async fn history(
        &self,
        user: &UserId,
        conversation_id: &str,
        before_seq: i64,
        limit: u32,
    ) -> Result<Vec<MessageView>> {
        let a = access(&self.directory, user, conversation_id).await?;
        let conversation = a.conversation.to_string();
        let read = self.store.read_seq(user.as_str(), &conversation).await?;
        let mut msgs = self
            .store
            .history(
                &conversation,
                before_seq.max(0),
                clamp(limit, HISTORY_DEFAULT, HISTORY_MAX),
            )
            .await?;
        if a.conversation.room_id().is_some() {
            let history = self.directory.rooms.config().history_messages;
            let floor =
                crate::chatrooms::readable_floor(self.store.as_ref(), &a.conversation, history)
                    .await?;
            msgs.retain(|m| m.seq >= floor);
        }
        Ok(msgs
            .into_iter()
            .map(|m| {
                let is_read = m.sender_id == user.as_str() || m.seq <= read;
                MessageView {
                    message: m,
                    is_read,
                }
            })
            .collect())
    }

    /// `user`'s unread count in one conversation.
    pub async fn unread_count(&self, user: &UserId, conversation_id: &str) -> Result<i64> {
        let a = access(&self.directory, user, conversation_id).await?;
        Ok(self
            .store
            .unread_count(user.as_str(), &a.conversation.to_string())
            .await?)
    }

    /// Who has read up to where in a conversation (for its participants).
    pub async fn read_cursors(
        &self,
        user: &UserId,
        conversation_id: &str,
    ) -> Result<Vec<(String, i64)>> {
        let a = access(&self.directory, user, conversation_id).await?;
        Ok(self.store.read_cursors(&a.conversation.to_string()).await?)
    }
}
