//! `cargo xtask bench [w1|w2|w3|w4|all] [--vs nats] [--db sqlite|postgres|both] [--quick] [--no-build]`
//!
//! Builds `im-server` and `im-bench` in release mode, then for each
//! scenario starts a fresh server (temporary directory, free loopback
//! ports, random JWT secret, `logger.level=warn`, rate limit off, connection
//! cap raised), waits for `/ready`, runs `im-bench` against its pid,
//! stops it, and finally prints one table with the targets of the issue.
//! With `--vs nats`, W1 and W3 are also run against `nats-server`
//! (`/usr/sbin/nats-server`, websocket listener) in the same invocation.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use serde_json::{Value, json};

pub const USAGE: &str = "\
usage: cargo xtask bench [w1|w2|w3|w4|all] [--vs nats] [--db sqlite|postgres|both] [--quick] [--no-build]

  w1   idle authenticated TCP connections: server RSS per connection (1k, 10k, 19k)
  w2   1:1 messaging at stepped rates (5k..40k msgs/s): delivered/s and latency
  w3   100 groups x 100 members over WebSocket: deliveries per server CPU-second
  w4   durable sends (window of 16 per connection): acked/s and p99 ack latency
  all  all four (the default)

  --vs nats   also run w1 and w3 against nats-server (its websocket listener)
  --db        database of the server (default sqlite; both = w4 on each)
  --quick     small sizes and short steps (a smoke run of well under a minute per scenario)
  --no-build  use the release binaries already built

environment: CARGO_TARGET_DIR (where the binaries are), IM_BENCH_PG_URL
(PostgreSQL server URL without database, default postgres://postgres@127.0.0.1:5432),
NATS_SERVER (default /usr/sbin/nats-server).";

#[derive(Debug, Clone)]
struct Opts {
    scenarios: Vec<&'static str>,
    vs_nats: bool,
    dbs: Vec<&'static str>,
    quick: bool,
    build: bool,
}

fn parse(args: &[&str]) -> anyhow::Result<Opts> {
    let mut o = Opts {
        scenarios: Vec::new(),
        vs_nats: false,
        dbs: vec!["sqlite"],
        quick: false,
        build: true,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match *a {
            "w1" => o.scenarios.push("w1"),
            "w2" => o.scenarios.push("w2"),
            "w3" => o.scenarios.push("w3"),
            "w4" => o.scenarios.push("w4"),
            "all" => o.scenarios.extend(["w1", "w2", "w3", "w4"]),
            "--quick" => o.quick = true,
            "--no-build" => o.build = false,
            "--vs" => match it.next() {
                Some(&"nats") => o.vs_nats = true,
                other => bail!("--vs takes `nats`, got {other:?}"),
            },
            "--db" => {
                o.dbs = match it.next() {
                    Some(&"sqlite") => vec!["sqlite"],
                    Some(&"postgres") => vec!["postgres"],
                    Some(&"both") => vec!["sqlite", "postgres"],
                    other => bail!("--db takes sqlite, postgres or both, got {other:?}"),
                }
            }
            other => bail!("unknown argument {other:?}"),
        }
    }
    if o.scenarios.is_empty() {
        o.scenarios.extend(["w1", "w2", "w3", "w4"]);
    }
    o.scenarios.dedup();
    Ok(o)
}

/// Entry point of `cargo xtask bench …`.
pub fn main(root: &Path, args: &[&str]) -> anyhow::Result<()> {
    let o = parse(args)?;
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|p| if p.is_absolute() { p } else { root.join(p) })
        .unwrap_or_else(|| root.join("target"));
    if o.build {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let status = Command::new(cargo)
            .current_dir(root)
            .args(["build", "--release", "-p", "im-server", "-p", "im-bench"])
            .status()
            .context("running cargo build")?;
        if !status.success() {
            bail!("cargo build --release failed");
        }
    }
    let bins = Bins {
        server: target_dir.join("release/im-server"),
        bench: target_dir.join("release/im-bench"),
        nats: PathBuf::from(
            std::env::var("NATS_SERVER").unwrap_or_else(|_| "/usr/sbin/nats-server".to_owned()),
        ),
    };
    for b in [&bins.server, &bins.bench] {
        if !b.is_file() {
            bail!("{} not found (build it, or drop --no-build)", b.display());
        }
    }
    if o.vs_nats && !bins.nats.is_file() {
        bail!(
            "{} not found (apt-get install nats-server, or set NATS_SERVER)",
            bins.nats.display()
        );
    }
    let out_dir = target_dir.join("bench");
    std::fs::create_dir_all(&out_dir)?;
    let mut reports: Vec<Value> = Vec::new();
    for scen in &o.scenarios {
        let dbs: Vec<&str> = if *scen == "w4" {
            o.dbs.clone()
        } else {
            o.dbs.iter().take(1).copied().collect()
        };
        for db in dbs {
            println!("\n### {scen} on im-server ({db})");
            match run_im(&bins, &out_dir, scen, db, o.quick) {
                Ok(r) => reports.push(r),
                Err(e) => {
                    eprintln!("bench {scen} (im, {db}) failed: {e:#}");
                    reports.push(json!({"scenario": scen, "target": "im", "label": db, "error": format!("{e:#}")}));
                }
            }
        }
        if o.vs_nats && (*scen == "w1" || *scen == "w3") {
            println!("\n### {scen} on nats-server");
            match run_nats(&bins, &out_dir, scen, o.quick) {
                Ok(r) => reports.push(r),
                Err(e) => {
                    eprintln!("bench {scen} (nats) failed: {e:#}");
                    reports.push(
                        json!({"scenario": scen, "target": "nats", "error": format!("{e:#}")}),
                    );
                }
            }
        }
    }
    let all = json!({"quick": o.quick, "reports": reports});
    let path = out_dir.join("last.json");
    std::fs::write(&path, serde_json::to_string_pretty(&all)?)?;
    print_table(&reports, o.quick);
    println!("\nfull reports: {}", path.display());
    Ok(())
}

