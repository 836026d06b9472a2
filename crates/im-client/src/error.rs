//! The error type of the client.

use std::time::Duration;

use thiserror::Error;

/// Everything that can go wrong talking to a server.
#[derive(Debug, Error)]
pub enum ClientError {
    /// The socket failed (connect refused, write error, …).
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// The WebSocket upgrade did not succeed. `status` is the HTTP status of
    /// the response when there was one (e.g. 404 for an unknown path).
    #[error("WebSocket handshake failed: {message}")]
    Handshake {
        /// HTTP status of a non-101 response.
        status: Option<u16>,
        /// What went wrong.
        message: String,
    },
    /// TLS could not be set up: the handshake failed (the server's
    /// certificate is not trusted or not valid for the name, the server
    /// does not speak TLS) or the TLS settings are unusable.
    #[error("TLS error: {0}")]
    Tls(String),
    /// The server sent something the protocol does not allow: a bad TCP
    /// header, an undecodable envelope or body, a text frame, an oversized
    /// frame. A bad TCP header desynchronises the stream, so it is reported
    /// again by every later read.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The server closed the connection (TCP EOF or reset, WebSocket close
    /// frame or EOF). For WebSocket, [`crate::Client::close_info`] has the
    /// close code.
    #[error("connection closed by the server")]
    Closed,
    /// Nothing (or not the awaited frame) arrived in time.
    #[error("timed out after {after:?} waiting for {what}")]
    Timeout {
        /// What was awaited ("reply", "pong", "connect", …).
        what: &'static str,
        /// The timeout that elapsed.
        after: Duration,
    },
    /// The operation needs the other transport (e.g. a WebSocket ping on a
    /// TCP connection, or a command number above 65535 on TCP).
    #[error("not supported on this connection: {0}")]
    Unsupported(&'static str),
}

impl ClientError {
    /// Whether this is [`ClientError::Timeout`].
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout { .. })
    }

    /// Whether this is [`ClientError::Closed`].
    pub fn is_closed(&self) -> bool {
        matches!(self, Self::Closed)
    }
}

/// Result alias of the crate.
pub type Result<T, E = ClientError> = std::result::Result<T, E>;

/// Whether an I/O error means "the peer went away" rather than a local fault.
pub(crate) fn is_disconnect(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset, UnexpectedEof};
    matches!(
        e.kind(),
        BrokenPipe | ConnectionAborted | ConnectionReset | UnexpectedEof
    )
}

/// Maps an I/O error of an established connection.
pub(crate) fn from_io(e: std::io::Error) -> ClientError {
    if is_disconnect(&e) {
        ClientError::Closed
    } else {
        ClientError::Io(e)
    }
}
