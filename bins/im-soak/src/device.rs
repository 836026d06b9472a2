//! One simulated device: a user's install on one platform, speaking TCP v2,
//! WebSocket v2 or WebSocket v1 (both on plain `/ws`, as the SDK does),
//! driven by its own seeded generator of operations. It behaves like the
//! SDK where the guarantees depend on it: it resends a send that got no
//! answer with the same client id, syncs after every login (v2 BATCH_SYNC
//! with per-conversation cursors that only sync replies move; v1 by inbox
//! cursor), and acknowledges every push once it has recorded it.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use im_client::{Client, ClientError};
use im_core::command::{Event, Reply, Request, SendRequest, SyncState};
use im_core::model::StoredMessage;
use im_core::{ErrorCode, Generation, UserId};
use im_service::JwtAuth;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use crate::history::{
    Attempt, Key, Outcome, RecallRec, ReceiptRec, Recorder, Seen, SendRec, Summary, Via,
};
use crate::http;
use crate::rig::{Rig, SECRET};

/// How long a device waits for a reply before it counts it unanswered.
const REPLY_WAIT: Duration = Duration::from_secs(3);
/// Attempts per send during the run (the SDK: the first and 3 resends).
const SEND_ATTEMPTS: usize = 4;
const HTTP_WAIT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    TcpV2,
    WsV2,
    WsV1,
}

impl Kind {
    fn v2(self) -> bool {
        self != Self::WsV1
    }
}

#[derive(Debug, Clone)]
pub struct Spec {
    pub index: usize,
    pub user: String,
    pub platform: String,
    pub kind: Kind,
    /// Sends some messages with a `send_time` years off.
    pub skewed: bool,
}

impl Spec {
    pub fn name(&self) -> String {
        format!("{}-{}", self.user, self.platform)
    }
}

/// A group as the generator believes it is (the server decides).
pub struct GroupModel {
    pub id: String,
    pub owner: String,
    pub members: std::sync::Mutex<HashSet<String>>,
}

/// What every actor shares.
pub struct World {
    pub rig: Arc<Rig>,
    pub rec: Arc<Recorder>,
    pub users: Vec<String>,
    pub groups: Vec<GroupModel>,
    pub auth: JwtAuth,
    /// Set when the run's traffic phase ends.
    pub stop: AtomicBool,
    /// Per device: the time (recorder ms) until which it reads nothing.
    pub paused_until: Vec<AtomicU64>,
}

impl World {
    pub fn new(rig: Arc<Rig>, rec: Arc<Recorder>, users: Vec<String>, devices: usize) -> Self {
        Self {
            rig,
            rec,
            users,
            groups: Vec::new(),
            auth: JwtAuth::new(SECRET.as_bytes(), false),
            stop: AtomicBool::new(false),
            paused_until: (0..devices).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    pub fn token(&self, user: &str, platform: &str) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(0))
            .unwrap_or(0);
        UserId::parse(user)
            .ok()
            .and_then(|u| self.auth.issue(&u, platform, now, 7 * 24 * 3600).ok())
            .unwrap_or_default()
    }

    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// A random node's addresses.
    pub fn node(&self, rng: &mut StdRng) -> crate::rig::Addrs {
        self.rig
            .addrs(rng.random_range(0..self.rig.node_count().max(1)))
    }
}

pub fn single(a: &str, b: &str) -> String {
    if a < b {
        format!("single_{a}_{b}")
    } else {
        format!("single_{b}_{a}")
    }
}

enum CallError {
    /// No reply within the wait; the connection is still open.
    Timeout,
    /// No connection, or it failed.
    Lost(String),
}

pub struct Device {
    spec: Spec,
    w: Arc<World>,
    rng: StdRng,
    conn: Option<Client>,
    token: String,
    /// Messages pushed on the current connection.
    pushed: HashSet<Key>,
    /// v2 cursors, moved by BATCH_SYNC replies only (as the SDK).
    cursors: BTreeMap<String, i64>,
    /// v1 inbox cursor (socket and HTTP sync share it).
    inbox: i64,
    next_cid: u64,
    /// Own acknowledged messages, newest last: recall candidates.
    own: Vec<(Key, String)>,
    /// Per conversation, the newest message from someone else: (seq, id).
    newest_in: BTreeMap<String, (i64, String)>,
    /// Sends still without an answer at the end of their attempts.
    unresolved: Vec<(Key, Request)>,
    /// What the device was doing (for the records of a violation).
    doing: &'static str,
}

