//! What WebSocket and TCP connections share: accepting, the byte streams
//! (plain or TLS), the per-session dispatch of decoded frames and the
//! encoding of outbound items.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use im_core::command::{Event, Reply, Request, cmd};
use im_core::{ErrorCode, Generation};
use im_protocol::DecodeError;
use im_service::queue;
use im_service::session::{GenerationCell, TransportKind, ViewerCell, viewer_cell};
use im_service::{Dispatched, Outbound, SessionCtx};
use tokio::io::{AsyncReadExt, AsyncWrite, ReadHalf, WriteHalf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;

use crate::Transport;

/// Whether the read loop goes on after a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flow {
    Continue,
    Close,
}

/// One connection's session state, owned by its read loop.
pub(crate) struct Session {
    pub(crate) transport: Arc<Transport>,
    pub(crate) ctx: SessionCtx,
    pub(crate) tx: queue::Sender<Outbound>,
    pub(crate) close: CancellationToken,
    pub(crate) viewer: ViewerCell,
    inflight: Arc<Semaphore>,
    bad_frames: u32,
    failed_auths: u32,
    /// Plain `/ws`: the generation may be detected, and is remembered per
    /// token for the token's next connection.
    detects: bool,
    /// The generation was decided by one of this session's requests.
    detected: bool,
    /// The key of the token that authenticated this session (plain `/ws`).
    pub(crate) token_key: Option<u64>,
    _open: crate::metrics::OpenConnection,
}

/// Refused AUTH requests in a row one connection may make; the next
/// refusal closes it (the SDK retries on the same socket after refreshing
/// its token, so a few are legitimate; a guessing loop reconnects and pays
/// the per-IP connection rate).
const MAX_FAILED_AUTHS: u32 = 4;

impl Session {
    pub(crate) fn new(
        transport: Arc<Transport>,
        generation: GenerationCell,
        kind: TransportKind,
    ) -> (Self, queue::Receiver<Outbound>) {
        let detects = generation.is_detecting();
        let (tx, rx) = queue::channel(transport.cfg.outbound_queue.max(1));
        let close = transport.shutdown.child_token();
        let viewer = viewer_cell();
        let id = transport.services.messaging.hub().next_session_id();
        let ctx = SessionCtx::new(
            id,
            generation,
            kind,
            tx.clone(),
            close.clone(),
            Arc::clone(&viewer),
        );
        let inflight = Arc::new(Semaphore::new(transport.cfg.max_inflight_sends.max(1)));
        (
            Self {
                transport,
                ctx,
                tx,
                close,
                viewer,
                inflight,
                bad_frames: 0,
                failed_auths: 0,
                detects,
                detected: false,
                token_key: None,
                _open: crate::metrics::OpenConnection::new(kind),
            },
            rx,
        )
    }

    /// Decodes and dispatches one frame's body.
    pub(crate) async fn handle(&mut self, command: i32, sequence: u32, body: &[u8]) -> Flow {
        let generation = self.generation_for(command, body);
        let req = match im_protocol::decode_request(generation, command, body) {
            Ok(req) => req,
            Err(e) => return self.bad_frame(command, sequence, &e).await,
        };
        self.bad_frames = 0;
        let token_key = match &req {
            Request::Auth { token, .. } if self.detects => {
                Some(self.transport.ws_generations.key(token))
            }
            _ => None,
        };
        let services = Arc::clone(&self.transport.services);
        match self.ctx.dispatch(&services, req).await {
            Dispatched::None => Flow::Continue,
            Dispatched::Reply(reply) => {
                let auth_code = match &reply {
                    Reply::Auth { code, .. } => Some(*code),
                    _ => None,
                };
                let flow = self.reply(sequence, reply).await;
                self.ctx.after_reply(&services);
                if auth_code == Some(ErrorCode::Success) {
                    self.failed_auths = 0;
                    if token_key.is_some() {
                        self.token_key = token_key;
                        self.remember();
                    }
                } else if auth_code.is_some() {
                    self.failed_auths += 1;
                    if self.failed_auths > MAX_FAILED_AUTHS {
                        tracing::info!(
                            session = self.ctx.id.0,
                            "too many refused AUTH requests; closing"
                        );
                        return Flow::Close;
                    }
                }
                flow
            }
            Dispatched::Later(fut) => {
                // Bound the sends awaiting commit; waiting here back-pressures the reader.
                let Ok(permit) = Arc::clone(&self.inflight).acquire_owned().await else {
                    return Flow::Close;
                };
                let tx = self.tx.clone();
                self.transport.tracker.spawn(async move {
                    // None: a transient failure the client recovers from by
                    // resending (see `im_service::session`).
                    if let Some(reply) = fut.await {
                        let _ = tx
                            .send(Outbound::Reply {
                                seq: sequence,
                                reply: Box::new(reply),
                            })
                            .await;
                    }
                    drop(permit);
                });
                Flow::Continue
            }
        }
    }

