//! Uploads (`POST /upload`) and downloads (`GET`/`HEAD /files/{file_id}`).
//!
//! An upload is a raw body (`IMFileManager.uploadFile`: any content type,
//! answered with the bare object `{"url","file_id",…}`) or a
//! `multipart/form-data` body with the field `file` (`IMHTTPManager.upload`:
//! answered with the envelope, `data` = the URL). Either way the body is
//! streamed to the file store chunk by chunk and the size limit is enforced
//! while streaming; a refused or broken upload leaves nothing behind.
//! Errors are envelopes with the HTTP status as `code`.
//!
//! Downloads are capability URLs (the 128-bit id is the secret; the SDK
//! loads images without headers): single byte ranges, `ETag` (the SHA-256)
//! with `If-None-Match` / `If-Range`, immutable caching, `nosniff`, and
//! `Content-Disposition: attachment` for everything but images, audio and
//! video, so an uploaded HTML or SVG page never runs on our origin.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequest, Multipart, Request, State};
use axum::http::header::{
    ACCEPT_RANGES, CACHE_CONTROL, CONTENT_DISPOSITION, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE,
    ETAG, HeaderMap, HeaderName, HeaderValue, IF_NONE_MATCH, IF_RANGE, LAST_MODIFIED, RANGE,
    RETRY_AFTER,
};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::StreamExt;
use im_core::FileMeta;
use im_service::{FileError, Upload};
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::tls::ServedOverTls;
use super::{ApiError, AuthUser, Data};
use crate::Transport;

/// What a multipart body may carry beyond the file itself (boundaries,
/// part headers, small extra fields).
const MULTIPART_OVERHEAD: u64 = 64 * 1024;

impl From<FileError> for ApiError {
    fn from(e: FileError) -> Self {
        if matches!(e, FileError::Store(_)) {
            tracing::error!(error = %e, "file store failure in an HTTP request");
        }
        let status =
            StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        ApiError::new(status, e.reason(), e.public_message())
    }
}

/// An upload's error reply: the envelope, plus `Retry-After` when a
/// per-address limit refused it.
#[derive(Debug)]
struct UploadError {
    error: ApiError,
    retry_after_secs: Option<u64>,
}

impl From<ApiError> for UploadError {
    fn from(error: ApiError) -> Self {
        Self {
            error,
            retry_after_secs: None,
        }
    }
}

impl From<FileError> for UploadError {
    fn from(e: FileError) -> Self {
        Self {
            retry_after_secs: e.retry_after_secs(),
            error: e.into(),
        }
    }
}

impl IntoResponse for UploadError {
    fn into_response(self) -> Response {
        let mut r = self.error.into_response();
        if let Some(secs) = self.retry_after_secs {
            r.headers_mut()
                .insert(RETRY_AFTER, header(&secs.max(1).to_string()));
        }
        r
    }
}

pub(super) fn routes() -> OpenApiRouter<Arc<Transport>> {
    OpenApiRouter::new()
        .routes(routes!(upload))
        // `get` answers HEAD too; the handler skips the body for it.
        .routes(routes!(download))
        // The limit is ours (files.max_upload_bytes), enforced while streaming.
        .layer(DefaultBodyLimit::disable())
}

fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such file")
}

fn unreadable_body() -> ApiError {
    ApiError::bad_request("could not read the request body")
}

/// The bare reply of a raw upload (what `IMFileManager.uploadFile` decodes).
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct Uploaded {
    url: String,
    file_id: String,
    size: u64,
    content_type: String,
}

fn is_multipart(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("multipart/form-data")
        })
}

/// `http[s]://host[:port]` from `Host`, when the host is a plausible
/// authority; None otherwise. `https` when the request came over TLS
/// (`over_tls`) or through a proxy that says `X-Forwarded-Proto: https`.
fn request_origin(headers: &HeaderMap, over_tls: bool) -> Option<String> {
    let host = headers.get(axum::http::header::HOST)?.to_str().ok()?.trim();
    let plausible = !host.is_empty()
        && host.len() <= 255
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'));
    if !plausible {
        return None;
    }
    let https = over_tls
        || headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"));
    Some(format!("{}://{host}", if https { "https" } else { "http" }))
}

