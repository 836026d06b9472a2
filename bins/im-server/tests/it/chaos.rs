//! Chaos: the database goes away under load — every connection to it cut
//! and new ones refused, as a restart looks from the server — and comes
//! back. The sender keeps sending and resends what got no reply, like the
//! SDK (a send the store could not take gets no SEND_MSG_RSP, so the SDK
//! resends it instead of marking it failed; see sdk_send.rs).
//! Counted: sends tried, unanswered, acknowledged, stored, pushed. Nothing
//! acknowledged is lost; nothing is stored or pushed twice.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use im_client::{Client, ClientError};
use im_core::ErrorCode;
use im_core::command::{Event, Reply, Request};
use std::sync::Mutex;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

use im_repository::scratch::{self, Gate, ScratchDb};

use crate::durability::{Backend, Proc, all_messages, conv, login, send_req};

/// A TCP proxy to a database that can drop every connection and refuse
/// new ones until restored.
struct Cutter {
    addr: SocketAddr,
    up: Arc<AtomicBool>,
    links: Arc<Mutex<Vec<AbortHandle>>>,
    accept: AbortHandle,
}

impl Cutter {
    async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let up = Arc::new(AtomicBool::new(true));
        let links: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let (up2, links2) = (Arc::clone(&up), Arc::clone(&links));
        let accept = tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    continue;
                };
                if !up2.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let link = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                links2.lock().unwrap().push(link.abort_handle());
            }
        })
        .abort_handle();
        Self {
            addr,
            up,
            links,
            accept,
        }
    }

    /// Drops every open connection and refuses new ones.
    fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for l in self.links.lock().unwrap().drain(..) {
            l.abort();
        }
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