struct Bins {
    server: PathBuf,
    bench: PathBuf,
    nats: PathBuf,
}

/// The im-bench arguments of a scenario (full size or quick).
fn scenario_args(scen: &str, quick: bool) -> Vec<String> {
    let a: &[&str] = match (scen, quick) {
        ("w1", false) => &["--conns", "1000,10000,19000"],
        ("w1", true) => &["--conns", "200,1000"],
        ("w2", false) => &[
            "--pairs",
            "500",
            "--rates",
            "5000,10000,20000,40000",
            "--step-secs",
            "10",
        ],
        ("w2", true) => &[
            "--pairs",
            "50",
            "--rates",
            "1000,2000",
            "--step-secs",
            "2",
            "--drain-secs",
            "1",
        ],
        ("w3", false) => &[
            "--groups",
            "100",
            "--members",
            "100",
            "--group-rates",
            "5,10,20",
            "--step-secs",
            "10",
            "--transport",
            "ws",
        ],
        ("w3", true) => &[
            "--groups",
            "10",
            "--members",
            "20",
            "--group-rates",
            "5",
            "--step-secs",
            "2",
            "--drain-secs",
            "1",
            "--transport",
            "ws",
        ],
        ("w4", false) => &["--senders", "100", "--window", "16", "--step-secs", "20"],
        _ => &[
            "--senders",
            "20",
            "--window",
            "8",
            "--step-secs",
            "3",
            "--drain-secs",
            "1",
        ],
    };
    a.iter().map(|s| (*s).to_owned()).collect()
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn nonce() -> String {
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{t:x}{:x}", std::process::id())
}

/// A child process that is stopped (SIGTERM, then SIGKILL) when dropped.
struct Proc {
    name: &'static str,
    child: Child,
}

impl Proc {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if !self.alive() {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let until = Instant::now() + Duration::from_secs(15);
        while Instant::now() < until {
            if !self.alive() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!("{} did not stop on SIGTERM: killing it", self.name);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A scratch PostgreSQL database, dropped afterwards.
struct PgDb {
    base: String,
    name: String,
}

impl PgDb {
    fn create() -> anyhow::Result<Self> {
        let base = std::env::var("IM_BENCH_PG_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned());
        let name = format!("im_bench_{}", nonce());
        psql(&base, &format!("CREATE DATABASE {name}"))?;
        Ok(Self { base, name })
    }

    fn url(&self) -> String {
        format!("{}/{}", self.base.trim_end_matches('/'), self.name)
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        if let Err(e) = psql(
            &self.base,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        ) {
            eprintln!("dropping {}: {e:#}", self.name);
        }
    }
}

fn psql(base: &str, sql: &str) -> anyhow::Result<()> {
    let url = format!("{}/postgres", base.trim_end_matches('/'));
    let out = Command::new("psql")
        .args([url.as_str(), "-v", "ON_ERROR_STOP=1", "-qAtc", sql])
        .output()
        .context("running psql")?;
    if !out.status.success() {
        bail!(
            "psql {sql:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// `GET /ready` answers 200.
fn ready(http: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&http, Duration::from_secs(1)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let req = format!("GET /ready HTTP/1.1\r\nHost: {http}\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).unwrap_or(0);
    String::from_utf8_lossy(buf.get(..n).unwrap_or_default()).starts_with("HTTP/1.1 200")
}

fn run_im(bins: &Bins, out: &Path, scen: &str, db: &str, quick: bool) -> anyhow::Result<Value> {
    let dir = out.join(format!("im-{scen}-{db}-{}", nonce()));
    std::fs::create_dir_all(&dir)?;
    let (http, ws, tcp) = (free_port()?, free_port()?, free_port()?);
    let secret = format!("bench-{}", nonce());
    let pg = if db == "postgres" {
        Some(PgDb::create()?)
    } else {
        None
    };
    let log = std::fs::File::create(dir.join("server.log"))?;
    let mut cmd = Command::new(&bins.server);
    cmd.current_dir(&dir)
        .env("IM_SERVER__HOST", "127.0.0.1")
        .env("IM_SERVER__HTTP_PORT", http.to_string())
        .env("IM_SERVER__WS_PORT", ws.to_string())
        .env("IM_SERVER__TCP_PORT", tcp.to_string())
        .env("IM_SERVER__MAX_CONNECTIONS", "60000")
        .env("IM_LOGGER__LEVEL", "warn")
        .env("IM_AUTH__JWT_SECRET", &secret)
        .env("IM_RATE_LIMIT__ENABLED", "false")
        .env("IM_DATABASE__PATH", dir.join("im.db"))
        .env("IM_FILES__DIR", dir.join("files"))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    if let Some(pg) = &pg {
        cmd.env("IM_DATABASE__TYPE", "postgres")
            .env("IM_DATABASE__URL", pg.url());
    }
    let mut server = Proc {
        name: "im-server",
        child: cmd.spawn().context("starting im-server")?,
    };
    let http_addr = SocketAddr::from(([127, 0, 0, 1], http));
    let until = Instant::now() + Duration::from_secs(60);
    while !ready(http_addr) {
        if !server.alive() || Instant::now() > until {
            bail!(
                "im-server did not become ready; see {}",
                dir.join("server.log").display()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let json_path = dir.join("report.json");
    let mut args = vec![
        scen.to_owned(),
        "--target".into(),
        "im".into(),
        "--tcp".into(),
        format!("127.0.0.1:{tcp}"),
        "--ws".into(),
        format!("127.0.0.1:{ws}"),
        "--http".into(),
        http_addr.to_string(),
        "--server-pid".into(),
        server.pid().to_string(),
        "--secret".into(),
        secret,
        "--label".into(),
        db.to_owned(),
        "--json".into(),
        json_path.display().to_string(),
    ];
    args.extend(scenario_args(scen, quick));
    let r = run_bench(bins, &args, &json_path);
    drop(server);
    drop(pg);
    let r = r?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(r)
}

fn run_nats(bins: &Bins, out: &Path, scen: &str, quick: bool) -> anyhow::Result<Value> {
    let dir = out.join(format!("nats-{scen}-{}", nonce()));
    std::fs::create_dir_all(&dir)?;
    let (port, ws) = (free_port()?, free_port()?);
    let conf = dir.join("nats.conf");
    std::fs::write(
        &conf,
        format!(
            "listen: 127.0.0.1:{port}\nmax_connections: 100000\n\
             websocket {{\n  host: 127.0.0.1\n  port: {ws}\n  no_tls: true\n}}\n"
        ),
    )?;
    let log = std::fs::File::create(dir.join("nats.log"))?;
    let mut nats = Proc {
        name: "nats-server",
        child: Command::new(&bins.nats)
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting nats-server")?,
    };
    let ws_addr = SocketAddr::from(([127, 0, 0, 1], ws));
    let until = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect_timeout(&ws_addr, Duration::from_secs(1)).is_err() {
        if !nats.alive() || Instant::now() > until {
            bail!(
                "nats-server did not listen; see {}",
                dir.join("nats.log").display()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let json_path = dir.join("report.json");
    let mut args = vec![
        scen.to_owned(),
        "--target".into(),
        "nats".into(),
        "--ws".into(),
        ws_addr.to_string(),
        "--server-pid".into(),
        nats.pid().to_string(),
        "--json".into(),
        json_path.display().to_string(),
    ];
    args.extend(scenario_args(scen, quick));
    let r = run_bench(bins, &args, &json_path);
    drop(nats);
    let r = r?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(r)
}

fn run_bench(bins: &Bins, args: &[String], json_path: &Path) -> anyhow::Result<Value> {
    println!("$ im-bench {}", args.join(" "));
    let status = Command::new(&bins.bench)
        .args(args)
        .status()
        .context("running im-bench")?;
    let text = std::fs::read_to_string(json_path)
        .with_context(|| format!("im-bench wrote no report ({status})"))?;
    let v: Value = serde_json::from_str(&text).context("parsing the im-bench report")?;
    if !status.success() {
        eprintln!("im-bench exited with {status}");
    }
    Ok(v)
}

fn at<'a>(v: &'a Value, path: &[&str]) -> &'a Value {
    static NULL: Value = Value::Null;
    path.iter().fold(v, |v, k| v.get(k).unwrap_or(&NULL))
}

fn num(v: &Value, path: &[&str]) -> f64 {
    at(v, path).as_f64().unwrap_or(f64::NAN)
}

fn steps(r: &Value) -> Vec<Value> {
    at(r, &["result", "steps"])
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn find<'a>(reports: &'a [Value], scen: &str, target: &str) -> Vec<&'a Value> {
    reports
        .iter()
        .filter(|r| {
            at(r, &["scenario"]).as_str() == Some(scen)
                && at(r, &["target"]).as_str() == Some(target)
        })
        .collect()
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "NOT met" }
}

/// One table: every measured row, with the targets.
fn print_table(reports: &[Value], quick: bool) {
    println!(
        "\n=============== im-bench summary{} ===============",
        if quick {
            " (--quick: sizes too small for the targets)"
        } else {
            ""
        }
    );
    for r in reports {
        if let Some(e) = at(r, &["error"]).as_str() {
            println!(
                "{} {} {}: ERROR {e}",
                at(r, &["scenario"]),
                at(r, &["target"]),
                at(r, &["label"])
            );
        }
    }
    // W1
    let nats_w1: Vec<Value> = find(reports, "w1", "nats")
        .first()
        .map(|r| steps(r))
        .unwrap_or_default();
    for r in find(reports, "w1", "im") {
        println!(
            "\nW1 idle authed connections (im-server TCP v2; nats-server: subscribed WebSocket connections)"
        );
        println!(
            "{:>8} {:>12} {:>12} {:>14} {:>14}",
            "conns", "im RSS MiB", "im B/conn", "nats B/conn", "im/nats"
        );
        let mut last_ok = None;
        for s in steps(r) {
            let open = num(&s, &["open"]);
            let per = num(&s, &["bytes_per_conn"]);
            let n = nats_w1
                .iter()
                .find(|n| num(n, &["asked"]) == num(&s, &["asked"]))
                .map(|n| num(n, &["bytes_per_conn"]));
            println!(
                "{:>8} {:>12.1} {:>12.0} {:>14} {:>14}",
                open,
                num(&s, &["server_rss_bytes"]) / 1048576.0,
                per,
                n.map_or("-".to_owned(), |n| format!("{n:.0}")),
                n.map_or("-".to_owned(), |n| format!("{:.2}x", per / n))
            );
            last_ok = Some((open, per));
        }
        if let Some((open, per)) = last_ok {
            println!(
                "target <= 8192 B/conn at 19k: {} ({per:.0} B/conn at {open} connections)",
                verdict(open >= 19_000.0 && per <= 8192.0)
            );
        }
    }
    // W2
    for r in find(reports, "w2", "im") {
        println!(
            "\nW2 1:1 messaging ({} pairs, TCP v2, {})",
            at(r, &["result", "pairs"]),
            at(r, &["label"]).as_str().unwrap_or("?")
        );
        println!(
            "{:>9} {:>10} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "target/s",
            "acked/s",
            "deliv/s",
            "skipped",
            "ack p99",
            "e2e p50",
            "e2e p99",
            "e2e p999"
        );
        for s in steps(r) {
            println!(
                "{:>9.0} {:>10.0} {:>10.0} {:>9} {:>9.1} {:>9.1} {:>9.1} {:>9.1}",
                num(&s, &["target_msgs_per_s"]),
                num(&s, &["acked_per_s"]),
                num(&s, &["delivered_per_s"]),
                at(&s, &["skipped"]).as_u64().unwrap_or(0),
                num(&s, &["ack_us", "p99"]) / 1e3,
                num(&s, &["e2e_us", "p50"]) / 1e3,
                num(&s, &["e2e_us", "p99"]) / 1e3,
                num(&s, &["e2e_us", "p999"]) / 1e3,
            );
        }
        println!("(latencies in ms)");
    }
    // W3
    let nats_w3: Vec<Value> = find(reports, "w3", "nats")
        .first()
        .map(|r| steps(r))
        .unwrap_or_default();
    for r in find(reports, "w3", "im") {
        println!(
            "\nW3 group fan-out ({} groups x {} members, WebSocket, {})",
            at(r, &["result", "groups"]),
            at(r, &["result", "members"]),
            at(r, &["label"]).as_str().unwrap_or("?")
        );
        println!(
            "{:>9} {:>10} {:>10} {:>11} {:>9} {:>9} {:>11} {:>9} {:>8} {:>8}",
            "msgs/s",
            "deliv/s",
            "expected",
            "deliv/CPU-s",
            "e2e p50",
            "e2e p99",
            "nats d/CPU-s",
            "nats p99",
            "ratio",
            "targets"
        );
        let mut any = false;
        for (i, s) in steps(r).iter().enumerate() {
            let dpc = num(s, &["deliveries_per_server_cpu_s"]);
            let p99 = num(s, &["e2e_us", "p99"]) / 1e3;
            let n = nats_w3.get(i);
            let ndpc = n.map(|n| num(n, &["deliveries_per_server_cpu_s"]));
            let ratio = ndpc.map(|n| dpc / n);
            let complete = num(s, &["delivered"]) >= num(s, &["expected_deliveries"]) * 0.999;
            let ok = dpc >= 150_000.0 && p99 <= 50.0 && complete && ratio.is_some_and(|r| r >= 1.0);
            any |= ok;
            println!(
                "{:>9.0} {:>10.0} {:>10.0} {:>11.0} {:>9.1} {:>9.1} {:>11} {:>9} {:>8} {:>8}",
                num(s, &["target_msgs_per_s"]),
                num(s, &["delivered_per_s"]),
                num(s, &["expected_deliveries"]) / num(s, &["secs"]),
                dpc,
                num(s, &["e2e_us", "p50"]) / 1e3,
                p99,
                ndpc.map_or("-".to_owned(), |n| format!("{n:.0}")),
                n.map_or("-".to_owned(), |n| format!(
                    "{:.1}",
                    num(n, &["e2e_us", "p99"]) / 1e3
                )),
                ratio.map_or("-".to_owned(), |r| format!("{r:.2}x")),
                verdict(ok)
            );
        }
        println!(
            "target >= 150k deliveries/server CPU-s, p99 <= 50 ms, >= 1.0x NATS (all deliveries made): {}",
            verdict(any)
        );
    }
    // W4
    for r in find(reports, "w4", "im") {
        let db = at(r, &["label"]).as_str().unwrap_or("?").to_owned();
        let want = if db == "postgres" { 30_000.0 } else { 50_000.0 };
        println!(
            "\nW4 durable sends on {db} ({} connections, window {})",
            at(r, &["result", "senders"]),
            at(r, &["result", "window"])
        );
        for s in steps(r) {
            let rate = num(&s, &["acked_per_s"]);
            let p99 = num(&s, &["ack_us", "p99"]) / 1e3;
            println!(
                "acked/s {rate:.0}  ack p50 {:.1} ms  p99 {p99:.1} ms  p999 {:.1} ms  errors {}  im-server CPU-s {:.1} (database process not counted)",
                num(&s, &["ack_us", "p50"]) / 1e3,
                num(&s, &["ack_us", "p999"]) / 1e3,
                at(&s, &["acked_err"]).as_u64().unwrap_or(0),
                num(&s, &["server_cpu_s"]),
            );
            println!(
                "target >= {want:.0} acked/s with p99 <= 50 ms: {}",
                verdict(rate >= want && p99 <= 50.0)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_arguments() {
        let o = parse(&["w3", "--vs", "nats", "--quick"]).unwrap();
        assert_eq!(o.scenarios, vec!["w3"]);
        assert!(o.vs_nats && o.quick && o.build);
        let o = parse(&["--db", "both", "--no-build"]).unwrap();
        assert_eq!(o.scenarios.len(), 4);
        assert_eq!(o.dbs, vec!["sqlite", "postgres"]);
        assert!(parse(&["w9"]).is_err());
        assert!(parse(&["--vs", "redis"]).is_err());
    }
}
