//! The WebSocket listener (:8081): `/ws` (generation detected per
//! connection, or `?v=1|2`), `/ws/v1` and `/ws/v2`. One binary frame carries
//! one `WebSocketMessage`. An upgrade URL with `?token=` authenticates the
//! session before the upgrade (401 when the token is refused).
//! Plain ([`serve`]) or over TLS ([`serve_tls`], `wss://`): after the
//! upgrade both are the same connection loop over hyper's `Upgraded`.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::hash::{BuildHasher, RandomState};
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
use im_core::command::Event;
use im_protocol::ws::{decode_envelope, encode_envelope};
use im_service::Outbound;
use im_service::queue;
use im_service::session::{GenerationCell, TransportKind, ViewerCell};
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

/// Which generation a request path (and query) fixes, if it is ours:
/// `Ok(None)` for plain `/ws` without `?v=`, where it is detected.
pub fn generation_for(path: &str, query: Option<&str>) -> Result<Option<Generation>, &'static str> {
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
        (Some(p), _) => Ok(Some(p)),
        (None, q) => Ok(q),
    }
}

/// The `token` of an upgrade URL's query, verbatim (the SDK appends
/// `?token=` or `&token=` without percent-encoding; JWTs and demo tokens
/// need none). The last one wins; `token` without a value is `Some("")`.
pub fn query_token(query: Option<&str>) -> Option<&str> {
    query?.rsplit('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == "token").then_some(v)
    })
}

/// Tokens remembered by [`TokenGenerations`] (FIFO beyond that).
pub(crate) const REMEMBERED_TOKENS: usize = 65_536;

/// The generation each token's last plain-`/ws` connection revealed, so
/// that the SDK's reconnect with `?token=` (which sends no request at all,
/// IMWebSocketManager.swift:135-162) gets pushes in its own generation.
/// Keys are keyed hashes of the tokens; bounded, oldest forgotten first;
/// this node only.
pub(crate) struct TokenGenerations {
    hasher: RandomState,
    cap: usize,
    inner: parking_lot::Mutex<Remembered>,
}

#[derive(Default)]
struct Remembered {
    map: HashMap<u64, Generation>,
    order: VecDeque<u64>,
}

impl TokenGenerations {
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            hasher: RandomState::new(),
            cap: cap.max(1),
            inner: parking_lot::Mutex::new(Remembered::default()),
        }
    }

    pub(crate) fn key(&self, token: &str) -> u64 {
        self.hasher.hash_one(token)
    }

    pub(crate) fn get(&self, key: u64) -> Option<Generation> {
        self.inner.lock().map.get(&key).copied()
    }

    pub(crate) fn insert(&self, key: u64, generation: Generation) {
        let mut r = self.inner.lock();
        if r.map.insert(key, generation).is_none() {
            r.order.push_back(key);
            while r.order.len() > self.cap {
                if let Some(old) = r.order.pop_front() {
                    r.map.remove(&old);
                }
            }
        }
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
    let generation = match generation_for(req.uri().path(), req.uri().query()) {
        Ok(Some(g)) => GenerationCell::fixed(g),
        Ok(None) => GenerationCell::detecting(transport.cfg.ws_default_generation),
        Err("not found") => return Ok(plain(StatusCode::NOT_FOUND, "not found")),
        Err(e) => return Ok(plain(StatusCode::BAD_REQUEST, e)),
    };
    // Owned: the request is borrowed mutably by the upgrade below.
    let token = query_token(req.uri().query()).map(str::to_owned);
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
    let (mut session, out_rx) =
        Session::new(Arc::clone(&transport), generation, TransportKind::WebSocket);
    if let Some(token) = token {
        if let Err(refusal) = authenticate_query(&transport, &mut session, &token).await {
            session.finish();
            return Ok(refusal);
        }
    }
    let t = Arc::clone(&transport);
    transport.tracker.spawn(async move {
        match fut.await {
            Ok(ws) => run(t, ws, session, out_rx, permit).await,
            Err(e) => {
                tracing::debug!(error = %e, "websocket upgrade failed");
                session.finish();
            }
        }
    });
    Ok(resp.map(|_| Full::new(Bytes::new())))
}

