//! The error of the service API used outside a socket session (HTTP routes):
//! a kind with a stable wire [`ErrorCode`], an HTTP status and a short
//! client-facing message, separate from the internal cause.

use std::borrow::Cow;

use im_core::{ErrorCode, StoreError};
use thiserror::Error;

use crate::writer::WriteError;

/// A condition that a later retry of the same request fixes: the server is
/// busy or briefly unable, the request itself is fine. This is the one
/// classification of such conditions; [`crate::session`] decides what the
/// client is told (for the requests the SDK resends on its own: nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transient {
    /// The writer queue stayed full for `enqueue_timeout`.
    Overloaded,
    /// The server is shutting down (the writer is closed).
    ShuttingDown,
    /// The user is over its request rate.
    RateLimited,
    /// The store stayed unavailable (after the writer's own retries), or a
    /// transaction conflicted.
    StoreUnavailable,
}

impl Transient {
    /// The condition behind a store error, if a retry may fix it.
    pub fn of_store(e: &StoreError) -> Option<Self> {
        e.is_retryable().then_some(Self::StoreUnavailable)
    }

    /// The condition behind a writer error, if a retry may fix it.
    pub fn of_write(e: &WriteError) -> Option<Self> {
        match e {
            WriteError::Overloaded => Some(Self::Overloaded),
            WriteError::Closed => Some(Self::ShuttingDown),
            WriteError::Store(s) => Self::of_store(s),
        }
    }

    /// The `reason` label of `im_replies_suppressed_total`.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Overloaded => "overloaded",
            Self::ShuttingDown => "shutting_down",
            Self::RateLimited => "rate_limited",
            Self::StoreUnavailable => "store_unavailable",
        }
    }

    /// The wire code when a reply is sent after all (requests the client
    /// does not resend by itself).
    pub fn code(self) -> ErrorCode {
        match self {
            Self::Overloaded | Self::RateLimited => ErrorCode::SendTooFast,
            Self::ShuttingDown | Self::StoreUnavailable => ErrorCode::Unknown,
        }
    }

    /// The message of that reply.
    pub fn message(self) -> &'static str {
        match self {
            Self::Overloaded => "server busy, retry later",
            Self::ShuttingDown => "server shutting down",
            Self::RateLimited => "rate limit exceeded, slow down",
            Self::StoreUnavailable => "storage temporarily unavailable, retry",
        }
    }
}

