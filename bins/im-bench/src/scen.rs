//! The scenarios: W1 idle connections, W2 1:1 stepped rates, W3 group
//! fan-out, W4 durable sends. Each returns its JSON report.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::client::{http, mint_token, open_im, open_nats};
use crate::engine::{self, Mode, Plan, Role, Stats, open_many};
use crate::sys::{Pid, cpu_secs, open_fds, rss_bytes};
use crate::wire::Kind;
use crate::{Cli, Target, at, set};

/// Bound of one connect + auth/subscribe.
const OPEN_TIMEOUT: Duration = Duration::from_secs(15);

pub struct Ctx {
    pub cli: Cli,
    pub pid: Pid,
    pub tck: u64,
    pub run: String,
}

impl Ctx {
    fn kind(&self) -> Kind {
        match (self.cli.target, self.cli.transport) {
            (Target::Nats, _) => Kind::NatsWs,
            (Target::Im, crate::Transport::Tcp) => Kind::ImTcp,
            (Target::Im, crate::Transport::Ws) => Kind::ImWs,
        }
    }

    fn addr(&self) -> anyhow_lite::Result<SocketAddr> {
        let a = match self.kind() {
            Kind::ImTcp => self.cli.tcp,
            Kind::ImWs | Kind::NatsWs => self.cli.ws,
        };
        a.ok_or_else(|| "missing --tcp/--ws address for this target and transport".to_owned())
    }

    fn cpu(&self) -> f64 {
        cpu_secs(self.pid, self.tck).unwrap_or(f64::NAN)
    }

    fn self_cpu(&self) -> f64 {
        cpu_secs(Pid::This, self.tck).unwrap_or(f64::NAN)
    }

    fn rss(&self) -> u64 {
        rss_bytes(self.pid).unwrap_or(0)
    }

    fn setup_deadline(&self) -> Instant {
        Instant::now() + Duration::from_secs_f64(self.cli.setup_secs)
    }
}

/// Tiny error alias: scenario failures are reported as text.
pub mod anyhow_lite {
    pub type Result<T> = std::result::Result<T, String>;
}
use anyhow_lite::Result;

/// Server RSS once it stops moving: samples every 500 ms until four in a
/// row are within 0.2 % (or 64 KiB) of each other, at most `max`.
async fn settled_rss(ctx: &Ctx, max: Duration) -> (u64, bool) {
    let until = Instant::now() + max;
    let mut prev = ctx.rss();
    let mut calm = 0;
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = ctx.rss();
        let tol = (prev / 500).max(64 * 1024);
        if now.abs_diff(prev) <= tol {
            calm += 1;
            if calm >= 4 {
                return (now, true);
            }
        } else {
            calm = 0;
        }
        prev = now;
    }
    (prev, false)
}

type Opening =
    std::pin::Pin<Box<dyn Future<Output = std::io::Result<(crate::wire::Conn, Role)>> + Send>>;

fn idle_open(ctx: &Ctx) -> impl Fn(usize) -> Opening + Clone + Send + 'static {
    let kind = ctx.kind();
    let addr = ctx
        .addr()
        .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)));
    let secret = ctx.cli.secret.clone();
    let run = ctx.run.clone();
    move |i| {
        let (secret, run) = (secret.clone(), run.clone());
        Box::pin(async move {
            let conn = match kind {
                Kind::NatsWs => {
                    open_nats(addr, Some(&format!("idle.{i}")), true, OPEN_TIMEOUT).await?
                }
                _ => open_im(kind, addr, &format!("{run}i{i}"), &secret, OPEN_TIMEOUT).await?,
            };
            Ok((conn, Role::Idle))
        })
    }
}

