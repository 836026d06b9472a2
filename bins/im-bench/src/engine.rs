//! The traffic engine: one task per connection, released together by a
//! [`Plan`] (steps with start/end instants and a count bound per sender),
//! shared atomic counters and HdrHistograms per step.
//!
//! * Open loop: a paced sender sends message `k` of a step at
//!   `start + offset + k * period`, whatever the replies; the payload carries
//!   that *intended* time, so a sender that falls behind does not hide the
//!   delay (no coordinated omission). Past the in-flight cap a due message is
//!   skipped and counted.
//! * Window mode (durable throughput): keep up to `w` sends unacknowledged.
//! * Every connection task heartbeats (HEARTBEAT_REQ / NATS PING) so the
//!   server's idle timeout never closes a receiver or an idle connection,
//!   and answers WebSocket and NATS pings.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use im_protocol::pb::v2 as pb;
use parking_lot::Mutex;
use prost::Message;
use tokio::sync::{Semaphore, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::sleep_until;

use crate::client::{
    CMD_BATCH, CMD_HEARTBEAT_REQ, CMD_MSG_ACK, CMD_PUSH, CMD_SEND_REQ, CMD_SEND_RSP,
};
use crate::wire::{Conn, In, NatsOp};

/// Heartbeat period of every connection (server idle timeout is 90 s).
const HEARTBEAT: Duration = Duration::from_secs(20);
/// Latencies are recorded in microseconds, 1 µs ..= 10 min, 3 digits.
const HIST_MAX_US: u64 = 600_000_000;

static EPOCH: OnceLock<Instant> = OnceLock::new();

/// The process-wide reference instant of payload timestamps.
pub fn epoch() -> Instant {
    *EPOCH.get_or_init(Instant::now)
}

fn ns(t: Instant) -> u64 {
    u64::try_from(t.saturating_duration_since(epoch()).as_nanos()).unwrap_or(u64::MAX)
}

/// An empty latency histogram (µs).
#[allow(clippy::expect_used)] // constant, valid bounds (see the `histogram_bounds` test)
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIST_MAX_US, 3).expect("valid histogram bounds")
}

/// Counters and latencies of one step.
pub struct StepStats {
    pub sent: AtomicU64,
    pub skipped: AtomicU64,
    pub acked_ok: AtomicU64,
    pub acked_err: AtomicU64,
    pub delivered: AtomicU64,
    /// Send -> SEND_MSG_RSP, µs.
    pub ack: Mutex<Histogram<u64>>,
    /// Send (intended time) -> push received, µs.
    pub e2e: Mutex<Histogram<u64>>,
}

impl StepStats {
    fn new() -> Self {
        Self {
            sent: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            acked_ok: AtomicU64::new(0),
            acked_err: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            ack: Mutex::new(histogram()),
            e2e: Mutex::new(histogram()),
        }
    }
}

/// Everything the connection tasks count.
pub struct Stats {
    pub steps: Vec<StepStats>,
    /// Connections that failed or were closed by the server during the run.
    pub conn_errors: AtomicU64,
    pub first_error: Mutex<Option<String>>,
    /// Non-zero `error_code`s of SEND_MSG_RSP, by code.
    pub error_codes: Mutex<BTreeMap<i32, u64>>,
    /// Pushes whose payload carried no bench timestamp.
    pub foreign: AtomicU64,
}

impl Stats {
    pub fn new(steps: usize) -> Arc<Self> {
        Arc::new(Self {
            steps: (0..steps).map(|_| StepStats::new()).collect(),
            conn_errors: AtomicU64::new(0),
            first_error: Mutex::new(None),
            error_codes: Mutex::new(BTreeMap::new()),
            foreign: AtomicU64::new(0),
        })
    }

    fn error(&self, what: String) {
        self.conn_errors.fetch_add(1, Relaxed);
        let mut first = self.first_error.lock();
        if first.is_none() {
            *first = Some(what);
        }
    }
}

