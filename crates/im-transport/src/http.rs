//! The HTTP server (:8080). This issue serves `/health` and `/ready`; the
//! SDK's JSON API is mounted on the same router.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::net::TcpListener;

use crate::Transport;

/// The `{code, message, data}` envelope the SDK decodes (contract §4).
#[derive(Debug, Serialize)]
pub struct Envelope<T: Serialize> {
    pub code: i32,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<T>,
}

/// A JSON response with `Content-Type: application/json` (contract §7.12).
pub fn json<T: Serialize>(status: StatusCode, body: &Envelope<T>) -> Response<Full<Bytes>> {
    let bytes = serde_json::to_vec(body)
        .unwrap_or_else(|_| br#"{"code":500,"message":"encoding error"}"#.to_vec());
    let mut r = Response::new(Full::new(Bytes::from(bytes)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// An error response: the HTTP status and the same number as `code`.
pub fn error(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    json::<()>(
        status,
        &Envelope {
            code: i32::from(status.as_u16()),
            message: message.to_owned(),
            data: None,
        },
    )
}

#[derive(Serialize)]
struct Status {
    status: &'static str,
}

/// Accepts HTTP connections until shutdown.
pub async fn serve(transport: Arc<Transport>, listener: TcpListener) {
    loop {
        let accepted = tokio::select! {
            () = transport.shutdown.cancelled() => break,
            r = listener.accept() => r,
        };
        let (stream, _peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "http accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                continue;
            }
        };
        let t = Arc::clone(&transport);
        let shutdown = transport.shutdown.clone();
        transport.tracker.spawn(async move {
            let svc = service_fn(move |req| route(Arc::clone(&t), req));
            let conn = http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(std::time::Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), svc);
            tokio::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => if let Err(e) = r { tracing::debug!(error = %e, "http connection error") },
                () = shutdown.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), conn).await;
                }
            }
        });
    }
}

async fn route(
    t: Arc<Transport>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let resp = match (req.method(), req.uri().path()) {
        (&Method::GET | &Method::HEAD, "/health") => json(
            StatusCode::OK,
            &Envelope {
                code: 0,
                message: "OK".into(),
                data: Some(Status { status: "healthy" }),
            },
        ),
        (&Method::GET | &Method::HEAD, "/ready") => {
            let mut down = None;
            for h in &t.health {
                if let Err(e) = h.ping().await {
                    down = Some(e);
                    break;
                }
            }
            match down {
                None => json(
                    StatusCode::OK,
                    &Envelope {
                        code: 0,
                        message: "OK".into(),
                        data: Some(Status { status: "ready" }),
                    },
                ),
                Some(e) => {
                    tracing::warn!(error = %e, "readiness check failed");
                    error(StatusCode::SERVICE_UNAVAILABLE, "a backend is unavailable")
                }
            }
        }
        (_, "/health" | "/ready") => error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
        _ => error(StatusCode::NOT_FOUND, "not found"),
    };
    Ok(resp)
}
