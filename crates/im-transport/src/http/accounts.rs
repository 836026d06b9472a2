//! `/api/auth/*`: register, login, refresh, logout.

use std::sync::Arc;

use axum::extract::State;
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::dto::{LoginDto, UserDto};
use super::error::{ApiOk, ApiOkEmpty};
use super::{ApiJson, ApiResult, AuthUser, ok, ok_empty};
use crate::Transport;

pub(super) fn routes() -> OpenApiRouter<Arc<Transport>> {
    OpenApiRouter::new()
        .routes(routes!(register))
        .routes(routes!(login))
        .routes(routes!(refresh))
        .routes(routes!(logout))
}

#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct RegisterBody {
    /// Becomes the user id: 1-64 characters of `[A-Za-z0-9_-]`.
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    username: String,
    /// 8-256 bytes (the minimum is `auth.min_password_len`).
    #[schema(min_length = 8, max_length = 256)]
    password: String,
    #[serde(default)]
    #[schema(max_length = 64)]
    nickname: String,
}

/// Creates a user with a password (argon2id). The username is the user id.
#[utoipa::path(post, path = "/api/auth/register", tag = "auth",
    request_body = RegisterBody,
    responses((status = 200, description = "the new user", body = ApiOk<UserDto>)))]
async fn register(
    State(t): State<Arc<Transport>>,
    ApiJson(b): ApiJson<RegisterBody>,
) -> ApiResult<UserDto> {
    let p = t
        .services
        .accounts
        .register(&b.username, &b.password, &b.nickname)
        .await?;
    ok(UserDto::view(&p, &p.user_id))
}

#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct LoginBody {
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    username: String,
    #[schema(max_length = 256)]
    password: String,
    /// The device platform (`iOS`, `android`, `web`, ...): the token's
    /// `platform` claim, which the kick policy uses.
    #[serde(default)]
    #[schema(pattern = "^[A-Za-z0-9_.-]{0,32}$")]
    platform: String,
}

/// Checks the password and issues an access token and a refresh token.
#[utoipa::path(post, path = "/api/auth/login", tag = "auth",
    request_body = LoginBody,
    responses((status = 200, description = "signed in", body = ApiOk<LoginDto>)))]
async fn login(
    State(t): State<Arc<Transport>>,
    ApiJson(b): ApiJson<LoginBody>,
) -> ApiResult<LoginDto> {
    let s = t
        .services
        .accounts
        .login(&b.username, &b.password, &b.platform)
        .await?;
    ok(LoginDto::from(&s))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RefreshBody {
    refresh_token: String,
}

/// Exchanges a refresh token for a new pair; the old refresh token is revoked.
#[utoipa::path(post, path = "/api/auth/refresh", tag = "auth",
    request_body = RefreshBody,
    responses((status = 200, description = "a new session", body = ApiOk<LoginDto>)))]
async fn refresh(
    State(t): State<Arc<Transport>>,
    ApiJson(b): ApiJson<RefreshBody>,
) -> ApiResult<LoginDto> {
    let s = t.services.accounts.refresh(&b.refresh_token).await?;
    ok(LoginDto::from(&s))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct LogoutBody {
    /// Also revoke this refresh token (it must be the caller's).
    #[serde(default)]
    refresh_token: Option<String>,
}

impl LogoutBody {
    /// The body is optional (the SDK's no-parameter POSTs send none).
    pub(crate) fn parse(body: &[u8]) -> Result<Self, super::ApiError> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self::default());
        }
        serde_json::from_slice(body)
            .map_err(|e| super::ApiError::bad_request(format!("invalid JSON body: {e}")))
    }
}

/// Revokes the access token of the request (and the refresh token, if
/// given) and closes the sockets that authenticated with it.
#[utoipa::path(post, path = "/api/auth/logout", tag = "auth",
    request_body(content = LogoutBody, description = "optional"),
    responses((status = 200, description = "logged out", body = ApiOkEmpty)))]
async fn logout(
    State(t): State<Arc<Transport>>,
    AuthUser(me): AuthUser,
    body: axum::body::Bytes,
) -> ApiResult<()> {
    let b = LogoutBody::parse(&body)?;
    t.services
        .accounts
        .logout(&me, b.refresh_token.as_deref())
        .await?;
    ok_empty()
}
