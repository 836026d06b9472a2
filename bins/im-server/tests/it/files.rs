//! `POST /upload` and `GET`/`HEAD /files/{id}` over the real server.

use std::net::SocketAddr;
use std::path::Path;

use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::TestServer;

pub(crate) struct Resp {
    pub(crate) status: u16,
    /// Lower-cased names.
    headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl Resp {
    /// The value of header `name` (lower-case).
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }
}

/// Sends `head` (request line and headers, without the blank line) and
/// `body` as they are; reads the whole response (the request says
/// `Connection: close`).
async fn send(addr: SocketAddr, head: &str, body: &[u8]) -> Resp {
    exchange(
        tokio::net::TcpStream::connect(addr).await.unwrap(),
        head,
        body,
    )
    .await
}

/// [`send`] on a connected `stream`.
pub(crate) async fn exchange(mut stream: tokio::net::TcpStream, head: &str, body: &[u8]) -> Resp {
    let mut req = head.as_bytes().to_vec();
    req.extend_from_slice(b"\r\n");
    req.extend_from_slice(body);
    // The server may answer (413) before reading all of it.
    let _ = stream.write_all(&req).await;
    let mut out = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    let split = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head: {:?}", String::from_utf8_lossy(&out)));
    let head = String::from_utf8_lossy(&out[..split]).into_owned();
    let body = out[split + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Resp {
        status,
        headers,
        body,
    }
}

/// A request with `Content-Length` and the given extra headers.
async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Resp {
    send(addr, &request_head(method, path, headers, body.len()), body).await
}

/// The head of a `Connection: close` request with `Content-Length` and the
/// given extra headers, for [`send`] / [`exchange`].
pub(crate) fn request_head(
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    len: usize,
) -> String {
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {len}\r\n"
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head
}

async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Resp {
    request(addr, "GET", path, headers, b"").await
}

/// Raw upload with a token; returns the bare reply.
async fn upload_raw(s: &TestServer, content_type: &str, body: &[u8]) -> Value {
    let auth = format!("Bearer {}", s.token("alice"));
    let r = request(
        s.addrs.http,
        "POST",
        "/upload",
        &[("Authorization", &auth), ("Content-Type", content_type)],
        body,
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("content-type"), Some("application/json"));
    r.json()
}

fn multipart(boundary: &str, field: &str, filename: &str, data: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhello\r\n\
             --{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{filename}\"\r\n\
             Content-Type: application/octet-stream\r\n\r\n"
        )
        .as_bytes(),
    );
    b.extend_from_slice(data);
    b.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    b
}

/// Every regular file under `dir`.
fn files_in(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

fn body_of(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 % 253) as u8).collect()
}

