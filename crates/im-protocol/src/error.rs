//! Errors of body and envelope decoding.

use thiserror::Error;

/// Why a protobuf body (or a WebSocket envelope) could not be turned into the
/// command model. Never fatal for a connection on its own: the transport
/// decides whether to reply with an error, ignore the frame or close.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// A command number this side does not serve in this generation. This
    /// includes numbers the contract defines but nobody uses (0, 1–4,
    /// 102/103, 302) and 303/304 on v1.
    #[error("unknown command {0}")]
    UnknownCommand(i32),
    /// The body is not a valid protobuf of the command's message (or a
    /// required sub-message is missing).
    #[error("malformed body for command {command}: {reason}")]
    Malformed {
        /// The command the body arrived with.
        command: i32,
        /// A short, human-readable cause (never contains body bytes).
        reason: String,
    },
    /// A server-to-client command (a response or a push) sent by a client.
    #[error("command {0} is not sent by clients")]
    NotServerBound(i32),
    /// A client-to-server command (a request) received by a client.
    #[error("command {0} is not sent by servers")]
    NotClientBound(i32),
    /// A WebSocket frame that is not a valid `WebSocketMessage`.
    #[error("malformed WebSocket envelope: {0}")]
    BadEnvelope(String),
}

impl DecodeError {
    /// The command this error concerns, when known (0 for a bad envelope).
    pub fn command(&self) -> i32 {
        match self {
            Self::UnknownCommand(c)
            | Self::NotServerBound(c)
            | Self::NotClientBound(c)
            | Self::Malformed { command: c, .. } => *c,
            Self::BadEnvelope(_) => 0,
        }
    }

    pub(crate) fn malformed(command: i32, err: &prost::DecodeError) -> Self {
        Self::Malformed {
            command,
            reason: err.to_string(),
        }
    }
}
