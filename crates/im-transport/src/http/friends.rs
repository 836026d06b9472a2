//! `/api/friend/*`: requests, accept/reject, delete, list, check, remark,
//! and the blocklist (contract §4 plus requests and blocks).

use std::sync::Arc;

use axum::extract::State;
use im_service::FriendAdd;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::dto::{BlockDto, FriendDto, FriendRequestDto};
use super::error::{ApiOk, ApiOkEmpty, QueryOrBody};
use super::{ApiJson, ApiResult, AuthUser, ok, ok_empty};
use crate::Transport;

pub(super) fn routes() -> OpenApiRouter<Arc<Transport>> {
    OpenApiRouter::new()
        .routes(routes!(add))
        .routes(routes!(accept))
        .routes(routes!(reject))
        .routes(routes!(delete))
        .routes(routes!(list))
        .routes(routes!(check))
        .routes(routes!(remark))
        .routes(routes!(requests))
        .routes(routes!(block))
        .routes(routes!(unblock))
        .routes(routes!(blocklist))
}

#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct AddBody {
    #[serde(rename = "userID")]
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    user_id: String,
    /// Shown to the other user (at most 256 characters).
    #[serde(default)]
    #[schema(max_length = 256)]
    message: String,
}

/// Asks a user to be friends. If they already asked the caller, both are
/// friends at once. Refused (403) when the user blocked the caller.
#[utoipa::path(post, path = "/api/friend/add", tag = "friends",
    request_body = AddBody,
    responses((status = 200, description = "request sent, or now friends", body = ApiOkEmpty)))]
async fn add(
    State(t): State<Arc<Transport>>,
    AuthUser(me): AuthUser,
    ApiJson(b): ApiJson<AddBody>,
) -> ApiResult<()> {
    let r = t
        .services
        .social()
        .add_friend(&me.user, &b.user_id, &b.message)
        .await?;
    match r {
        FriendAdd::Requested | FriendAdd::Friends(_) => ok_empty(),
    }
}

#[derive(Debug, Deserialize, ToSchema, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct UserBody {
    #[serde(rename = "userID")]
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    #[param(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    user_id: String,
}

/// Accepts the pending request of `userID`.
#[utoipa::path(post, path = "/api/friend/accept", tag = "friends",
    request_body = UserBody,
    responses((status = 200, description = "the new friend", body = ApiOk<FriendDto>)))]
async fn accept(
    State(t): State<Arc<Transport>>,
    AuthUser(me): AuthUser,
    ApiJson(b): ApiJson<UserBody>,
) -> ApiResult<FriendDto> {
    let f = t
        .services
        .social()
        .accept_friend(&me.user, &b.user_id)
        .await?;
    ok(FriendDto::view(&f, me.user.as_str()))
}

/// Rejects the pending request of `userID`.
#[utoipa::path(post, path = "/api/friend/reject", tag = "friends",
    request_body = UserBody,
    responses((status = 200, description = "rejected", body = ApiOkEmpty)))]
async fn reject(
    State(t): State<Arc<Transport>>,
    AuthUser(me): AuthUser,
    ApiJson(b): ApiJson<UserBody>,
) -> ApiResult<()> {
    t.services
        .social()
        .reject_friend(&me.user, &b.user_id)
        .await?;
    ok_empty()
}

/// Ends the friendship on both sides.
#[utoipa::path(post, path = "/api/friend/delete", tag = "friends",
    request_body = UserBody,
    responses((status = 200, description = "deleted", body = ApiOkEmpty)))]
async fn delete(
    State(t): State<Arc<Transport>>,
    AuthUser(me): AuthUser,
    ApiJson(b): ApiJson<UserBody>,
) -> ApiResult<()> {
    t.services
        .social()
        .delete_friend(&me.user, &b.user_id)
        .await?;
    ok_empty()
}

/// The caller's friends, with profiles.
#[utoipa::path(get, path = "/api/friend/list", tag = "friends",
    responses((status = 200, description = "friends", body = ApiOk<Vec<FriendDto>>)))]