impl Drop for Cutter {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

/// How long the sender waits for a SEND_MSG_RSP before it counts the send
/// as unanswered and resends it later (the SDK waits 5 s).
const NO_REPLY_AFTER: Duration = Duration::from_secs(3);

/// Sends `req` once: its (server id, seq) when acknowledged, `None` when no
/// reply came. An error reply is a failure of the test: a store outage is
/// transient, and the SDK would mark the message failed for good.
async fn send_once(c: &mut Client, req: Request) -> Option<(String, i64)> {
    let seq = c.send(&req).await.unwrap();
    match c.wait_reply(seq, NO_REPLY_AFTER).await {
        Ok(Reply::Send {
            code: ErrorCode::Success,
            server_msg_id,
            seq,
            ..
        }) => Some((server_msg_id, seq)),
        Err(ClientError::Timeout { .. }) => None,
        other => panic!("send {req:?}: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outage_under_load_loses_and_duplicates_nothing() {
    outage_under_load(im_repository::Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_outage_under_load_loses_and_duplicates_nothing() {
    outage_under_load(im_repository::Backend::Mysql).await;
}

/// A fresh database of `backend` on the server `IM_TEST_*_URL` names,
/// reached through a [`Cutter`]; `None` (reason printed) when the backend
/// is not configured and not required.
async fn scratch_behind_cutter(
    backend: im_repository::Backend,
) -> Option<(ScratchDb, Cutter, String)> {
    let admin = match scratch::gate(backend).unwrap() {
        Gate::Run(url) => url,
        Gate::Skip(why) => {
            eprintln!("skipping: {why}");
            return None;
        }
    };
    let db = ScratchDb::create(&admin).await.unwrap();
    // scheme://user@host:port/db -> the proxy in place of host:port.
    let rest = db.url().split_once("://").unwrap().1;
    let (userinfo_host, path) = rest.split_once('/').unwrap();
    let host = userinfo_host.rsplit('@').next().unwrap();
    let upstream: SocketAddr = tokio::net::lookup_host(host).await.unwrap().next().unwrap();
    let cutter = Cutter::start(upstream).await;
    let url = db.url().replacen(
        &format!("{host}/{path}"),
        &format!("{}/{path}", cutter.addr),
        1,
    );
    assert_ne!(url, db.url());
    // mysql_async moves a connection to 127.0.0.1 over to the server's Unix
    // socket when it can (`prefer_socket`), which would bypass the proxy.
    let url = match backend {
        im_repository::Backend::Mysql => format!("{url}?prefer_socket=false"),
        _ => url,
    };
    Some((db, cutter, url))
}

async fn outage_under_load(backend: im_repository::Backend) {
    let Some((db, cutter, url)) = scratch_behind_cutter(backend).await else {
        return;
    };
    let kind = match backend {
        im_repository::Backend::Mysql => "mysql",
        _ => "postgres",
    };
    let dir = tempfile::tempdir().unwrap();
    let server = Proc::start(
        &Backend {
            name: "database-outage",
            env: vec![
                ("IM_DATABASE__TYPE".into(), kind.into()),
                ("IM_DATABASE__URL".into(), url),
                // The receiver sends no heartbeats while it waits out the run.
                ("IM_SERVER__IDLE_TIMEOUT".into(), "10m".into()),
            ],
        },
        &dir.path().join("server.log"),
    )
    .await;

    let conversation = conv("chaos_rx", "chaos_tx");
    let mut receiver = login(server.tcp, "chaos_rx").await;
    let mut sender = login(server.tcp, "chaos_tx").await;

    // Send one at a time; cut the database after 100 acks, restore it
    // after 40 unanswered sends (or 3 s), go on to 400 messages, then
    // resend every unanswered one until it is acknowledged.
    const TOTAL: usize = 400;
    let mut acked: HashMap<String, (String, i64)> = HashMap::new();
    let mut refused: Vec<String> = Vec::new();
    let mut tries = 0usize;
    let mut cut_at = None;
    let mut restored = false;
    for i in 0..TOTAL {
        let cid = format!("chaos-{i}");
        tries += 1;
        match send_once(&mut sender, send_req(&cid, &conversation)).await {
            Some((server_msg_id, seq)) => {
                acked.insert(cid, (server_msg_id, seq));
            }
            None => refused.push(cid),
        }
        if cut_at.is_none() && acked.len() == 100 {
            cutter.cut();
            cut_at = Some(std::time::Instant::now());
        }
        if let Some(t) = cut_at {
            if !restored && (refused.len() >= 40 || t.elapsed() > Duration::from_secs(3)) {
                cutter.restore();
                restored = true;
            }
        }
    }
    assert!(restored, "the outage never started");
    assert!(
        !refused.is_empty(),
        "every send was answered during the outage: the cut did nothing"
    );
    let refused_during_outage = refused.len();
    // The SDK resends what failed, with the same client id.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while let Some(cid) = refused.pop() {
        assert!(
            std::time::Instant::now() < deadline,
            "{cid} never accepted after the database came back"
        );
        tries += 1;
        match send_once(&mut sender, send_req(&cid, &conversation)).await {
            Some((server_msg_id, seq)) => {
                acked.insert(cid, (server_msg_id, seq));
            }
            None => refused.insert(0, cid),
        }
    }
    assert_eq!(acked.len(), TOTAL);

    // Stored: every message once, gapless, as acknowledged.
    let stored = all_messages(&mut sender, &conversation).await;
    assert_eq!(
        stored.iter().map(|m| m.seq).collect::<Vec<_>>(),
        (1..=TOTAL as i64).collect::<Vec<_>>(),
        "seqs are gapless from 1"
    );
    let mut ids = HashSet::new();
    for m in &stored {
        assert!(
            ids.insert(m.client_msg_id.clone()),
            "{} stored twice",
            m.client_msg_id
        );
        assert_eq!(
            acked.get(&m.client_msg_id),
            Some(&(m.server_msg_id.clone(), m.seq)),
            "stored message differs from its acknowledgement"
        );
    }

    // Pushed: never twice, never anything not stored.
    let mut pushed = HashSet::new();
    while let Some(e) = receiver.next_event(crate::QUIET).await.unwrap() {
        if let Event::Message(m) = e {
            assert!(
                pushed.insert(m.server_msg_id.clone()),
                "{} pushed twice",
                m.client_msg_id
            );
            assert!(ids.contains(&m.client_msg_id), "pushed but not stored");
        }
    }
    // A send whose commit landed but whose reply was lost to the cut is
    // acknowledged by the retry as a duplicate and not pushed again: the
    // receiver finds it by sync. Everything else was pushed.
    assert!(
        pushed.len() + refused_during_outage >= TOTAL,
        "pushed {} of {TOTAL}",
        pushed.len()
    );
    eprintln!(
        "{kind} outage: {tries} sends tried, {refused_during_outage} unanswered during the outage, \
         {} acknowledged, {} stored, {} pushed",
        acked.len(),
        stored.len(),
        pushed.len()
    );
    server.stop();
    drop(cutter);
    db.drop_database().await.unwrap();
}
