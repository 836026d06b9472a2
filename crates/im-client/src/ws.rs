//! WebSocket transport (sdk-contract.md §2): each binary message is one
//! `WebSocketMessage` envelope.
//!
//! fastwebsockets' `read_frame` is not cancel-safe (a frame header consumed
//! before a timeout fires would be lost), so a reader task owns the read half
//! and hands whole messages to the client over a bounded channel; waiting on
//! the channel can time out safely. The same task answers server pings (and
//! echoes close frames) through the shared write half, so pings are answered
//! even while the caller is not reading.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use fastwebsockets::{
    FragmentCollectorRead, Frame, OpCode, Payload, WebSocketError, WebSocketWrite, handshake,
};
use http_body_util::Empty;
use hyper::Request;
use hyper::header::{CONNECTION, HOST, UPGRADE};
use hyper::upgrade::Upgraded;
use hyper_util::rt::{TokioExecutor, TokioIo};
use im_protocol::ws::{decode_envelope, encode_envelope};
use tokio::io::WriteHalf;
use tokio::sync::{Mutex, mpsc};
use tokio::task::JoinHandle;
use tokio::time::timeout_at;

use crate::deadline::Deadline;
use crate::error::{ClientError, Result, from_io};
use crate::tls::{ClientTls, Purpose};
use crate::{CloseInfo, Inbound};

type Writer = WebSocketWrite<WriteHalf<TokioIo<Upgraded>>>;

/// Whole messages waiting between the reader task and the client.
const CHANNEL: usize = 256;

/// What the reader task hands over.
enum Item {
    Binary(Bytes),
    Text(Bytes),
    Pong(Bytes),
    Closed(Option<CloseInfo>),
    Failed(ClientError),
}

pub(crate) struct WsConn {
    writer: Arc<Mutex<Writer>>,
    rx: mpsc::Receiver<Item>,
    reader: JoinHandle<()>,
    wbuf: BytesMut,
}

impl Drop for WsConn {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl WsConn {
    /// TCP connect (and TLS handshake with `tls`), HTTP/1.1 upgrade on
    /// `path` (e.g. `/ws/v2`, `/ws?v=1`), then the reader task.
    pub(crate) async fn connect(
        addr: SocketAddr,
        path: &str,
        tls: Option<&ClientTls>,
        deadline: Deadline,
        max_message: usize,
        auto_pong: bool,
    ) -> Result<Self> {
        let stream = crate::tls::connect(addr, tls, Purpose::WebSocket, deadline).await?;
        // Errors name the path without its query, which may hold `token=`.
        let shown = path.split_once('?').map_or(path, |(p, _)| p);
        let req = Request::builder()
            .method("GET")
            .uri(path)
            .header(HOST, addr.to_string())
            .header(UPGRADE, "websocket")
            .header(CONNECTION, "upgrade")
            .header("Sec-WebSocket-Key", handshake::generate_key())
            .header("Sec-WebSocket-Version", "13")
            .body(Empty::<Bytes>::new())
            .map_err(|e| ClientError::Handshake {
                status: None,
                message: format!("cannot build the upgrade request for {shown:?}: {e}"),
            })?;
        let upgraded = timeout_at(
            deadline.at,
            handshake::client(&TokioExecutor::new(), req, stream),
        )
        .await
        .map_err(|_| deadline.expired("WebSocket handshake"))?;
        let (ws, _response) = upgraded.map_err(|e| match e {
            WebSocketError::InvalidStatusCode(status) => ClientError::Handshake {
                status: Some(status),
                message: format!("HTTP {status} instead of 101 for {shown:?}"),
            },
            WebSocketError::IoError(e) => ClientError::Io(e),
            other => ClientError::Handshake {
                status: None,
                message: other.to_string(),
            },
        })?;
        let (mut read, write) = ws.split(tokio::io::split);
        read.set_auto_pong(auto_pong);
        read.set_auto_close(true);
        read.set_max_message_size(max_message);
        let read = FragmentCollectorRead::new(read);
        let writer = Arc::new(Mutex::new(write));
        let (tx, rx) = mpsc::channel(CHANNEL);
        let reader = tokio::spawn(read_loop(read, Arc::clone(&writer), tx));
        Ok(Self {
            writer,
            rx,
            reader,
            wbuf: BytesMut::new(),
        })
    }