/// W1: idle authenticated (or subscribed) connections, server RSS per connection.
pub async fn w1(ctx: &Ctx) -> Result<Value> {
    ctx.addr()?;
    let (base, base_ok) = settled_rss(ctx, Duration::from_secs(20)).await;
    println!("w1: server RSS at rest {:.1} MiB", base as f64 / 1048576.0);
    let (tx, rx) = watch::channel(None::<Arc<Plan>>);
    let mut targets = ctx.cli.conns.clone();
    targets.sort_unstable();
    let mut tasks: Vec<JoinHandle<()>> = Vec::new();
    let mut next = 0usize;
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    for target in targets {
        if target <= next {
            continue;
        }
        let opened = open_many(
            next,
            target,
            ctx.cli.connect_concurrency,
            ctx.setup_deadline(),
            &rx,
            idle_open(ctx),
        )
        .await;
        next = target;
        tasks.extend(opened.tasks);
        let open_now = tasks.iter().filter(|h| !h.is_finished()).count();
        let (rss, ok) = settled_rss(ctx, Duration::from_secs(30)).await;
        let per = (rss.saturating_sub(base)) as f64 / open_now.max(1) as f64;
        println!(
            "w1: {open_now} open (asked {target}, {} failed) in {:.1}s: server RSS {:.1} MiB, {:.0} B/conn{}",
            opened.failed,
            opened.elapsed.as_secs_f64(),
            rss as f64 / 1048576.0,
            per,
            if ok { "" } else { " (RSS still moving)" }
        );
        if opened.failed > 0 {
            notes.push(format!(
                "step {target}: {} connections failed: {:?}",
                opened.failed, opened.errors
            ));
        }
        rows.push(json!({
            "asked": target,
            "open": open_now,
            "failed": opened.failed,
            "errors": opened.errors,
            "open_secs": opened.elapsed.as_secs_f64(),
            "server_rss_bytes": rss,
            "rss_settled": ok,
            "bytes_per_conn": per,
            "server_fds": open_fds(ctx.pid).ok(),
            "bench_fds": open_fds(Pid::This).ok(),
        }));
        if opened.failed > 0 {
            // The OS or the server refused: do not try larger steps.
            break;
        }
    }
    drop(tx);
    for h in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(5), h).await;
    }
    Ok(json!({
        "server_rss_base_bytes": base,
        "base_settled": base_ok,
        "steps": rows,
        "notes": notes,
    }))
}

/// The common part of W2-W4: release the tasks, sample CPU/RSS per step,
/// wait for the end, build step rows.
async fn drive(
    ctx: &Ctx,
    tx: watch::Sender<Option<Arc<Plan>>>,
    tasks: Vec<JoinHandle<()>>,
    per_sender_rates: &[f64],
    mode: Mode,
    senders: usize,
    fanout: u64,
) -> Value {
    let dur = Duration::from_secs_f64(ctx.cli.step_secs);
    let gap = Duration::from_secs_f64(ctx.cli.drain_secs);
    let t0 = Instant::now() + Duration::from_secs(1);
    let steps = engine::steps(t0, per_sender_rates, dur, gap);
    let end = steps.last().map_or(t0, |s| s.end + gap);
    let stats = Stats::new(steps.len());
    let plan = Arc::new(Plan {
        steps: steps.clone(),
        end,
        mode,
        size: ctx.cli.size,
        inflight_cap: ctx.cli.inflight_cap,
        ack_pushes: ctx.cli.ack_pushes,
        stats: Arc::clone(&stats),
    });
    let _ = tx.send(Some(plan));
    let mut samples = Vec::new();
    for s in &steps {
        tokio::time::sleep_until(s.start.into()).await;
        let (c0, b0) = (ctx.cpu(), ctx.self_cpu());
        tokio::time::sleep_until((s.end + gap).into()).await;
        let (c1, b1) = (ctx.cpu(), ctx.self_cpu());
        samples.push((c1 - c0, b1 - b0, ctx.rss()));
        let i = samples.len() - 1;
        if let Some(st) = stats.steps.get(i) {
            println!(
                "  step {i}: sent {} delivered {} acked {} ({:.1} server CPU-s)",
                st.sent.load(Relaxed),
                st.delivered.load(Relaxed),
                st.acked_ok.load(Relaxed),
                c1 - c0
            );
        }
    }
    let grace = end + Duration::from_secs(10);
    let mut unfinished = 0;
    for h in tasks {
        if tokio::time::timeout_at(grace.into(), h).await.is_err() {
            unfinished += 1;
        }
    }
    drop(tx);
    let secs = dur.as_secs_f64();
    let mut rows = Vec::new();
    for (i, ((st, (cpu, bench_cpu, rss)), rate)) in stats
        .steps
        .iter()
        .zip(samples)
        .zip(per_sender_rates)
        .enumerate()
    {
        let sent = st.sent.load(Relaxed);
        let acked = st.acked_ok.load(Relaxed);
        let delivered = st.delivered.load(Relaxed);
        rows.push(json!({
            "step": i,
            "target_msgs_per_s": if *rate > 0.0 { Value::from(rate * senders as f64) } else { Value::Null },
            "secs": secs,
            "sent": sent,
            "skipped": st.skipped.load(Relaxed),
            "acked_ok": acked,
            "acked_err": st.acked_err.load(Relaxed),
            "delivered": delivered,
            // Every send due in the step, acknowledged or not.
            "expected_deliveries": sent * fanout,
            "sent_per_s": sent as f64 / secs,
            "acked_per_s": acked as f64 / secs,
            "delivered_per_s": delivered as f64 / secs,
            "server_cpu_s": cpu,
            "deliveries_per_server_cpu_s": if cpu > 0.0 { delivered as f64 / cpu } else { 0.0 },
            "acked_per_server_cpu_s": if cpu > 0.0 { acked as f64 / cpu } else { 0.0 },
            "bench_cpu_s": bench_cpu,
            "server_rss_bytes": rss,
            "ack_us": crate::hist_json(&st.ack.lock()),
            "e2e_us": crate::hist_json(&st.e2e.lock()),
        }));
    }
    json!({
        "steps": rows,
        "step_secs": secs,
        "drain_secs": gap.as_secs_f64(),
        "conn_errors": stats.conn_errors.load(Relaxed),
        "first_error": stats.first_error.lock().clone(),
        "send_error_codes": stats.error_codes.lock().iter().map(|(k, v)| (k.to_string(), Value::from(*v))).collect::<serde_json::Map<_, _>>(),
        "foreign_payloads": stats.foreign.load(Relaxed),
        "tasks_unfinished": unfinished,
    })
}