/// Authenticates `session` with the `?token=` of its upgrade URL, exactly
/// as a successful AUTH_REQ would (the platform is the token's), before the
/// upgrade is answered; the error is the HTTP response refusing it. The
/// token is never logged.
async fn authenticate_query(
    transport: &Transport,
    session: &mut Session,
    token: &str,
) -> Result<(), Response<Full<Bytes>>> {
    let services = &transport.services;
    let identity = match services.accounts.authenticate(token, "").await {
        Ok(identity) => identity,
        Err(im_service::ServiceError::Store(e)) => {
            tracing::error!(error = %e, "checking a websocket ?token= failed");
            crate::metrics::ws_query_token("unavailable");
            return Err(plain(
                StatusCode::SERVICE_UNAVAILABLE,
                "storage temporarily unavailable",
            ));
        }
        Err(e) => {
            tracing::info!(session = session.ctx.id.0, reason = %e, "websocket ?token= refused");
            crate::metrics::ws_query_token("refused");
            return Err(plain(StatusCode::UNAUTHORIZED, "invalid token"));
        }
    };
    match session
        .ctx
        .authenticate_as(services, identity, String::new())
        .await
    {
        im_core::command::Reply::Auth {
            code: im_core::ErrorCode::Success,
            ..
        } => {}
        _ => {
            crate::metrics::ws_query_token("unavailable");
            return Err(plain(
                StatusCode::SERVICE_UNAVAILABLE,
                "storage temporarily unavailable",
            ));
        }
    }
    crate::metrics::ws_query_token("ok");
    let cell = &session.ctx.generation;
    if cell.is_detecting() {
        let key = transport.ws_generations.key(token);
        session.token_key = Some(key);
        if let Some(g) = transport.ws_generations.get(key) {
            cell.presume(g);
            crate::metrics::ws_generation(g, "remembered");
        }
    }
    Ok(())
}