/// One step of a plan.
#[derive(Debug, Clone)]
pub struct Step {
    pub start: Instant,
    pub end: Instant,
    /// Most messages one sender sends in this step.
    pub per_sender: u64,
    /// Interval between a paced sender's messages.
    pub period: Duration,
}

#[derive(Debug, Clone, Copy)]
pub enum Mode {
    Paced,
    Window(usize),
}

/// What the connection tasks do once released.
pub struct Plan {
    pub steps: Vec<Step>,
    /// Everything stops here (last step end + drain).
    pub end: Instant,
    pub mode: Mode,
    /// Payload bytes per message (timestamp + padding).
    pub size: usize,
    /// Paced mode: most unacknowledged sends per connection.
    pub inflight_cap: usize,
    /// Receivers send MSG_ACK for every push, as the SDK does.
    pub ack_pushes: bool,
    pub stats: Arc<Stats>,
}

/// Builds consecutive steps: `rates` are per-sender msgs/s (0 = window mode).
pub fn steps(t0: Instant, rates: &[f64], dur: Duration, gap: Duration) -> Vec<Step> {
    let mut out = Vec::with_capacity(rates.len());
    let mut at = t0;
    for &r in rates {
        let (per_sender, period) = if r > 0.0 {
            let n = (r * dur.as_secs_f64()).floor() as u64;
            (n, Duration::from_secs_f64(1.0 / r))
        } else {
            (u64::MAX, Duration::ZERO)
        };
        out.push(Step {
            start: at,
            end: at + dur,
            per_sender,
            period,
        });
        at += dur + gap;
    }
    out
}

/// What a connection does.
#[derive(Debug, Clone)]
pub enum Role {
    /// Holds the connection (heartbeats only).
    Idle,
    /// Counts pushes / NATS messages and their latency.
    Receiver,
    /// Sends SEND_MSG_REQ on `conv`.
    Im {
        idx: usize,
        of: usize,
        user: String,
        conv: String,
        receiver: String,
        run: String,
    },
    /// Publishes on `subject`.
    Nats {
        idx: usize,
        of: usize,
        subject: String,
    },
}

/// The signal that releases all tasks; dropping its sender ends idle tasks.
pub type Start = watch::Receiver<Option<Arc<Plan>>>;

struct Task {
    role: Role,
    plan: Option<Arc<Plan>>,
    /// sequence -> (intended send time ns, step)
    pending: HashMap<u32, (u64, usize)>,
    next_seq: u32,
    hb: Instant,
}

impl Task {
    fn seq(&mut self) -> u32 {
        // 1 was the AUTH_REQ; 0 marks pushes.
        self.next_seq = self.next_seq.checked_add(1).unwrap_or(2);
        self.next_seq
    }

    fn heartbeat(&mut self, conn: &mut Conn) {
        match conn.kind {
            crate::wire::Kind::NatsWs => conn.queue_nats(b"PING\r\n"),
            _ => {
                let seq = self.seq();
                conn.queue_im(CMD_HEARTBEAT_REQ, seq, &[]);
            }
        }
        self.hb = Instant::now() + HEARTBEAT;
    }

    /// Files one inbound item; `false` when the connection is over.
    fn on(&mut self, item: In, conn: &mut Conn) -> bool {
        match item {
            In::Closed => {
                if let Some(p) = &self.plan {
                    p.stats.error("connection closed by the server".to_owned());
                }
                false
            }
            In::WsPing(p) => {
                conn.queue_pong(&p);
                true
            }
            In::Nats(NatsOp::Ping) => {
                conn.queue_nats(b"PONG\r\n");
                true
            }
            In::Nats(NatsOp::Msg { payload }) => {
                self.delivered(&payload);
                true
            }
            In::Nats(NatsOp::Err(e)) => {
                if let Some(p) = &self.plan {
                    p.stats.error(format!("nats: {e}"));
                }
                true
            }
            In::Nats(_) => true,
            In::Im(f) => {
                match f.command {
                    CMD_SEND_RSP => self.acked(f.sequence, &f.body),
                    CMD_PUSH => {
                        if let Ok(p) = pb::PushMessage::decode(f.body) {
                            self.push(p, conn);
                        }
                    }
                    CMD_BATCH => {
                        if let Ok(b) = pb::BatchMessages::decode(f.body) {
                            for p in b.messages {
                                self.push(p, conn);
                            }
                        }
                    }
                    _ => {}
                }
                true
            }
        }
    }

