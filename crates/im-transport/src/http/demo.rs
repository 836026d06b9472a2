//! The browser demo chat at `/demo/` (`demo.enabled`): a static page and
//! its ES modules, embedded in the binary, that speak the real protocol —
//! this HTTP API on the same origin, and WebSocket v2 frames on the WS port,
//! which the page learns from `/demo/config.json`.
//!
//! Every file is answered with its content type, a strict
//! Content-Security-Policy (scripts and styles from this origin only, no
//! inline code; connections to this origin and to WebSocket URLs),
//! `nosniff`, and `Cache-Control: no-cache` with an `ETag` (so a browser
//! revalidates and a new binary's files are picked up). `/` and `/demo`
//! redirect to `/demo/`. Not in the OpenAPI document: it is not the API.

use axum::Router;
use axum::http::StatusCode;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, ETAG, HeaderMap, HeaderValue,
    IF_NONE_MATCH, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

/// Where the demo is mounted; `/` redirects here.
pub const DEMO_PATH: &str = "/demo/";

/// The WebSocket path the page connects to (generation v2).
pub const WS_PATH: &str = "/ws/v2";

/// What the page needs to know about this server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoConfig {
    /// The port of the WebSocket listener (the page connects to the host it
    /// was loaded from, on this port).
    pub ws_port: u16,
    /// Whether that listener speaks TLS (`wss:`); the page does not guess it
    /// from its own scheme, since HTTP and WS have separate TLS switches.
    pub ws_tls: bool,
}

/// Scripts, styles and images from this origin only; no inline code, no
/// framing, no plugins; sockets to this origin and to WebSocket URLs (the
/// WS listener is another port, so `'self'` alone would not reach it).
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self' ws: wss:; base-uri 'none'; form-action 'none'; \
                   frame-ancestors 'none'";

/// One embedded file.
struct Asset {
    body: &'static [u8],
    content_type: &'static str,
}

/// The embedded files, by path.
const ASSETS: [(&str, Asset); 4] = [
    (
        DEMO_PATH,
        Asset {
            body: include_bytes!("../../assets/demo/index.html"),
            content_type: "text/html; charset=utf-8",
        },
    ),
    (
        "/demo/app.js",
        Asset {
            body: include_bytes!("../../assets/demo/app.js"),
            content_type: "text/javascript; charset=utf-8",
        },
    ),
    (
        "/demo/proto.js",
        Asset {
            body: include_bytes!("../../assets/demo/proto.js"),
            content_type: "text/javascript; charset=utf-8",
        },
    ),
    (
        "/demo/style.css",
        Asset {
            body: include_bytes!("../../assets/demo/style.css"),
            content_type: "text/css; charset=utf-8",
        },
    ),
];

/// The demo's routes (any router state: they need none).
pub(crate) fn routes<S: Clone + Send + Sync + 'static>(cfg: &DemoConfig) -> Router<S> {
    let config = config_json(cfg);
    let mut router = Router::new()
        .route("/", get(|| async { Redirect::temporary(DEMO_PATH) }))
        .route("/demo", get(|| async { Redirect::temporary(DEMO_PATH) }));
    for (path, asset) in &ASSETS {
        router = router.route(
            path,
            get(move |h: HeaderMap| async move { serve(asset, &h) }),
        );
    }
    router.route(
        "/demo/config.json",
        get(move || {
            let body = config.clone();
            async move {
                let mut r = body.into_response();
                let h = r.headers_mut();
                h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
                secure(h);
                r
            }
        }),
    )
}

/// `{"wsPort": …, "wsPath": "/ws/v2", "wsTls": …}`.
fn config_json(cfg: &DemoConfig) -> String {
    serde_json::json!({ "wsPort": cfg.ws_port, "wsPath": WS_PATH, "wsTls": cfg.ws_tls }).to_string()
}

/// The headers every demo response carries.
fn secure(h: &mut HeaderMap) {
    h.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
}

/// A strong validator of `body`: stable within one binary, which is all a
/// browser cache needs (the files only change with the binary).
fn etag(body: &[u8]) -> String {
    use std::hash::{DefaultHasher, Hasher};
    let mut h = DefaultHasher::new();
    h.write(body);
    format!("\"{:016x}-{:x}\"", h.finish(), body.len())
}

/// Whether `If-None-Match` names `tag` (or is `*`).
fn matches(headers: &HeaderMap, tag: &str) -> bool {
    headers
        .get_all(IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == tag || t == "*")
}