impl Device {
    pub fn new(spec: Spec, w: Arc<World>, seed: u64) -> Self {
        let token = w.token(&spec.user, &spec.platform);
        let rng =
            StdRng::seed_from_u64(seed ^ (spec.index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        Self {
            spec,
            w,
            rng,
            conn: None,
            token,
            pushed: HashSet::new(),
            cursors: BTreeMap::new(),
            inbox: 0,
            next_cid: 0,
            own: Vec::new(),
            newest_in: BTreeMap::new(),
            unresolved: Vec::new(),
            doing: "starting",
        }
    }

    fn rec(&self) -> &Recorder {
        &self.w.rec
    }

    pub fn user(&self) -> &str {
        &self.spec.user
    }

    /// The traffic phase: operations until the world stops.
    pub async fn run(mut self) -> Self {
        while !self.w.stopping() {
            let until = self
                .w
                .paused_until
                .get(self.spec.index)
                .map_or(0, |p| p.load(Ordering::SeqCst));
            if self.rec().now() < until {
                // A slow reader: reads nothing, sends nothing.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            if self.conn.is_none() && !self.connect().await {
                continue;
            }
            let roll = self.rng.random_range(0..1000);
            match roll {
                0..350 => self.send_single().await,
                350..600 => self.send_group().await,
                600..640 => self.recall().await,
                640..720 => self.read_receipt().await,
                720..820 => self.sync().await,
                820..835 => self.reconnect(true).await,
                835..850 => self.reconnect(false).await,
                850..870 => self.offline().await,
                870..880 => self.kicking_login().await,
                880..886 => self.logout().await,
                _ => {}
            }
            self.doing = "idle";
            let pause = self.rng.random_range(20..200);
            self.drain(Duration::from_millis(pause)).await;
        }
        self
    }

    // ---- connection -------------------------------------------------------

    async fn connect(&mut self) -> bool {
        for attempt in 0..60u64 {
            let a = self.w.node(&mut self.rng);
            let c = match self.spec.kind {
                Kind::TcpV2 => Client::connect_tcp(a.tcp).await,
                Kind::WsV2 => Client::connect_ws(a.ws, "/ws", Generation::V2).await,
                Kind::WsV1 => Client::connect_ws(a.ws, "/ws", Generation::V1).await,
            };
            if let Ok(mut c) = c {
                c.set_timeout(Duration::from_secs(5));
                match c
                    .auth(&self.spec.user, &self.token, &self.spec.platform)
                    .await
                {
                    Ok(Reply::Auth {
                        code: ErrorCode::Success,
                        ..
                    }) => {
                        self.conn = Some(c);
                        self.pushed.clear();
                        self.rec().op("login");
                        self.catch_up().await;
                        return true;
                    }
                    Ok(Reply::Auth {
                        code: ErrorCode::AuthFailed | ErrorCode::TokenExpired,
                        ..
                    }) => {
                        // Logged out (token revoked): log in again.
                        self.token = self.w.token(&self.spec.user, &self.spec.platform);
                    }
                    _ => {}
                }
            }
            if self.w.stopping() && attempt > 10 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100 * (attempt + 1).min(10))).await;
        }
        false
    }

    /// What the SDK does after AUTH: v2 BATCH_SYNC from its cursors, v1
    /// sync by inbox cursor (socket or HTTP).
    async fn catch_up(&mut self) {
        if self.spec.kind.v2() {
            self.batch_sync().await;
        } else if self.rng.random_bool(0.5) {
            self.sync_inbox().await;
        } else {
            self.http_sync().await;
        }
    }

    async fn reconnect(&mut self, clean: bool) {
        self.rec().op(if clean {
            "reconnect_clean"
        } else {
            "reconnect_abrupt"
        });
        self.disconnect(clean).await;
        self.connect().await;
    }

    async fn disconnect(&mut self, clean: bool) {
        self.drain(Duration::ZERO).await;
        if let Some(c) = self.conn.take() {
            if clean {
                let _ = c.close().await;
            }
        }
    }

    /// Offline for a while, then back with a sync.
    async fn offline(&mut self) {
        self.rec().op("offline");
        let clean = self.rng.random_bool(0.5);
        self.disconnect(clean).await;
        let ms = self.rng.random_range(500..4000);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        self.connect().await;
    }

