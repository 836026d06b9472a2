//! The TCP listener (:8082): 16-byte header + bare protobuf body, v2 only.

use std::sync::Arc;

use bytes::BytesMut;
use im_core::Generation;
use im_protocol::tcp::{decode_packet, encode_packet};
use im_service::Outbound;
use im_service::queue;
use im_service::session::{TransportKind, ViewerCell};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::Transport;
use crate::conn::{Flow, MAX_COALESCE, MAX_COALESCE_BYTES, Session, admit, encode_outbound};

/// Accepts TCP connections until shutdown.
pub async fn serve(transport: Arc<Transport>, listener: TcpListener) {
    loop {
        let accepted = tokio::select! {
            () = transport.shutdown.cancelled() => break,
            r = listener.accept() => r,
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                tracing::warn!(error = %e, "tcp accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                continue;
            }
        };
        if !admit(&transport, peer, "tcp") {
            continue;
        }
        let Ok(permit) = Arc::clone(&transport.conn_limit).try_acquire_owned() else {
            tracing::warn!(%peer, "connection cap reached; refusing tcp connection");
            crate::metrics::refused(TransportKind::Tcp);
            drop(stream);
            continue;
        };
        let t = Arc::clone(&transport);
        transport.tracker.spawn(async move {
            run(t, stream, permit).await;
        });
    }
}

async fn run(transport: Arc<Transport>, stream: TcpStream, permit: OwnedSemaphorePermit) {
    let _ = stream.set_nodelay(true);
    let (mut rd, wr) = stream.into_split();
    let (mut session, out_rx) =
        Session::new(Arc::clone(&transport), Generation::V2, TransportKind::Tcp);
    transport.tracker.spawn(writer(
        wr,
        out_rx,
        Arc::clone(&session.viewer),
        session.close.clone(),
    ));
    let cfg = &transport.cfg;
    let auth_deadline = Instant::now() + cfg.auth_timeout;
    // Empty until bytes arrive: an idle connection holds no read buffer.
    let mut buf = BytesMut::new();
    'conn: loop {
        loop {
            match decode_packet(&mut buf, cfg.max_frame_bytes) {
                Ok(Some(p)) => {
                    // Boxed: the dispatch future is large, and inlined it
                    // would be part of every idle connection's task.
                    if Box::pin(session.handle(i32::from(p.command), p.sequence, &p.body)).await
                        == Flow::Close
                    {
                        break 'conn;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::info!(session = session.ctx.id.0, error = %e, "bad tcp packet; closing");
                    break 'conn;
                }
            }
        }
        let deadline = if session.ctx.is_authenticated() {
            Instant::now() + cfg.idle_timeout
        } else {
            auth_deadline
        };
        if buf.is_empty() {
            // Nothing pending: hold no buffer while waiting.
            buf = BytesMut::new();
        }
        tokio::select! {
            () = session.close.cancelled() => break,
            r = tokio::time::timeout_at(deadline, read_some(&mut rd, &mut buf)) => match r {
                Ok(Ok(0)) | Ok(Err(_)) => break,
                Ok(Ok(_)) => {}
                Err(_) => {
                    tracing::debug!(session = session.ctx.id.0, authed = session.ctx.is_authenticated(), "tcp timeout; closing");
                    break;
                }
            },
        }
    }
    session.finish();
    drop(permit);
}

/// Bytes reserved for one read.
const READ_CHUNK: usize = 4096;

/// Waits until the socket is readable, then reads what is there into
/// `buf` (reserving only then, so idle connections hold no buffer).
/// Returns 0 at end of stream.
async fn read_some(
    rd: &mut tokio::net::tcp::OwnedReadHalf,
    buf: &mut BytesMut,
) -> std::io::Result<usize> {
    loop {
        rd.readable().await?;
        buf.reserve(READ_CHUNK);
        match rd.try_read_buf(buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
}

async fn writer(
    mut wr: OwnedWriteHalf,
    mut rx: queue::Receiver<Outbound>,
    viewer: ViewerCell,
    close: CancellationToken,
) {
    // Grown on first use: a connection that is never written to holds none.
    let mut out = BytesMut::new();
    let mut body = BytesMut::new();
    'w: loop {
        let first = tokio::select! {
            biased;
            o = rx.recv() => o,
            () = close.cancelled() => None,
        };
        let Some(first) = first else { break };
        let viewer = Arc::clone(&viewer.read());
        let mut next = Some(first);
        let mut n = 0;
        let mut close_after = false;
        while let Some(o) = next.take() {
            body.clear();
            let (command, seq, close_now) = encode_outbound(Generation::V2, &o, &viewer, &mut body);
            let command = u16::try_from(command).unwrap_or(0);
            encode_packet(command, seq, &body, &mut out);
            n += 1;
            if close_now {
                close_after = true;
                break;
            }
            if n < MAX_COALESCE && out.len() < MAX_COALESCE_BYTES {
                next = rx.try_recv();
            }
        }
        // A peer that stops reading blocks this write forever; the session
        // is closed (slow consumer) meanwhile, and must not stay pinned
        // here with its buffers.
        // (Biased: what fits in the socket is still written after a close,
        // e.g. the error reply that preceded it.)
        let written = tokio::select! {
            biased;
            r = wr.write_all(&out) => r.is_ok(),
            () = close.cancelled() => false,
        };
        if !written {
            break 'w;
        }
        out.clear();
        if rx.is_empty() {
            // Idle again: hold no buffers while waiting.
            out = BytesMut::new();
            body = BytesMut::new();
        }
        if close_after {
            break 'w;
        }
    }
    let _ = wr.shutdown().await;
    close.cancel();
}
