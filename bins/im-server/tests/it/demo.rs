//! The browser demo chat (`/demo/`) over the real server: what the HTTP
//! port serves, that the WS port accepts a browser's upgrade, and the
//! headless-Chromium run of `e2e/browser/demo.mjs` (alice and bob chatting).
//!
//! The browser test needs `node`, `e2e/browser/node_modules` (`npm ci`) and
//! `/usr/bin/chromium`; without them it is skipped with the reason printed,
//! unless `IM_TEST_REQUIRE_BROWSER=1` (CI), which makes it fail instead.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::TestServer;

/// The whole browser run (its steps have their own, shorter bounds).
const BROWSER_RUN: Duration = Duration::from_secs(300);

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The response head (status line and headers, lower-cased) of one request
/// on a fresh connection, read up to the blank line (an upgraded connection
/// never ends).
async fn response_head(addr: SocketAddr, request: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    let read = async {
        while !out.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut buf).await.unwrap_or(0);
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
    };
    tokio::time::timeout(crate::WAIT, read).await.unwrap();
    let split = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head: {:?}", String::from_utf8_lossy(&out)));
    String::from_utf8_lossy(&out[..split]).to_ascii_lowercase()
}

/// `GET path`: the response head (lower-cased) and body.
async fn get(addr: SocketAddr, path: &str) -> (String, Vec<u8>) {
    let (_, head, body) = crate::messaging::http(addr, "GET", path, &[], "").await;
    (head, body.into_bytes())
}

#[tokio::test]
async fn the_page_is_served_with_its_policy_and_learns_the_real_ws_port() {
    let s = TestServer::start().await;
    let (head, body) = get(s.addrs.http, "/demo/").await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(
        head.contains("content-type: text/html; charset=utf-8"),
        "{head}"
    );
    assert!(head.contains("x-content-type-options: nosniff"), "{head}");
    assert!(
        head.contains("content-security-policy: default-src 'none'; script-src 'self';"),
        "{head}"
    );
    assert!(head.contains("connect-src 'self' ws: wss:"), "{head}");
    assert!(String::from_utf8_lossy(&body).contains("app.js"));

    let (head, _) = get(s.addrs.http, "/demo/proto.js").await;
    assert!(head.contains("content-type: text/javascript"), "{head}");

    // The page connects to the port the WS listener really bound (port 0 here).
    let (head, body) = get(s.addrs.http, "/demo/config.json").await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["wsPort"], s.addrs.ws.port());
    assert_eq!(v["wsPath"], "/ws/v2");
    assert_eq!(v["wsTls"], false);

    let (head, _) = get(s.addrs.http, "/").await;
    assert!(head.starts_with("http/1.1 307"), "{head}");
    assert!(head.contains("location: /demo/"), "{head}");

    // Not part of the API document.
    let (_, body) = get(s.addrs.http, "/openapi.json").await;
    assert!(!String::from_utf8_lossy(&body).contains("/demo"));
    s.stop().await;
}

#[tokio::test]
async fn disabled_serves_nothing() {
    let s = TestServer::start_with(|c| c.demo.enabled = false).await;
    for path in ["/demo/", "/demo/app.js", "/demo/config.json", "/"] {
        let (head, body) = get(s.addrs.http, path).await;
        assert!(head.starts_with("http/1.1 404"), "{path}: {head}");
        assert!(
            head.contains("content-type: application/json"),
            "{path}: {head}"
        );
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["code"], 404, "{path}");
    }
    // The API is unaffected.
    let (head, _) = get(s.addrs.http, "/health").await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    s.stop().await;
}

#[tokio::test]
async fn the_ws_port_accepts_an_upgrade_from_the_page_origin() {
    let s = TestServer::start().await;
    let origin = format!("http://{}", s.addrs.http);
    let head = response_head(
        s.addrs.ws,
        &format!(
            "GET /ws/v2 HTTP/1.1\r\nHost: {}\r\nOrigin: {origin}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n",
            s.addrs.ws
        ),
    )
    .await;
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(
        head.contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
        "{head}"
    );
    // No extension is negotiated: frames stay plain binary protobuf.
    assert!(!head.contains("sec-websocket-extensions"), "{head}");
    s.stop().await;
}

/// Why the browser run cannot happen here, if it cannot.
fn browser_missing(root: &Path) -> Option<String> {
    let node = std::process::Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !matches!(node, Ok(s) if s.success()) {
        return Some("`node` is not on PATH".to_owned());
    }
    let pw = root.join("e2e/browser/node_modules/playwright-core/package.json");
    if !pw.is_file() {
        return Some(format!(
            "{} is missing (run `npm ci` in e2e/browser)",
            pw.display()
        ));
    }
    if !Path::new("/usr/bin/chromium").is_file() {
        return Some("/usr/bin/chromium is missing (apt-get install chromium)".to_owned());
    }
    None
}

#[tokio::test]
async fn two_users_chat_in_headless_chromium() {
    let root = repo_root();
    if let Some(why) = browser_missing(&root) {
        assert!(
            std::env::var("IM_TEST_REQUIRE_BROWSER").as_deref() != Ok("1"),
            "IM_TEST_REQUIRE_BROWSER=1 but {why}"
        );
        eprintln!("SKIPPED two_users_chat_in_headless_chromium: {why}");
        return;
    }
    let s = TestServer::start().await;
    let artifacts = Path::new(env!("CARGO_TARGET_TMPDIR")).join("demo-e2e");
    let mut cmd = tokio::process::Command::new("node");
    cmd.arg(root.join("e2e/browser/demo.mjs"))
        .arg(format!("http://{}", s.addrs.http))
        .env("IM_DEMO_ARTIFACTS", &artifacts)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = cmd.spawn().unwrap();
    let out = tokio::time::timeout(BROWSER_RUN, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("the browser run took over {BROWSER_RUN:?}"))
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(
        out.status.success(),
        "demo.mjs failed ({}); screenshots in {}\n{stdout}\n{stderr}",
        out.status,
        artifacts.display()
    );
    assert!(stdout.contains("demo e2e: all steps passed"), "{stdout}");
    s.stop().await;
}
