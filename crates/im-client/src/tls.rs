//! TLS for the client (`wss://` and TCP over TLS), rustls on ring, with
//! roots the caller supplies.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, RootCertStore};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::timeout_at;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::deadline::Deadline;
use crate::error::{ClientError, Result};

/// How a [`crate::Client`] speaks TLS: the trusted roots (or a whole
/// rustls config) and the name the server's certificate must carry.
/// Cheap to clone.
#[derive(Clone)]
pub struct ClientTls {
    /// ALPN `http/1.1`, for WebSocket.
    ws: TlsConnector,
    /// No ALPN, for TCP.
    tcp: TlsConnector,
    server_name: ServerName<'static>,
}

impl fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientTls")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl ClientTls {
    /// Trusts `roots` only; the server's certificate must be valid for
    /// `server_name` (a DNS name or an IP address).
    pub fn new(roots: RootCertStore, server_name: &str) -> Result<Self> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| ClientError::Tls(format!("cannot configure TLS: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Self::with_config(config, server_name)
    }

    /// Uses the caller's rustls `config` (its ALPN list is replaced:
    /// `http/1.1` on WebSocket, none on TCP).
    pub fn with_config(config: ClientConfig, server_name: &str) -> Result<Self> {
        let server_name = ServerName::try_from(server_name.to_owned())
            .map_err(|_| ClientError::Tls(format!("invalid TLS server name {server_name:?}")))?;
        let mut ws = config.clone();
        ws.alpn_protocols = vec![b"http/1.1".to_vec()];
        let mut tcp = config;
        tcp.alpn_protocols = Vec::new();
        Ok(Self {
            ws: TlsConnector::from(Arc::new(ws)),
            tcp: TlsConnector::from(Arc::new(tcp)),
            server_name,
        })
    }
}

/// Which connection a handshake is for (the ALPN offered).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Purpose {
    WebSocket,
    Tcp,
}

/// A plain or TLS connection to the server.
pub(crate) enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// Connects to `addr` (and does the TLS handshake with `tls`), all before
/// `deadline`.
pub(crate) async fn connect(
    addr: SocketAddr,
    tls: Option<&ClientTls>,
    purpose: Purpose,
    deadline: Deadline,
) -> Result<Stream> {
    let tcp = match timeout_at(deadline.at, TcpStream::connect(addr)).await {
        Ok(r) => r?,
        Err(_) => return Err(deadline.expired("TCP connect")),
    };
    tcp.set_nodelay(true)?;
    let Some(tls) = tls else {
        return Ok(Stream::Plain(tcp));
    };
    let connector = match purpose {
        Purpose::WebSocket => &tls.ws,
        Purpose::Tcp => &tls.tcp,
    };
    match timeout_at(deadline.at, connector.connect(tls.server_name.clone(), tcp)).await {
        Ok(Ok(s)) => Ok(Stream::Tls(Box::new(s))),
        Ok(Err(e)) => Err(ClientError::Tls(format!(
            "TLS handshake with {addr} failed: {e}"
        ))),
        Err(_) => Err(deadline.expired("TLS handshake")),
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Plain(s) => s.is_write_vectored(),
            Self::Tls(s) => s.is_write_vectored(),
        }
    }
}