async fn list(
    State(t): State<Arc<Transport>>,
    AuthUser(me): AuthUser,
) -> ApiResult<Vec<FriendDto>> {
    let v = t.services.social().friends(&me.user).await?;
    ok(v.iter()
        .map(|f| FriendDto::view(f, me.user.as_str()))
        .collect())
}

/// Whether `userID` is the caller's friend. Parameters in the query string
/// or a JSON body (what the SDK sends).
#[utoipa::path(get, path = "/api/friend/check", tag = "friends",
    params(UserBody),
    responses((status = 200, description = "true when friends", body = ApiOk<bool>)))]
async fn check(
    State(t): State<Arc<Transport>>,
    AuthUser(me): AuthUser,
    QueryOrBody(b): QueryOrBody<UserBody>,
) -> ApiResult<bool> {
    ok(t.services.social().is_friend(&me.user, &b.user_id).await?)
}

#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct RemarkBody {
    #[serde(rename = "userID")]
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    user_id: String,
    /// At most 64 characters; empty clears it.
    #[schema(max_length = 64)]
    remark: String,
}

/// Sets the caller's private name for a friend.
#[utoipa::path(post, path = "/api/friend/remark", tag = "friends",
    request_body = RemarkBody,
    responses((status = 200, description = "the friend entry", body = ApiOk<FriendDto>)))]
async fn remark(
    State(t): State<Arc<Transport>>,
    AuthUser(me): AuthUser,
    ApiJson(b): ApiJson<RemarkBody>,
) -> ApiResult<FriendDto> {
    let f = t
        .services
        .social()
        .set_remark(&me.user, &b.user_id, &b.remark)
        .await?;
    ok(FriendDto::view(&f, me.user.as_str()))
}

#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
enum Direction {
    #[default]
    Incoming,
    Outgoing,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct RequestsQuery {
    /// `incoming` (default): sent to the caller; `outgoing`: sent by the caller.
    #[serde(default)]
    #[param(inline)]
    direction: Direction,
}

/// Friend requests, newest first (at most 500).
#[utoipa::path(get, path = "/api/friend/requests", tag = "friends",
    params(RequestsQuery),
    responses((status = 200, description = "requests", body = ApiOk<Vec<FriendRequestDto>>)))]
async fn requests(
    State(t): State<Arc<Transport>>,
    AuthUser(me): AuthUser,
    super::ApiQuery(q): super::ApiQuery<RequestsQuery>,
) -> ApiResult<Vec<FriendRequestDto>> {
    let v = t
        .services
        .social()
        .requests(&me.user, matches!(q.direction, Direction::Incoming))
        .await?;
    ok(v.iter().map(FriendRequestDto::from).collect())
}

/// Blocks a user: their 1:1 messages, typing and friend requests to the
/// caller are refused. Idempotent.
#[utoipa::path(post, path = "/api/friend/block", tag = "friends",
    request_body = UserBody,
    responses((status = 200, description = "blocked", body = ApiOkEmpty)))]
async fn block(
    State(t): State<Arc<Transport>>,
    AuthUser(me): AuthUser,
    ApiJson(b): ApiJson<UserBody>,
) -> ApiResult<()> {
    t.services.social().block(&me.user, &b.user_id).await?;
    ok_empty()
}

/// Unblocks a user.
#[utoipa::path(post, path = "/api/friend/unblock", tag = "friends",
    request_body = UserBody,
    responses((status = 200, description = "unblocked", body = ApiOkEmpty)))]
async fn unblock(
    State(t): State<Arc<Transport>>,
    AuthUser(me): AuthUser,
    ApiJson(b): ApiJson<UserBody>,
) -> ApiResult<()> {
    t.services.social().unblock(&me.user, &b.user_id).await?;
    ok_empty()
}

/// Whom the caller blocked.
#[utoipa::path(get, path = "/api/friend/blocklist", tag = "friends",
    responses((status = 200, description = "blocked users", body = ApiOk<Vec<BlockDto>>)))]
async fn blocklist(
    State(t): State<Arc<Transport>>,
    AuthUser(me): AuthUser,
) -> ApiResult<Vec<BlockDto>> {
    let v = t.services.social().blocklist(&me.user).await?;
    ok(v.iter().map(BlockDto::from).collect())
}
