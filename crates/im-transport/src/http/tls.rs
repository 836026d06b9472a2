//! HTTPS: the same router as [`super::serve`], behind a TLS handshake per
//! connection (in the connection's own task, within the handshake timeout,
//! holding a connection slot while it runs), served by hyper's HTTP/1.1
//! connection (ALPN `http/1.1`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::Request;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;

use crate::Transport;
use crate::tls::ServerTls;

/// A request extension: the request came over TLS (so URLs built from the
/// request say `https`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ServedOverTls;

/// How long a client may take to send a request head.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves the HTTP API over TLS on `listener` until shutdown. Open
/// connections are then asked to finish (graceful shutdown of each
/// connection: the request in progress completes); they are connection
/// tasks of the transport, so `Transport::drain` waits for them.
pub async fn serve_tls(transport: Arc<Transport>, listener: TcpListener, tls: ServerTls) {
    let service = TowerToHyperService::new(super::router(Arc::clone(&transport)));
    while let Some((stream, peer)) = crate::conn::accept(&transport, &listener, "https").await {
        let Ok(permit) = Arc::clone(&transport.conn_limit).try_acquire_owned() else {
            tracing::warn!(%peer, "connection cap reached; refusing https TLS handshake");
            crate::metrics::refused_label("http");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let t = Arc::clone(&transport);
        let tls = tls.clone();
        let service = service.clone();
        transport.tracker.spawn(async move {
            let stream = tls.accept_http(&t, stream, "http").await;
            // HTTP connections are not sessions: only the handshake counts.
            drop(permit);
            let Some(stream) = stream else { return };
            serve_connection(&t, stream, peer, service).await;
        });
    }
}

async fn serve_connection(
    transport: &Transport,
    stream: TlsStream<TcpStream>,
    peer: SocketAddr,
    service: TowerToHyperService<Router>,
) {
    let svc = service_fn(move |mut req: Request<Incoming>| {
        // What `into_make_service_with_connect_info` gives the plain
        // listener (the per-address limit of account calls reads it).
        req.extensions_mut().insert(ConnectInfo(peer));
        req.extensions_mut().insert(ServedOverTls);
        hyper::service::Service::call(&service, req)
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(TokioIo::new(stream), svc);
    let mut conn = std::pin::pin!(conn);
    let ended = tokio::select! {
        r = conn.as_mut() => Some(r),
        () = transport.shutdown.cancelled() => None,
    };
    let result = match ended {
        Some(r) => r,
        None => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "https connection ended with error");
    }
}
