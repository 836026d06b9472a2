//! Entry points for fuzzing the HTTP request decoding: every JSON request
//! body and query string of the API, taken through the same extractors the
//! handlers use (`ApiJson`, `ApiQuery`, `QueryOrBody`, the optional logout
//! body), without a server. Used by the `http_json` target in `fuzz/` (with
//! the `fuzzing` feature) and by the bounded run in the tests below. Not an
//! API: compiled only for tests and with that feature.

use std::fmt::Debug;

use axum::body::Body;
use axum::extract::{FromRequest, FromRequestParts};
use axum::http::header::CONTENT_TYPE;
use axum::http::{Request, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use futures_util::FutureExt;
use serde::de::DeserializeOwned;

use super::error::{ApiJson, ApiQuery, QueryOrBody};
use super::{accounts, conversations, friends, groups, sync, users};

/// The JSON request bodies, by index for [`json_body`].
pub const JSON_BODIES: &[&str] = &[
    "POST /api/auth/register",
    "POST /api/auth/login",
    "POST /api/auth/refresh",
    "POST /api/auth/logout",
    "POST /api/friend/add",
    "POST /api/friend/accept|reject|delete|block|unblock",
    "POST /api/friend/remark",
    "POST /api/group/create",
    "POST /api/group/update",
    "POST /api/group/{id}/invite|kick",
    "POST /api/group/{id}/role",
    "POST /api/group/{id}/mute",
    "POST /api/group/{id}/mute_all",
    "POST /api/v1/messages/sync",
    "POST /messages/sync_range",
    "POST /api/user/info/batch",
    "POST /api/user/update",
];

/// The query strings (GET parameters), by index for [`query`].
pub const QUERIES: &[&str] = &[
    "GET /api/conversations",
    "GET /api/messages/history",
    "GET /api/friend/requests",
    "GET /api/friend/check (query or JSON body)",
    "GET /api/user/search (query or JSON body)",
];

/// How the API took one input.
#[derive(Debug)]
pub enum Outcome {
    /// Decoded into the handler's parameter type (its `Debug` form).
    Accepted(String),
    /// Refused with this response.
    Refused {
        status: StatusCode,
        content_type: Option<String>,
        body: Vec<u8>,
    },
    /// The query is not a valid URI: the HTTP layer refuses it before any
    /// extractor runs.
    BadUri,
    /// An extractor did not complete on an in-memory body (a bug).
    Pending,
}

impl Outcome {
    /// `Ok` when the outcome is one the API may give: accepted, or refused
    /// with a 400/413/415 `application/json` envelope `{code, message,
    /// error}` whose `code` is the status.
    pub fn check(&self) -> Result<(), String> {
        let (status, content_type, body) = match self {
            Self::Accepted(_) | Self::BadUri => return Ok(()),
            Self::Pending => return Err("extractor did not complete".into()),
            Self::Refused {
                status,
                content_type,
                body,
            } => (status, content_type, body),
        };
        if !matches!(status.as_u16(), 400 | 413 | 415) {
            return Err(format!("refused with status {status}"));
        }
        if content_type.as_deref() != Some("application/json") {
            return Err(format!("refused with content type {content_type:?}"));
        }
        let v: serde_json::Value = serde_json::from_slice(body)
            .map_err(|e| format!("refusal is not JSON ({e}): {body:?}"))?;
        let code = v.get("code").and_then(serde_json::Value::as_u64);
        if code != Some(u64::from(status.as_u16())) {
            return Err(format!("envelope code {code:?} is not the status {status}"));
        }
        if !v.get("message").is_some_and(serde_json::Value::is_string)
            || !v.get("error").is_some_and(serde_json::Value::is_string)
            || v.get("data").is_some()
        {
            return Err(format!("not an error envelope: {v}"));
        }
        Ok(())
    }
}

/// Decodes `body` as request body `which` (modulo [`JSON_BODIES`]) sent
/// with `content_type`, as its handler does.
pub fn json_body(which: usize, content_type: Option<&str>, body: &[u8]) -> Outcome {
    let req = || request(content_type, body);
    match which % JSON_BODIES.len() {
        0 => json::<accounts::RegisterBody>(req()),
        1 => json::<accounts::LoginBody>(req()),
        2 => json::<accounts::RefreshBody>(req()),
        3 => match accounts::LogoutBody::parse(body) {
            Ok(v) => Outcome::Accepted(format!("{v:?}")),
            Err(e) => refused(e.into_response()),
        },
        4 => json::<friends::AddBody>(req()),
        5 => json::<friends::UserBody>(req()),
        6 => json::<friends::RemarkBody>(req()),
        7 => json::<groups::GroupCreateBody>(req()),
        8 => json::<groups::GroupUpdateBody>(req()),
        9 => json::<groups::UsersBody>(req()),
        10 => json::<groups::RoleBody>(req()),
        11 => json::<groups::MuteBody>(req()),
        12 => json::<groups::MuteAllBody>(req()),
        13 => json::<sync::SyncBody>(req()),
        14 => json::<sync::RangeBody>(req()),
        15 => json::<users::BatchBody>(req()),
        _ => json::<users::ProfileUpdateBody>(req()),
    }
}

/// Decodes the query string `q` (and, for the two GETs that accept one, the
/// JSON `body`) as parameters `which` (modulo [`QUERIES`]).
pub fn query(which: usize, q: &str, body: &[u8]) -> Outcome {
    let Ok(uri) = Uri::try_from(format!("/x?{q}")) else {
        return Outcome::BadUri;
    };
    let req = request_to(uri, Some("application/json"), body);
    match which % QUERIES.len() {
        0 => from_query::<conversations::ListQuery>(req),
        1 => from_query::<conversations::HistoryQuery>(req),
        2 => from_query::<friends::RequestsQuery>(req),
        3 => query_or_body::<friends::UserBody>(req),
        _ => query_or_body::<users::SearchQuery>(req),
    }
}

fn request(content_type: Option<&str>, body: &[u8]) -> Request<Body> {
    request_to(Uri::from_static("/"), content_type, body)
}

fn request_to(uri: Uri, content_type: Option<&str>, body: &[u8]) -> Request<Body> {
    let mut req = Request::new(Body::from(body.to_vec()));
    *req.uri_mut() = uri;
    *req.method_mut() = axum::http::Method::POST;
    if let Some(v) = content_type.and_then(|c| axum::http::HeaderValue::from_str(c).ok()) {
        req.headers_mut().insert(CONTENT_TYPE, v);
    }
    req
}

fn json<T: DeserializeOwned + Debug>(req: Request<Body>) -> Outcome {
    match ApiJson::<T>::from_request(req, &()).now_or_never() {
        Some(Ok(ApiJson(v))) => Outcome::Accepted(format!("{v:?}")),
        Some(Err(e)) => refused(e.into_response()),
        None => Outcome::Pending,
    }
}

fn from_query<T: DeserializeOwned + Debug>(req: Request<Body>) -> Outcome {
    let (mut parts, _) = req.into_parts();
    match ApiQuery::<T>::from_request_parts(&mut parts, &()).now_or_never() {
        Some(Ok(ApiQuery(v))) => Outcome::Accepted(format!("{v:?}")),
        Some(Err(e)) => refused(e.into_response()),
        None => Outcome::Pending,
    }
}

fn query_or_body<T: DeserializeOwned + Debug>(req: Request<Body>) -> Outcome {
    match QueryOrBody::<T>::from_request(req, &()).now_or_never() {
        Some(Ok(QueryOrBody(v))) => Outcome::Accepted(format!("{v:?}")),
        Some(Err(e)) => refused(e.into_response()),
        None => Outcome::Pending,
    }
}

fn refused(r: Response) -> Outcome {
    let status = r.status();
    let content_type = r
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    match axum::body::to_bytes(r.into_body(), usize::MAX).now_or_never() {
        Some(Ok(body)) => Outcome::Refused {
            status,
            content_type,
            body: body.to_vec(),
        },
        _ => Outcome::Pending,
    }
}

#[cfg(test)]
mod tests {
    //! The bounded run: valid bodies, every prefix of them, type confusion,
    //! deep nesting, invalid UTF-8, wrong content types.

    use super::*;

    const VALID: &[&str] = &[
        r#"{"username":"alice","password":"correct horse","nickname":"A"}"#,
        r#"{"username":"alice","password":"pw","platform":"iOS"}"#,
        r#"{"refreshToken":"x.y.z"}"#,
        r#"{"refreshToken":null}"#,
        r#"{"userID":"bob","message":"hi"}"#,
        r#"{"userID":"bob"}"#,
        r#"{"userID":"bob","remark":"B"}"#,
        r#"{"groupName":"g","faceURL":"u","memberUserIDs":["a","b"]}"#,
        r#"{"groupID":"g1","groupName":"n","extra":null}"#,
        r#"{"userIDs":["a","b"]}"#,
        r#"{"userID":"a","role":2}"#,
        r#"{"userID":"a","durationSeconds":60}"#,
        r#"{"mute":true}"#,
        r#"{"lastSeq":0,"count":500,"timestamp":1732000000000}"#,
        r#"{"conversation_id":"single_a_b","start_seq":1,"end_seq":9,"count":100}"#,
        r#"{"userIDs":["a"]}"#,
        r#"{"nickname":"n","gender":1,"birth":0}"#,
    ];

    fn ok(o: &Outcome) {
        if let Err(e) = o.check() {
            panic!("{e}: {o:?}");
        }
    }

    #[test]
    fn every_valid_body_is_accepted() {
        assert_eq!(VALID.len(), JSON_BODIES.len());
        for (i, body) in VALID.iter().enumerate() {
            let o = json_body(i, Some("application/json"), body.as_bytes());
            assert!(
                matches!(o, Outcome::Accepted(_)),
                "{}: {o:?}",
                JSON_BODIES[i]
            );
        }
    }

    #[test]
    fn damaged_bodies_are_refused_cleanly() {
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        let mut extra: Vec<Vec<u8>> = vec![
            deep.into_bytes(),
            b"\xff\xfe{}".to_vec(),
            br#"{"userID":"\ud800"}"#.to_vec(),
            br#"{"count":1e309,"lastSeq":-9223372036854775809}"#.to_vec(),
            br#"{"userIDs":{"a":1}}"#.to_vec(),
            b"null".to_vec(),
            b"   ".to_vec(),
            Vec::new(),
        ];
        for v in VALID {
            extra.push(v.replace(':', ":[").into_bytes());
            extra.push(v.replace('"', "'").into_bytes());
        }
        for which in 0..JSON_BODIES.len() {
            for v in VALID {
                for cut in 0..v.len() {
                    ok(&json_body(
                        which,
                        Some("application/json"),
                        &v.as_bytes()[..cut],
                    ));
                }
                ok(&json_body(which, Some("text/plain"), v.as_bytes()));
                ok(&json_body(which, None, v.as_bytes()));
            }
            for body in &extra {
                ok(&json_body(which, Some("application/json"), body));
            }
        }
    }

    #[test]
    fn queries_are_refused_cleanly() {
        let queries = [
            "",
            "limit=10",
            "limit=-1",
            "limit=99999999999999999999",
            "conversationID=single_a_b&beforeSeq=5&limit=3",
            "conversationID=%FF%FE",
            "direction=sideways",
            "direction=outgoing",
            "userID=bob",
            "keyword=al&limit=5",
            "keyword=&limit=x",
            "a=%",
            "&&&==",
        ];
        for which in 0..QUERIES.len() {
            for q in queries {
                for body in [&b""[..], br#"{"userID":"bob"}"#, br#"{"keyword":1}"#, b"{"] {
                    ok(&query(which, q, body));
                }
            }
        }
    }
}
