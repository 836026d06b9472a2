//! `Authorization: Bearer <token>` → the caller's identity.

use std::sync::Arc;

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use im_core::ErrorCode;
use im_service::Identity;

use super::error::ApiError;
use crate::Transport;

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct AuthUser(pub Identity);

impl FromRequestParts<Arc<Transport>> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        t: &Arc<Transport>,
    ) -> Result<Self, Self::Rejection> {
        verify(parts, t).await
    }
}

/// `Option<AuthUser>`: `None` without an `Authorization` header; a header
/// that is present must still hold a valid token.
impl OptionalFromRequestParts<Arc<Transport>> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        t: &Arc<Transport>,
    ) -> Result<Option<Self>, Self::Rejection> {
        if parts.headers.contains_key(AUTHORIZATION) {
            verify(parts, t).await.map(Some)
        } else {
            Ok(None)
        }
    }
}

async fn verify(parts: &Parts, t: &Transport) -> Result<AuthUser, ApiError> {
    let header = parts
        .headers
        .get(AUTHORIZATION)
        .ok_or_else(|| ApiError::unauthorized("missing Authorization: Bearer token"))?;
    let value = header
        .to_str()
        .map_err(|_| ApiError::unauthorized("malformed Authorization header"))?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::unauthorized("expected Authorization: Bearer <token>"))?;
    // Signature, expiry, kind and revocation.
    let id = t.services.accounts.authenticate(token, "").await?;
    if !t.services.limits.user(&id.user) {
        return Err(ApiError::from_code(
            ErrorCode::SendTooFast,
            "rate limit exceeded, slow down",
        ));
    }
    Ok(AuthUser(id))
}