fn assert_error(r: &Resp, status: u16, error: &str) {
    assert_eq!(r.status, status, "{:?}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("content-type"), Some("application/json"));
    let v = r.json();
    assert_eq!(v["code"], status, "{v}");
    assert_eq!(v["error"], error, "{v}");
    assert!(v["message"].is_string(), "{v}");
}

#[tokio::test]
async fn raw_upload_then_download_head_and_revalidate() {
    let s = TestServer::start().await;
    let data = body_of(300_000);
    let v = upload_raw(&s, "application/octet-stream", &data).await;
    let id = v["file_id"].as_str().unwrap().to_owned();
    assert_eq!(id.len(), 32);
    assert!(id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')));
    // Without files.public_base_url the URL is absolute, on the request's origin.
    assert_eq!(v["url"], format!("http://x/files/{id}"));
    assert_eq!(v["size"], 300_000);
    assert_eq!(v["content_type"], "application/octet-stream");

    // The body and its sidecar are on disk, sharded by the id's prefix.
    let dir = s.config.files.dir.clone();
    let mut on_disk: Vec<_> = files_in(&dir)
        .iter()
        .map(|p| p.strip_prefix(&dir).unwrap().display().to_string())
        .collect();
    on_disk.sort();
    assert_eq!(
        on_disk,
        vec![
            format!("{}/{id}", &id[..2]),
            format!("{}/{id}.json", &id[..2])
        ]
    );

    let url = format!("/files/{id}");
    let r = get(s.addrs.http, &url, &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, data);
    let etag = format!("\"{}\"", hex(&Sha256::digest(&data)));
    assert_eq!(r.header("etag"), Some(etag.as_str()));
    assert_eq!(r.header("content-length"), Some("300000"));
    assert_eq!(r.header("accept-ranges"), Some("bytes"));
    assert_eq!(r.header("content-type"), Some("application/octet-stream"));
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(
        r.header("cache-control"),
        Some("public, max-age=31536000, immutable")
    );
    assert_eq!(r.header("content-disposition"), Some("attachment"));
    let last_modified = r.header("last-modified").unwrap().to_owned();
    assert!(last_modified.ends_with(" GMT"), "{last_modified}");

    let h = request(s.addrs.http, "HEAD", &url, &[], b"").await;
    assert_eq!(h.status, 200);
    assert_eq!(h.header("content-length"), Some("300000"));
    assert_eq!(h.header("etag"), Some(etag.as_str()));
    assert!(h.body.is_empty());

    let r = get(s.addrs.http, &url, &[("If-None-Match", &etag)]).await;
    assert_eq!(r.status, 304);
    assert!(r.body.is_empty());
    assert_eq!(r.header("etag"), Some(etag.as_str()));
    let r = get(s.addrs.http, &url, &[("If-None-Match", "\"other\"")]).await;
    assert_eq!(r.status, 200);
    s.stop().await;
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn ranges_resume_and_refuse() {
    let s = TestServer::start().await;
    let data = body_of(10_000);
    let v = upload_raw(&s, "application/octet-stream", &data).await;
    let url = v["url"]
        .as_str()
        .unwrap()
        .trim_start_matches("http://x")
        .to_owned();
    let a = s.addrs.http;

    let r = get(a, &url, &[("Range", "bytes=4000-")]).await;
    assert_eq!(r.status, 206);
    assert_eq!(r.header("content-range"), Some("bytes 4000-9999/10000"));
    assert_eq!(r.header("content-length"), Some("6000"));
    assert_eq!(r.body, data[4000..]);

    let r = get(a, &url, &[("Range", "bytes=10-19")]).await;
    assert_eq!(r.status, 206);
    assert_eq!(r.header("content-range"), Some("bytes 10-19/10000"));
    assert_eq!(r.body, data[10..20]);

    let r = get(a, &url, &[("Range", "bytes=-100")]).await;
    assert_eq!(r.status, 206);
    assert_eq!(r.header("content-range"), Some("bytes 9900-9999/10000"));
    assert_eq!(r.body, data[9900..]);

    let r = get(a, &url, &[("Range", "bytes=9990-20000")]).await;
    assert_eq!(r.status, 206);
    assert_eq!(r.body, data[9990..]);

    // HEAD with a range: the headers of the part, no body.
    let r = request(a, "HEAD", &url, &[("Range", "bytes=9000-")], b"").await;
    assert_eq!(r.status, 206);
    assert_eq!(r.header("content-length"), Some("1000"));
    assert!(r.body.is_empty());

    let r = get(a, &url, &[("Range", "bytes=10000-")]).await;
    assert_error(&r, 416, "range_not_satisfiable");
    assert_eq!(r.header("content-range"), Some("bytes */10000"));

    // Several ranges, or a malformed one: the whole file.
    for range in ["bytes=0-1,5-6", "bytes=abc", "lines=1-2"] {
        let r = get(a, &url, &[("Range", range)]).await;
        assert_eq!(r.status, 200, "{range}");
        assert_eq!(r.body, data, "{range}");
    }
    // If-Range naming another version: the whole file.
    let r = get(a, &url, &[("Range", "bytes=0-9"), ("If-Range", "\"old\"")]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), 10_000);
    s.stop().await;
}

#[tokio::test]
async fn multipart_upload_replies_with_the_envelope() {
    let s = TestServer::start().await;
    let data = body_of(50_000);
    let boundary = "----imboundary7MA4YWxkTrZu0gW";
    let body = multipart(boundary, "file", "r\u{e9}sum\u{e9} 1.pdf", &data);
    let auth = format!("Bearer {}", s.token("alice"));
    let ct = format!("multipart/form-data; boundary={boundary}");
    let r = request(
        s.addrs.http,
        "POST",
        "/upload",
        &[("Authorization", &auth), ("Content-Type", &ct)],
        &body,
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("content-type"), Some("application/json"));
    let v = r.json();
    assert_eq!(v["code"], 0, "{v}");
    let url = v["data"].as_str().unwrap().trim_start_matches("http://x");
    assert!(url.starts_with("/files/") && url.len() == 7 + 32, "{url}");
    let r = get(s.addrs.http, url, &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, data);
    assert_eq!(
        r.header("content-disposition"),
        Some("attachment; filename=\"r_sum_ 1.pdf\"; filename*=UTF-8''r%C3%A9sum%C3%A9%201.pdf")
    );

    // No `file` field, or a broken body: 400.
    let body = multipart(boundary, "other", "a.bin", b"x");
    let r = request(
        s.addrs.http,
        "POST",
        "/upload",
        &[("Authorization", &auth), ("Content-Type", &ct)],
        &body,
    )
    .await;
    assert_error(&r, 400, "invalid_param");
    let r = request(
        s.addrs.http,
        "POST",
        "/upload",
        &[
            ("Authorization", &auth),
            ("Content-Type", "multipart/form-data"),
        ],
        b"garbage",
    )
    .await;
    assert_error(&r, 400, "invalid_param");
    s.stop().await;
}

#[tokio::test]
async fn too_large_and_empty_uploads_leave_nothing() {
    let s = TestServer::start_with(|c| c.files.max_upload_bytes = 1024).await;
    let a = s.addrs.http;
    let auth = format!("Bearer {}", s.token("alice"));
    let dir = s.config.files.dir.clone();

    // Announced too large.
    let r = request(
        a,
        "POST",
        "/upload",
        &[("Authorization", &auth)],
        &body_of(4000),
    )
    .await;
    assert_error(&r, 413, "payload_too_large");

    // Streamed (chunked, no length announced): cut off while streaming.
    let mut chunked = Vec::new();
    for part in body_of(4000).chunks(500) {
        chunked.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
        chunked.extend_from_slice(part);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let head = format!(
        "POST /upload HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: {auth}\r\n\
         Transfer-Encoding: chunked\r\n"
    );
    let r = send(a, &head, &chunked).await;
    assert_error(&r, 413, "payload_too_large");

    // A multipart file over the limit.
    let boundary = "b0undary";
    let ct = format!("multipart/form-data; boundary={boundary}");
    let body = multipart(boundary, "file", "big.bin", &body_of(4000));
    let r = request(
        a,
        "POST",
        "/upload",
        &[("Authorization", &auth), ("Content-Type", &ct)],
        &body,
    )
    .await;
    assert_error(&r, 413, "payload_too_large");

    // Empty.
    let r = request(a, "POST", "/upload", &[("Authorization", &auth)], b"").await;
    assert_error(&r, 400, "empty_file");
    let body = multipart(boundary, "file", "empty.bin", b"");
    let r = request(
        a,
        "POST",
        "/upload",
        &[("Authorization", &auth), ("Content-Type", &ct)],
        &body,
    )
    .await;
    assert_error(&r, 400, "empty_file");

    assert!(files_in(&dir).is_empty(), "{:?}", files_in(&dir));

    // Exactly the limit is fine.
    let v = upload_raw(&s, "application/octet-stream", &body_of(1024)).await;
    assert_eq!(v["size"], 1024);
    assert_eq!(files_in(&dir).len(), 2);
    s.stop().await;
}

#[tokio::test]
async fn uploads_need_a_token_unless_anonymous_uploads_are_on() {
    let s = TestServer::start_with(|c| c.files.anonymous_upload = false).await;
    let a = s.addrs.http;
    let r = request(a, "POST", "/upload", &[], b"data").await;
    assert_error(&r, 401, "unauthorized");
    let r = request(
        a,
        "POST",
        "/upload",
        &[("Authorization", "Bearer nope")],
        b"data",
    )
    .await;
    assert_eq!(r.status, 401);
    let ct = "multipart/form-data; boundary=b";
    let body = multipart("b", "file", "a.bin", b"data");
    let r = request(a, "POST", "/upload", &[("Content-Type", ct)], &body).await;
    assert_error(&r, 401, "unauthorized");
    assert!(files_in(&s.config.files.dir).is_empty());
    s.stop().await;

    let s = TestServer::start_with(|c| {
        c.files.anonymous_upload = true;
        c.files.public_base_url = Some("https://cdn.example.com/media/".into());
    })
    .await;
    let a = s.addrs.http;
    // What IMFileManager.uploadFile sends.
    let r = request(
        a,
        "POST",
        "/upload",
        &[("Content-Type", "application/octet-stream")],
        b"sdk bytes",
    )
    .await;
    assert_eq!(r.status, 200);
    let v = r.json();
    let id = v["file_id"].as_str().unwrap();
    assert_eq!(v["url"], format!("https://cdn.example.com/media/{id}"));
    let r = get(a, &format!("/files/{id}"), &[]).await;
    assert_eq!(r.body, b"sdk bytes");
    // A token that is present must still be valid.
    let r = request(
        a,
        "POST",
        "/upload",
        &[("Authorization", "Bearer nope")],
        b"data",
    )
    .await;
    assert_eq!(r.status, 401);
    s.stop().await;
}

#[tokio::test]
async fn unknown_malformed_and_traversal_ids_are_404() {
    let s = TestServer::start().await;
    let a = s.addrs.http;
    let v = upload_raw(&s, "application/octet-stream", b"secret").await;
    let id = v["file_id"].as_str().unwrap().to_owned();
    for path in [
        "/files/../Cargo.toml".to_owned(),
        "/files/..%2F..%2FCargo.toml".to_owned(),
        "/files/%2e%2e".to_owned(),
        "/files/garbage".to_owned(),
        format!("/files/{}", id.to_ascii_uppercase()),
        format!("/files/{id}.json"),
        format!("/files/{}/../{id}", &id[..2]),
        "/files/00000000000000000000000000000000".to_owned(),
        "/files/".to_owned(),
    ] {
        let r = get(a, &path, &[]).await;
        assert_error(&r, 404, "not_found");
        assert!(
            !String::from_utf8_lossy(&r.body).contains("secret"),
            "{path}"
        );
        let r = request(a, "HEAD", &path, &[], b"").await;
        assert_eq!(r.status, 404, "{path}");
    }
    s.stop().await;
}

#[tokio::test]
async fn the_sniffed_type_wins_and_active_content_is_an_attachment() {
    let s = TestServer::start().await;
    let a = s.addrs.http;
    let mut png = vec![0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a];
    png.extend_from_slice(&body_of(500));
    let v = upload_raw(&s, "text/plain", &png).await;
    assert_eq!(v["content_type"], "image/png");
    let r = get(a, v["url"].as_str().unwrap(), &[]).await;
    assert_eq!(r.header("content-type"), Some("image/png"));
    assert_eq!(r.header("content-disposition"), Some("inline"));
    assert_eq!(r.body, png);

    let html = b"<!DOCTYPE html><html><body><script>alert(document.cookie)</script></body></html>";
    let v = upload_raw(&s, "image/png", html).await;
    assert_eq!(v["content_type"], "text/html");
    let r = get(a, v["url"].as_str().unwrap(), &[]).await;
    assert_eq!(r.header("content-type"), Some("text/html"));
    assert_eq!(r.header("content-disposition"), Some("attachment"));
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));

    let svg = br#"<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>"#;
    let v = upload_raw(&s, "image/svg+xml", svg).await;
    assert_ne!(v["content_type"], "image/svg+xml");
    let r = get(a, v["url"].as_str().unwrap(), &[]).await;
    assert_eq!(r.header("content-disposition"), Some("attachment"));
    s.stop().await;
}

#[tokio::test]
async fn an_upload_cut_off_by_the_client_leaves_nothing() {
    let s = TestServer::start().await;
    let auth = format!("Bearer {}", s.token("alice"));
    let mut stream = tokio::net::TcpStream::connect(s.addrs.http).await.unwrap();
    let head = format!(
        "POST /upload HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\nContent-Length: 100000\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&body_of(30_000)).await.unwrap();
    let dir = s.config.files.dir.clone();
    // The upload is under way: its temporary file exists.
    let deadline = tokio::time::Instant::now() + crate::WAIT;
    while files_in(&dir).is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "upload never started"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(
        files_in(&dir)[0]
            .file_name()
            .unwrap()
            .to_string_lossy()
            .ends_with(".part")
    );
    drop(stream);
    let deadline = tokio::time::Instant::now() + crate::WAIT;
    while !files_in(&dir).is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "left behind: {:?}",
            files_in(&dir)
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    s.stop().await;
}
