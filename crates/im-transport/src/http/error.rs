//! The JSON envelope, API errors and a JSON body extractor whose rejections
//! are API errors too (never axum's text/plain ones).

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::http::header::{CONTENT_TYPE, HeaderValue};
use axum::response::{IntoResponse, Response};
use im_core::ErrorCode;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// `{code, message, data}`: `code` 0 on success; `data` omitted when there is
/// none (the SDK's no-data endpoints decode `data` as an optional string).
#[derive(Debug, Serialize)]
pub struct Envelope<T: Serialize> {
    pub code: i32,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<T>,
    /// Stable machine-readable error name (errors only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'static str>,
}

fn json_response<T: Serialize>(status: StatusCode, body: &Envelope<T>) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| {
        br#"{"code":500,"message":"encoding error","error":"internal"}"#.to_vec()
    });
    let mut r = (status, bytes).into_response();
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// A successful reply carrying `data`.
#[derive(Debug)]
pub struct Data<T: Serialize>(pub Option<T>);

impl<T: Serialize> IntoResponse for Data<T> {
    fn into_response(self) -> Response {
        json_response(
            StatusCode::OK,
            &Envelope {
                code: 0,
                message: "OK".into(),
                data: self.0,
                error: None,
            },
        )
    }
}

/// The result type of handlers.
pub type ApiResult<T> = Result<Data<T>, ApiError>;

/// Success with `data`.
pub fn ok<T: Serialize>(data: T) -> ApiResult<T> {
    Ok(Data(Some(data)))
}

/// Success without `data`.
pub fn ok_empty() -> ApiResult<()> {
    Ok(Data(None))
}

/// An error reply: HTTP status, `code` = the status number, a stable name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub error: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, error: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            error,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_param", message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error",
        )
    }

    /// The HTTP form of a protocol error code.
    pub fn from_code(code: ErrorCode, message: impl Into<String>) -> Self {
        let status = match code {
            ErrorCode::InvalidParam | ErrorCode::MessageTooLarge => StatusCode::BAD_REQUEST,
            ErrorCode::AuthFailed | ErrorCode::TokenExpired => StatusCode::UNAUTHORIZED,
            ErrorCode::PermissionDenied => StatusCode::FORBIDDEN,
            ErrorCode::UserNotExist | ErrorCode::ConversationNotExist => StatusCode::NOT_FOUND,
            ErrorCode::SendTooFast => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::Unknown | ErrorCode::Success => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self::new(status, code.as_str(), message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        json_response::<()>(
            self.status,
            &Envelope {
                code: i32::from(self.status.as_u16()),
                message: self.message,
                data: None,
                error: Some(self.error),
            },
        )
    }
}

/// `Json<T>` whose rejection is a JSON `ApiError` (400/415/413), with a
/// message that names the problem but never echoes the body.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Self(v)),
            Err(rejection) => Err(match rejection {
                JsonRejection::MissingJsonContentType(_) => ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported_media_type",
                    "expected Content-Type: application/json",
                ),
                JsonRejection::JsonDataError(e) => {
                    ApiError::bad_request(format!("invalid JSON fields: {}", e.body_text()))
                }
                JsonRejection::JsonSyntaxError(_) => ApiError::bad_request("malformed JSON"),
                JsonRejection::BytesRejection(_) => ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    "request body too large or unreadable",
                ),
                _ => ApiError::bad_request("invalid request body"),
            }),
        }
    }
}

/// `Query<T>` whose rejection is a JSON `ApiError` (400).
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<S, T> axum::extract::FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Self(q.0))
            .map_err(|e| query_rejection(&e))
    }
}

/// Documentation shape of a success envelope carrying `data`.
#[derive(Debug, utoipa::ToSchema)]
pub struct ApiOk<T: utoipa::ToSchema> {
    /// 0 on success.
    pub code: i32,
    pub message: String,
    pub data: T,
}

/// Documentation shape of a success envelope without `data`.
#[derive(Debug, utoipa::ToSchema)]
pub struct ApiOkEmpty {
    /// 0 on success.
    pub code: i32,
    pub message: String,
}

/// Documentation shape of every error reply.
#[derive(Debug, utoipa::ToSchema)]
pub struct ErrorBody {
    /// The HTTP status.
    pub code: i32,
    /// Human-readable; never a stack trace.
    pub message: String,
    /// Stable machine-readable name (`invalid_param`, `unauthorized`,
    /// `token_expired`, `token_revoked`, `bad_credentials`, `permission_denied`,
    /// `not_found`, `user_not_exist`, `conflict`, `payload_too_large`, ...).
    pub error: String,
}

/// Parameters of a GET: from the query string, or — for the SDK, which
/// JSON-encodes parameters into the body even on GET — from a JSON body
/// when the query string is empty. Rejections are JSON `ApiError`s.
#[derive(Debug)]
pub struct QueryOrBody<T>(pub T);

/// Largest JSON body read by [`QueryOrBody`].
const GET_BODY_LIMIT: usize = 64 * 1024;

impl<S, T> FromRequest<S> for QueryOrBody<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        if req.uri().query().is_some_and(|q| !q.is_empty()) {
            return parse_query(req.uri()).map(Self);
        }
        let uri = req.uri().clone();
        let body = axum::body::to_bytes(req.into_body(), GET_BODY_LIMIT)
            .await
            .map_err(|_| {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    "request body too large or unreadable",
                )
            })?;
        if body.iter().all(u8::is_ascii_whitespace) {
            // No parameters at all: the query's "missing field" error.
            return parse_query(&uri).map(Self);
        }
        serde_json::from_slice(&body)
            .map(Self)
            .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
    }
}

/// The query of `uri` as `T`, or a JSON 400.
fn parse_query<T: DeserializeOwned>(uri: &axum::http::Uri) -> Result<T, ApiError> {
    axum::extract::Query::<T>::try_from_uri(uri)
        .map(|q| q.0)
        .map_err(|e| query_rejection(&e))
}

fn query_rejection(e: &axum::extract::rejection::QueryRejection) -> ApiError {
    ApiError::bad_request(format!("invalid query: {}", e.body_text()))
}

/// `Path<T>` whose rejection is a JSON `ApiError` (400).
#[derive(Debug)]
pub struct ApiPath<T>(pub T);

impl<S, T> axum::extract::FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(Self(v)),
            Err(e) => Err(ApiError::bad_request(format!(
                "invalid path parameter: {}",
                e.body_text()
            ))),
        }
    }
}