fn announced_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Stores a file. The body is the raw file (any content type), or a
/// `multipart/form-data` form whose `file` field is the file; a multipart
/// upload is answered with the envelope whose `data` is the URL. The type
/// is sniffed from the bytes; the size limit is `files.max_upload_bytes`.
/// Without a Bearer token (what the SDK sends) it needs
/// `files.anonymous_upload` (on by default) and stays within the anonymous
/// limits: uploads per minute and bytes per window of the client address
/// (429 `upload_rate_limited` / `upload_quota_exceeded`, with
/// `Retry-After`) and the bytes all unreferenced anonymous files may hold
/// (507 `insufficient_storage`); it is deleted after `files.anonymous_ttl`
/// unless a stored message names its URL or id by then.
#[utoipa::path(post, path = "/upload", tag = "files",
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses(
        (status = 200, description = "stored (raw upload: a bare object, no envelope)", body = Uploaded),
        (status = 401, description = "no valid token and anonymous uploads are off"),
        (status = 413, description = "larger than files.max_upload_bytes (or than the anonymous allowance of a window)"),
        (status = 429, description = "anonymous upload over its address's rate or byte quota (Retry-After)"),
        (status = 507, description = "unreferenced anonymous files hold files.anonymous_max_pending_bytes")))]
async fn upload(
    State(t): State<Arc<Transport>>,
    auth: Option<AuthUser>,
    req: Request,
) -> Result<Response, UploadError> {
    let files = &t.services.files;
    let owner = auth.as_ref().map(|a| &a.0.user);
    let from = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(peer)| peer.ip());
    // Refuse anonymous callers before reading anything.
    if owner.is_none() && !files.config().anonymous_upload {
        return Err(FileError::AuthRequired.into());
    }
    let over_tls = req.extensions().get::<ServedOverTls>().is_some();
    let origin = request_origin(req.headers(), over_tls);
    let multipart = is_multipart(req.headers());
    let meta = if multipart {
        let limit = files
            .config()
            .max_upload_bytes
            .saturating_add(MULTIPART_OVERHEAD);
        if let Some(len) = announced_length(req.headers()) {
            if len > limit {
                return Err(FileError::TooLarge {
                    max: files.config().max_upload_bytes,
                }
                .into());
            }
        }
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        let req = req.map(|b| Body::new(http_body_util::Limited::new(b, limit)));
        let mut form = Multipart::from_request(req, &())
            .await
            .map_err(|_| ApiError::bad_request("malformed multipart/form-data body"))?;
        loop {
            let field = match form.next_field().await {
                Ok(Some(f)) => f,
                Ok(None) => {
                    return Err(ApiError::bad_request("multipart field `file` missing").into());
                }
                Err(e) => return Err(multipart_error(&e, files.config().max_upload_bytes).into()),
            };
            if field.name() != Some("file") {
                continue;
            }
            let name = field.file_name().map(str::to_owned);
            let mut up = files.begin(owner, from, name.as_deref()).await?;
            let mut field = field;
            loop {
                match field.chunk().await {
                    Ok(Some(chunk)) => push(&mut up, chunk).await?,
                    Ok(None) => break,
                    Err(e) => {
                        up.abort().await;
                        return Err(multipart_error(&e, files.config().max_upload_bytes).into());
                    }
                }
            }
            break up.finish().await?;
        }
    } else {
        let announced = announced_length(req.headers());
        if let Some(len) = announced {
            files.check_length(len)?;
        }
        let mut up = files.begin(owner, from, None).await?;
        if let Some(len) = announced {
            up.expect(len).await?;
        }
        let mut body = req.into_body().into_data_stream();
        while let Some(chunk) = body.next().await {
            match chunk {
                Ok(chunk) => push(&mut up, chunk).await?,
                Err(_) => {
                    up.abort().await;
                    return Err(unreadable_body().into());
                }
            }
        }
        up.finish().await?
    };
    let mut url = files.url(&meta.file_id);
    if url.starts_with('/') {
        // No files.public_base_url: the SDK needs an absolute URL, so use
        // the origin this request reached us at.
        if let Some(origin) = origin {
            url.insert_str(0, &origin);
        }
    }
    tracing::debug!(file_id = %meta.file_id, size = meta.size, content_type = %meta.content_type, "file uploaded");
    if multipart {
        return Ok(Data(Some(url)).into_response());
    }
    let reply = Uploaded {
        url,
        file_id: meta.file_id.to_string(),
        size: meta.size,
        content_type: meta.content_type,
    };
    let bytes = serde_json::to_vec(&reply).map_err(|_| ApiError::internal())?;
    Ok((
        [(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        bytes,
    )
        .into_response())
}

async fn push(up: &mut Upload, chunk: Bytes) -> Result<(), UploadError> {
    if chunk.is_empty() {
        return Ok(());
    }
    // On error the upload has already discarded itself.
    up.push(chunk).await.map_err(UploadError::from)
}

fn multipart_error(e: &axum::extract::multipart::MultipartError, max: u64) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        FileError::TooLarge { max }.into()
    } else {
        ApiError::bad_request("malformed multipart/form-data body")
    }
}

