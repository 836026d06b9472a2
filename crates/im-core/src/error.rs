//! Client-facing error codes and the store error of the ports.

use thiserror::Error;

/// The `ErrorCode` enum of the wire contract (sdk-contract.md §1.2). The
/// numeric values are part of the protocol and must never change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum ErrorCode {
    Success = 0,
    Unknown = 1,
    InvalidParam = 2,
    AuthFailed = 100,
    TokenExpired = 101,
    PermissionDenied = 102,
    UserNotExist = 103,
    MessageTooLarge = 200,
    SendTooFast = 201,
    ConversationNotExist = 202,
}

impl ErrorCode {
    /// The wire value.
    pub const fn code(self) -> i32 {
        self as i32
    }

    /// Maps a wire value back; unknown values become [`ErrorCode::Unknown`].
    pub const fn from_code(code: i32) -> Self {
        match code {
            0 => Self::Success,
            2 => Self::InvalidParam,
            100 => Self::AuthFailed,
            101 => Self::TokenExpired,
            102 => Self::PermissionDenied,
            103 => Self::UserNotExist,
            200 => Self::MessageTooLarge,
            201 => Self::SendTooFast,
            202 => Self::ConversationNotExist,
            _ => Self::Unknown,
        }
    }

    /// A short, stable, lower-case name (used in logs and HTTP error bodies).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Unknown => "unknown",
            Self::InvalidParam => "invalid_param",
            Self::AuthFailed => "auth_failed",
            Self::TokenExpired => "token_expired",
            Self::PermissionDenied => "permission_denied",
            Self::UserNotExist => "user_not_exist",
            Self::MessageTooLarge => "message_too_large",
            Self::SendTooFast => "send_too_fast",
            Self::ConversationNotExist => "conversation_not_exist",
        }
    }
}

/// A failure reported by a store adapter. Library error types (diesel,
/// redis) are mapped into this at the adapter boundary and never cross it.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The backend could not be reached or timed out; retrying may succeed.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A uniqueness or serialization conflict; retrying the operation may succeed.
    #[error("store conflict: {0}")]
    Conflict(String),
    /// Anything else (bad data, failed migration, bug).
    #[error("store error: {0}")]
    Other(String),
}

impl StoreError {
    /// Whether the caller may retry the same operation.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable(_) | Self::Conflict(_))
    }
}
