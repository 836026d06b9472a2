//! The HTTP server (:8080): the SDK's JSON API (contract §4) on axum.
//!
//! Every reply is `application/json` with the `{code, message, data}`
//! envelope the SDK decodes; errors carry the HTTP status as `code` (the
//! reference server's convention) and a stable snake_case `error` name.

mod accounts;
mod auth;
mod chatrooms;
mod conversations;
pub mod demo;
pub mod dto;
mod error;
mod files;
mod friends;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
mod groups;
mod openapi;
mod sync;
mod system;
mod tls;
mod users;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use tokio::net::TcpListener;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use self::auth::AuthUser;
pub use self::error::{
    ApiError, ApiJson, ApiOk, ApiOkEmpty, ApiPath, ApiQuery, ApiResult, Data, Envelope, ErrorBody,
    QueryOrBody, ok, ok_empty,
};
pub use self::tls::serve_tls;
use crate::Transport;

/// Where the OpenAPI document of the API is served.
const OPENAPI_PATH: &str = "/openapi.json";

/// The paths the HTTP API serves itself, as prefixes: every route of the
/// OpenAPI document, the document itself (`/openapi.json`) and the demo
/// ([`demo::DEMO_PATH`]) falls under one (see [`reserved_prefix`]; a unit
/// test checks it against the routes). Paths configured for other things, such as the metrics
/// route, must stay out of them.
pub const RESERVED_PREFIXES: &[&str] = &[
    "/api/",
    "/messages/",
    "/files/",
    "/upload",
    "/health",
    "/ready",
    OPENAPI_PATH,
    demo::DEMO_PATH,
];

/// The entry of [`RESERVED_PREFIXES`] that `path` falls under, if any: a
/// path falls under an entry it starts with, or one it equals without the
/// entry's trailing `/` (`/demo` falls under `/demo/`).
pub fn reserved_prefix(path: &str) -> Option<&'static str> {
    RESERVED_PREFIXES
        .iter()
        .copied()
        .find(|prefix| path == prefix.trim_end_matches('/') || path.starts_with(prefix))
}

#[derive(Serialize, ToSchema)]
struct Status {
    status: &'static str,
}

/// The routes of the API and the OpenAPI document describing them.
fn api() -> (Router<Arc<Transport>>, utoipa::openapi::OpenApi) {
    let (router, doc) = OpenApiRouter::with_openapi(openapi::base())
        .routes(routes!(health))
        .routes(routes!(ready))
        .merge(accounts::routes())
        .merge(users::routes())
        .merge(friends::routes())
        .merge(groups::routes())
        .merge(conversations::routes())
        .merge(sync::routes())
        .merge(files::routes())
        .merge(chatrooms::routes())
        .merge(system::routes())
        .split_for_parts();
    (router, openapi::finish(doc))
}

/// The OpenAPI document of the HTTP API (what `/openapi.json` serves).
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    api().1
}

/// The router of the HTTP API.
pub fn router(transport: Arc<Transport>) -> Router {
    let (router, doc) = api();
    let json: Arc<[u8]> = match serde_json::to_vec(&doc) {
        Ok(v) => v.into(),
        Err(e) => {
            tracing::error!(error = %e, "cannot encode the OpenAPI document");
            Arc::from(&b"{}"[..])
        }
    };
    let mut router = router.route(
        OPENAPI_PATH,
        get(move || {
            let json = Arc::clone(&json);
            async move { openapi_json(&json) }
        }),
    );
    // Not in the OpenAPI document: it is not part of the JSON API (plain
    // text for Prometheus, no envelope), like /openapi.json itself.
    if let Some(m) = &transport.cfg.metrics {
        if m.is_plain_path() && !doc.paths.paths.contains_key(&m.path) && m.path != OPENAPI_PATH {
            router = router.route(&m.path, get(metrics_text));
        } else {
            tracing::error!(path = %m.path, "metrics path is not a plain path or collides with an API route; not served");
        }
    }
    if let Some(d) = &transport.cfg.demo {
        router = router.merge(demo::routes(d));
    }
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&transport),
            limit_account_calls,
        ))
        // A bug must not take the connection down with a text/plain reply:
        // it is logged and answered like any internal error.
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(on_panic))
        .layer(axum::middleware::from_fn(crate::metrics::track_http))
        .with_state(transport)
}

