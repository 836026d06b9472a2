//! Chat rooms: join and leave `chatroom_<id>` (see `im_service::chatrooms`).

use std::sync::Arc;

use axum::extract::State;
use im_service::RoomMembership;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::ApiOk;
use super::{ApiPath, ApiResult, AuthUser, ok};
use crate::Transport;

pub(super) fn routes() -> OpenApiRouter<Arc<Transport>> {
    OpenApiRouter::new()
        .routes(routes!(join))
        .routes(routes!(leave))
}

/// The caller's membership of a room after a join or leave.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ChatRoomDto {
    #[serde(rename = "roomID")]
    room_id: String,
    /// `chatroom_<roomID>`, the id messages of the room carry.
    #[serde(rename = "conversationID")]
    conversation_id: String,
    member_count: usize,
    /// Whether the caller is in the room now.
    joined: bool,
    /// Whether the call changed the membership (false: already in / not in).
    changed: bool,
}

impl ChatRoomDto {
    fn view(m: RoomMembership, joined: bool) -> Self {
        Self {
            conversation_id: format!("chatroom_{}", m.room_id),
            room_id: m.room_id,
            member_count: m.member_count,
            joined,
            changed: m.changed,
        }
    }
}

/// Joins a chat room (creating it): the caller's sessions receive its
/// messages live from now on, until they leave.
#[utoipa::path(post, path = "/api/chatroom/{roomID}/join", tag = "chatrooms", params(("roomID" = String, Path, description = "room id, 1-64 chars of [A-Za-z0-9_-]")), responses((status = 200, description = "in the room", body = ApiOk<ChatRoomDto>)))]
async fn join(
    State(t): State<Arc<Transport>>,
    AuthUser(me): AuthUser,
    ApiPath(room): ApiPath<String>,
) -> ApiResult<ChatRoomDto> {
    let m = t.services.messaging.join_chat_room(&me.user, &room)?;
    ok(ChatRoomDto::view(m, true))
}

/// Leaves a chat room: no more of its messages are pushed to the caller.
#[utoipa::path(post, path = "/api/chatroom/{roomID}/leave", tag = "chatrooms", params(("roomID" = String, Path, description = "room id, 1-64 chars of [A-Za-z0-9_-]")), responses((status = 200, description = "out of the room", body = ApiOk<ChatRoomDto>)))]
async fn leave(
    State(t): State<Arc<Transport>>,
    AuthUser(me): AuthUser,
    ApiPath(room): ApiPath<String>,
) -> ApiResult<ChatRoomDto> {
    let m = t.services.messaging.leave_chat_room(&me.user, &room)?;
    ok(ChatRoomDto::view(m, false))
}
