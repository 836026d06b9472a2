//! The SDK's media upload on a default server (issue 18, item 3).
//!
//! `IMFileManager.uploadFile` (Sources/IMSDK/Business/File/IMFileManager.swift:203-211
//! @07bf3fe, the same file at 5529e01) POSTs the raw bytes to
//! `{uploadBaseURL}/upload` with `Content-Type: application/octet-stream`
//! and no `Authorization`, and decodes a bare `{"url","file_id"}` from the
//! body without looking at the status (:225-233); the message content then
//! carries the URL (`IMImageMessageContent.url`/`thumbnailUrl`,
//! Business/Message/IMMessageManager.swift:868-891@07bf3fe), JSON-encoded
//! by `JSONEncoder`, which escapes `/` as `\/`.
//!
//! The sweeps are driven through `Services` (`files.anonymous_ttl: 0s`
//! makes every unreferenced file due), never by waiting.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;

use bytes::Bytes;
use im_core::Generation;
use im_core::command::{Request, SendRequest};

use crate::files::{Resp, exchange, request_head};
use crate::{TestServer, sent_ok};

fn local(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

/// One HTTP/1.1 request from local address `from` (any 127.x address
/// reaches the loopback listener, so each is another client address).
async fn request(
    addr: SocketAddr,
    from: IpAddr,
    head: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Resp {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(from, 0)).unwrap();
    let stream = socket.connect(addr).await.unwrap();
    let (method, path) = head.split_once(' ').unwrap();
    let req = request_head(method, path, headers, body.len());
    exchange(stream, &req, body).await
}

/// What `IMFileManager.uploadFile` sends (IMFileManager.swift:203-211@07bf3fe).
async fn sdk_upload(s: &TestServer, from: IpAddr, body: &[u8]) -> Resp {
    request(
        s.addrs.http,
        from,
        "POST /upload",
        &[("Content-Type", "application/octet-stream")],
        body,
    )
    .await
}

/// An SDK upload that must succeed: (url, file_id) as the SDK decodes them.
async fn uploaded(s: &TestServer, from: IpAddr, body: &[u8]) -> (String, String) {
    let r = sdk_upload(s, from, body).await;
    assert_eq!(r.status, 200, "{:?}", String::from_utf8_lossy(&r.body));
    let v = r.json();
    let url = v["url"].as_str().expect("url: String").to_owned();
    let id = v["file_id"].as_str().expect("file_id: String").to_owned();
    assert_eq!(url, format!("http://x/files/{id}"));
    (url, id)
}

async fn get(s: &TestServer, id: &str) -> Resp {
    request(
        s.addrs.http,
        local(1),
        &format!("GET /files/{id}"),
        &[],
        b"",
    )
    .await
}

/// An error the SDK cannot take for a success: the status, the stable
/// name, and no `url`/`file_id` (so `uploadFile` fails with
/// `IMError.invalidResponse`, IMFileManager.swift:226-233, and the message is
/// marked failed, IMMessageManager.swift:910-916@07bf3fe).
fn assert_refused(r: &Resp, status: u16, error: &str) {
    assert_eq!(r.status, status, "{:?}", String::from_utf8_lossy(&r.body));
    let v = r.json();
    assert_eq!(v["code"], status, "{v}");
    assert_eq!(v["error"], error, "{v}");
    assert!(v["message"].is_string(), "{v}");
    assert!(v.get("url").is_none() && v.get("file_id").is_none(), "{v}");
}

fn body_of(n: usize, salt: u8) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(31) ^ salt).collect()
}

/// The content `sendImageMessage` builds: `JSONEncoder` output of
/// `IMImageMessageContent` (IMModels.swift:102-113@07bf3fe), slashes escaped.
fn image_content(url: &str, thumb: &str) -> String {
    let esc = |s: &str| s.replace('/', "\\/");
    format!(
        r#"{{"url":"{}","thumbnailUrl":"{}","width":0,"height":0,"size":4096,"format":"png","localPath":"{}","thumbnailPath":""}}"#,
        esc(url),
        esc(thumb),
        esc("/var/mobile/Containers/Data/IMG_0001.png"),
    )
}

