//! Group routes (contract §4 / §6): create, join, leave, dismiss, get,
//! update, invite, kick, members, my list; plus role and mute management.

use std::sync::Arc;

use axum::extract::State;
use im_core::{GroupPatch, GroupRole};
use im_service::error::ServiceError;
use im_service::groups::NewGroup;
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::dto::{GroupDto, MemberDto};
use super::error::{ApiOk, ApiOkEmpty};
use super::{ApiError, ApiJson, ApiPath, ApiResult, AuthUser, ok, ok_empty};
use crate::Transport;

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        if matches!(e, ServiceError::Store(_)) {
            tracing::error!(error = %e, "store failure in an HTTP request");
        }
        let status = axum::http::StatusCode::from_u16(e.http_status())
            .unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR);
        ApiError::new(status, e.reason(), e.public_message())
    }
}

pub(super) fn routes() -> OpenApiRouter<Arc<Transport>> {
    OpenApiRouter::new()
        .routes(routes!(create))
        .routes(routes!(update))
        .routes(routes!(my_list))
        .routes(routes!(get_group))
        .routes(routes!(join))
        .routes(routes!(leave))
        .routes(routes!(dismiss))
        .routes(routes!(invite))
        .routes(routes!(kick))
        .routes(routes!(members))
        .routes(routes!(set_role))
        .routes(routes!(mute))
        .routes(routes!(mute_all))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct GroupCreateBody {
    #[serde(default)]
    group_name: String,
    #[serde(default, rename = "faceURL")]
    face_url: String,
    #[serde(default)]
    introduction: String,
    #[serde(default)]
    notification: String,
    #[serde(default)]
    extra: String,
    #[serde(default, rename = "memberUserIDs")]
    member_user_ids: Vec<String>,
}

#[utoipa::path(post, path = "/api/group/create", tag = "groups", request_body = GroupCreateBody, responses((status = 200, description = "the new group; the caller is its owner", body = ApiOk<GroupDto>)))]
async fn create(
    State(t): State<Arc<Transport>>,
    AuthUser(me): AuthUser,
    ApiJson(b): ApiJson<GroupCreateBody>,
) -> ApiResult<GroupDto> {
    let g = t
        .services
        .groups()
        .create(
            &me.user,
            NewGroup {
                name: b.group_name,
                face_url: b.face_url,
                introduction: b.introduction,
                notification: b.notification,
                extra: b.extra,
                members: b.member_user_ids,
            },
        )
        .await?;
    ok(GroupDto::from(&g))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct GroupUpdateBody {
    #[serde(rename = "groupID")]
    group_id: String,
    group_name: Option<String>,
    #[serde(rename = "faceURL")]
    face_url: Option<String>,
    introduction: Option<String>,
    notification: Option<String>,
    extra: Option<String>,
}

#[utoipa::path(post, path = "/api/group/update", tag = "groups", request_body = GroupUpdateBody, responses((status = 200, description = "the updated group (owner or admin only)", body = ApiOk<GroupDto>)))]
async fn update(
    State(t): State<Arc<Transport>>,
    AuthUser(me): AuthUser,
    ApiJson(b): ApiJson<GroupUpdateBody>,
) -> ApiResult<GroupDto> {
    let patch = GroupPatch {
        name: b.group_name,
        face_url: b.face_url,
        introduction: b.introduction,
        notification: b.notification,
        extra: b.extra,
        mute_all: None,
    };
    let g = t
        .services
        .groups()
        .update(&me.user, &b.group_id, patch)
        .await?;
    ok(GroupDto::from(&g))
}

#[utoipa::path(get, path = "/api/group/my/list", tag = "groups", responses((status = 200, description = "groups the caller is a member of", body = ApiOk<Vec<GroupDto>>)))]
async fn my_list(
    State(t): State<Arc<Transport>>,
    AuthUser(me): AuthUser,
) -> ApiResult<Vec<GroupDto>> {
    let groups = t.services.groups().my_groups(&me.user).await?;
    ok(groups.iter().map(GroupDto::from).collect())
}

#[utoipa::path(get, path = "/api/group/{groupID}", tag = "groups", params(("groupID" = String, Path, description = "group id")), responses((status = 200, description = "the group", body = ApiOk<GroupDto>)))]
async fn get_group(
    State(t): State<Arc<Transport>>,
    AuthUser(me): AuthUser,
    ApiPath(gid): ApiPath<String>,
) -> ApiResult<GroupDto> {
    let g = t.services.groups().get(&me.user, &gid).await?;
    ok(GroupDto::from(&g))
}

#[utoipa::path(post, path = "/api/group/{groupID}/join", tag = "groups", params(("groupID" = String, Path, description = "group id")), responses((status = 200, description = "joined", body = ApiOk<GroupDto>)))]
async fn join(
    State(t): State<Arc<Transport>>,
    AuthUser(me): AuthUser,
    ApiPath(gid): ApiPath<String>,
) -> ApiResult<GroupDto> {
    let g = t.services.groups().join(&me.user, &gid).await?;
    ok(GroupDto::from(&g))
}

#[utoipa::path(post, path = "/api/group/{groupID}/leave", tag = "groups", params(("groupID" = String, Path, description = "group id")), responses((status = 200, description = "left (the owner cannot leave)", body = ApiOkEmpty)))]
async fn leave(
    State(t): State<Arc<Transport>>,
    AuthUser(me): AuthUser,
    ApiPath(gid): ApiPath<String>,
) -> ApiResult<()> {
    t.services.groups().leave(&me.user, &gid).await?;
    ok_empty()
}

#[utoipa::path(post, path = "/api/group/{groupID}/dismiss", tag = "groups", params(("groupID" = String, Path, description = "group id")), responses((status = 200, description = "dismissed (owner only)", body = ApiOkEmpty)))]
async fn dismiss(
    State(t): State<Arc<Transport>>,
    AuthUser(me): AuthUser,
    ApiPath(gid): ApiPath<String>,
) -> ApiResult<()> {
    t.services.groups().dismiss(&me.user, &gid).await?;
    ok_empty()
}

#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct UsersBody {
    #[serde(rename = "userIDs")]
    user_ids: Vec<String>,
}

#[utoipa::path(post, path = "/api/group/{groupID}/invite", tag = "groups", params(("groupID" = String, Path, description = "group id")), request_body = UsersBody, responses((status = 200, description = "invited", body = ApiOkEmpty)))]
async fn invite(
    State(t): State<Arc<Transport>>,
    AuthUser(me): AuthUser,
    ApiPath(gid): ApiPath<String>,
    ApiJson(b): ApiJson<UsersBody>,
) -> ApiResult<()> {
    t.services
        .groups()
        .invite(&me.user, &gid, &b.user_ids)
        .await?;
    ok_empty()
}

#[utoipa::path(post, path = "/api/group/{groupID}/kick", tag = "groups", params(("groupID" = String, Path, description = "group id")), request_body = UsersBody, responses((status = 200, description = "removed (owner or admin only)", body = ApiOkEmpty)))]
async fn kick(
    State(t): State<Arc<Transport>>,
    AuthUser(me): AuthUser,
    ApiPath(gid): ApiPath<String>,
    ApiJson(b): ApiJson<UsersBody>,
) -> ApiResult<()> {
    t.services
        .groups()
        .kick(&me.user, &gid, &b.user_ids)
        .await?;
    ok_empty()
}

#[utoipa::path(get, path = "/api/group/{groupID}/members", tag = "groups", params(("groupID" = String, Path, description = "group id")), responses((status = 200, description = "members", body = ApiOk<Vec<MemberDto>>)))]
async fn members(
    State(t): State<Arc<Transport>>,
    AuthUser(me): AuthUser,
    ApiPath(gid): ApiPath<String>,
) -> ApiResult<Vec<MemberDto>> {
    let ms = t.services.groups().members(&me.user, &gid).await?;
    ok(ms.iter().map(MemberDto::from).collect())
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RoleBody {
    #[serde(rename = "userID")]
    user_id: String,
    /// 2 admin, 3 member (ownership is not transferred this way).
    role: i32,
}

#[utoipa::path(post, path = "/api/group/{groupID}/role", tag = "groups", params(("groupID" = String, Path, description = "group id")), request_body = RoleBody, responses((status = 200, description = "role changed (owner only)", body = ApiOkEmpty)))]
async fn set_role(
    State(t): State<Arc<Transport>>,
    AuthUser(me): AuthUser,
    ApiPath(gid): ApiPath<String>,
    ApiJson(b): ApiJson<RoleBody>,
) -> ApiResult<()> {
    let role = match GroupRole::from_code(b.role) {
        Some(r @ (GroupRole::Admin | GroupRole::Member)) => r,
        _ => {
            return Err(ApiError::bad_request(
                "role must be 2 (admin) or 3 (member)",
            ));
        }
    };
    t.services
        .groups()
        .set_role(&me.user, &gid, &b.user_id, role)
        .await?;
    ok_empty()
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct MuteBody {
    #[serde(rename = "userID")]
    user_id: String,
    /// Seconds from now; 0 unmutes.
    duration_seconds: i64,
}

#[utoipa::path(post, path = "/api/group/{groupID}/mute", tag = "groups", params(("groupID" = String, Path, description = "group id")), request_body = MuteBody, responses((status = 200, description = "muted or unmuted", body = ApiOkEmpty)))]
async fn mute(
    State(t): State<Arc<Transport>>,
    AuthUser(me): AuthUser,
    ApiPath(gid): ApiPath<String>,
    ApiJson(b): ApiJson<MuteBody>,
) -> ApiResult<()> {
    if b.duration_seconds < 0 || b.duration_seconds > 366 * 24 * 3600 {
        return Err(ApiError::bad_request(
            "durationSeconds must be 0..=31622400",
        ));
    }
    if b.duration_seconds == 0 {
        t.services
            .groups()
            .unmute_member(&me.user, &gid, &b.user_id)
            .await?;
    } else {
        let until = t
            .services
            .messaging
            .clock()
            .now_ms()
            .saturating_add(b.duration_seconds.saturating_mul(1000));
        t.services
            .groups()
            .mute_member(&me.user, &gid, &b.user_id, until)
            .await?;
    }
    ok_empty()
}

#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct MuteAllBody {
    mute: bool,
}

#[utoipa::path(post, path = "/api/group/{groupID}/mute_all", tag = "groups", params(("groupID" = String, Path, description = "group id")), request_body = MuteAllBody, responses((status = 200, description = "the group", body = ApiOk<GroupDto>)))]
async fn mute_all(
    State(t): State<Arc<Transport>>,
    AuthUser(me): AuthUser,
    ApiPath(gid): ApiPath<String>,
    ApiJson(b): ApiJson<MuteAllBody>,
) -> ApiResult<GroupDto> {
    let g = t.services.groups().mute_all(&me.user, &gid, b.mute).await?;
    ok(GroupDto::from(&g))
}
