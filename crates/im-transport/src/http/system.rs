//! The app backend's API: system notices and chat room membership. Authorised by the backend token
//! (`backend.token`, `Authorization: Bearer <token>`), never by a user's
//! JWT; off (404) when no token is configured.

use std::sync::Arc;

use axum::extract::{FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use im_service::backend::BackendAuthError;
use im_service::system::{Notice, NoticeSent};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::ApiOk;
use super::{ApiError, ApiJson, ApiPath, ApiResult, ok};
use crate::Transport;

pub(super) fn routes() -> OpenApiRouter<Arc<Transport>> {
    OpenApiRouter::new()
        .routes(routes!(notice))
        .routes(routes!(room_join))
        .routes(routes!(room_leave))
}

/// A request the app backend made (its token checked).
#[derive(Debug, Clone, Copy)]
pub struct Backend;

impl FromRequestParts<Arc<Transport>> for Backend {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        t: &Arc<Transport>,
    ) -> Result<Self, Self::Rejection> {
        let token = parts.headers.get(AUTHORIZATION).and_then(|h| {
            let v = h.as_bytes();
            v.strip_prefix(b"Bearer ")
                .or_else(|| v.strip_prefix(b"bearer "))
        });
        match t.services.backend.check(token) {
            Ok(()) => Ok(Backend),
            Err(BackendAuthError::Disabled) => Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "backend_disabled",
                "the backend API is disabled: set backend.token",
            )),
            Err(e) => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                e.to_string(),
            )),
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct NoticeBody {
    /// Recipients (1-1000 user ids); each gets the notice in `system_<userID>`.
    #[serde(rename = "userIds", alias = "userIDs")]
    user_ids: Vec<String>,
    /// Message content (UTF-8 text, or the JSON the app's message type uses).
    content: String,
    /// Message type (1 text, 8 notification, 100 custom, …); default 1.
    #[serde(default = "text_type")]
    message_type: i32,
    /// Opaque application data.
    #[serde(default)]
    extra: String,
    /// Idempotency key (1-64 chars of [A-Za-z0-9_-]): a retried call with
    /// the same key stores and pushes nothing twice.
    #[serde(default, rename = "requestId", alias = "requestID")]
    request_id: Option<String>,
}

fn text_type() -> i32 {
    1
}

/// One notice as stored.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct NoticeDto {
    #[serde(rename = "userID")]
    user_id: String,
    #[serde(rename = "conversationID")]
    conversation_id: String,
    #[serde(rename = "serverMsgID")]
    server_msg_id: String,
    #[serde(rename = "clientMsgID")]
    client_msg_id: String,
    seq: i64,
    server_time: i64,
    /// A retry of an earlier call with the same requestId.
    duplicate: bool,
}

impl From<NoticeSent> for NoticeDto {
    fn from(n: NoticeSent) -> Self {
        Self {
            user_id: n.user_id,
            conversation_id: n.conversation_id,
            server_msg_id: n.server_msg_id,
            client_msg_id: n.client_msg_id,
            seq: n.seq,
            server_time: n.server_time,
            duplicate: n.duplicate,
        }
    }
}

/// Sends a system notice to each listed user: stored in their
/// `system_<userID>` conversation, pushed to their sessions, synced and
/// counted unread like a message. Backend token only.
#[utoipa::path(post, path = "/api/system/notice", tag = "backend", request_body = NoticeBody, responses((status = 200, description = "one stored notice per distinct user", body = ApiOk<Vec<NoticeDto>>)))]
async fn notice(
    State(t): State<Arc<Transport>>,
    _: Backend,
    ApiJson(b): ApiJson<NoticeBody>,
) -> ApiResult<Vec<NoticeDto>> {
    let sent = t
        .services
        .messaging
        .send_notices(Notice {
            user_ids: b.user_ids,
            message_type: b.message_type,
            content: b.content.into_bytes().into(),
            extra: b.extra,
            request_id: b.request_id,
        })
        .await?;
    ok(sent.into_iter().map(NoticeDto::from).collect())
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RoomMembersBody {
    /// Users to put into (or take out of) the room, 1-1000.
    #[serde(rename = "userIds", alias = "userIDs")]
    user_ids: Vec<String>,
}

/// A room's membership after a backend call.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RoomDto {
    #[serde(rename = "roomID")]
    room_id: String,
    #[serde(rename = "conversationID")]
    conversation_id: String,
    member_count: usize,
}

fn room_members(t: &Transport, room: &str, users: &[String], join: bool) -> ApiResult<RoomDto> {
    let m = t
        .services
        .messaging
        .backend_chat_room_members(room, users, join)?;
    ok(RoomDto {
        conversation_id: format!("chatroom_{}", m.room_id),
        room_id: m.room_id,
        member_count: m.member_count,
    })
}

/// Puts users into a chat room (creating it), whatever
/// `chatroom.self_join` says; room limits apply (409). Backend token only.
#[utoipa::path(post, path = "/api/system/chatroom/{roomID}/join", tag = "backend", params(("roomID" = String, Path, description = "room id, 1-64 chars of [A-Za-z0-9_-]")), request_body = RoomMembersBody, responses((status = 200, description = "the users are in the room", body = ApiOk<RoomDto>)))]
async fn room_join(
    State(t): State<Arc<Transport>>,
    _: Backend,
    ApiPath(room): ApiPath<String>,
    ApiJson(b): ApiJson<RoomMembersBody>,
) -> ApiResult<RoomDto> {
    room_members(&t, &room, &b.user_ids, true)
}

/// Takes users out of a chat room. Backend token only.
#[utoipa::path(post, path = "/api/system/chatroom/{roomID}/leave", tag = "backend", params(("roomID" = String, Path, description = "room id, 1-64 chars of [A-Za-z0-9_-]")), request_body = RoomMembersBody, responses((status = 200, description = "the users are out of the room", body = ApiOk<RoomDto>)))]
async fn room_leave(
    State(t): State<Arc<Transport>>,
    _: Backend,
    ApiPath(room): ApiPath<String>,
    ApiJson(b): ApiJson<RoomMembersBody>,
) -> ApiResult<RoomDto> {
    room_members(&t, &room, &b.user_ids, false)
}