    /// The generation to decode a request with; on plain `/ws`, the first
    /// request that reveals the client's generation decides it.
    fn generation_for(&mut self, command: i32, body: &[u8]) -> Generation {
        let cell = &self.ctx.generation;
        let found = if cell.is_detecting() {
            im_protocol::detect::detect(command, body)
        } else {
            None
        };
        if let Some(g) = found {
            if cell.decide(g) {
                self.detected = true;
                crate::metrics::ws_generation_detected(g);
                tracing::debug!(
                    session = self.ctx.id.0,
                    generation = ?g,
                    command,
                    "websocket generation detected"
                );
                self.remember();
            }
            return g;
        }
        cell.current()
    }

    /// Records the detected generation for the session's token, so that
    /// the token's next connection (the SDK's reconnect, which sends no
    /// request) is encoded alike from the start.
    pub(crate) fn remember(&self) {
        if let (true, Some(key), Some(g)) =
            (self.detected, self.token_key, self.ctx.generation.get())
        {
            self.transport.ws_generations.insert(key, g);
        }
    }

    /// A frame that is not even an envelope (WebSocket only).
    pub(crate) async fn bad_envelope(&mut self, e: &DecodeError) -> Flow {
        self.bad_frame(0, 0, e).await
    }

    async fn bad_frame(&mut self, command: i32, sequence: u32, e: &DecodeError) -> Flow {
        self.bad_frames += 1;
        tracing::debug!(session = self.ctx.id.0, command, error = %e, "undecodable frame");
        let too_many = self.bad_frames > self.transport.cfg.max_bad_frames;
        let unknown = cmd::response_of(command).is_none();
        // On TCP the SDK must never see command numbers it does not know, and
        // an unknown request has no response command: ignore those there.
        if !(self.ctx.transport == TransportKind::Tcp && unknown) {
            let msg = match e {
                DecodeError::UnknownCommand(_) | DecodeError::NotServerBound(_) => {
                    "unknown command"
                }
                DecodeError::BadEnvelope(_) => "malformed frame",
                _ => "malformed request body",
            };
            let flow = self
                .reply(
                    sequence,
                    Reply::error(command, ErrorCode::InvalidParam, msg),
                )
                .await;
            if flow == Flow::Close {
                return flow;
            }
        }
        if too_many {
            tracing::info!(
                session = self.ctx.id.0,
                "too many undecodable frames; closing"
            );
            Flow::Close
        } else {
            Flow::Continue
        }
    }

    async fn reply(&self, seq: u32, reply: Reply) -> Flow {
        match self
            .tx
            .send(Outbound::Reply {
                seq,
                reply: Box::new(reply),
            })
            .await
        {
            Ok(()) => Flow::Continue,
            Err(_) => Flow::Close,
        }
    }

    /// Unregisters the session; called once when the read loop ends.
    pub(crate) fn finish(mut self) {
        self.ctx.on_close(&self.transport.services);
        self.close.cancel();
    }
}

