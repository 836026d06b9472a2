//! The conversation list (with unread counts) and message history paging.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use serde::Deserialize;

use super::dto::{ConversationDto, MessageDto};
use super::{ApiQuery, ApiResult, AuthUser, ok};
use crate::Transport;

pub(super) fn routes() -> Router<Arc<Transport>> {
    Router::new()
        .route("/api/conversations", get(list))
        .route("/api/messages/history", get(history))
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    #[serde(default)]
    limit: Option<u32>,
}

async fn list(
    State(t): State<Arc<Transport>>,
    AuthUser(me): AuthUser,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Vec<ConversationDto>> {
    let limit = q.limit.unwrap_or(100).clamp(1, 500);
    let rows = t.services.conversations().list(&me.user, limit).await?;
    ok(rows
        .iter()
        .map(|c| ConversationDto::view(c, me.user.as_str()))
        .collect())
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct HistoryQuery {
    #[serde(rename = "conversationID")]
    conversation_id: String,
    /// Page before this seq (0 or absent = from the newest).
    #[serde(default)]
    before_seq: i64,
    #[serde(default)]
    limit: u32,
}

async fn history(
    State(t): State<Arc<Transport>>,
    AuthUser(me): AuthUser,
    ApiQuery(q): ApiQuery<HistoryQuery>,
) -> ApiResult<Vec<MessageDto>> {
    let views = t
        .services
        .conversations()
        .history(&me.user, &q.conversation_id, q.before_seq.max(0), q.limit)
        .await?;
    let me = me.user.as_str();
    ok(views
        .iter()
        .map(|v| MessageDto::with_read_flag(&v.message, me, v.is_read))
        .collect())
}