fn fail_if_short(what: &str, opened: &engine::Opened, want: usize) -> Result<()> {
    if opened.tasks.len() < want {
        return Err(format!(
            "{what}: only {} of {want} connections opened: {:?}",
            opened.tasks.len(),
            opened.errors
        ));
    }
    Ok(())
}

/// W2: `pairs` sender/receiver pairs in 1:1 conversations, stepped total rates.
pub async fn w2(ctx: &Ctx) -> Result<Value> {
    let (kind, addr) = (ctx.kind(), ctx.addr()?);
    if kind == Kind::NatsWs {
        return Err("w2 runs against im only".to_owned());
    }
    let pairs = ctx.cli.pairs.max(1);
    let (tx, rx) = watch::channel(None::<Arc<Plan>>);
    let (secret, run) = (ctx.cli.secret.clone(), ctx.run.clone());
    let opened = open_many(
        0,
        2 * pairs,
        ctx.cli.connect_concurrency,
        ctx.setup_deadline(),
        &rx,
        move |i| {
            let (secret, run) = (secret.clone(), run.clone());
            async move {
                let (s, r) = (
                    format!("{run}s{}", i % pairs),
                    format!("{run}r{}", i % pairs),
                );
                if i < pairs {
                    Ok((
                        open_im(kind, addr, &r, &secret, OPEN_TIMEOUT).await?,
                        Role::Receiver,
                    ))
                } else {
                    let conn = open_im(kind, addr, &s, &secret, OPEN_TIMEOUT).await?;
                    let conv = if s < r {
                        format!("single_{s}_{r}")
                    } else {
                        format!("single_{r}_{s}")
                    };
                    Ok((
                        conn,
                        Role::Im {
                            idx: i - pairs,
                            of: pairs,
                            user: s,
                            conv,
                            receiver: r,
                            run,
                        },
                    ))
                }
            }
        },
    )
    .await;
    println!(
        "w2: {} connections in {:.1}s",
        opened.tasks.len(),
        opened.elapsed.as_secs_f64()
    );
    fail_if_short("w2", &opened, 2 * pairs)?;
    let rates: Vec<f64> = ctx.cli.rates.iter().map(|r| r / pairs as f64).collect();
    let mut v = drive(ctx, tx, opened.tasks, &rates, Mode::Paced, pairs, 1).await;
    set(&mut v, "pairs", json!(pairs));
    set(&mut v, "connections", json!(2 * pairs));
    Ok(v)
}