/// Alice sends a message of `message_type` with `content` to bob (v2, as
/// the SDK does) and waits until its file references are marked.
async fn send_and_settle(s: &TestServer, cid: &str, message_type: i32, content: &str) {
    let mut alice = s.ws("alice", Generation::V2, "iOS").await;
    let r = alice
        .request(Request::Send(SendRequest {
            client_msg_id: cid.to_owned(),
            conversation_id: "single_alice_bob".into(),
            receiver_id: "bob".into(),
            message_type,
            content: Bytes::copy_from_slice(content.as_bytes()),
            send_time: 1,
            ..SendRequest::default()
        }))
        .await
        .unwrap();
    sent_ok(&r);
    s.services().files.references_settled().await;
}

fn files_under(dir: &Path) -> usize {
    let mut n = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.path().is_dir() {
                stack.push(e.path());
            } else {
                n += 1;
            }
        }
    }
    n
}

#[tokio::test]
async fn an_sdk_upload_works_on_a_default_config_and_get_returns_the_bytes() {
    // test_config changes only ports, paths and the secret: files.* are the
    // defaults (anonymous uploads on).
    let s = TestServer::start().await;
    assert!(s.config.files.anonymous_upload);
    let data = body_of(50_000, 7);
    let (url, id) = uploaded(&s, local(1), &data).await;
    assert!(url.ends_with(&id));
    let r = get(&s, &id).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, data);
    let usage = s.services().files.pending_usage();
    assert_eq!((usage.files, usage.bytes), (1, 50_000));
    s.stop().await;
}

#[tokio::test]
async fn a_sent_url_keeps_its_file_the_unreferenced_expire_and_a_restart_keeps_the_mark() {
    let dir = tempfile::tempdir().unwrap();
    let at = |c: &mut im_server::config::Config| {
        c.files.dir = dir.path().join("files");
        c.database.path = dir.path().join("im.db");
        // Due at once: the next sweep decides.
        c.files.anonymous_ttl = std::time::Duration::ZERO;
    };
    let s = TestServer::start_with(at).await;
    let (image_url, image) = uploaded(&s, local(1), &body_of(8_000, 1)).await;
    let (thumb_url, thumb) = uploaded(&s, local(1), &body_of(900, 2)).await;
    let (_, unsent) = uploaded(&s, local(1), &body_of(700, 3)).await;
    // A file id as plain text counts too (a v1 text message, type 1).
    let (_, texted) = uploaded(&s, local(1), &body_of(600, 4)).await;
    assert_eq!(s.services().files.pending_usage().files, 4);

    send_and_settle(&s, "img-1", 2, &image_content(&image_url, &thumb_url)).await;
    send_and_settle(&s, "txt-1", 1, &format!("see {texted}, please")).await;
    assert_eq!(s.services().files.pending_usage().files, 1);

    let report = s.services().files.sweep_anonymous().await.unwrap();
    assert_eq!((report.expired, report.pending), (1, 0));
    for id in [&image, &thumb, &texted] {
        assert_eq!(get(&s, id).await.status, 200, "{id} is referenced");
    }
    assert_eq!(get(&s, &unsent).await.status, 404, "unsent expired");
    // Left pending across the restart.
    let (_, later) = uploaded(&s, local(1), &body_of(500, 5)).await;
    s.stop().await;

    // Restart on the same directory and database: the start-up sweep
    // expires what is still pending, the referenced files stay.
    let s = TestServer::start_with(at).await;
    assert_eq!(get(&s, &later).await.status, 404, "pending across restarts");
    let report = s.services().files.sweep_anonymous().await.unwrap();
    assert_eq!((report.expired, report.pending), (0, 0));
    for id in [&image, &thumb, &texted] {
        assert_eq!(get(&s, id).await.status, 200, "{id} kept after restart");
    }
    // Only the three referenced bodies and their sidecars are left.
    assert_eq!(files_under(&dir.path().join("files")), 6);
    s.stop().await;
}

