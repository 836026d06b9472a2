//! A quick local load run (not a benchmark suite: see issue "im-bench"):
//! starts the real server in-process on port 0 with a temporary SQLite
//! database, opens `PAIRS` pairs of TCP clients, and has one side of each
//! pair send `PER_PAIR` messages pipelined while the other side receives.
//! Prints connections, acked messages/s and delivered messages/s.
//!
//! `cargo run --release -p im-server --example quickload -- [pairs] [per_pair]`
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::time::{Duration, Instant};

use im_client::Client;
use im_core::ErrorCode;
use im_core::command::{Event, Reply, Request, SendRequest};
use im_server::app::{App, mint_token};
use im_server::config::Config;

#[tokio::main]
async fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let pairs = args.first().copied().unwrap_or(100);
    let per_pair = args.get(1).copied().unwrap_or(200);
    let dir = tempfile::tempdir().unwrap();
    let mut c = Config::default();
    c.server.host = "127.0.0.1".parse().unwrap();
    c.server.http_port = 0;
    c.server.ws_port = 0;
    c.server.tcp_port = 0;
    c.database.path = dir.path().join("im.db");
    c.files.dir = dir.path().join("files");
    c.auth.jwt_secret = "quickload".to_owned().into();
    let app = App::build(c.clone()).await.unwrap();
    let addrs = app.local_addrs();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async move {
        let _ = stopped.await;
    }));

    let mut senders = Vec::new();
    let mut receivers = Vec::new();
    let t0 = Instant::now();
    for i in 0..pairs {
        let (a, b) = (format!("s{i}"), format!("r{i}"));
        let mut ca = Client::connect_tcp(addrs.tcp).await.unwrap();
        let mut cb = Client::connect_tcp(addrs.tcp).await.unwrap();
        ca.auth(&a, &mint_token(&c, &a, "iOS", None).unwrap(), "iOS")
            .await
            .unwrap();
        cb.auth(&b, &mint_token(&c, &b, "iOS", None).unwrap(), "iOS")
            .await
            .unwrap();
        senders.push((ca, a, b));
        receivers.push(cb);
    }
    println!("connections: {} authed in {:?}", pairs * 2, t0.elapsed());

    let start = Instant::now();
    let mut tasks = Vec::new();
    for (mut ca, a, b) in senders {
        tasks.push(tokio::spawn(async move {
            let conv = if a < b {
                format!("single_{a}_{b}")
            } else {
                format!("single_{b}_{a}")
            };
            let mut seqs = Vec::with_capacity(per_pair);
            for k in 0..per_pair {
                let req = Request::Send(SendRequest {
                    client_msg_id: format!("{a}-{k}"),
                    conversation_id: conv.clone(),
                    message_type: 1,
                    content: bytes::Bytes::from(format!("{}", start.elapsed().as_micros())),
                    ..SendRequest::default()
                });
                seqs.push(ca.send(&req).await.unwrap());
            }
            for s in seqs {
                let r = ca.wait_reply(s, Duration::from_secs(60)).await.unwrap();
                assert!(
                    matches!(
                        r,
                        Reply::Send {
                            code: ErrorCode::Success,
                            ..
                        }
                    ),
                    "{r:?}"
                );
            }
        }));
    }
    let mut rtasks = Vec::new();
    for mut cb in receivers {
        rtasks.push(tokio::spawn(async move {
            let mut got = 0;
            while got < per_pair {
                match cb.next_event(Duration::from_secs(60)).await.unwrap() {
                    Some(Event::Message(_)) => got += 1,
                    Some(_) => {}
                    None => break,
                }
            }
            got
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let acked = start.elapsed();
    let mut delivered = 0;
    for t in rtasks {
        delivered += t.await.unwrap();
    }
    let all = start.elapsed();
    let total = pairs * per_pair;
    println!(
        "messages: {total} acked in {acked:?} ({:.0} msg/s acked, durable on SQLite); {delivered} delivered in {all:?} ({:.0} msg/s)",
        total as f64 / acked.as_secs_f64(),
        delivered as f64 / all.as_secs_f64()
    );
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}