/// W3: `groups` x `members`; member 0 of each group sends at each of the
/// `group_rates` (msgs/s per group); every other member receives.
pub async fn w3(ctx: &Ctx) -> Result<Value> {
    let (kind, addr) = (ctx.kind(), ctx.addr()?);
    let (g, m) = (ctx.cli.groups.max(1), ctx.cli.members.max(2));
    let run = ctx.run.clone();
    let mut convs: Vec<String> = Vec::with_capacity(g);
    if kind == Kind::NatsWs {
        convs.extend((0..g).map(|i| format!("bench.{run}.g{i}")));
    } else {
        let http_addr = ctx.cli.http.ok_or("w3 on im needs --http")?;
        let t = Instant::now();
        for gi in 0..g {
            let owner = format!("{run}g{gi}m0");
            let token = mint_token(&ctx.cli.secret, &owner, "iOS").map_err(|e| e.to_string())?;
            let members: Vec<String> = (1..m).map(|k| format!("{run}g{gi}m{k}")).collect();
            let body = json!({"groupName": format!("bench {gi}"), "memberUserIDs": members});
            let (status, resp) = http(
                http_addr,
                "POST",
                "/api/group/create",
                Some(&token),
                Some(&body),
            )
            .await
            .map_err(|e| format!("creating group {gi}: {e}"))?;
            let id = at(&resp, &["data", "groupID"]).as_str().map(str::to_owned);
            match id {
                Some(id) if status == 200 => convs.push(format!("group_{id}")),
                _ => return Err(format!("creating group {gi}: HTTP {status}: {resp}")),
            }
        }
        println!(
            "w3: {g} groups of {m} created in {:.1}s",
            t.elapsed().as_secs_f64()
        );
    }
    let convs = Arc::new(convs);
    let (tx, rx) = watch::channel(None::<Arc<Plan>>);
    let secret = ctx.cli.secret.clone();
    let opened = open_many(
        0,
        g * m,
        ctx.cli.connect_concurrency,
        ctx.setup_deadline(),
        &rx,
        move |i| {
            let (secret, run, convs) = (secret.clone(), run.clone(), Arc::clone(&convs));
            async move {
                let (gi, k) = (i / m, i % m);
                let conv = convs.get(gi).cloned().unwrap_or_default();
                if kind == Kind::NatsWs {
                    // The publisher is subscribed too, without echo: like the
                    // im sender, it does not receive its own messages.
                    let conn = open_nats(addr, Some(&conv), k != 0, OPEN_TIMEOUT).await?;
                    let role = if k == 0 {
                        Role::Nats {
                            idx: gi,
                            of: g,
                            subject: conv,
                        }
                    } else {
                        Role::Receiver
                    };
                    return Ok((conn, role));
                }
                let user = format!("{run}g{gi}m{k}");
                let conn = open_im(kind, addr, &user, &secret, OPEN_TIMEOUT).await?;
                let role = if k == 0 {
                    Role::Im {
                        idx: gi,
                        of: g,
                        user,
                        conv,
                        receiver: String::new(),
                        run,
                    }
                } else {
                    Role::Receiver
                };
                Ok((conn, role))
            }
        },
    )
    .await;
    println!(
        "w3: {} connections in {:.1}s",
        opened.tasks.len(),
        opened.elapsed.as_secs_f64()
    );
    fail_if_short("w3", &opened, g * m)?;
    let mut v = drive(
        ctx,
        tx,
        opened.tasks,
        &ctx.cli.group_rates,
        Mode::Paced,
        g,
        (m - 1) as u64,
    )
    .await;
    set(&mut v, "groups", json!(g));
    set(&mut v, "members", json!(m));
    set(&mut v, "connections", json!(g * m));
    Ok(v)
}

/// W4: `senders` connections sending to users that are not connected
/// (stored only): window mode (`--window`) or paced (`--window 0 --rates`).
pub async fn w4(ctx: &Ctx) -> Result<Value> {
    let (kind, addr) = (ctx.kind(), ctx.addr()?);
    if kind == Kind::NatsWs {
        return Err("w4 runs against im only".to_owned());
    }
    let n = ctx.cli.senders.max(1);
    let (tx, rx) = watch::channel(None::<Arc<Plan>>);
    let (secret, run) = (ctx.cli.secret.clone(), ctx.run.clone());
    let opened = open_many(
        0,
        n,
        ctx.cli.connect_concurrency,
        ctx.setup_deadline(),
        &rx,
        move |i| {
            let (secret, run) = (secret.clone(), run.clone());
            async move {
                let (s, r) = (format!("{run}w{i}"), format!("{run}p{i}"));
                let conn = open_im(kind, addr, &s, &secret, OPEN_TIMEOUT).await?;
                let conv = if s < r {
                    format!("single_{s}_{r}")
                } else {
                    format!("single_{r}_{s}")
                };
                Ok((
                    conn,
                    Role::Im {
                        idx: i,
                        of: n,
                        user: s,
                        conv,
                        receiver: r,
                        run,
                    },
                ))
            }
        },
    )
    .await;
    println!(
        "w4: {} connections in {:.1}s",
        opened.tasks.len(),
        opened.elapsed.as_secs_f64()
    );
    fail_if_short("w4", &opened, n)?;
    let (rates, mode) = if ctx.cli.window > 0 {
        (vec![0.0], Mode::Window(ctx.cli.window))
    } else {
        (
            ctx.cli.rates.iter().map(|r| r / n as f64).collect(),
            Mode::Paced,
        )
    };
    let mut v = drive(ctx, tx, opened.tasks, &rates, mode, n, 0).await;
    set(&mut v, "senders", json!(n));
    set(&mut v, "window", json!(ctx.cli.window));
    Ok(v)
}