    /// A second login on the same platform: the old session gets KICK_OUT.
    async fn kicking_login(&mut self) {
        self.rec().op("kicking_login");
        let old = self.conn.take();
        self.connect().await;
        if let Some(mut old) = old {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
            while tokio::time::Instant::now() < deadline {
                match old.next_event(Duration::from_millis(200)).await {
                    Ok(Some(Event::KickOut { .. })) => {
                        self.rec().op("kicked_out");
                        break;
                    }
                    Ok(Some(e)) => self.on_event(e, false).await,
                    Ok(None) => {}
                    Err(_) => break,
                }
            }
        }
    }

    async fn logout(&mut self) {
        self.rec().op("logout");
        let a = self.w.node(&mut self.rng);
        let r = http::request(
            a.http,
            "POST",
            "/api/auth/logout",
            Some(&self.token),
            Some(&json!({})),
            HTTP_WAIT,
        )
        .await;
        if r.is_ok_and(|r| r.status == 200) {
            self.token = self.w.token(&self.spec.user, &self.spec.platform);
        }
        self.disconnect(false).await;
        self.connect().await;
    }

    /// Sends `req` and waits for its reply; events meanwhile are handled.
    async fn call(&mut self, req: &Request, wait: Duration) -> Result<Reply, CallError> {
        let Some(c) = self.conn.as_mut() else {
            return Err(CallError::Lost("not connected".into()));
        };
        let r = match c.send(req).await {
            Ok(seq) => c.wait_reply(seq, wait).await,
            Err(e) => Err(e),
        };
        let out = match r {
            Ok(reply) => Ok(reply),
            Err(ClientError::Timeout { .. }) => Err(CallError::Timeout),
            Err(e) => Err(CallError::Lost(e.to_string())),
        };
        if matches!(out, Err(CallError::Lost(_))) {
            // Keep what arrived before the connection failed.
            self.drain(Duration::ZERO).await;
            self.conn = None;
        } else {
            self.drain(Duration::ZERO).await;
        }
        out
    }