fn serve(asset: &Asset, headers: &HeaderMap) -> Response {
    let tag = etag(asset.body);
    let mut r = if matches(headers, &tag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut r = asset.body.into_response();
        r.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
        r
    };
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&tag) {
        h.insert(ETAG, v);
    }
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    secure(h);
    r
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::header::LOCATION;
    use axum::http::{Method, Request};
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::*;

    async fn call(router: &Router, method: Method, path: &str, etag: Option<&str>) -> Response {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(t) = etag {
            req = req.header(IF_NONE_MATCH, t);
        }
        router
            .clone()
            .oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap()
    }

    fn router() -> Router {
        routes(&DemoConfig {
            ws_port: 18081,
            ws_tls: false,
        })
    }

    fn header<'a>(r: &'a Response, name: &axum::http::HeaderName) -> &'a str {
        r.headers()
            .get(name)
            .unwrap_or_else(|| panic!("no {name} header"))
            .to_str()
            .unwrap()
    }

    async fn body(r: Response) -> Vec<u8> {
        r.into_body().collect().await.unwrap().to_bytes().to_vec()
    }

    #[tokio::test]
    async fn files_have_their_content_type_and_the_security_headers() {
        let r = router();
        for (path, ty, start) in [
            ("/demo/", "text/html; charset=utf-8", "<!doctype html>"),
            ("/demo/app.js", "text/javascript; charset=utf-8", "//"),
            ("/demo/proto.js", "text/javascript; charset=utf-8", "//"),
            ("/demo/style.css", "text/css; charset=utf-8", "/*"),
        ] {
            let resp = call(&r, Method::GET, path, None).await;
            assert_eq!(resp.status(), StatusCode::OK, "{path}");
            assert_eq!(header(&resp, &CONTENT_TYPE), ty, "{path}");
            assert_eq!(header(&resp, &CONTENT_SECURITY_POLICY), CSP, "{path}");
            assert_eq!(header(&resp, &X_CONTENT_TYPE_OPTIONS), "nosniff", "{path}");
            assert_eq!(header(&resp, &CACHE_CONTROL), "no-cache", "{path}");
            assert!(header(&resp, &ETAG).starts_with('"'), "{path}");
            let b = body(resp).await;
            assert!(
                String::from_utf8_lossy(&b).starts_with(start),
                "{path} starts with {start}"
            );
        }
    }

    #[test]
    fn the_policy_allows_no_inline_code_and_reaches_websockets() {
        assert!(CSP.contains("default-src 'none'"));
        assert!(CSP.contains("script-src 'self';"));
        assert!(CSP.contains("connect-src 'self' ws: wss:"));
        assert!(!CSP.contains("unsafe"));
    }

    #[tokio::test]
    async fn head_has_the_headers_and_no_body() {
        let resp = call(&router(), Method::HEAD, "/demo/app.js", None).await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(header(&resp, &X_CONTENT_TYPE_OPTIONS), "nosniff");
        assert!(body(resp).await.is_empty());
    }

    #[tokio::test]
    async fn a_matching_etag_is_not_modified_and_another_is_served() {
        let r = router();
        let first = call(&r, Method::GET, "/demo/style.css", None).await;
        let tag = header(&first, &ETAG).to_owned();
        let again = call(&r, Method::GET, "/demo/style.css", Some(&tag)).await;
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(header(&again, &ETAG), tag);
        assert!(body(again).await.is_empty());
        let list = format!("\"other\", W/{tag}");
        let weak = call(&r, Method::GET, "/demo/style.css", Some(&list)).await;
        assert_eq!(weak.status(), StatusCode::NOT_MODIFIED);
        let other = call(&r, Method::GET, "/demo/style.css", Some("\"nope\"")).await;
        assert_eq!(other.status(), StatusCode::OK);
        // Each file has its own validator.
        let js = call(&r, Method::GET, "/demo/app.js", Some(&tag)).await;
        assert_eq!(js.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn config_names_the_ws_port_and_path_and_is_not_cached() {
        let resp = call(&router(), Method::GET, "/demo/config.json", None).await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(header(&resp, &CONTENT_TYPE), "application/json");
        assert_eq!(header(&resp, &CACHE_CONTROL), "no-store");
        assert_eq!(header(&resp, &CONTENT_SECURITY_POLICY), CSP);
        let v: serde_json::Value = serde_json::from_slice(&body(resp).await).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"wsPort": 18081, "wsPath": "/ws/v2", "wsTls": false})
        );
    }

    #[tokio::test]
    async fn root_and_bare_demo_redirect_to_the_page() {
        for path in ["/", "/demo"] {
            let resp = call(&router(), Method::GET, path, None).await;
            assert_eq!(resp.status(), StatusCode::TEMPORARY_REDIRECT, "{path}");
            assert_eq!(header(&resp, &LOCATION), DEMO_PATH, "{path}");
        }
    }

    #[tokio::test]
    async fn unknown_files_and_other_methods_are_not_served() {
        let r = router();
        for path in ["/demo/nope.js", "/demo/../Cargo.toml", "/demo/app.js/x"] {
            let resp = call(&r, Method::GET, path, None).await;
            assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{path}");
        }
        let resp = call(&r, Method::POST, "/demo/app.js", None).await;
        assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    }

    #[test]
    fn the_page_loads_only_its_own_files_and_no_inline_script() {
        let asset = |path: &str| ASSETS.iter().find(|(p, _)| *p == path).unwrap().1.body;
        let html = std::str::from_utf8(asset(DEMO_PATH)).unwrap();
        assert!(html.contains(r#"<script type="module" src="app.js"></script>"#));
        assert!(html.contains(r#"<link rel="stylesheet" href="style.css">"#));
        assert!(!html.contains("http://") && !html.contains("https://"));
        assert_eq!(html.matches("<script").count(), 1);
        assert!(
            !html.contains(" style="),
            "inline styles are refused by the CSP"
        );
        for js in [asset("/demo/app.js"), asset("/demo/proto.js")] {
            let js = std::str::from_utf8(js).unwrap();
            assert!(
                !js.contains("innerHTML"),
                "user content goes through textContent"
            );
            assert!(!js.contains("eval("));
        }
    }
}