/// Why a service call failed.
#[derive(Debug, Error)]
pub enum ServiceError {
    /// A malformed or out-of-range argument.
    #[error("invalid parameter: {0}")]
    InvalidParam(Cow<'static, str>),
    /// The caller may not do this (not a member, not owner/admin, …).
    #[error("permission denied: {0}")]
    PermissionDenied(Cow<'static, str>),
    /// No such group or conversation (or it is dismissed).
    #[error("not found: {0}")]
    NotFound(Cow<'static, str>),
    /// A user named in the request has never been seen (only with
    /// `require_registered_users`).
    #[error("user does not exist: {0}")]
    UserNotExist(String),
    /// The request conflicts with the current state (already a member).
    #[error("conflict: {0}")]
    Conflict(Cow<'static, str>),
    /// The group would exceed its member limit.
    #[error("group is full (at most {max} members)")]
    Full { max: u32 },
    /// A token or password was refused.
    #[error(transparent)]
    Auth(crate::auth::AuthError),
    /// The store failed; the cause is logged, never shown to clients.
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for ServiceError {
    /// Counted ([`crate::metrics::STORE_ERRORS`]): every store error that
    /// reaches a service call passes here.
    fn from(e: StoreError) -> Self {
        metrics::counter!(crate::metrics::STORE_ERRORS, "kind" => crate::metrics::store_error_kind(&e))
            .increment(1);
        Self::Store(e)
    }
}

/// Refuses text with a NUL character: PostgreSQL cannot store it in a
/// text column, and no client means it.
pub(crate) fn check_no_nul(field: &str, value: &str) -> Result<(), ServiceError> {
    if value.contains('\0') {
        return Err(ServiceError::invalid(format!(
            "{field} must not contain NUL characters"
        )));
    }
    Ok(())
}

impl ServiceError {
    pub fn invalid(msg: impl Into<Cow<'static, str>>) -> Self {
        Self::InvalidParam(msg.into())
    }

    pub fn denied(msg: impl Into<Cow<'static, str>>) -> Self {
        Self::PermissionDenied(msg.into())
    }

    pub fn not_found(msg: impl Into<Cow<'static, str>>) -> Self {
        Self::NotFound(msg.into())
    }

    /// Whether a retry of the same call may succeed, and why.
    pub fn transient(&self) -> Option<Transient> {
        match self {
            Self::Store(e) => Transient::of_store(e),
            _ => None,
        }
    }

    /// The wire error code (the `code` an HTTP envelope may carry too).
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::InvalidParam(_) | Self::Conflict(_) | Self::Full { .. } => {
                ErrorCode::InvalidParam
            }
            Self::PermissionDenied(_) => ErrorCode::PermissionDenied,
            Self::NotFound(_) => ErrorCode::ConversationNotExist,
            Self::UserNotExist(_) => ErrorCode::UserNotExist,
            Self::Auth(e) => e.code(),
            Self::Store(_) => ErrorCode::Unknown,
        }
    }

    /// The HTTP status for this error.
    pub fn http_status(&self) -> u16 {
        match self {
            Self::InvalidParam(_) => 400,
            Self::PermissionDenied(_) => 403,
            Self::NotFound(_) | Self::UserNotExist(_) => 404,
            Self::Conflict(_) | Self::Full { .. } => 409,
            Self::Auth(crate::auth::AuthError::Signing(_)) => 500,
            Self::Auth(_) => 401,
            Self::Store(e) if e.is_retryable() => 503,
            Self::Store(_) => 500,
        }
    }

    /// A short, stable, machine-readable name of the kind.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::InvalidParam(_) => "invalid_param",
            Self::PermissionDenied(_) => "permission_denied",
            Self::NotFound(_) => "not_found",
            Self::UserNotExist(_) => "user_not_exist",
            Self::Conflict(_) => "conflict",
            Self::Full { .. } => "group_full",
            Self::Auth(e) => e.reason(),
            Self::Store(e) if e.is_retryable() => "unavailable",
            Self::Store(_) => "internal",
        }
    }

    /// The message to show a client: the detail for request errors, a
    /// generic text for store failures (whose cause stays in the logs).
    pub fn public_message(&self) -> String {
        match self {
            Self::InvalidParam(m)
            | Self::PermissionDenied(m)
            | Self::NotFound(m)
            | Self::Conflict(m) => m.to_string(),
            Self::UserNotExist(u) => format!("user {u} does not exist"),
            Self::Full { .. } => self.to_string(),
            Self::Auth(crate::auth::AuthError::Signing(_)) => "cannot issue a token".into(),
            Self::Auth(e) => e.to_string(),
            Self::Store(e) if e.is_retryable() => "storage temporarily unavailable, retry".into(),
            Self::Store(_) => "storage error".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_map_to_codes_and_statuses() {
        let cases = [
            (ServiceError::invalid("x"), ErrorCode::InvalidParam, 400),
            (ServiceError::denied("x"), ErrorCode::PermissionDenied, 403),
            (
                ServiceError::not_found("x"),
                ErrorCode::ConversationNotExist,
                404,
            ),
            (
                ServiceError::UserNotExist("u".into()),
                ErrorCode::UserNotExist,
                404,
            ),
            (ServiceError::Full { max: 3 }, ErrorCode::InvalidParam, 409),
            (
                ServiceError::Store(StoreError::Unavailable("db down".into())),
                ErrorCode::Unknown,
                503,
            ),
            (
                ServiceError::Store(StoreError::Other("bad row".into())),
                ErrorCode::Unknown,
                500,
            ),
        ];
        for (e, code, status) in cases {
            assert_eq!(e.code(), code, "{e}");
            assert_eq!(e.http_status(), status, "{e}");
        }
        let e = ServiceError::Store(StoreError::Other("secret table name".into()));
        assert!(!e.public_message().contains("secret"));
        assert_eq!(ServiceError::Full { max: 3 }.reason(), "group_full");
    }

    #[test]
    fn only_conditions_a_retry_fixes_are_transient() {
        let unavailable = || StoreError::Unavailable("db down".into());
        let other = || StoreError::Other("bad row".into());
        assert_eq!(
            Transient::of_write(&WriteError::Overloaded),
            Some(Transient::Overloaded)
        );
        assert_eq!(
            Transient::of_write(&WriteError::Closed),
            Some(Transient::ShuttingDown)
        );
        assert_eq!(
            Transient::of_write(&WriteError::Store(unavailable())),
            Some(Transient::StoreUnavailable)
        );
        assert_eq!(
            Transient::of_store(&StoreError::Conflict("deadlock".into())),
            Some(Transient::StoreUnavailable)
        );
        assert_eq!(Transient::of_write(&WriteError::Store(other())), None);
        assert_eq!(
            ServiceError::Store(unavailable()).transient(),
            Some(Transient::StoreUnavailable)
        );
        assert_eq!(ServiceError::Store(other()).transient(), None);
        assert_eq!(ServiceError::invalid("x").transient(), None);
        assert_eq!(ServiceError::denied("x").transient(), None);
        let reasons: std::collections::HashSet<_> = [
            Transient::Overloaded,
            Transient::ShuttingDown,
            Transient::RateLimited,
            Transient::StoreUnavailable,
        ]
        .iter()
        .map(|t| t.reason())
        .collect();
        assert_eq!(reasons.len(), 4);
        assert_eq!(Transient::RateLimited.code(), ErrorCode::SendTooFast);
    }
}