    /// The next message or pong, `Closed` when the server went away, `None`
    /// when `deadline` passes first.
    pub(crate) async fn recv(&mut self, deadline: Deadline) -> Result<Option<Inbound>> {
        let item = match timeout_at(deadline.at, self.rx.recv()).await {
            Err(_) => return Ok(None),
            Ok(None) => return Ok(Some(Inbound::Closed(None))),
            Ok(Some(item)) => item,
        };
        match item {
            Item::Binary(frame) => {
                let env = decode_envelope(&frame).map_err(|e| {
                    ClientError::Protocol(format!(
                        "undecodable WebSocketMessage from the server: {e}"
                    ))
                })?;
                Ok(Some(Inbound::Frame {
                    command: env.command,
                    sequence: env.sequence,
                    body: env.body,
                }))
            }
            Item::Text(text) => Err(ClientError::Protocol(format!(
                "the server sent a text frame of {} bytes; it must send binary frames (contract §7.6)",
                text.len()
            ))),
            Item::Pong(payload) => Ok(Some(Inbound::Pong(payload))),
            Item::Closed(info) => Ok(Some(Inbound::Closed(info))),
            Item::Failed(e) => Err(e),
        }
    }

    /// Sends one envelope in a binary frame.
    pub(crate) async fn send_envelope(
        &mut self,
        command: i32,
        sequence: u32,
        body: &[u8],
        deadline: Deadline,
    ) -> Result<()> {
        let mut buf = std::mem::take(&mut self.wbuf);
        buf.clear();
        encode_envelope(command, sequence, body, 0, &mut buf);
        let r = self.write(OpCode::Binary, &buf, deadline).await;
        self.wbuf = buf;
        r
    }

    /// Sends one unfragmented frame of `opcode` carrying `payload`.
    pub(crate) async fn write(
        &mut self,
        opcode: OpCode,
        payload: &[u8],
        deadline: Deadline,
    ) -> Result<()> {
        let frame = Frame::new(true, opcode, None, Payload::Borrowed(payload));
        let write = async {
            let mut w = self.writer.lock().await;
            w.write_frame(frame).await?;
            w.flush().await
        };
        match timeout_at(deadline.at, write).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(WebSocketError::ConnectionClosed)) => Err(ClientError::Closed),
            Ok(Err(WebSocketError::IoError(e))) => Err(from_io(e)),
            Ok(Err(e)) => Err(ClientError::Protocol(format!(
                "WebSocket write failed: {e}"
            ))),
            Err(_) => Err(deadline.expired("WebSocket write")),
        }
    }

    /// Sends a close frame with `code`.
    pub(crate) async fn send_close(&mut self, code: u16, deadline: Deadline) -> Result<()> {
        let payload = code.to_be_bytes();
        self.write(OpCode::Close, &payload, deadline).await
    }
}

/// Reads messages until the connection ends or the client goes away.
async fn read_loop(
    mut read: FragmentCollectorRead<tokio::io::ReadHalf<TokioIo<Upgraded>>>,
    writer: Arc<Mutex<Writer>>,
    tx: mpsc::Sender<Item>,
) {
    // Obligated writes: pongs for pings, the echo of a close frame.
    let mut obligated = |frame: Frame<'static>| {
        let writer = Arc::clone(&writer);
        async move {
            let mut w = writer.lock().await;
            w.write_frame(frame).await?;
            w.flush().await
        }
    };
    loop {
        let item = match read.read_frame::<_, WebSocketError>(&mut obligated).await {
            Ok(frame) => match frame.opcode {
                OpCode::Binary => Item::Binary(into_bytes(frame.payload)),
                OpCode::Text => Item::Text(into_bytes(frame.payload)),
                OpCode::Pong => Item::Pong(into_bytes(frame.payload)),
                OpCode::Close => Item::Closed(Some(close_info(&frame.payload))),
                // Pings only surface with auto-pong off: left unanswered on
                // purpose. Continuations are absorbed by the collector.
                OpCode::Ping | OpCode::Continuation => continue,
            },
            // SendError: echoing the server's close frame failed because the
            // server already dropped the socket: closed all the same.
            Err(
                WebSocketError::UnexpectedEOF
                | WebSocketError::ConnectionClosed
                | WebSocketError::SendError(_),
            ) => Item::Closed(None),
            Err(WebSocketError::IoError(e)) => match from_io(e) {
                ClientError::Closed => Item::Closed(None),
                other => Item::Failed(other),
            },
            Err(e) => Item::Failed(ClientError::Protocol(format!(
                "bad WebSocket frame from the server: {e}"
            ))),
        };
        let last = matches!(item, Item::Closed(_) | Item::Failed(_));
        if tx.send(item).await.is_err() || last {
            return;
        }
    }
}

fn into_bytes(payload: Payload<'_>) -> Bytes {
    match payload {
        Payload::Bytes(b) => b.freeze(),
        Payload::Owned(v) => Bytes::from(v),
        other => Bytes::copy_from_slice(&other),
    }
}

/// Code and reason of a close frame payload (1005 "no status" when empty).
fn close_info(payload: &[u8]) -> CloseInfo {
    match payload.split_first_chunk::<2>() {
        Some((code, reason)) => CloseInfo {
            code: u16::from_be_bytes(*code),
            reason: String::from_utf8_lossy(reason).into_owned(),
        },
        None => CloseInfo {
            code: 1005,
            reason: String::new(),
        },
    }
}