/// What a `Range` header asks of a body of `size` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RangeReq {
    /// No (usable) range: the whole body, 200.
    Full,
    /// Bytes `start..=end`, 206.
    Partial { start: u64, end: u64 },
    /// 416 with `Content-Range: bytes */size`.
    Unsatisfiable,
}

fn digits(s: &str) -> Option<u64> {
    let s = s.trim();
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Parses a `Range` header (RFC 9110 §14.1.2) for one range of bytes.
/// Anything that is not a single well-formed `bytes` range is ignored (the
/// whole body is served), as the RFC allows; a well-formed range that
/// starts past the end is unsatisfiable.
pub(crate) fn parse_range(header: Option<&str>, size: u64) -> RangeReq {
    let Some(header) = header else {
        return RangeReq::Full;
    };
    let Some((unit, spec)) = header.trim().split_once('=') else {
        return RangeReq::Full;
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") || spec.contains(',') {
        return RangeReq::Full;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeReq::Full;
    };
    match (first.trim().is_empty(), last.trim().is_empty()) {
        // bytes=-n: the last n bytes.
        (true, false) => match digits(last) {
            None => RangeReq::Full,
            Some(0) => RangeReq::Unsatisfiable,
            Some(_) if size == 0 => RangeReq::Unsatisfiable,
            Some(n) => RangeReq::Partial {
                start: size.saturating_sub(n),
                end: size - 1,
            },
        },
        // bytes=a-
        (false, true) => match digits(first) {
            None => RangeReq::Full,
            Some(a) if a >= size => RangeReq::Unsatisfiable,
            Some(a) => RangeReq::Partial {
                start: a,
                end: size - 1,
            },
        },
        // bytes=a-b
        (false, false) => match (digits(first), digits(last)) {
            (Some(a), Some(b)) if a <= b => {
                if a >= size {
                    RangeReq::Unsatisfiable
                } else {
                    RangeReq::Partial {
                        start: a,
                        end: b.min(size - 1),
                    }
                }
            }
            _ => RangeReq::Full,
        },
        (true, true) => RangeReq::Full,
    }
}

/// `If-None-Match` lists `etag` (weak comparison) or is `*`.
fn none_match_hits(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag)
}

/// Whether a `Range` applies given `If-Range` (absent, or naming the
/// current representation by strong ETag or by its exact date).
fn if_range_holds(headers: &HeaderMap, etag: &str, last_modified: &str) -> bool {
    match headers.get(IF_RANGE).map(HeaderValue::to_str) {
        None => true,
        Some(Ok(v)) => {
            let v = v.trim();
            v == etag || v == last_modified
        }
        Some(Err(_)) => false,
    }
}

/// Types a browser may render from our origin; everything else is served as
/// an attachment. SVG is an image that runs scripts, so it is not one.
fn renders_inline(content_type: &str) -> bool {
    let t = content_type.to_ascii_lowercase();
    (t.starts_with("image/") || t.starts_with("audio/") || t.starts_with("video/"))
        && !t.contains("svg")
}