#[tokio::test]
async fn per_address_rate_and_byte_quotas_refuse_with_their_codes_and_others_still_upload() {
    let s = TestServer::start_with(|c| {
        c.files.anonymous_uploads_per_minute = 3;
        c.files.anonymous_bytes_per_window = 64 * 1024;
        c.files.anonymous_window = std::time::Duration::from_secs(3600);
    })
    .await;
    // Rate: three uploads a minute from 127.0.0.1, then 429.
    for i in 0..3 {
        uploaded(&s, local(1), &body_of(1024, i)).await;
    }
    let r = sdk_upload(&s, local(1), &body_of(1024, 9)).await;
    assert_refused(&r, 429, "upload_rate_limited");
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=20).contains(&retry), "{retry}");
    // Another address is not affected, nor is an upload with a token from
    // the same address.
    uploaded(&s, local(2), &body_of(1024, 10)).await;
    let auth = format!("Bearer {}", s.token("alice"));
    let r = request(
        s.addrs.http,
        local(1),
        "POST /upload",
        &[("Authorization", &auth)],
        &body_of(2048, 11),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", String::from_utf8_lossy(&r.body));

    // Bytes: 127.0.0.2 has used 1 KiB of 64; 60 KiB more fit, then 8 KiB do
    // not (refused on Content-Length, before the body is stored).
    uploaded(&s, local(2), &body_of(60 * 1024, 12)).await;
    let before = files_under(&s.config.files.dir);
    let r = sdk_upload(&s, local(2), &body_of(8 * 1024, 13)).await;
    assert_refused(&r, 429, "upload_quota_exceeded");
    assert!(r.header("retry-after").is_some());
    assert_eq!(files_under(&s.config.files.dir), before, "nothing stored");
    uploaded(&s, local(3), &body_of(8 * 1024, 14)).await;

    let usage = s.services().files.pending_usage();
    assert_eq!(usage.files, 6, "{usage:?}");
    s.stop().await;
}

#[tokio::test]
async fn the_pending_cap_refuses_with_507_until_a_file_is_referenced() {
    let s = TestServer::start_with(|c| c.files.anonymous_max_pending_bytes = 40 * 1024).await;
    let (url, _) = uploaded(&s, local(1), &body_of(30 * 1024, 1)).await;
    let r = sdk_upload(&s, local(2), &body_of(16 * 1024, 2)).await;
    assert_refused(&r, 507, "insufficient_storage");
    // Small files count as 4 KiB each: two fit in the 10 KiB left, a third not.
    uploaded(&s, local(2), b"tiny").await;
    uploaded(&s, local(2), b"tiny").await;
    assert_refused(
        &sdk_upload(&s, local(2), b"tiny").await,
        507,
        "insufficient_storage",
    );
    // Uploads with a token are not pending and not capped.
    let auth = format!("Bearer {}", s.token("bob"));
    let r = request(
        s.addrs.http,
        local(2),
        "POST /upload",
        &[("Authorization", &auth)],
        &body_of(16 * 1024, 3),
    )
    .await;
    assert_eq!(r.status, 200);
    // Once a message references the big file, its room is free again.
    send_and_settle(&s, "img-cap", 2, &image_content(&url, "")).await;
    uploaded(&s, local(2), &body_of(16 * 1024, 4)).await;
    let usage = s.services().files.pending_usage();
    assert_eq!((usage.files, usage.bytes), (3, 8 * 1024 + 16 * 1024));
    s.stop().await;
}

/// A system notice from the app backend that names an anonymous upload
/// references it like a user's message does (the backend may upload
/// without a token, as the SDK does).
#[tokio::test]
async fn a_system_notice_naming_a_file_references_it() {
    let s = TestServer::start_with(|c| {
        crate::sdk_rooms::with_backend(c);
        c.files.anonymous_ttl = std::time::Duration::ZERO;
    })
    .await;
    let (url, named) = uploaded(&s, local(1), &body_of(1_000, 7)).await;
    let (_, other) = uploaded(&s, local(1), &body_of(1_000, 8)).await;
    let (st, v) = crate::sdk_rooms::notice(
        &s,
        serde_json::json!({
            "userIds": ["alice", "bob"],
            "messageType": 2,
            "content": format!("{{\"url\":\"{url}\"}}"),
        }),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    s.services().files.references_settled().await;
    let report = s.services().files.sweep_anonymous().await.unwrap();
    assert_eq!((report.expired, report.pending), (1, 0));
    assert_eq!(get(&s, &named).await.status, 200, "named in the notice");
    assert_eq!(get(&s, &other).await.status, 404, "unreferenced expired");
    s.stop().await;
}