    fn push(&mut self, p: pb::PushMessage, conn: &mut Conn) {
        let Some(m) = p.message else { return };
        self.delivered(m.content.as_ref());
        if self.plan.as_ref().is_some_and(|p| p.ack_pushes) && !m.server_msg_id.is_empty() {
            let body = pb::MessageAck {
                server_msg_id: m.server_msg_id,
                seq: 0,
            }
            .encode_to_vec();
            let seq = self.seq();
            conn.queue_im(CMD_MSG_ACK, seq, &body);
        }
    }

    fn delivered(&mut self, payload: &[u8]) {
        let Some(plan) = &self.plan else { return };
        let now = ns(Instant::now());
        match parse_payload(payload).and_then(|(ts, step)| Some((ts, plan.stats.steps.get(step)?)))
        {
            Some((ts, s)) => {
                s.delivered.fetch_add(1, Relaxed);
                let _ = s
                    .e2e
                    .lock()
                    .record((now.saturating_sub(ts) / 1000).clamp(1, HIST_MAX_US));
            }
            None => {
                plan.stats.foreign.fetch_add(1, Relaxed);
            }
        }
    }

    fn acked(&mut self, seq: u32, body: &[u8]) {
        let Some(plan) = &self.plan else { return };
        let Some((ts, step)) = self.pending.remove(&seq) else {
            return;
        };
        let Some(s) = plan.stats.steps.get(step) else {
            return;
        };
        let now = ns(Instant::now());
        let _ = s
            .ack
            .lock()
            .record((now.saturating_sub(ts) / 1000).clamp(1, HIST_MAX_US));
        match pb::SendMessageResponse::decode(body) {
            Ok(r) if r.error_code == 0 => {
                s.acked_ok.fetch_add(1, Relaxed);
            }
            Ok(r) => {
                s.acked_err.fetch_add(1, Relaxed);
                *plan
                    .stats
                    .error_codes
                    .lock()
                    .entry(r.error_code)
                    .or_insert(0) += 1;
            }
            Err(_) => {
                s.acked_err.fetch_add(1, Relaxed);
                *plan.stats.error_codes.lock().entry(-1).or_insert(0) += 1;
            }
        }
    }

    /// Queues message `k` of `step`, stamped with `due`.
    fn send(&mut self, conn: &mut Conn, due: Instant, step: usize, k: u64) {
        let Some(plan) = self.plan.clone() else {
            return;
        };
        let ts = ns(due);
        let mut content = format!("{ts}:{step}:").into_bytes();
        if content.len() < plan.size {
            content.resize(plan.size, b'x');
        }
        match &self.role {
            Role::Im {
                idx,
                user,
                conv,
                receiver,
                run,
                ..
            } => {
                let msg = pb::MessageInfo {
                    client_msg_id: format!("{run}-{idx}-{step}-{k}"),
                    conversation_id: conv.clone(),
                    sender_id: user.clone(),
                    receiver_id: receiver.clone(),
                    message_type: 1,
                    content: content.into(),
                    send_time: unix_ms(),
                    ..Default::default()
                };
                let body = pb::SendMessageRequest { message: Some(msg) }.encode_to_vec();
                let seq = self.seq();
                conn.queue_im(CMD_SEND_REQ, seq, &body);
                self.pending.insert(seq, (ts, step));
            }
            Role::Nats { subject, .. } => {
                let mut text = format!("PUB {subject} {}\r\n", content.len()).into_bytes();
                text.extend_from_slice(&content);
                text.extend_from_slice(b"\r\n");
                conn.queue_nats(&text);
            }
            Role::Idle | Role::Receiver => return,
        }
        if let Some(s) = plan.stats.steps.get(step) {
            s.sent.fetch_add(1, Relaxed);
        }
    }