/// The next accepted TCP connection of `listener`, or `None` once shutdown
/// is signalled. Accept errors (EMFILE and friends) back off briefly
/// instead of spinning.
pub(crate) async fn accept(
    transport: &Transport,
    listener: &TcpListener,
    kind: &'static str,
) -> Option<(TcpStream, SocketAddr)> {
    loop {
        let accepted = tokio::select! {
            () = transport.shutdown.cancelled() => return None,
            r = listener.accept() => r,
        };
        match accepted {
            Ok(x) => return Some(x),
            Err(e) => {
                tracing::warn!(error = %e, kind, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
    }
}

/// A connection's byte stream (plain TCP or TLS over TCP), split into the
/// half its read loop owns and the half its writer task owns.
pub(crate) trait SplitStream: Send + 'static {
    type Read: ReadSome;
    type Write: AsyncWrite + Send + Unpin + 'static;
    fn split_stream(self) -> (Self::Read, Self::Write);
}

/// The read half of a [`SplitStream`].
pub(crate) trait ReadSome: Send + Unpin + 'static {
    /// Waits for bytes and appends what has arrived to `buf`; 0 at end of
    /// stream.
    fn read_some(&mut self, buf: &mut BytesMut) -> impl Future<Output = io::Result<usize>> + Send;
}

/// Bytes reserved for one read.
const READ_CHUNK: usize = 4096;

impl SplitStream for TcpStream {
    type Read = OwnedReadHalf;
    type Write = OwnedWriteHalf;
    fn split_stream(self) -> (OwnedReadHalf, OwnedWriteHalf) {
        self.into_split()
    }
}

impl ReadSome for OwnedReadHalf {
    /// Waits until the socket is readable and only then reserves room, so
    /// an idle plain connection holds no read buffer.
    async fn read_some(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        loop {
            self.readable().await?;
            buf.reserve(READ_CHUNK);
            match self.try_read_buf(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
    }
}

impl SplitStream for TlsStream<TcpStream> {
    type Read = ReadHalf<TlsStream<TcpStream>>;
    type Write = WriteHalf<TlsStream<TcpStream>>;
    fn split_stream(self) -> (Self::Read, Self::Write) {
        tokio::io::split(self)
    }
}

/// Bytes reserved for a read into an empty buffer of a TLS stream.
const IDLE_TLS_READ: usize = 256;

impl ReadSome for ReadHalf<TlsStream<TcpStream>> {
    /// A TLS stream cannot say "readable" before decrypting, so room is
    /// reserved while waiting: little while nothing is pending (an idle
    /// connection, or the first bytes of a burst), a full chunk in the
    /// middle of a frame.
    async fn read_some(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        buf.reserve(if buf.is_empty() {
            IDLE_TLS_READ
        } else {
            READ_CHUNK
        });
        self.read_buf(buf).await
    }
}

/// Whether a connection from `peer` may proceed: false (it is dropped at
/// once) when its address opens connections faster than the per-IP limit.
pub(crate) fn admit(transport: &Transport, peer: SocketAddr, kind: &'static str) -> bool {
    if transport.services.limits.ip(peer.ip()) {
        return true;
    }
    tracing::debug!(%peer, kind, "per-IP connection rate exceeded; refusing");
    false
}

/// Encodes `out` for `viewer` into `body`; returns (command, sequence, close_after).
pub(crate) fn encode_outbound(
    generation: Generation,
    out: &Outbound,
    viewer: &str,
    body: &mut BytesMut,
) -> (i32, u32, bool) {
    match out {
        Outbound::Reply { seq, reply } => (
            im_protocol::encode_reply(generation, reply.as_ref(), viewer, body),
            *seq,
            false,
        ),
        Outbound::Event(ev) => {
            let close = matches!(ev.as_ref(), Event::KickOut { .. });
            (
                im_protocol::encode_event(generation, ev, viewer, body),
                0,
                close,
            )
        }
        Outbound::Batch(b) => (
            im_protocol::encode_batch(generation, &b.messages, viewer, body),
            0,
            false,
        ),
    }
}

/// Most frames coalesced into one write.
pub(crate) const MAX_COALESCE: usize = 64;
/// Write once this many bytes are buffered, even if more frames are ready.
pub(crate) const MAX_COALESCE_BYTES: usize = 256 * 1024;
