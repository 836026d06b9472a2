//! The TCP listener (:8082): 16-byte header + bare protobuf body, v2 only,
//! over plain TCP ([`serve`]) or TLS ([`serve_tls`]): one connection loop
//! for both, generic over the stream.

use std::sync::Arc;

use bytes::BytesMut;
use im_core::Generation;
use im_protocol::tcp::{decode_packet, encode_packet};
use im_service::Outbound;
use im_service::queue;
use im_service::session::{GenerationCell, TransportKind, ViewerCell};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::Transport;
use crate::conn::{
    Flow, MAX_COALESCE, MAX_COALESCE_BYTES, ReadSome, Session, SplitStream, accept, admit,
    encode_outbound,
};
use crate::tls::ServerTls;

/// Accepts TCP connections until shutdown.
pub async fn serve(transport: Arc<Transport>, listener: TcpListener) {
    serve_with(transport, listener, None).await;
}

/// [`serve`] with TLS: every connection does its TLS handshake (in its own
/// task, within the handshake timeout, holding a connection slot) before
/// the first packet.
pub async fn serve_tls(transport: Arc<Transport>, listener: TcpListener, tls: ServerTls) {
    serve_with(transport, listener, Some(tls)).await;
}

async fn serve_with(transport: Arc<Transport>, listener: TcpListener, tls: Option<ServerTls>) {
    while let Some((stream, peer)) = accept(&transport, &listener, "tcp").await {
        if !admit(&transport, peer, "tcp") {
            continue;
        }
        let Ok(permit) = Arc::clone(&transport.conn_limit).try_acquire_owned() else {
            tracing::warn!(%peer, "connection cap reached; refusing tcp connection");
            crate::metrics::refused(TransportKind::Tcp);
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let t = Arc::clone(&transport);
        // Two task types: a plain connection's task never holds room for
        // a handshake (rustls' connection state is large).
        match &tls {
            None => {
                transport.tracker.spawn(run(t, stream, permit));
            }
            Some(tls) => {
                let tls = tls.clone();
                transport.tracker.spawn(async move {
                    if let Some(stream) = tls.accept_tcp(&t, stream).await {
                        run(t, stream, permit).await;
                    }
                });
            }
        }
    }
}

async fn run<S: SplitStream>(transport: Arc<Transport>, stream: S, permit: OwnedSemaphorePermit) {
    let (mut rd, wr) = stream.split_stream();
    let (mut session, out_rx) = Session::new(
        Arc::clone(&transport),
        GenerationCell::fixed(Generation::V2),
        TransportKind::Tcp,
    );
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
            r = tokio::time::timeout_at(deadline, rd.read_some(&mut buf)) => match r {
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

async fn writer<W: AsyncWrite + Unpin>(
    mut wr: W,
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
        // The flush matters for TLS: a write that met a full socket leaves
        // records in rustls until flushed (a no-op on a plain socket).
        let write = async {
            wr.write_all(&out).await?;
            wr.flush().await
        };
        let written = tokio::select! {
            biased;
            r = write => r.is_ok(),
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
