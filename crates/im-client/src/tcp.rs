//! TCP v2 transport: 16-byte header packets (sdk-contract.md §3), over
//! plain TCP or TLS.
//!
//! Reads go straight from the socket into one `BytesMut`; `read_buf` is
//! cancel-safe, so a read may sit under a timeout and be resumed later
//! without losing bytes.

use std::net::SocketAddr;

use bytes::BytesMut;
use im_protocol::tcp::{decode_packet, encode_packet};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout_at;

use crate::Inbound;
use crate::deadline::Deadline;
use crate::error::{ClientError, Result, from_io};
use crate::tls::{ClientTls, Purpose, Stream};

/// Read buffer growth step.
const READ_CHUNK: usize = 8 * 1024;

pub(crate) struct TcpConn {
    stream: Stream,
    rbuf: BytesMut,
    wbuf: BytesMut,
    max_body: usize,
}

impl TcpConn {
    pub(crate) async fn connect(
        addr: SocketAddr,
        tls: Option<&ClientTls>,
        deadline: Deadline,
        max_body: usize,
    ) -> Result<Self> {
        let stream = crate::tls::connect(addr, tls, Purpose::Tcp, deadline).await?;
        Ok(Self {
            stream,
            rbuf: BytesMut::with_capacity(READ_CHUNK),
            wbuf: BytesMut::new(),
            max_body,
        })
    }

    /// The next packet, `Closed` on EOF, `None` when `deadline` passes first.
    pub(crate) async fn recv(&mut self, deadline: Deadline) -> Result<Option<Inbound>> {
        loop {
            match decode_packet(&mut self.rbuf, self.max_body) {
                Ok(Some(p)) => {
                    return Ok(Some(Inbound::Frame {
                        command: i32::from(p.command),
                        sequence: p.sequence,
                        body: p.body,
                    }));
                }
                Ok(None) => {}
                Err(e) => {
                    return Err(ClientError::Protocol(format!(
                        "bad TCP packet from the server: {e}"
                    )));
                }
            }
            if self.rbuf.capacity() - self.rbuf.len() < READ_CHUNK / 2 {
                self.rbuf.reserve(READ_CHUNK);
            }
            match timeout_at(deadline.at, self.stream.read_buf(&mut self.rbuf)).await {
                Err(_) => return Ok(None),
                Ok(Ok(0)) => return Ok(Some(Inbound::Closed(None))),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    return match from_io(e) {
                        ClientError::Closed => Ok(Some(Inbound::Closed(None))),
                        other => Err(other),
                    };
                }
            }
        }
    }

    /// Writes one packet with flags 0.
    pub(crate) async fn send_packet(
        &mut self,
        command: i32,
        sequence: u32,
        body: &[u8],
        deadline: Deadline,
    ) -> Result<()> {
        let command = u16::try_from(command)
            .map_err(|_| ClientError::Unsupported("TCP command numbers are 0..=65535"))?;
        let mut buf = std::mem::take(&mut self.wbuf);
        buf.clear();
        encode_packet(command, sequence, body, &mut buf);
        let r = self.write_bytes(&buf, deadline).await;
        self.wbuf = buf;
        r
    }

    /// Writes raw bytes (for bad-input tests).
    pub(crate) async fn write_bytes(&mut self, bytes: &[u8], deadline: Deadline) -> Result<()> {
        // Flushed: over TLS a write that met a full socket leaves records in
        // rustls until then (a no-op on a plain socket).
        let write = async {
            self.stream.write_all(bytes).await?;
            self.stream.flush().await
        };
        match timeout_at(deadline.at, write).await {
            Ok(r) => r.map_err(from_io),
            Err(_) => Err(deadline.expired("TCP write")),
        }
    }

    /// Half-closes the connection (sends FIN).
    pub(crate) async fn shutdown(&mut self, deadline: Deadline) -> Result<()> {
        match timeout_at(deadline.at, self.stream.shutdown()).await {
            Ok(r) => r.map_err(from_io),
            Err(_) => Err(deadline.expired("TCP shutdown")),
        }
    }
}
