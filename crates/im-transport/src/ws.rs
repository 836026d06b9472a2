//! The WebSocket listener (:8081): `/ws` (default generation, or `?v=1|2`),
//! `/ws/v1` and `/ws/v2`. One binary frame carries one `WebSocketMessage`.
//! Plain ([`serve`]) or over TLS ([`serve_tls`], `wss://`): after the
//! upgrade both are the same connection loop over hyper's `Upgraded`.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use fastwebsockets::{FragmentCollectorRead, Frame, OpCode, Payload, WebSocket, WebSocketError};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::upgrade::Upgraded;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use im_core::Generation;
use im_protocol::ws::{decode_envelope, encode_envelope};
use im_service::Outbound;
use im_service::queue;
use im_service::session::{TransportKind, ViewerCell};
use tokio::io::{AsyncRead, AsyncWrite, BufWriter, WriteHalf};
use tokio::net::TcpListener;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::Transport;
use crate::conn::{
    Flow, MAX_COALESCE, MAX_COALESCE_BYTES, Session, accept, admit, encode_outbound,
};
use crate::tls::ServerTls;

type Io = TokioIo<Upgraded>;
type WsWrite = fastwebsockets::WebSocketWrite<BufWriter<WriteHalf<Io>>>;

/// Close codes we send.
const CLOSE_NORMAL: u16 = 1000;
const CLOSE_GOING_AWAY: u16 = 1001;
const CLOSE_POLICY: u16 = 1008;

/// Which generation a request path (and query) selects, if it is ours.
pub fn generation_for(
    path: &str,
    query: Option<&str>,
    default: Generation,
) -> Result<Generation, &'static str> {
    let by_path = match path.trim_end_matches('/') {
        "/ws" => None,
        "/ws/v1" => Some(Generation::V1),
        "/ws/v2" => Some(Generation::V2),
        _ => return Err("not found"),
    };
    let mut by_query = None;
    for pair in query.unwrap_or("").split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k == "v" || k == "proto" {
            by_query = Some(match v {
                "1" => Generation::V1,
                "2" => Generation::V2,
                _ => return Err("v must be 1 or 2"),
            });
        }
    }
    match (by_path, by_query) {
        (Some(p), Some(q)) if p != q => Err("path and ?v= disagree"),
        (Some(p), _) => Ok(p),
        (None, Some(q)) => Ok(q),
        (None, None) => Ok(default),
    }
}

fn plain(status: StatusCode, msg: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(msg.as_bytes())));
    *r.status_mut() = status;
    r
}

/// Accepts WebSocket connections until shutdown.
pub async fn serve(transport: Arc<Transport>, listener: TcpListener) {
    serve_with(transport, listener, None).await;
}

/// [`serve`] with TLS (`wss://`): every connection does its TLS handshake
/// (in its own task, within the handshake timeout, holding a connection
/// slot until it ends) before the HTTP upgrade.
pub async fn serve_tls(transport: Arc<Transport>, listener: TcpListener, tls: ServerTls) {
    serve_with(transport, listener, Some(tls)).await;
}

async fn serve_with(transport: Arc<Transport>, listener: TcpListener, tls: Option<ServerTls>) {
    while let Some((stream, peer)) = accept(&transport, &listener, "ws").await {
        if !admit(&transport, peer, "ws") {
            continue;
        }
        let _ = stream.set_nodelay(true);
        let t = Arc::clone(&transport);
        let Some(tls) = tls.clone() else {
            transport.tracker.spawn(serve_http1(t, stream));
            continue;
        };
        let Ok(permit) = Arc::clone(&transport.conn_limit).try_acquire_owned() else {
            tracing::warn!(%peer, "connection cap reached; refusing websocket TLS handshake");
            crate::metrics::refused(TransportKind::WebSocket);
            drop(stream);
            continue;
        };
        transport.tracker.spawn(async move {
            let stream = tls.accept_http(&t, stream, "ws").await;
            // The upgrade takes a slot of its own.
            drop(permit);
            if let Some(stream) = stream {
                serve_http1(t, stream).await;
            }
        });
    }
}

/// Serves the HTTP/1.1 upgrade request(s) of one connection.
async fn serve_http1<S>(transport: Arc<Transport>, stream: S)
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let svc = service_fn(move |req| upgrade(Arc::clone(&transport), req));
    let conn = http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(std::time::Duration::from_secs(10))
        .serve_connection(TokioIo::new(stream), svc)
        .with_upgrades();
    if let Err(e) = conn.await {
        tracing::debug!(error = %e, "ws http connection ended with error");
    }
}

