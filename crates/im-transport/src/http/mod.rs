//! The HTTP server (:8080): the SDK's JSON API (contract §4) on axum.
//!
//! Every reply is `application/json` with the `{code, message, data}`
//! envelope the SDK decodes; errors carry the HTTP status as `code` (the
//! reference server's convention) and a stable snake_case `error` name.

mod auth;
mod conversations;
pub mod dto;
mod error;
mod files;
mod groups;

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use serde::Serialize;
use tokio::net::TcpListener;

pub use self::auth::AuthUser;
pub use self::error::{ApiError, ApiJson, ApiQuery, ApiResult, Data, Envelope, ok, ok_empty};
use crate::Transport;

#[derive(Serialize)]
struct Status {
    status: &'static str,
}

/// The router of the HTTP API.
pub fn router(transport: Arc<Transport>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .merge(groups::routes())
        .merge(conversations::routes())
        .merge(files::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(transport)
}

/// Serves HTTP on `listener` until shutdown, then lets open requests finish.
pub async fn serve(transport: Arc<Transport>, listener: TcpListener) {
    let shutdown = transport.shutdown.clone();
    let app = router(Arc::clone(&transport));
    let server = axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await });
    if let Err(e) = server.await {
        tracing::error!(error = %e, "http server failed");
    }
}

async fn health() -> ApiResult<Status> {
    ok(Status { status: "healthy" })
}

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
