//! `im-bench`: the load generator of im-server (see README "Performance"
//! and `cargo xtask bench`). Loopback only; every phase is bounded in count
//! and in time. Prints a short summary and writes a JSON report.

mod client;
mod engine;
mod scen;
mod sys;
mod wire;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use serde_json::{Value, json};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    W1,
    W2,
    W3,
    W4,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Target {
    Im,
    Nats,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Transport {
    /// im-server TCP v2 packets.
    Tcp,
    /// im-server WebSocket `/ws/v2`.
    Ws,
}

/// Load generator for im-server (and nats-server as a reference peer).
#[derive(Debug, Clone, Parser)]
#[command(name = "im-bench", version)]
pub struct Cli {
    /// w1 idle connections, w2 1:1 stepped rates, w3 group fan-out, w4 durable sends.
    #[arg(value_enum)]
    pub scenario: Scenario,
    #[arg(long, value_enum, default_value = "im")]
    pub target: Target,
    /// im-server TCP (v2) address.
    #[arg(long)]
    pub tcp: Option<SocketAddr>,
    /// WebSocket address: im-server's (path /ws/v2) or nats-server's websocket listener.
    #[arg(long)]
    pub ws: Option<SocketAddr>,
    /// im-server HTTP address (group creation in w3).
    #[arg(long)]
    pub http: Option<SocketAddr>,
    /// Pid of the server process: CPU and RSS are read from /proc/<pid>.
    #[arg(long)]
    pub server_pid: u32,
    /// JWT HS256 secret of the im-server (tokens are minted here).
    #[arg(long, default_value = "")]
    pub secret: String,
    /// im-server transport of the bench connections.
    #[arg(long, value_enum, default_value = "tcp")]
    pub transport: Transport,
    /// w1: connection counts, cumulative steps.
    #[arg(long, value_delimiter = ',', default_value = "1000,10000,19000")]
    pub conns: Vec<usize>,
    /// w2: sender/receiver pairs.
    #[arg(long, default_value_t = 500)]
    pub pairs: usize,
    /// w2 (and w4 with --window 0): total target rates in msgs/s, one step each.
    #[arg(long, value_delimiter = ',', default_value = "5000,10000,20000,40000")]
    pub rates: Vec<f64>,
    /// w3: number of groups (= publishers).
    #[arg(long, default_value_t = 100)]
    pub groups: usize,
    /// w3: members per group, sender included.
    #[arg(long, default_value_t = 100)]
    pub members: usize,
    /// w3: msgs/s per group, one step each.
    #[arg(long, value_delimiter = ',', default_value = "5,10,20")]
    pub group_rates: Vec<f64>,
    /// w4: sending connections.
    #[arg(long, default_value_t = 100)]
    pub senders: usize,
    /// w4: unacknowledged sends per connection (0 = paced by --rates).
    #[arg(long, default_value_t = 16)]
    pub window: usize,
    /// Seconds of sending per step.
    #[arg(long, default_value_t = 10.0)]
    pub step_secs: f64,
    /// Seconds after each step for in-flight replies and pushes.
    #[arg(long, default_value_t = 3.0)]
    pub drain_secs: f64,
    /// Payload bytes per message (timestamp + padding).
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// Paced senders: most unacknowledged sends per connection; beyond it
    /// due sends are skipped and counted.
    #[arg(long, default_value_t = 1000)]
    pub inflight_cap: usize,
    /// Connections being opened at once.
    #[arg(long, default_value_t = 200)]
    pub connect_concurrency: usize,
    /// Bound of each connection-opening phase, seconds.
    #[arg(long, default_value_t = 240.0)]
    pub setup_secs: f64,
    /// Receivers send MSG_ACK for every push, as the SDK does.
    #[arg(long)]
    pub ack_pushes: bool,
    /// Write the JSON report here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Free text stored in the report (e.g. "sqlite").
    #[arg(long, default_value = "")]
    pub label: String,
}

/// p50/p99/p999/max in µs (and count) of a histogram.
pub fn hist_json(h: &Histogram<u64>) -> Value {
    if h.is_empty() {
        return json!({"count": 0});
    }
    json!({
        "count": h.len(),
        "p50": h.value_at_quantile(0.50),
        "p99": h.value_at_quantile(0.99),
        "p999": h.value_at_quantile(0.999),
        "max": h.max(),
        "mean": h.mean(),
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("im-bench: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(run(cli))
}

async fn run(cli: Cli) -> ExitCode {
    engine::epoch();
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let ctx = scen::Ctx {
        pid: sys::Pid::Of(cli.server_pid),
        tck: sys::clk_tck(),
        // User ids stay unique across runs against the same database.
        run: format!("b{:x}{:x}", stamp % 0xFFFFF, std::process::id() % 0xFFF),
        cli,
    };
    if sys::rss_bytes(ctx.pid).is_err() {
        eprintln!("im-bench: no process {} to measure", ctx.cli.server_pid);
        return ExitCode::FAILURE;
    }
    let started = std::time::Instant::now();
    let (cpu0, self0) = (
        sys::cpu_secs(ctx.pid, ctx.tck).unwrap_or(0.0),
        sys::cpu_secs(sys::Pid::This, ctx.tck).unwrap_or(0.0),
    );
    let r = match ctx.cli.scenario {
        Scenario::W1 => scen::w1(&ctx).await,
        Scenario::W2 => scen::w2(&ctx).await,
        Scenario::W3 => scen::w3(&ctx).await,
        Scenario::W4 => scen::w4(&ctx).await,
    };
    let mut report = json!({
        "scenario": format!("{:?}", ctx.cli.scenario).to_lowercase(),
        "target": format!("{:?}", ctx.cli.target).to_lowercase(),
        "transport": if ctx.cli.target == Target::Nats { "nats-ws".to_owned() } else { format!("{:?}", ctx.cli.transport).to_lowercase() },
        "label": ctx.cli.label,
        "server_pid": ctx.cli.server_pid,
        "clk_tck": ctx.tck,
        "payload_bytes": ctx.cli.size,
        "ack_pushes": ctx.cli.ack_pushes,
        "wall_secs": started.elapsed().as_secs_f64(),
        "server_cpu_s_total": sys::cpu_secs(ctx.pid, ctx.tck).unwrap_or(0.0) - cpu0,
        "bench_cpu_s_total": sys::cpu_secs(sys::Pid::This, ctx.tck).unwrap_or(0.0) - self0,
        "cores": std::thread::available_parallelism().map(usize::from).unwrap_or(0),
    });
    let ok = match r {
        Ok(v) => {
            set(&mut report, "result", v);
            true
        }
        Err(e) => {
            eprintln!("im-bench: {e}");
            set(&mut report, "error", json!(e));
            false
        }
    };
    print_summary(&report);
    if let Some(path) = &ctx.cli.json {
        let text = serde_json::to_string_pretty(&report).unwrap_or_default();
        if let Err(e) = std::fs::write(path, text) {
            eprintln!("im-bench: writing {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or(0.0)
}

fn ms(v: &Value) -> String {
    match v.as_f64() {
        Some(us) => format!("{:.1}", us / 1000.0),
        None => "-".to_owned(),
    }
}

/// The short human table.
fn print_summary(r: &Value) {
    let scen = at(r, &["scenario"]).as_str().unwrap_or("?");
    println!(
        "\n== {scen} on {} ({}) ==",
        at(r, &["target"]).as_str().unwrap_or("?"),
        at(r, &["transport"]).as_str().unwrap_or("?")
    );
    let res = at(r, &["result"]);
    let empty = Vec::new();
    let steps = at(res, &["steps"]).as_array().unwrap_or(&empty);
    if scen == "w1" {
        println!(
            "{:>8} {:>8} {:>12} {:>12}",
            "asked", "open", "RSS MiB", "B/conn"
        );
        for s in steps {
            println!(
                "{:>8} {:>8} {:>12.1} {:>12.0}",
                at(s, &["asked"]).as_u64().unwrap_or(0),
                at(s, &["open"]).as_u64().unwrap_or(0),
                f(at(s, &["server_rss_bytes"])) / 1048576.0,
                f(at(s, &["bytes_per_conn"]))
            );
        }
    } else {
        println!(
            "{:>9} {:>9} {:>9} {:>9} {:>10} {:>8} {:>12} {:>8} {:>8} {:>8} {:>8} {:>8}",
            "target/s",
            "sent/s",
            "acked/s",
            "skipped",
            "deliv/s",
            "srv CPU",
            "deliv/CPU-s",
            "ack p50",
            "ack p99",
            "e2e p50",
            "e2e p99",
            "e2e p999"
        );
        for s in steps {
            println!(
                "{:>9} {:>9.0} {:>9.0} {:>9} {:>10.0} {:>8.2} {:>12.0} {:>8} {:>8} {:>8} {:>8} {:>8}",
                at(s, &["target_msgs_per_s"])
                    .as_f64()
                    .map_or("max".to_owned(), |v| format!("{v:.0}")),
                f(at(s, &["sent_per_s"])),
                f(at(s, &["acked_per_s"])),
                at(s, &["skipped"]).as_u64().unwrap_or(0),
                f(at(s, &["delivered_per_s"])),
                f(at(s, &["server_cpu_s"])),
                f(at(s, &["deliveries_per_server_cpu_s"])),
                ms(at(s, &["ack_us", "p50"])),
                ms(at(s, &["ack_us", "p99"])),
                ms(at(s, &["e2e_us", "p50"])),
                ms(at(s, &["e2e_us", "p99"])),
                ms(at(s, &["e2e_us", "p999"])),
            );
        }
        println!("(latencies in ms; acked = SEND_MSG_RSP success; deliv = pushes received)");
        if f(at(res, &["conn_errors"])) > 0.0 {
            println!(
                "connection errors: {} (first: {})",
                at(res, &["conn_errors"]),
                at(res, &["first_error"])
            );
        }
        if at(res, &["send_error_codes"])
            .as_object()
            .is_some_and(|m| !m.is_empty())
        {
            println!("send error codes: {}", at(res, &["send_error_codes"]));
        }
    }
    if let Some(e) = at(r, &["error"]).as_str() {
        println!("error: {e}");
    }
}

static NULL: Value = Value::Null;

/// `v[path[0]][path[1]]…`, `Null` where missing (never panics).
pub fn at<'a>(v: &'a Value, path: &[&str]) -> &'a Value {
    path.iter().fold(v, |v, k| v.get(k).unwrap_or(&NULL))
}

/// `v[k] = x` when `v` is an object.
pub fn set(v: &mut Value, k: &str, x: Value) {
    if let Some(m) = v.as_object_mut() {
        m.insert(k.to_owned(), x);
    }
}