async fn upgrade(
    transport: Arc<Transport>,
    mut req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let generation = match generation_for(
        req.uri().path(),
        req.uri().query(),
        transport.cfg.ws_default_generation,
    ) {
        Ok(g) => g,
        Err("not found") => return Ok(plain(StatusCode::NOT_FOUND, "not found")),
        Err(e) => return Ok(plain(StatusCode::BAD_REQUEST, e)),
    };
    if !fastwebsockets::upgrade::is_upgrade_request(&req) {
        return Ok(plain(
            StatusCode::UPGRADE_REQUIRED,
            "websocket upgrade required",
        ));
    }
    let Ok(permit) = Arc::clone(&transport.conn_limit).try_acquire_owned() else {
        tracing::warn!("connection cap reached; refusing websocket");
        crate::metrics::refused(TransportKind::WebSocket);
        return Ok(plain(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many connections",
        ));
    };
    let (resp, fut) = match fastwebsockets::upgrade::upgrade(&mut req) {
        Ok(x) => x,
        Err(_) => return Ok(plain(StatusCode::BAD_REQUEST, "bad websocket upgrade")),
    };
    let t = Arc::clone(&transport);
    transport.tracker.spawn(async move {
        match fut.await {
            Ok(ws) => run(t, ws, generation, permit).await,
            Err(e) => tracing::debug!(error = %e, "websocket upgrade failed"),
        }
    });
    Ok(resp.map(|_| Full::new(Bytes::new())))
}

/// Control frames the read half asks the writer to send.
enum Control {
    Frame(OpCode, Vec<u8>),
    Close(u16, &'static str),
}

async fn run(
    transport: Arc<Transport>,
    mut ws: WebSocket<Io>,
    generation: Generation,
    permit: OwnedSemaphorePermit,
) {
    let cfg = &transport.cfg;
    ws.set_max_message_size(cfg.max_frame_bytes);
    ws.set_auto_pong(true);
    ws.set_auto_close(true);
    let (rd, wr) = ws.split(|s| {
        let (r, w) = tokio::io::split(s);
        (r, BufWriter::with_capacity(4096, w))
    });
    let mut rd = FragmentCollectorRead::new(rd);
    let (mut session, out_rx) =
        Session::new(Arc::clone(&transport), generation, TransportKind::WebSocket);
    let (ctl_tx, ctl_rx) = queue::channel::<Control>(8);
    transport.tracker.spawn(writer(
        wr,
        out_rx,
        ctl_rx,
        Arc::clone(&session.viewer),
        session.close.clone(),
        generation,
        cfg.ping_interval,
    ));
    let auth_deadline = Instant::now() + cfg.auth_timeout;
    let mut send_fn = |frame: Frame<'_>| {
        let tx = ctl_tx.clone();
        let owned = Control::Frame(frame.opcode, frame.payload.to_vec());
        async move {
            tx.send(owned)
                .await
                .map_err(|_| std::io::Error::other("websocket writer gone"))
        }
    };
    let close_reason = loop {
        let authed = session.ctx.is_authenticated();
        let deadline = if authed {
            Instant::now() + cfg.idle_timeout
        } else {
            auth_deadline
        };
        let frame = tokio::select! {
            () = session.close.cancelled() => break None,
            r = tokio::time::timeout_at(deadline, rd.read_frame(&mut send_fn)) => r,
        };
        let frame = match frame {
            Err(_) => {
                tracing::debug!(
                    session = session.ctx.id.0,
                    authed,
                    "websocket timeout; closing"
                );
                break Some((
                    CLOSE_POLICY,
                    if authed {
                        "idle timeout"
                    } else {
                        "auth timeout"
                    },
                ));
            }
            Ok(Err(WebSocketError::FrameTooLarge)) => break Some((1009, "frame too large")),
            Ok(Err(e)) => {
                tracing::debug!(session = session.ctx.id.0, error = %e, "websocket read ended");
                break None;
            }
            Ok(Ok(f)) => f,
        };
        match frame.opcode {
            // The SDK parses text frames as protobuf too; be as lenient.
            OpCode::Binary | OpCode::Text => {
                let flow = match decode_envelope(&frame.payload) {
                    // Boxed: keeps the large dispatch future out of the idle task.
                    Ok(env) => Box::pin(session.handle(env.command, env.sequence, &env.body)).await,
                    Err(e) => session.bad_envelope(&e).await,
                };
                if flow == Flow::Close {
                    break Some((CLOSE_POLICY, "too many bad frames or refused AUTH requests"));
                }
            }
            OpCode::Close => break None,
            OpCode::Ping | OpCode::Pong | OpCode::Continuation => {}
        }
    };
    if let Some((code, reason)) = close_reason {
        let _ = ctl_tx.send(Control::Close(code, reason)).await;
    }
    drop(ctl_tx);
    session.finish();
    drop(permit);
}

async fn write_outbound(
    wr: &mut WsWrite,
    generation: Generation,
    o: &Outbound,
    viewer: &str,
    body: &mut BytesMut,
    frame: &mut BytesMut,
) -> Result<(bool, usize), WebSocketError> {
    body.clear();
    frame.clear();
    let (command, seq, close_after) = encode_outbound(generation, o, viewer, body);
    encode_envelope(command, seq, body, 0, frame);
    let len = frame.len();
    wr.write_frame(Frame::binary(Payload::Borrowed(frame)))
        .await?;
    Ok((close_after, len))
}