/// Control frames the read half asks the writer to send.
enum Control {
    Frame(OpCode, Vec<u8>),
    Close(u16, &'static str),
}

async fn run(
    transport: Arc<Transport>,
    mut ws: WebSocket<Io>,
    mut session: Session,
    out_rx: queue::Receiver<Outbound>,
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
    let (ctl_tx, ctl_rx) = queue::channel::<Control>(8);
    transport.tracker.spawn(writer(
        wr,
        out_rx,
        ctl_rx,
        Arc::clone(&session.viewer),
        session.close.clone(),
        session.ctx.generation.clone(),
        Timers {
            ping_every: cfg.ping_interval,
            hold: cfg.ws_detect_hold,
        },
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

/// Runs `writes` (which say whether they wrote a KICK_OUT) unless the
/// session is closed first: a peer that stops reading blocks writes
/// forever, and a session closed meanwhile (slow consumer) must not stay
/// pinned here with its buffers. `None` when the writes failed or the
/// session closed.
async fn unless_closed(
    writes: impl std::future::Future<Output = Result<bool, WebSocketError>>,
    close: &CancellationToken,
) -> Option<bool> {
    tokio::select! {
        biased;
        r = writes => r.ok(),
        () = close.cancelled() => None,
    }
}

/// How long a closing connection may take to write its last frames.
const CLOSE_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// The writer's timers.
struct Timers {
    /// Interval of server pings.
    ping_every: std::time::Duration,
    /// How long after the connection opened pushes wait for its generation.
    hold: std::time::Duration,
}

/// Pushes (events) of a plain-`/ws` connection whose generation is not
/// known yet: kept in order until it is known or the hold window ends;
/// replies are never held (each is encoded like the request it answers).
struct Held {
    until: Option<Instant>,
    items: VecDeque<Outbound>,
}

impl Held {
    fn new(generation: &GenerationCell, hold: std::time::Duration) -> Self {
        let until = (generation.get().is_none() && !hold.is_zero()).then(|| Instant::now() + hold);
        Self {
            until,
            items: VecDeque::new(),
        }
    }

    fn holding(&self) -> bool {
        self.until.is_some()
    }

    /// Keeps `o` if it must wait; gives it back otherwise. A KICK_OUT is
    /// kept behind what was held and ends the window: it must not wait.
    fn keep(&mut self, o: Outbound) -> Option<Outbound> {
        let Outbound::Event(event) = &o else {
            return Some(o);
        };
        if !self.holding() {
            return Some(o);
        }
        if matches!(event.as_ref(), Event::KickOut { .. }) {
            self.until = None;
        }
        self.items.push_back(o);
        None
    }
}

async fn writer(
    mut wr: WsWrite,
    mut rx: queue::Receiver<Outbound>,
    mut ctl: queue::Receiver<Control>,
    viewer: ViewerCell,
    close: CancellationToken,
    generation: GenerationCell,
    timers: Timers,
) {
    let mut body = BytesMut::with_capacity(256);
    let mut frame = BytesMut::with_capacity(256);
    let ping_every = timers.ping_every;
    let mut ping = tokio::time::interval_at(Instant::now() + ping_every, ping_every);
    let mut held = Held::new(&generation, timers.hold);
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
            // The generation became known, or the window ended: what was
            // held goes out, in order, and nothing is held any more.
            () = generation.known(), if held.holding() => {
                held.until = None;
            }
            () = tokio::time::sleep_until(held.until.unwrap_or_else(Instant::now)), if held.holding() => {
                held.until = None;
                if !held.items.is_empty() {
                    crate::metrics::ws_generation(generation.current(), "hold_expired");
                }
            }
            o = rx.recv(), if !(held.holding() && held.items.len() >= MAX_HELD) => {
                let Some(first) = o else { break Some((CLOSE_NORMAL, "")) };
                // A held push (even a KICK_OUT, which ends the hold) is
                // written by the release below.
                if let Some(first) = held.keep(first) {
                    let viewer = Arc::clone(&viewer.read());
                    let g = generation.current();
                    let batch = async {
                        let mut next = Some(first);
                        let mut n = 0usize;
                        let mut written = 0usize;
                        let mut kicked = false;
                        while let Some(o) = next.take() {
                            match write_outbound(&mut wr, g, &o, &viewer, &mut body, &mut frame).await? {
                                (true, _) => { kicked = true; break; }
                                (false, len) => written += len,
                            }
                            n += 1;
                            while n < MAX_COALESCE && written < MAX_COALESCE_BYTES && next.is_none() {
                                let Some(o) = rx.try_recv() else { break };
                                next = held.keep(o);
                                if next.is_none() && !held.holding() {
                                    // A KICK_OUT released the held pushes: they go first.
                                    break;
                                }
                            }
                        }
                        wr.flush().await?;
                        Ok::<_, WebSocketError>(kicked)
                    };
                    match unless_closed(batch, &close).await {
                        None => break None,
                        Some(true) => {
                            drain = false;
                            break Some((CLOSE_POLICY, "kicked out"));
                        }
                        Some(false) => {}
                    }
                    if body.capacity() > 64 * 1024 { body = BytesMut::with_capacity(256); }
                    if frame.capacity() > 64 * 1024 { frame = BytesMut::with_capacity(256); }
                }
            }
            _ = ping.tick() => {
                let f = Frame::new(true, OpCode::Ping, None, Payload::Borrowed(&[]));
                if wr.write_frame(f).await.is_err() || wr.flush().await.is_err() {
                    break None;
                }
            }
            () = close.cancelled() => break Some((CLOSE_GOING_AWAY, "closing")),
        }
        if !held.holding() && !held.items.is_empty() {
            // Released: write what was held before anything newer.
            let viewer = Arc::clone(&viewer.read());
            let g = generation.current();
            let release = async {
                let mut kicked = false;
                while let Some(o) = held.items.pop_front() {
                    if write_outbound(&mut wr, g, &o, &viewer, &mut body, &mut frame)
                        .await?
                        .0
                    {
                        kicked = true;
                        break;
                    }
                }
                wr.flush().await?;
                Ok::<_, WebSocketError>(kicked)
            };
            match unless_closed(release, &close).await {
                None => break None,
                Some(true) => {
                    drain = false;
                    break Some((CLOSE_POLICY, "kicked out"));
                }
                Some(false) => {}
            }
        }
    };
    if let Some((code, reason)) = end {
        // What was queued before the close (e.g. the refusal that caused
        // it) goes first; a peer that does not read gets a bounded wait.
        let goodbye = async {
            let viewer = Arc::clone(&viewer.read());
            let g = generation.current();
            let queued = std::iter::from_fn(|| held.items.pop_front().or_else(|| rx.try_recv()));
            for o in queued.take_while(|_| drain) {
                match write_outbound(&mut wr, g, &o, &viewer, &mut body, &mut frame).await {
                    Ok((false, _)) => {}
                    // A KICK_OUT is the last frame before the close.
                    Ok((true, _)) => break,
                    Err(_) => return,
                }
            }
            let _ = wr.write_frame(Frame::close(code, reason.as_bytes())).await;
            let _ = wr.flush().await;
        };
        let _ = tokio::time::timeout(CLOSE_GRACE, goodbye).await;
    }
    close.cancel();
}

/// Most pushes held while a connection's generation is not known; beyond
/// that the writer stops taking from the queue until it is released (the
/// session's bounded queue then applies its slow-consumer rule).
const MAX_HELD: usize = 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_query_select_generation() {
        let v1 = Ok(Some(Generation::V1));
        let v2 = Ok(Some(Generation::V2));
        assert_eq!(generation_for("/ws", None), Ok(None));
        assert_eq!(generation_for("/ws/", Some("token=abc")), Ok(None));
        assert_eq!(generation_for("/ws", Some("v=2&token=x")), v2);
        assert_eq!(generation_for("/ws", Some("proto=1&token=x")), v1);
        assert_eq!(generation_for("/ws/v2", Some("token=x")), v2);
        assert_eq!(generation_for("/ws/v1/", None), v1);
        assert!(generation_for("/ws/v1", Some("v=2")).is_err());
        assert!(generation_for("/ws", Some("v=3")).is_err());
        assert_eq!(generation_for("/other", None), Err("not found"));
    }

    #[test]
    fn query_tokens() {
        assert_eq!(query_token(None), None);
        assert_eq!(query_token(Some("v=2")), None);
        assert_eq!(query_token(Some("token=a.b-c_d")), Some("a.b-c_d"));
        assert_eq!(
            query_token(Some("v=2&token=demo_token_bob")),
            Some("demo_token_bob")
        );
        // The SDK appends `&token=` to a URL that may hold one already.
        assert_eq!(query_token(Some("token=old&token=new")), Some("new"));
        assert_eq!(query_token(Some("token")), Some(""));
        assert_eq!(query_token(Some("tokens=x&xtoken=y")), None);
    }

    #[test]
    fn remembered_tokens_are_bounded() {
        let m = TokenGenerations::new(2);
        let (a, b, c) = (m.key("a"), m.key("b"), m.key("c"));
        m.insert(a, Generation::V2);
        m.insert(b, Generation::V1);
        m.insert(a, Generation::V1);
        assert_eq!(m.get(a), Some(Generation::V1));
        m.insert(c, Generation::V2);
        assert_eq!(m.get(a), None, "the oldest is forgotten first");
        assert_eq!(m.get(b), Some(Generation::V1));
        assert_eq!(m.get(c), Some(Generation::V2));
    }
}