/// `attachment` / `inline`, with the original name when there is one
/// (an ASCII fallback and the RFC 8187 UTF-8 form).
fn disposition(meta: &FileMeta) -> HeaderValue {
    let kind = if renders_inline(&meta.content_type) {
        "inline"
    } else {
        "attachment"
    };
    let Some(name) = meta.original_name.as_deref() else {
        return HeaderValue::from_static(if kind == "inline" {
            "inline"
        } else {
            "attachment"
        });
    };
    let ascii: String = name
        .chars()
        .map(|c| {
            if (c.is_ascii_graphic() && c != '"' && c != '\\') || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut encoded = String::new();
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            encoded.push(char::from(b));
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    HeaderValue::from_str(&format!(
        "{kind}; filename=\"{ascii}\"; filename*=UTF-8''{encoded}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("attachment"))
}

fn header(value: &str) -> HeaderValue {
    HeaderValue::from_str(value).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// A stored file (also `HEAD`): single byte ranges (`Range: bytes=a-b`,
/// `a-`, `-n`), `ETag` (SHA-256) with `If-None-Match` and `If-Range`.
/// Unauthenticated: the 128-bit id is the capability.
#[utoipa::path(get, path = "/files/{file_id}", tag = "files",
    params(("file_id" = String, Path, description = "32 lower-case hex characters")),
    responses(
        (status = 200, description = "the file", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 206, description = "the requested range", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 304, description = "not modified"),
        (status = 416, description = "range not satisfiable")))]
async fn download(
    State(t): State<Arc<Transport>>,
    method: Method,
    super::ApiPath(file_id): super::ApiPath<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let files = &t.services.files;
    let meta = files.meta(&file_id).await?.ok_or_else(not_found)?;
    let etag = format!("\"{}\"", meta.sha256);
    let modified =
        SystemTime::UNIX_EPOCH + Duration::from_millis(u64::try_from(meta.created_at).unwrap_or(0));
    let last_modified = httpdate::fmt_http_date(modified);

    let mut out = HeaderMap::new();
    out.insert(ETAG, header(&etag));
    out.insert(LAST_MODIFIED, header(&last_modified));
    out.insert(
        CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    out.insert(
        HeaderName::from_static("x-content-type-options"),
        HeaderValue::from_static("nosniff"),
    );
    out.insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if none_match_hits(&headers, &etag) {
        return Ok((StatusCode::NOT_MODIFIED, out).into_response());
    }
    out.insert(
        CONTENT_TYPE,
        HeaderValue::from_str(&meta.content_type)
            .unwrap_or_else(|_| HeaderValue::from_static(im_service::files::OCTET_STREAM)),
    );
    out.insert(CONTENT_DISPOSITION, disposition(&meta));

    let size = meta.size;
    let range = if if_range_holds(&headers, &etag, &last_modified) {
        parse_range(headers.get(RANGE).and_then(|v| v.to_str().ok()), size)
    } else {
        RangeReq::Full
    };
    let (status, start, end) = match range {
        RangeReq::Full => (StatusCode::OK, 0, size.saturating_sub(1)),
        RangeReq::Partial { start, end } => {
            out.insert(
                CONTENT_RANGE,
                header(&format!("bytes {start}-{end}/{size}")),
            );
            (StatusCode::PARTIAL_CONTENT, start, end)
        }
        RangeReq::Unsatisfiable => {
            let mut r = ApiError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "range_not_satisfiable",
                format!("the file has {size} bytes"),
            )
            .into_response();
            r.headers_mut()
                .insert(CONTENT_RANGE, header(&format!("bytes */{size}")));
            r.headers_mut()
                .insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
            return Ok(r);
        }
    };
    let len = if size == 0 { 0 } else { end - start + 1 };
    out.insert(CONTENT_LENGTH, header(&len.to_string()));
    if method == Method::HEAD || len == 0 {
        return Ok((status, out, Body::empty()).into_response());
    }
    let stream = files.read(&meta, start, end).await?.ok_or_else(not_found)?;
    Ok((status, out, Body::from_stream(stream)).into_response())
}

#[cfg(test)]
mod tests {
    #[test]
    fn origin_from_host_and_forwarded_proto() {
        let mut h = HeaderMap::new();
        assert_eq!(super::request_origin(&h, false), None);
        assert_eq!(super::request_origin(&h, true), None);
        h.insert("host", HeaderValue::from_static("chat.example.com:8080"));
        assert_eq!(
            super::request_origin(&h, false).as_deref(),
            Some("http://chat.example.com:8080")
        );
        // Served over TLS: https, whatever a client-sent header says.
        assert_eq!(
            super::request_origin(&h, true).as_deref(),
            Some("https://chat.example.com:8080")
        );
        h.insert("x-forwarded-proto", HeaderValue::from_static("http"));
        assert_eq!(
            super::request_origin(&h, true).as_deref(),
            Some("https://chat.example.com:8080")
        );
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        assert_eq!(
            super::request_origin(&h, false).as_deref(),
            Some("https://chat.example.com:8080")
        );
        h.insert("host", HeaderValue::from_static("evil.com/x?y"));
        assert_eq!(super::request_origin(&h, true), None);
    }

    use super::*;

    #[test]
    fn ranges() {
        use RangeReq::*;
        let p = |h: &str| parse_range(Some(h), 100);
        assert_eq!(parse_range(None, 100), Full);
        assert_eq!(p("bytes=0-9"), Partial { start: 0, end: 9 });
        assert_eq!(p("bytes=10-"), Partial { start: 10, end: 99 });
        assert_eq!(p("bytes=-10"), Partial { start: 90, end: 99 });
        assert_eq!(p("bytes=-1000"), Partial { start: 0, end: 99 });
        assert_eq!(p("bytes=50-1000"), Partial { start: 50, end: 99 });
        assert_eq!(p("bytes=99-99"), Partial { start: 99, end: 99 });
        assert_eq!(p("Bytes = 1 - 2"), Partial { start: 1, end: 2 });
        assert_eq!(p("bytes=100-"), Unsatisfiable);
        assert_eq!(p("bytes=100-200"), Unsatisfiable);
        assert_eq!(p("bytes=-0"), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=-5"), 0), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=0-"), 0), Unsatisfiable);
        // Ignored: the whole body.
        for h in [
            "bytes=0-1,5-6",
            "bytes=5-1",
            "bytes=-",
            "bytes=a-b",
            "bytes=+1-2",
            "bytes=1",
            "items=0-1",
            "bytes=99999999999999999999999-",
            "",
        ] {
            assert_eq!(p(h), Full, "{h:?}");
        }
    }

    #[test]
    fn conditional_headers() {
        let mut h = HeaderMap::new();
        assert!(!none_match_hits(&h, "\"abc\""));
        h.insert(IF_NONE_MATCH, HeaderValue::from_static("\"x\", W/\"abc\""));
        assert!(none_match_hits(&h, "\"abc\""));
        h.insert(IF_NONE_MATCH, HeaderValue::from_static("*"));
        assert!(none_match_hits(&h, "\"abc\""));
        let lm = "Tue, 14 Nov 2023 22:13:20 GMT";
        assert!(if_range_holds(&h, "\"abc\"", lm));
        h.insert(IF_RANGE, HeaderValue::from_static("\"abc\""));
        assert!(if_range_holds(&h, "\"abc\"", lm));
        h.insert(IF_RANGE, HeaderValue::from_static("W/\"abc\""));
        assert!(!if_range_holds(&h, "\"abc\"", lm));
        h.insert(IF_RANGE, HeaderValue::from_static(lm));
        assert!(if_range_holds(&h, "\"abc\"", lm));
    }

    #[test]
    fn only_media_renders_inline() {
        assert!(renders_inline("image/png"));
        assert!(renders_inline("video/mp4"));
        assert!(renders_inline("audio/mpeg"));
        assert!(!renders_inline("image/svg+xml"));
        assert!(!renders_inline("text/html"));
        assert!(!renders_inline("application/octet-stream"));
        let mut meta = FileMeta {
            file_id: im_core::FileId::from_u128(1),
            owner: String::new(),
            size: 1,
            content_type: "text/html".into(),
            original_name: Some("r\u{e9}sum\u{e9} \"x\".html".into()),
            created_at: 0,
            sha256: String::new(),
        };
        assert_eq!(
            disposition(&meta),
            "attachment; filename=\"r_sum_ _x_.html\"; filename*=UTF-8''r%C3%A9sum%C3%A9%20%22x%22.html"
        );
        meta.original_name = None;
        meta.content_type = "image/png".into();
        assert_eq!(disposition(&meta), "inline");
    }
}