/// How long a closing connection may take to write its last frames.
const CLOSE_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

async fn writer(
    mut wr: WsWrite,
    mut rx: queue::Receiver<Outbound>,
    mut ctl: queue::Receiver<Control>,
    viewer: ViewerCell,
    close: CancellationToken,
    generation: Generation,
    ping_every: std::time::Duration,
) {
    let mut body = BytesMut::with_capacity(256);
    let mut frame = BytesMut::with_capacity(256);
    let mut ping = tokio::time::interval_at(Instant::now() + ping_every, ping_every);
    // False after a KICK_OUT: nothing queued behind it is written.
    let mut drain = true;
    let end: Option<(u16, &'static str)> = loop {
        tokio::select! {
            biased;
            c = ctl.recv() => match c {
                Some(Control::Frame(op, payload)) => {
                    let f = Frame::new(true, op, None, Payload::Owned(payload));
                    if wr.write_frame(f).await.is_err() || wr.flush().await.is_err() {
                        break None;
                    }
                    if op == OpCode::Close {
                        break None;
                    }
                }
                Some(Control::Close(code, reason)) => break Some((code, reason)),
                None => break None,
            },
            o = rx.recv() => {
                let Some(first) = o else { break Some((CLOSE_NORMAL, "")) };
                let viewer = Arc::clone(&viewer.read());
                let batch = async {
                    let mut next = Some(first);
                    let mut n = 0usize;
                    let mut written = 0usize;
                    let mut kicked = false;
                    while let Some(o) = next.take() {
                        match write_outbound(&mut wr, generation, &o, &viewer, &mut body, &mut frame).await? {
                            (true, _) => { kicked = true; break; }
                            (false, len) => written += len,
                        }
                        n += 1;
                        if n < MAX_COALESCE && written < MAX_COALESCE_BYTES {
                            next = rx.try_recv();
                        }
                    }
                    wr.flush().await?;
                    Ok::<_, WebSocketError>(kicked)
                };
                // A peer that stops reading blocks these writes forever; the
                // session is closed (slow consumer) meanwhile, and must not
                // stay pinned here with its buffers.
                let kicked = tokio::select! {
                    biased;
                    r = batch => match r {
                        Ok(kicked) => kicked,
                        Err(_) => break None,
                    },
                    () = close.cancelled() => break None,
                };
                if kicked {
                    drain = false;
                    break Some((CLOSE_POLICY, "kicked out"));
                }
                if body.capacity() > 64 * 1024 { body = BytesMut::with_capacity(256); }
                if frame.capacity() > 64 * 1024 { frame = BytesMut::with_capacity(256); }
            }
            _ = ping.tick() => {
                let f = Frame::new(true, OpCode::Ping, None, Payload::Borrowed(&[]));
                if wr.write_frame(f).await.is_err() || wr.flush().await.is_err() {
                    break None;
                }
            }
            () = close.cancelled() => break Some((CLOSE_GOING_AWAY, "closing")),
        }
    };
    if let Some((code, reason)) = end {
        // What was queued before the close (e.g. the refusal that caused
        // it) goes first; a peer that does not read gets a bounded wait.
        let goodbye = async {
            let viewer = Arc::clone(&viewer.read());
            while let Some(o) = rx.try_recv().filter(|_| drain) {
                if write_outbound(&mut wr, generation, &o, &viewer, &mut body, &mut frame)
                    .await
                    .is_err()
                {
                    return;
                }
            }
            let _ = wr.write_frame(Frame::close(code, reason.as_bytes())).await;
            let _ = wr.flush().await;
        };
        let _ = tokio::time::timeout(CLOSE_GRACE, goodbye).await;
    }
    close.cancel();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_query_select_generation() {
        let d = Generation::V1;
        assert_eq!(generation_for("/ws", None, d), Ok(Generation::V1));
        assert_eq!(
            generation_for("/ws", Some("token=abc"), Generation::V2),
            Ok(Generation::V2)
        );
        assert_eq!(
            generation_for("/ws", Some("v=2&token=x"), d),
            Ok(Generation::V2)
        );
        assert_eq!(
            generation_for("/ws", Some("proto=1&token=x"), Generation::V2),
            Ok(Generation::V1)
        );
        assert_eq!(
            generation_for("/ws/v2", Some("token=x"), d),
            Ok(Generation::V2)
        );
        assert_eq!(
            generation_for("/ws/v1/", None, Generation::V2),
            Ok(Generation::V1)
        );
        assert!(generation_for("/ws/v1", Some("v=2"), d).is_err());
        assert!(generation_for("/ws", Some("v=3"), d).is_err());
        assert_eq!(generation_for("/other", None, d), Err("not found"));
    }
}
