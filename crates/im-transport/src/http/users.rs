//! `/api/user/*`: info, batch, update, search (contract §4).

use std::sync::Arc;

use axum::extract::State;
use im_core::model::ProfilePatch;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::dto::UserDto;
use super::error::{ApiOk, QueryOrBody};
use super::{ApiJson, ApiPath, ApiResult, AuthUser, ok};
use crate::Transport;

pub(super) fn routes() -> OpenApiRouter<Arc<Transport>> {
    OpenApiRouter::new()
        .routes(routes!(info))
        .routes(routes!(batch))
        .routes(routes!(update))
        .routes(routes!(search))
}

/// A user's profile; an id nobody registered gets a synthetic profile
/// (nickname = id), as the v1 SDK's login expects.
#[utoipa::path(get, path = "/api/user/info/{userID}", tag = "users",
    params(("userID" = String, Path, description = "user id")),
    responses((status = 200, description = "the profile", body = ApiOk<UserDto>)))]
async fn info(
    State(t): State<Arc<Transport>>,
    AuthUser(me): AuthUser,
    ApiPath(user_id): ApiPath<String>,
) -> ApiResult<UserDto> {
    let p = t.services.social().user_info(&user_id).await?;
    ok(UserDto::view(&p, me.user.as_str()))
}

#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct BatchBody {
    /// At most 500 ids.
    #[serde(rename = "userIDs")]
    #[schema(max_items = 500, inline)]
    user_ids: Vec<String>,
}

/// Profiles of several users, in the order asked.
#[utoipa::path(post, path = "/api/user/info/batch", tag = "users",
    request_body = BatchBody,
    responses((status = 200, description = "the profiles", body = ApiOk<Vec<UserDto>>)))]
async fn batch(
    State(t): State<Arc<Transport>>,
    AuthUser(me): AuthUser,
    ApiJson(b): ApiJson<BatchBody>,
) -> ApiResult<Vec<UserDto>> {
    let ps = t.services.social().users_info(&b.user_ids).await?;
    ok(ps
        .iter()
        .map(|p| UserDto::view(p, me.user.as_str()))
        .collect())
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ProfileUpdateBody {
    /// Must be the caller (or omitted).
    #[serde(default, rename = "userID")]
    user_id: String,
    #[schema(max_length = 64)]
    nickname: Option<String>,
    avatar: Option<String>,
    phone: Option<String>,
    email: Option<String>,
    signature: Option<String>,
    /// 0 unknown, 1 male, 2 female.
    #[schema(minimum = 0, maximum = 2)]
    gender: Option<i32>,
    /// ms since the epoch.
    #[schema(minimum = 0)]
    birth: Option<i64>,
    extra: Option<String>,
}

/// Updates the caller's own profile; omitted fields are unchanged.
#[utoipa::path(post, path = "/api/user/update", tag = "users",
    request_body = ProfileUpdateBody,
    responses((status = 200, description = "the updated profile", body = ApiOk<UserDto>)))]
async fn update(
    State(t): State<Arc<Transport>>,
    AuthUser(me): AuthUser,
    ApiJson(b): ApiJson<ProfileUpdateBody>,
) -> ApiResult<UserDto> {
    let patch = ProfilePatch {
        nickname: b.nickname,
        avatar: b.avatar,
        phone: b.phone,
        email: b.email,
        gender: b.gender,
        birth: b.birth,
        signature: b.signature,
        extra: b.extra,
    };
    let p = t
        .services
        .social()
        .update_profile(&me.user, &b.user_id, patch)
        .await?;
    ok(UserDto::view(&p, me.user.as_str()))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct SearchQuery {
    /// Substring of the user id or nickname (1-64 characters).
    #[param(min_length = 1, max_length = 64)]
    keyword: String,
    /// 1-100, default 20.
    #[serde(default)]
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
}

/// Finds users by id or nickname. Parameters in the query string, or in a
/// JSON body (what the SDK sends).
#[utoipa::path(get, path = "/api/user/search", tag = "users",
    params(SearchQuery),
    responses((status = 200, description = "matching users", body = ApiOk<Vec<UserDto>>)))]
async fn search(
    State(t): State<Arc<Transport>>,
    AuthUser(me): AuthUser,
    QueryOrBody(q): QueryOrBody<SearchQuery>,
) -> ApiResult<Vec<UserDto>> {
    let ps = t.services.social().search(&q.keyword, q.limit).await?;
    ok(ps
        .iter()
        .map(|p| UserDto::view(p, me.user.as_str()))
        .collect())
}
