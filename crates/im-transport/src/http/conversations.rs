//! The conversation list (with unread counts) and message history paging.

use std::sync::Arc;

use axum::extract::State;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::dto::{ConversationDto, MessageDto};
use super::error::ApiOk;
use super::{ApiQuery, ApiResult, AuthUser, ok};
use crate::Transport;

pub(super) fn routes() -> OpenApiRouter<Arc<Transport>> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(history))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// 1-500, default 100.
    #[serde(default)]
    limit: Option<u32>,
}

/// The caller's conversations, most recently updated first, with unread counts.
#[utoipa::path(get, path = "/api/conversations", tag = "conversations", params(ListQuery), responses((status = 200, description = "conversations", body = ApiOk<Vec<ConversationDto>>)))]
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

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub(crate) struct HistoryQuery {
    #[serde(rename = "conversationID")]
    conversation_id: String,
    /// Page before this seq (0 or absent = from the newest).
    #[serde(default)]
    before_seq: i64,
    /// Page size (default and maximum: the server's history limits).
    #[serde(default)]
    limit: u32,
}

/// Messages of one conversation, newest first, before `beforeSeq`.
#[utoipa::path(get, path = "/api/messages/history", tag = "conversations", params(HistoryQuery), responses((status = 200, description = "messages", body = ApiOk<Vec<MessageDto>>)))]
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
