//! v1 HTTP sync (contract §4): `POST /api/v1/messages/sync` by the per-user
//! cursor, and `POST /messages/sync_range` (no `/api` prefix, snake_case).

use std::sync::Arc;

use axum::extract::State;
use im_core::command::Reply;
use im_core::model::MessageView;
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::dto::{MessageDto, RangeDto, SyncDto};
use super::error::ApiOk;
use super::{ApiError, ApiJson, ApiResult, AuthUser, ok};
use crate::Transport;

/// Most messages per range request (the SDK sends at most 100).
const MAX_RANGE_COUNT: i32 = 100;

pub(super) fn routes() -> OpenApiRouter<Arc<Transport>> {
    OpenApiRouter::new()
        .routes(routes!(sync))
        .routes(routes!(sync_range))
}

fn dtos(views: &[MessageView], viewer: &str) -> Vec<MessageDto> {
    views
        .iter()
        .map(|v| MessageDto::with_read_flag(&v.message, viewer, v.is_read))
        .collect()
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SyncBody {
    /// The cursor of the previous reply's `maxSeq` (0 = from the start).
    #[serde(default)]
    #[schema(minimum = 0)]
    last_seq: i64,
    /// Page size (default and maximum: the server's sync limits).
    #[serde(default)]
    #[schema(minimum = 0)]
    count: i32,
    /// Client time (ms); informational.
    #[serde(default)]
    #[allow(dead_code)]
    timestamp: i64,
}

/// Everything after the caller's cursor, across conversations, in order.
/// Save `maxSeq` and send it as the next `lastSeq` while `hasMore`.
#[utoipa::path(post, path = "/api/v1/messages/sync", tag = "sync",
    request_body = SyncBody,
    responses((status = 200, description = "a page of messages", body = ApiOk<SyncDto>)))]
async fn sync(
    State(t): State<Arc<Transport>>,
    AuthUser(me): AuthUser,
    ApiJson(b): ApiJson<SyncBody>,
) -> ApiResult<SyncDto> {
    if b.last_seq < 0 || b.count < 0 {
        return Err(ApiError::bad_request(
            "lastSeq and count must not be negative",
        ));
    }
    let m = &t.services.messaging;
    let backlog = m
        .inbox_backlog(&me.user, b.last_seq)
        .await
        .map_err(im_service::ServiceError::from)?;
    match m.sync_inbox(&me.user, b.last_seq, 0, b.count).await {
        Reply::SyncInbox {
            code: im_core::ErrorCode::Success,
            messages,
            server_max_seq,
            has_more,
            ..
        } => ok(SyncDto {
            messages: dtos(&messages, me.user.as_str()),
            max_seq: server_max_seq,
            has_more,
            total_count: i64::try_from(backlog).unwrap_or(i64::MAX),
        }),
        Reply::SyncInbox { code, msg, .. } => Err(ApiError::from_code(code, msg)),
        _ => Err(ApiError::internal()),
    }
}

#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct RangeBody {
    conversation_id: String,
    /// First seq wanted (>= 1).
    #[schema(minimum = 1)]
    start_seq: i64,
    /// Last seq wanted (>= start_seq).
    #[schema(minimum = 1)]
    end_seq: i64,
    /// At most 100 (0 or absent: 100).
    #[serde(default)]
    #[schema(minimum = 0, maximum = 100)]
    count: i32,
}

/// Messages `start_seq..=end_seq` of one conversation the caller takes part in.
#[utoipa::path(post, path = "/messages/sync_range", tag = "sync",
    request_body = RangeBody,
    responses((status = 200, description = "the messages", body = ApiOk<RangeDto>)))]
async fn sync_range(
    State(t): State<Arc<Transport>>,
    AuthUser(me): AuthUser,
    ApiJson(b): ApiJson<RangeBody>,
) -> ApiResult<RangeDto> {
    if !(0..=MAX_RANGE_COUNT).contains(&b.count) {
        return Err(ApiError::bad_request("count must be 0..=100"));
    }
    let count = if b.count == 0 {
        MAX_RANGE_COUNT
    } else {
        b.count
    };
    let reply = t
        .services
        .messaging
        .sync_range(
            &me.user,
            String::new(),
            b.conversation_id,
            b.start_seq,
            b.end_seq,
            count,
        )
        .await;
    match reply {
        Reply::SyncRange {
            code: im_core::ErrorCode::Success,
            messages,
            ..
        } => ok(RangeDto {
            messages: dtos(&messages, me.user.as_str()),
        }),
        Reply::SyncRange { code, msg, .. } => Err(ApiError::from_code(code, msg)),
        _ => Err(ApiError::internal()),
    }
}