    /// Reads events for up to `wait` (queued ones at once).
    pub async fn drain(&mut self, wait: Duration) {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let Some(c) = self.conn.as_mut() else { return };
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match c.next_event(left).await {
                Ok(Some(e)) => self.on_event(e, true).await,
                Ok(None) => return,
                Err(_) => {
                    self.conn = None;
                    return;
                }
            }
        }
    }

    async fn on_event(&mut self, e: Event, current: bool) {
        match e {
            Event::Message(m) => {
                let key = key_of(&m);
                if current && !self.pushed.insert(key.clone()) {
                    self.rec().push_dup(self.spec.index, key, self.doing);
                }
                self.hold(&m, m.revoked.is_some(), Via::Push);
                self.rec().op("push");
                // Stored, then acknowledged (as the SDK).
                if current {
                    if let Some(c) = self.conn.as_mut() {
                        let _ = c
                            .send(&Request::Ack {
                                message_id: m.server_msg_id.clone(),
                                seq: m.seq,
                            })
                            .await;
                    }
                }
            }
            Event::Revoked {
                server_msg_id,
                client_msg_id,
                conversation_id,
                ..
            } => {
                self.rec().op("revoke_push");
                self.rec().revoked(
                    self.spec.index,
                    &conversation_id,
                    &server_msg_id,
                    &client_msg_id,
                );
            }
            Event::KickOut { .. } => self.rec().op("kicked_out"),
            Event::ReadReceipt { .. } => self.rec().op("receipt_push"),
            Event::Typing { .. } | Event::StatusChange(_) => {}
        }
    }

    fn hold(&mut self, m: &StoredMessage, revoked: bool, via: Via) {
        self.hold_as(m, revoked, via, false);
    }

    fn hold_as(&mut self, m: &StoredMessage, revoked: bool, via: Via, final_read: bool) {
        let key = key_of(m);
        // v1 names the viewer's own messages by client id.
        let smid = (m.server_msg_id != m.client_msg_id || key.sender != self.spec.user)
            .then(|| m.server_msg_id.clone());
        if key.sender != self.spec.user {
            let e = self
                .newest_in
                .entry(key.conv.clone())
                .or_insert((0, String::new()));
            if m.seq > e.0 {
                *e = (m.seq, m.server_msg_id.clone());
            }
        }
        self.rec().seen(
            self.spec.index,
            Seen {
                key,
                seq: m.seq,
                smid,
                content: String::from_utf8_lossy(&m.content).into_owned(),
                send_time: m.send_time,
                revoked,
            },
            via,
            final_read,
        );
    }

    // ---- sends -------------------------------------------------------------

    async fn send_single(&mut self) {
        let peers: Vec<&String> = self
            .w
            .users
            .iter()
            .filter(|u| **u != self.spec.user)
            .collect();
        if peers.is_empty() {
            return;
        }
        let Some(peer) = peers.choose(&mut self.rng).map(|p| (*p).clone()) else {
            return;
        };
        let conv = single(&self.spec.user, &peer);
        self.send(conv).await;
    }

    async fn send_group(&mut self) {
        // Mostly groups the user is in; sometimes one it is not (refused).
        let user = self.spec.user.clone();
        let mine: Vec<&GroupModel> = self
            .w
            .groups
            .iter()
            .filter(|g| g.members.lock().map(|m| m.contains(&user)).unwrap_or(false))
            .collect();
        let pick = if !mine.is_empty() && self.rng.random_bool(0.95) {
            mine.choose(&mut self.rng).map(|g| g.id.clone())
        } else {
            self.w.groups.choose(&mut self.rng).map(|g| g.id.clone())
        };
        if let Some(id) = pick {
            self.send(format!("group_{id}")).await;
        }
    }

    async fn send(&mut self, conv: String) {
        self.next_cid += 1;
        let cid = format!("{}-{}", self.spec.name(), self.next_cid);
        let key = Key {
            conv: conv.clone(),
            sender: self.spec.user.clone(),
            cid: cid.clone(),
        };
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(0))
            .unwrap_or(0);
        const YEARS_10: i64 = 10 * 365 * 24 * 3600 * 1000;
        let send_time = if self.spec.skewed && self.rng.random_bool(0.3) {
            self.rec().op("skewed_send");
            if self.rng.random_bool(0.5) {
                now_ms - YEARS_10
            } else {
                now_ms + YEARS_10
            }
        } else {
            now_ms
        };
        let content = format!("{cid}@{conv}");
        self.rec().new_send(SendRec {
            key: key.clone(),
            device: self.spec.index,
            content: content.clone(),
            send_time,
            attempts: Vec::new(),
        });
        self.rec().op("send");
        self.doing = "send";
        let req = Request::Send(SendRequest {
            client_msg_id: cid,
            conversation_id: conv,
            message_type: 1,
            content: Bytes::from(content),
            send_time,
            ..SendRequest::default()
        });
        if !self.attempt_until_answered(&key, &req, SEND_ATTEMPTS).await {
            self.unresolved.push((key, req));
        }
    }

    /// Up to `attempts` attempts; true once answered (acked or refused).
    async fn attempt_until_answered(&mut self, key: &Key, req: &Request, attempts: usize) -> bool {
        for i in 0..attempts {
            if i > 0 {
                self.rec().op("resend");
            }
            if self.conn.is_none() && !self.connect().await {
                continue;
            }
            let start = self.rec().now();
            let r = self.call(req, REPLY_WAIT).await;
            let end = self.rec().now();
            let outcome = match r {
                Ok(Reply::Send {
                    code: ErrorCode::Success,
                    server_msg_id,
                    seq,
                    ..
                }) => Outcome::Acked {
                    smid: server_msg_id,
                    seq,
                },
                Ok(Reply::Send { code, msg, .. }) | Ok(Reply::Error { code, msg, .. }) => {
                    Outcome::Refused {
                        code: code as i32,
                        msg,
                    }
                }
                Ok(other) => Outcome::Lost(format!("unexpected reply {other:?}")),
                Err(CallError::Timeout) => Outcome::NoReply,
                Err(CallError::Lost(e)) => Outcome::Lost(e),
            };
            let done = !matches!(outcome, Outcome::NoReply | Outcome::Lost(_));
            if let Outcome::Acked { smid, seq } = &outcome {
                let (smid, seq) = (smid.clone(), *seq);
                self.rec().op("acked");
                self.own_acked(key, req, &smid, seq);
                self.rec().attempt(
                    key,
                    Attempt {
                        start,
                        end,
                        outcome,
                    },
                );
                // Now and then the answer "got lost": resend anyway; the
                // server must answer with the same message.
                if self.rng.random_bool(0.05) {
                    self.rec().op("resend_after_ack");
                    let start = self.rec().now();
                    if let Ok(Reply::Send {
                        code,
                        msg,
                        server_msg_id,
                        seq,
                        ..
                    }) = self.call(req, REPLY_WAIT).await
                    {
                        let outcome = if code == ErrorCode::Success {
                            Outcome::Acked {
                                smid: server_msg_id,
                                seq,
                            }
                        } else {
                            Outcome::Refused {
                                code: code as i32,
                                msg,
                            }
                        };
                        let end = self.rec().now();
                        self.rec().attempt(
                            key,
                            Attempt {
                                start,
                                end,
                                outcome,
                            },
                        );
                    }
                }
                return true;
            }
            if let Outcome::Refused { .. } = &outcome {
                self.rec().op("refused");
            }
            self.rec().attempt(
                key,
                Attempt {
                    start,
                    end,
                    outcome,
                },
            );
            if done {
                return true;
            }
        }
        false
    }

    fn own_acked(&mut self, key: &Key, req: &Request, smid: &str, seq: i64) {
        let Request::Send(s) = req else { return };
        self.rec().seen(
            self.spec.index,
            Seen {
                key: key.clone(),
                seq,
                // v1 acknowledges by client id only.
                smid: (!smid.is_empty()).then(|| smid.to_owned()),
                content: String::from_utf8_lossy(&s.content).into_owned(),
                send_time: s.send_time,
                revoked: false,
            },
            Via::Own,
            false,
        );
        self.own.push((key.clone(), smid.to_owned()));
        if self.own.len() > 50 {
            self.own.remove(0);
        }
    }

    /// At the end: resend what never got an answer, as the SDK does at
    /// its next connect.
    pub async fn resolve(&mut self) {
        for (key, req) in std::mem::take(&mut self.unresolved) {
            if !self.attempt_until_answered(&key, &req, 3).await {
                self.rec().op("unresolved");
            }
        }
    }

    // ---- recall, receipts -------------------------------------------------

    async fn recall(&mut self) {
        if self.own.is_empty() {
            return;
        }
        let i = self.rng.random_range(0..self.own.len());
        let (key, smid) = self.own.swap_remove(i);
        self.rec().op("recall");
        self.doing = "recall";
        // v1 names its own message by client id.
        let message_id = if self.spec.kind.v2() {
            smid
        } else {
            key.cid.clone()
        };
        let start = self.rec().now();
        let r = self
            .call(
                &Request::Revoke {
                    message_id,
                    conversation_id: key.conv.clone(),
                },
                REPLY_WAIT,
            )
            .await;
        let code = match r {
            Ok(Reply::Revoke { code, .. }) | Ok(Reply::Error { code, .. }) => Some(code as i32),
            _ => None,
        };
        let end = self.rec().now();
        self.rec().recall(RecallRec {
            key,
            start,
            end,
            code,
        });
    }

    async fn read_receipt(&mut self) {
        if self.newest_in.is_empty() {
            return;
        }
        let i = self.rng.random_range(0..self.newest_in.len());
        let Some((conv, (seq, id))) = self
            .newest_in
            .iter()
            .nth(i)
            .map(|(c, v)| (c.clone(), v.clone()))
        else {
            return;
        };
        self.rec().op("read_receipt");
        self.doing = "read_receipt";
        let start = self.rec().now();
        let r = self
            .call(
                &Request::ReadReceipt {
                    message_ids: vec![id],
                    conversation_id: conv.clone(),
                },
                REPLY_WAIT,
            )
            .await;
        let code = match r {
            Ok(Reply::ReadReceipt { code, .. }) | Ok(Reply::Error { code, .. }) => {
                Some(code as i32)
            }
            _ => None,
        };
        let end = self.rec().now();
        self.rec().receipt(ReceiptRec {
            user: self.spec.user.clone(),
            conv,
            seq,
            start,
            end,
            code,
        });
    }

    // ---- sync --------------------------------------------------------------

    async fn sync(&mut self) {
        let how = self.rng.random_range(0..3);
        match (self.spec.kind.v2(), how) {
            (true, 0) => self.batch_sync().await,
            (true, 1) => self.sync_range_one().await,
            (false, 0 | 1) => self.sync_inbox().await,
            _ => self.http_sync().await,
        }
    }

    /// BATCH_SYNC with the cursors until a reply carries nothing.
    pub async fn batch_sync(&mut self) {
        self.rec().op("batch_sync");
        self.doing = "batch_sync";
        // What already arrived is handled (and acknowledged) first, as the
        // SDK's receive path does independently of its sync requests.
        self.drain(Duration::ZERO).await;
        for _ in 0..200 {
            let req = Request::BatchSync {
                states: self
                    .cursors
                    .iter()
                    .map(|(c, s)| SyncState {
                        conversation_id: c.clone(),
                        last_seq: *s,
                    })
                    .collect(),
                max_per_conversation: self.rng.random_range(5..=100),
            };
            let Ok(Reply::BatchSync {
                code: ErrorCode::Success,
                conversations,
                total,
                ..
            }) = self.call(&req, Duration::from_secs(10)).await
            else {
                return;
            };
            for conv in conversations {
                for v in &conv.messages {
                    self.hold(&v.message, v.message.revoked.is_some(), Via::BatchSync);
                }
                let cur = self.cursors.entry(conv.conversation_id).or_insert(0);
                *cur = (*cur).max(conv.synced_seq);
            }
            if total == 0 {
                return;
            }
        }
    }

    async fn sync_range_one(&mut self) {
        if self.cursors.is_empty() {
            return;
        }
        let i = self.rng.random_range(0..self.cursors.len());
        let Some((conv, head)) = self.cursors.iter().nth(i).map(|(c, s)| (c.clone(), *s)) else {
            return;
        };
        self.rec().op("sync_range");
        self.doing = "sync_range";
        let from = self.rng.random_range(1..=head.max(1));
        self.sync_range(&conv, from, head.max(1) + 50, false).await;
    }

    /// SYNC_RANGE `from..=to`, following `has_more`. False on failure.
    async fn sync_range(&mut self, conv: &str, from: i64, to: i64, final_read: bool) -> bool {
        let mut start = from;
        for page in 0..10_000 {
            let req = Request::SyncRange {
                request_id: format!("r{page}"),
                conversation_id: conv.to_owned(),
                start_seq: start,
                end_seq: to,
                count: 100,
            };
            let Ok(Reply::SyncRange {
                code: ErrorCode::Success,
                messages,
                end_seq,
                has_more,
                ..
            }) = self.call(&req, Duration::from_secs(10)).await
            else {
                return false;
            };
            for v in &messages {
                self.hold_as(
                    &v.message,
                    v.message.revoked.is_some(),
                    Via::SyncRange,
                    final_read,
                );
            }
            if !has_more {
                return true;
            }
            start = end_seq + 1;
        }
        false
    }

    /// v1 SYNC_REQ from the inbox cursor while `has_more`.
    pub async fn sync_inbox(&mut self) {
        self.rec().op("sync_inbox");
        self.doing = "sync_inbox";
        for _ in 0..10_000 {
            let req = Request::SyncInbox {
                min_seq: self.inbox,
                max_seq: 0,
                limit: self.rng.random_range(10..=100),
            };
            let Ok(Reply::SyncInbox {
                code: ErrorCode::Success,
                messages,
                server_max_seq,
                has_more,
                ..
            }) = self.call(&req, Duration::from_secs(10)).await
            else {
                return;
            };
            for v in &messages {
                self.hold(&v.message, v.message.revoked.is_some(), Via::SyncInbox);
            }
            self.inbox = self.inbox.max(server_max_seq);
            if !has_more {
                return;
            }
        }
    }

    /// `POST /api/v1/messages/sync` from the inbox cursor while `hasMore`.
    pub async fn http_sync(&mut self) {
        self.rec().op("http_sync");
        for _ in 0..10_000 {
            let a = self.w.node(&mut self.rng);
            let body = json!({"lastSeq": self.inbox, "count": self.rng.random_range(10..=100)});
            let Ok(r) = http::request(
                a.http,
                "POST",
                "/api/v1/messages/sync",
                Some(&self.token),
                Some(&body),
                HTTP_WAIT,
            )
            .await
            else {
                return;
            };
            let Ok(data) = r.data() else { return };
            let mut msgs = Vec::new();
            for m in data["messages"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
            {
                if let Some(m) = from_dto(m) {
                    msgs.push(m);
                }
            }
            for (m, revoked) in &msgs {
                self.hold(m, *revoked, Via::HttpSync);
            }
            self.inbox = self.inbox.max(data["maxSeq"].as_i64().unwrap_or(0));
            if !data["hasMore"].as_bool().unwrap_or(false) {
                return;
            }
        }
    }

    // ---- the end -----------------------------------------------------------

    /// After the run: reconnect, catch up as after any login, then read
    /// every conversation of the user in full (the final view) and record
    /// the user's conversation list.
    pub async fn finish(&mut self, list_owner: bool) -> anyhow::Result<()> {
        self.disconnect(true).await;
        if !self.connect().await {
            anyhow::bail!("{}: cannot connect for the final sync", self.spec.name());
        }
        // Everything streamed after the catch-up's reply.
        self.drain(Duration::from_millis(500)).await;
        if self.spec.kind.v2() {
            // Repeat until nothing is left (the stream may have stopped).
            self.batch_sync().await;
        } else {
            self.sync_inbox().await;
            self.http_sync().await;
        }
        self.drain(Duration::from_millis(200)).await;
        let list = self.conversations().await?;
        for c in &list {
            if c.max_seq > 0 && !self.full_read(&c.conv, c.max_seq).await {
                anyhow::bail!("{}: final read of {} failed", self.spec.name(), c.conv);
            }
        }
        if list_owner {
            // One conversation list per user: the unread counts.
            for c in list {
                self.rec().summary(c);
            }
        }
        Ok(())
    }

    /// The user's 1:1 and group conversations, from `GET /api/conversations`.
    async fn conversations(&mut self) -> anyhow::Result<Vec<Summary>> {
        let a = self.w.node(&mut self.rng);
        let r = http::request(
            a.http,
            "GET",
            "/api/conversations?limit=500",
            Some(&self.token),
            None,
            HTTP_WAIT,
        )
        .await?;
        Ok(r.data()?
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .map(|c| Summary {
                user: self.spec.user.clone(),
                conv: c["conversationID"].as_str().unwrap_or_default().to_owned(),
                unread: c["unreadCount"].as_i64().unwrap_or(-1),
                read_seq: c["readSeq"].as_i64().unwrap_or(-1),
                max_seq: c["maxSeq"].as_i64().unwrap_or(0),
            })
            .filter(|c| c.conv.starts_with("single_") || c.conv.starts_with("group_"))
            .collect())
    }

    /// Every message of `conv` up to `head`: SYNC_RANGE on v2, the HTTP
    /// range route otherwise.
    async fn full_read(&mut self, conv: &str, head: i64) -> bool {
        if self.spec.kind.v2() {
            return self.sync_range(conv, 1, head, true).await;
        }
        let mut start = 1;
        while start <= head {
            let a = self.w.node(&mut self.rng);
            let body =
                json!({"conversation_id": conv, "start_seq": start, "end_seq": head, "count": 100});
            let Ok(r) = http::request(
                a.http,
                "POST",
                "/messages/sync_range",
                Some(&self.token),
                Some(&body),
                HTTP_WAIT,
            )
            .await
            else {
                return false;
            };
            let Ok(data) = r.data() else { return false };
            let msgs: Vec<(StoredMessage, bool)> = data["messages"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .filter_map(from_dto)
                .collect();
            let Some(last) = msgs.iter().map(|(m, _)| m.seq).max() else {
                return true;
            };
            for (m, revoked) in &msgs {
                self.hold_as(m, *revoked, Via::HttpSync, true);
            }
            start = last + 1;
        }
        true
    }
}

fn key_of(m: &StoredMessage) -> Key {
    Key {
        conv: m.conversation_id.clone(),
        sender: m.sender_id.clone(),
        cid: m.client_msg_id.clone(),
    }
}

/// A message of the HTTP API (`MessageDto`), and whether it is recalled.
fn from_dto(m: &Value) -> Option<(StoredMessage, bool)> {
    let s = |k: &str| m[k].as_str().unwrap_or_default().to_owned();
    Some((
        StoredMessage {
            server_msg_id: s("serverMsgID"),
            client_msg_id: s("clientMsgID"),
            conversation_id: s("conversationID"),
            conversation_type: im_core::ConversationType::Single,
            sender_id: s("senderID"),
            receiver_id: s("receiverID"),
            group_id: s("groupID"),
            message_type: i32::try_from(m["messageType"].as_i64()?).ok()?,
            content: Bytes::from(s("content")),
            send_time: m["sendTime"].as_i64()?,
            server_time: m["serverTime"].as_i64()?,
            seq: m["seq"].as_i64()?,
            extra: String::new(),
            revoked: None,
        },
        m["isRevoked"].as_bool().unwrap_or(false),
    ))
}