    /// Waits for one inbound item (then files everything already buffered)
    /// or for `until`, heartbeating when due. `false`: connection over.
    async fn pump_once(&mut self, conn: &mut Conn, until: Instant) -> bool {
        let alive = tokio::select! {
            biased;
            () = sleep_until(until.into()) => true,
            () = sleep_until(self.hb.into()) => {
                self.heartbeat(conn);
                true
            }
            item = conn.read() => match item {
                Ok(item) => {
                    let mut alive = self.on(item, conn);
                    // Everything already decoded-able, without new timers.
                    while alive {
                        match conn.try_next() {
                            Ok(Some(item)) => alive = self.on(item, conn),
                            Ok(None) => break,
                            Err(e) => {
                                self.fail(&e);
                                alive = false;
                            }
                        }
                    }
                    alive
                }
                Err(e) => {
                    self.fail(&e);
                    false
                }
            },
        };
        if alive && conn.has_queued() {
            if let Err(e) = conn.flush().await {
                self.fail(&e);
                return false;
            }
        }
        alive
    }

    async fn pump_until(&mut self, conn: &mut Conn, until: Instant) -> bool {
        while Instant::now() < until {
            if !self.pump_once(conn, until).await {
                return false;
            }
        }
        true
    }

    fn fail(&self, e: &io::Error) {
        if let Some(p) = &self.plan {
            p.stats.error(e.to_string());
        }
    }

    fn inflight(&self) -> usize {
        self.pending.len()
    }
}

/// The connection task.
pub async fn run(mut conn: Conn, role: Role, mut start: Start) {
    let mut t = Task {
        role,
        plan: None,
        pending: HashMap::new(),
        next_seq: 1,
        hb: Instant::now() + HEARTBEAT,
    };
    // Until released: keep the connection alive.
    let plan = loop {
        if let Some(p) = start.borrow_and_update().clone() {
            break p;
        }
        tokio::select! {
            r = start.changed() => if r.is_err() { return },
            () = sleep_until(t.hb.into()) => t.heartbeat(&mut conn),
            item = conn.read() => match item {
                Ok(item) => if !t.on(item, &mut conn) { return },
                Err(_) => return,
            },
        }
        if conn.flush().await.is_err() {
            return;
        }
    };
    t.plan = Some(Arc::clone(&plan));
    let (idx, of) = match &t.role {
        Role::Im { idx, of, .. } | Role::Nats { idx, of, .. } => (*idx, (*of).max(1)),
        Role::Idle | Role::Receiver => {
            t.pump_until(&mut conn, plan.end).await;
            return;
        }
    };
    for (i, step) in plan.steps.iter().enumerate() {
        if !t.pump_until(&mut conn, step.start).await {
            return;
        }
        let ok = match plan.mode {
            Mode::Paced => paced(&mut t, &mut conn, &plan, i, step, idx, of).await,
            Mode::Window(w) => window(&mut t, &mut conn, i, step, w).await,
        };
        if !ok {
            return;
        }
    }
    t.pump_until(&mut conn, plan.end).await;
}

async fn paced(
    t: &mut Task,
    conn: &mut Conn,
    plan: &Plan,
    i: usize,
    step: &Step,
    idx: usize,
    of: usize,
) -> bool {
    // Spread the senders over one period.
    let offset = step.period.mul_f64(idx as f64 / of as f64);
    let is_nats = matches!(t.role, Role::Nats { .. });
    for k in 0..step.per_sender {
        let due = step.start + offset + step.period.mul_f64(k as f64);
        if due >= step.end {
            break;
        }
        if !t.pump_until(conn, due).await {
            return false;
        }
        if !is_nats && t.inflight() >= plan.inflight_cap {
            if let Some(s) = plan.stats.steps.get(i) {
                s.skipped.fetch_add(1, Relaxed);
            }
            continue;
        }
        t.send(conn, due, i, k);
        if let Err(e) = conn.flush().await {
            t.fail(&e);
            return false;
        }
    }
    true
}