/// `GET /metrics` (or `metrics.path`): the Prometheus text of the
/// installed recorder, after sampling the queue-depth gauges.
async fn metrics_text(State(t): State<Arc<Transport>>, headers: HeaderMap) -> Response {
    let Some(m) = &t.cfg.metrics else {
        return not_found().await.into_response();
    };
    if !m.allows(headers.get(AUTHORIZATION).map(HeaderValue::as_bytes)) {
        let mut r = ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "metrics need the configured bearer token",
        )
        .into_response();
        r.headers_mut()
            .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return r;
    }
    im_service::metrics::sample(&t.services);
    let body = (m.render)();
    let mut r = body.into_response();
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}

fn on_panic(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("an HTTP handler panicked");
    ApiError::internal().into_response()
}

fn openapi_json(json: &Arc<[u8]>) -> Response {
    let mut r = json.to_vec().into_response();
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// Routes that take credentials instead of a token: limited per client
/// address, so a password-guessing or sign-up loop from one address stalls.
const ACCOUNT_CALLS: &[&str] = &["/api/auth/register", "/api/auth/login", "/api/auth/refresh"];

/// 429 for an account call from an address over its rate. Without the
/// peer address (a router driven in-process) nothing is limited.
async fn limit_account_calls(
    State(t): State<Arc<Transport>>,
    req: Request,
    next: Next,
) -> Response {
    if ACCOUNT_CALLS.contains(&req.uri().path()) {
        if let Some(ConnectInfo(peer)) = req.extensions().get::<ConnectInfo<SocketAddr>>() {
            if !t.services.limits.ip(peer.ip()) {
                return ApiError::from_code(
                    im_core::ErrorCode::SendTooFast,
                    "too many account requests from this address, slow down",
                )
                .into_response();
            }
        }
    }
    next.run(req).await
}

/// Serves HTTP on `listener` until shutdown, then lets open requests finish.
pub async fn serve(transport: Arc<Transport>, listener: TcpListener) {
    let shutdown = transport.shutdown.clone();
    let app = router(Arc::clone(&transport)).into_make_service_with_connect_info::<SocketAddr>();
    let server = axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await });
    if let Err(e) = server.await {
        tracing::error!(error = %e, "http server failed");
    }
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/health", tag = "ops",
    responses((status = 200, description = "alive", body = ApiOk<Status>)))]
async fn health() -> ApiResult<Status> {
    ok(Status { status: "healthy" })
}

/// Readiness: the database (and cache) answer.
#[utoipa::path(get, path = "/ready", tag = "ops",
    responses((status = 200, description = "ready", body = ApiOk<Status>)))]
async fn ready(State(t): State<Arc<Transport>>) -> ApiResult<Status> {
    for h in &t.health {
        if let Err(e) = h.ping().await {
            tracing::warn!(error = %e, "readiness check failed");
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "a backend is unavailable",
            ));
        }
    }
    ok(Status { status: "ready" })
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "not found")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method not allowed",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every route of the OpenAPI document falls under an entry of
    /// [`RESERVED_PREFIXES`], and every entry covers a route (the OpenAPI
    /// path and the demo are the router's own constants).
    #[test]
    fn reserved_prefixes_are_the_routes() {
        let doc = openapi_document();
        let paths: Vec<&str> = doc.paths.paths.keys().map(String::as_str).collect();
        assert!(paths.len() > 10, "{paths:?}");
        for path in &paths {
            assert!(
                reserved_prefix(path).is_some(),
                "route {path} is not under RESERVED_PREFIXES"
            );
        }
        for prefix in RESERVED_PREFIXES {
            let routed = [OPENAPI_PATH, demo::DEMO_PATH].contains(prefix)
                || paths
                    .iter()
                    .any(|path| reserved_prefix(path) == Some(*prefix));
            assert!(routed, "{prefix} covers no route");
        }
    }

    #[test]
    fn reserved_prefix_matches_prefixes_and_bare_directories() {
        assert_eq!(reserved_prefix("/api/metrics"), Some("/api/"));
        assert_eq!(reserved_prefix("/demo"), Some("/demo/"));
        assert_eq!(reserved_prefix("/demo/metrics"), Some("/demo/"));
        assert_eq!(reserved_prefix("/health"), Some("/health"));
        assert_eq!(reserved_prefix("/openapi.json"), Some("/openapi.json"));
        assert_eq!(reserved_prefix("/metrics"), None);
        assert_eq!(reserved_prefix("/internal/metrics"), None);
    }
}