async fn window(t: &mut Task, conn: &mut Conn, i: usize, step: &Step, w: usize) -> bool {
    let mut k = 0u64;
    while Instant::now() < step.end && k < step.per_sender {
        if t.inflight() < w {
            let now = Instant::now();
            while t.inflight() < w && k < step.per_sender {
                t.send(conn, now, i, k);
                k += 1;
            }
            if let Err(e) = conn.flush().await {
                t.fail(&e);
                return false;
            }
        }
        if !t.pump_once(conn, step.end).await {
            return false;
        }
    }
    true
}

/// `<ns>:<step>:` at the start of a payload.
fn parse_payload(p: &[u8]) -> Option<(u64, usize)> {
    let mut parts = p.splitn(3, |b| *b == b':');
    let ts = std::str::from_utf8(parts.next()?).ok()?.parse().ok()?;
    let step = std::str::from_utf8(parts.next()?).ok()?.parse().ok()?;
    Some((ts, step))
}

fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Outcome of opening connections.
pub struct Opened {
    pub tasks: Vec<JoinHandle<()>>,
    pub failed: usize,
    pub errors: Vec<String>,
    pub elapsed: Duration,
}

/// Opens connections `from..to` with at most `concurrency` in progress,
/// each becoming a [`run`] task as soon as it is open, all within `deadline`.
pub async fn open_many<F, Fut>(
    from: usize,
    to: usize,
    concurrency: usize,
    deadline: Instant,
    start: &Start,
    open: F,
) -> Opened
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = io::Result<(Conn, Role)>> + Send + 'static,
{
    let t0 = Instant::now();
    let sem = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut set = JoinSet::new();
    for i in from..to {
        let (sem, open, start) = (Arc::clone(&sem), open.clone(), start.clone());
        set.spawn(async move {
            let _permit = sem.acquire_owned().await.map_err(io::Error::other)?;
            let (conn, role) = open(i).await?;
            Ok::<_, io::Error>(tokio::spawn(run(conn, role, start)))
        });
    }
    let mut out = Opened {
        tasks: Vec::with_capacity(to.saturating_sub(from)),
        failed: 0,
        errors: Vec::new(),
        elapsed: Duration::ZERO,
    };
    loop {
        match tokio::time::timeout_at(deadline.into(), set.join_next()).await {
            Ok(Some(Ok(Ok(h)))) => out.tasks.push(h),
            Ok(Some(Ok(Err(e)))) => {
                out.failed += 1;
                if out.errors.len() < 5 {
                    out.errors.push(e.to_string());
                }
            }
            Ok(Some(Err(e))) => {
                out.failed += 1;
                if out.errors.len() < 5 {
                    out.errors.push(e.to_string());
                }
            }
            Ok(None) => break,
            Err(_) => {
                let left = set.len();
                out.failed += left;
                out.errors
                    .push(format!("{left} connections not open by the deadline"));
                set.abort_all();
                break;
            }
        }
    }
    out.elapsed = t0.elapsed();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_bounds() {
        let mut h = histogram();
        h.record(HIST_MAX_US).unwrap();
        assert_eq!(h.len(), 1);
    }

    #[test]
    fn payload_roundtrip() {
        assert_eq!(parse_payload(b"123:4:xxxx"), Some((123, 4)));
        assert_eq!(parse_payload(b"hello"), None);
    }

    #[test]
    fn steps_are_bounded() {
        let t0 = Instant::now();
        let s = steps(
            t0,
            &[10.0, 0.0],
            Duration::from_secs(2),
            Duration::from_secs(1),
        );
        assert_eq!(s[0].per_sender, 20);
        assert_eq!(s[1].start, t0 + Duration::from_secs(3));
        assert_eq!(s[1].per_sender, u64::MAX);
    }
}
