//! `im-soak`: a randomized soak of im-server with a history checker.
//!
//! Seeded devices of both protocol generations chat 1:1 and in groups,
//! resend what got no answer, reconnect, go offline and sync, recall, send
//! read receipts, get kicked by their own second login and log out, while
//! group members join, leave and get kicked over HTTP and a nemesis kills
//! nodes, cuts or stalls the database, restarts or flushes Redis and makes
//! readers slow. Then everything quiesces, every device catches up and
//! reads its conversations in full, and [`checker::check`] proves the
//! recorded histories consistent (see there for the list). `cargo xtask
//! soak` builds the server and runs this; `--help` lists the knobs.
//!
//! The schedule of operations and faults follows from `--seed` (each
//! device and the nemesis have their own generator); the interleaving with
//! the server does not, so a replay runs the same operations, not
//! necessarily the same race.

mod checker;
mod device;
mod history;
mod http;
mod rig;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use serde_json::json;

use crate::device::{Device, GroupModel, Kind, Spec, World};
use crate::history::{FaultRec, History, MemberChange, MemberOp, Recorder};
use crate::rig::{Profile, Rig};

#[derive(Debug, Parser)]
#[command(
    name = "im-soak",
    about = "Randomized soak of im-server with a history checker"
)]
struct Args {
    /// Deployment: one SQLite node, three nodes on PostgreSQL + Redis, or
    /// one node on MariaDB (the database servers from IM_TEST_POSTGRES_URL
    /// / IM_TEST_MYSQL_URL).
    #[arg(long, value_enum, default_value = "sqlite")]
    profile: Profile,
    /// Seed of the operation and fault schedule (default: from the clock;
    /// printed either way).
    #[arg(long)]
    seed: Option<u64>,
    /// Traffic phase length in seconds (the final sync and check follow).
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Traffic phase length in minutes (overrides --seconds).
    #[arg(long)]
    minutes: Option<u64>,
    /// Simulated users (each has two devices).
    #[arg(long, default_value_t = 8)]
    users: usize,
    /// Groups (owner plus about half of the users each).
    #[arg(long, default_value_t = 3)]
    groups: usize,
    /// Mean seconds between faults.
    #[arg(long, default_value_t = 8.0)]
    fault_every: f64,
    /// No faults at all.
    #[arg(long)]
    no_faults: bool,
    /// Also restart the machine's database server itself (pg_ctlcluster /
    /// the MariaDB daemon): everything else using it sees the restart too.
    #[arg(long)]
    restart_db_server: bool,
    /// The im-server binary.
    #[arg(long)]
    server_bin: PathBuf,
    /// Folder for logs and histories (default target/soak/<profile>-<seed>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Keep the folder after a passing run (a failing run always keeps it).
    #[arg(long)]
    keep: bool,
    /// How long (ms) after its HTTP answer a group membership change may
    /// take to be in force on every node (0: at once, as the server
    /// promises).
    #[arg(long, default_value_t = 0)]
    membership_lag_ms: u64,
    /// A violation kind that is a known, open bug: reported, listed in
    /// the folder, but not failing the run (repeatable).
    #[arg(long = "known")]
    known: Vec<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("soak: {e}");
            return ExitCode::from(2);
        }
    };
    match rt.block_on(run(args)) {
        Ok(Verdict::Pass) => ExitCode::SUCCESS,
        Ok(Verdict::Skipped) => ExitCode::SUCCESS,
        Ok(Verdict::Fail) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("soak: {e:#}");
            ExitCode::from(2)
        }
    }
}

enum Verdict {
    Pass,
    Fail,
    Skipped,
}

const PLATFORMS: [&str; 3] = ["iOS", "Android", "web"];
const KINDS: [Kind; 3] = [Kind::TcpV2, Kind::WsV2, Kind::WsV1];
const DEVICES_PER_USER: usize = 2;

async fn run(args: Args) -> anyhow::Result<Verdict> {
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    });
    let secs = args.minutes.map_or(args.seconds, |m| m * 60);
    let profile_name = format!("{:?}", args.profile).to_lowercase();
    let dir = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("target/soak/{profile_name}-{seed}")));
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "soak: profile {profile_name}, seed {seed}, {secs} s of traffic, {} users x {DEVICES_PER_USER} devices, {} groups; folder {}",
        args.users,
        args.groups,
        dir.display()
    );
    let rig = match Rig::start(args.profile, &args.server_bin, &dir).await? {
        Ok(rig) => rig,
        Err(skip) => {
            if im_repository::scratch::backends_required() {
                bail!("profile {profile_name} cannot run: {}", skip.0);
            }
            println!("soak: skipping profile {profile_name}: {}", skip.0);
            return Ok(Verdict::Skipped);
        }
    };
    let result = drive(&args, seed, secs, Arc::clone(&rig)).await;
    rig.shutdown().await;
    let (history, violations) = result?;
    report(
        &args,
        &profile_name,
        seed,
        secs,
        &dir,
        &history,
        &violations,
    )
}

type Outcome = (History, Vec<checker::Violation>);

async fn drive(args: &Args, seed: u64, secs: u64, rig: Arc<Rig>) -> anyhow::Result<Outcome> {
    let users: Vec<String> = (0..args.users).map(|i| format!("u{i}")).collect();
    let mut specs = Vec::new();
    for (i, user) in users.iter().enumerate() {
        for j in 0..DEVICES_PER_USER {
            let index = specs.len();
            specs.push(Spec {
                index,
                user: user.clone(),
                platform: PLATFORMS
                    .get(j % PLATFORMS.len())
                    .copied()
                    .unwrap_or("iOS")
                    .to_owned(),
                kind: KINDS
                    .get((i + j) % KINDS.len())
                    .copied()
                    .unwrap_or(Kind::TcpV2),
                skewed: index % 4 == 1,
            });
        }
    }
    let rec = Arc::new(Recorder::new(
        specs.iter().map(|s| (s.user.clone(), s.name())).collect(),
    ));
    let mut world = World::new(
        Arc::clone(&rig),
        Arc::clone(&rec),
        users.clone(),
        specs.len(),
    );
    register(&world).await?;
    let mut rng = StdRng::seed_from_u64(seed);
    world.groups = create_groups(&world, args.groups, &mut rng).await?;
    let world = Arc::new(world);

    let mut devices = tokio::task::JoinSet::new();
    for spec in specs {
        let d = Device::new(spec, Arc::clone(&world), seed);
        devices.spawn(d.run());
    }
    let admin = tokio::spawn(group_admin(Arc::clone(&world), seed ^ 0xA11CE));
    let nemesis = (!args.no_faults).then(|| {
        tokio::spawn(nemesis(
            Arc::clone(&world),
            seed ^ 0xBAD,
            args.fault_every,
            args.restart_db_server,
        ))
    });
    let traffic = tokio::time::sleep(Duration::from_secs(secs));
    match nemesis {
        Some(mut n) => {
            // A fault that cannot be injected or healed ends the run at
            // once (its verdict would be about a broken rig).
            let r = tokio::select! {
                () = traffic => {
                    world.stop.store(true, Ordering::SeqCst);
                    n.await
                }
                r = &mut n => r,
            };
            world.stop.store(true, Ordering::SeqCst);
            r.context("nemesis")??;
        }
        None => {
            traffic.await;
            world.stop.store(true, Ordering::SeqCst);
        }
    }
    admin.await.context("group admin")?;
    let mut done = Vec::new();
    while let Some(d) = devices.join_next().await {
        done.push(d.context("device task")?);
    }
    // Quiesce: every node up and ready, the database and Redis healed.
    rig.db_restore();
    for i in 0..rig.node_count() {
        if rig.wait_ready(i).await.is_err() {
            rig.restart(i).await?;
        }
    }
    println!(
        "soak: traffic stopped after {} s; resolving unanswered sends",
        rec.now() / 1000
    );
    let mut resolving = tokio::task::JoinSet::new();
    for mut d in done {
        resolving.spawn(async move {
            d.resolve().await;
            d
        });
    }
    let mut done = Vec::new();
    while let Some(d) = resolving.join_next().await {
        done.push(d.context("device task")?);
    }
    println!("soak: final sync and read");
    let mut seen_users = HashSet::new();
    let mut finishing = tokio::task::JoinSet::new();
    for mut d in done {
        let first_of_user = seen_users.insert(d_user(&d));
        finishing.spawn(async move { d.finish(first_of_user).await });
    }
    while let Some(r) = finishing.join_next().await {
        r.context("device task")??;
    }
    drop(world);
    let rec = Arc::try_unwrap(rec).map_err(|_| anyhow::anyhow!("recorder still shared"))?;
    let history = rec.into_history();
    let violations = checker::check(&history, args.membership_lag_ms);
    Ok((history, violations))
}

fn d_user(d: &Device) -> String {
    d.user().to_owned()
}

/// Registers every user over HTTP (groups need existing users).
async fn register(w: &World) -> anyhow::Result<()> {
    let a = w.rig.addrs(0);
    for u in &w.users {
        let r = http::request(
            a.http,
            "POST",
            "/api/auth/register",
            None,
            Some(&json!({"username": u, "password": "soak-password", "nickname": u})),
            Duration::from_secs(30),
        )
        .await?;
        if r.status != 200 {
            bail!("register {u}: HTTP {}: {}", r.status, r.body);
        }
    }
    Ok(())
}

async fn create_groups(w: &World, n: usize, rng: &mut StdRng) -> anyhow::Result<Vec<GroupModel>> {
    let mut out = Vec::new();
    for g in 0..n {
        let Some(owner) = w.users.get(g % w.users.len().max(1)).cloned() else {
            bail!("no users");
        };
        let members: Vec<String> = w
            .users
            .iter()
            .filter(|u| **u != owner && rng.random_bool(0.5))
            .cloned()
            .collect();
        let start = w.rec.now();
        let r = http::request(
            w.rig.addrs(0).http,
            "POST",
            "/api/group/create",
            Some(&w.token(&owner, "admin")),
            Some(&json!({"groupName": format!("soak {g}"), "memberUserIDs": members})),
            Duration::from_secs(10),
        )
        .await?;
        let id = r.data()?["groupID"]
            .as_str()
            .context("no groupID in the create reply")?
            .to_owned();
        let end = w.rec.now();
        let mut all: HashSet<String> = members.into_iter().collect();
        all.insert(owner.clone());
        for u in &all {
            w.rec.member(MemberOp {
                group: id.clone(),
                user: u.clone(),
                op: MemberChange::Create,
                start,
                end,
                ok: Some(true),
            });
        }
        out.push(GroupModel {
            id,
            owner,
            members: std::sync::Mutex::new(all),
        });
    }
    Ok(out)
}

/// Joins, leaves and kicks while the traffic flows.
async fn group_admin(w: Arc<World>, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    while !w.stopping() && !w.groups.is_empty() {
        tokio::time::sleep(Duration::from_millis(rng.random_range(300..1500))).await;
        let Some(g) = w.groups.choose(&mut rng) else {
            return;
        };
        let others: Vec<&String> = w.users.iter().filter(|u| **u != g.owner).collect();
        if others.is_empty() {
            continue;
        }
        let Some(user) = others.choose(&mut rng).map(|u| (*u).clone()) else {
            continue;
        };
        let member = g.members.lock().map(|m| m.contains(&user)).unwrap_or(false);
        let (op, path, as_user, body) = if !member {
            (
                MemberChange::Join,
                format!("/api/group/{}/join", g.id),
                user.clone(),
                json!({}),
            )
        } else if rng.random_bool(0.5) {
            (
                MemberChange::Leave,
                format!("/api/group/{}/leave", g.id),
                user.clone(),
                json!({}),
            )
        } else {
            (
                MemberChange::Kick,
                format!("/api/group/{}/kick", g.id),
                g.owner.clone(),
                json!({"userIDs": [user]}),
            )
        };
        let a = w.node(&mut rng);
        let start = w.rec.now();
        let r = http::request(
            a.http,
            "POST",
            &path,
            Some(&w.token(&as_user, "admin")),
            Some(&body),
            Duration::from_secs(5),
        )
        .await;
        let end = w.rec.now();
        let ok = match &r {
            Ok(r) if r.status == 200 => Some(true),
            Ok(r) if (400..500).contains(&r.status) => Some(false),
            _ => None,
        };
        w.rec.op(&format!("group_{op:?}").to_lowercase());
        if ok == Some(true) {
            if let Ok(mut m) = g.members.lock() {
                if op.adds() {
                    m.insert(user.clone());
                } else {
                    m.remove(&user);
                }
            }
        }
        w.rec.member(MemberOp {
            group: g.id.clone(),
            user,
            op,
            start,
            end,
            ok,
        });
    }
}

/// Injects faults until the world stops; every fault is healed on return.
async fn nemesis(
    w: Arc<World>,
    seed: u64,
    every: f64,
    restart_db_server: bool,
) -> anyhow::Result<()> {
    let mut rng = StdRng::seed_from_u64(seed);
    let rig = Arc::clone(&w.rig);
    let mut kinds = vec!["kill9_node", "slow_reader"];
    if rig.has_db_proxy() {
        kinds.extend(["db_cut", "db_stall"]);
        if restart_db_server {
            kinds.push("db_server_restart");
        }
    }
    if rig.has_redis() {
        kinds.extend(["redis_restart", "redis_flush"]);
    }
    let ms = |rng: &mut StdRng, lo: u64, hi: u64| Duration::from_millis(rng.random_range(lo..hi));
    while !w.stopping() {
        let gap = (every * 1000.0 * rng.random_range(0.5..1.5)) as u64;
        tokio::time::sleep(Duration::from_millis(gap)).await;
        if w.stopping() {
            break;
        }
        let Some(&kind) = kinds.choose(&mut rng) else {
            return Ok(());
        };
        let start = w.rec.now();
        let target = match kind {
            "kill9_node" => {
                let i = rng.random_range(0..rig.node_count());
                rig.kill9(i);
                tokio::time::sleep(ms(&mut rng, 200, 3000)).await;
                rig.restart(i).await?;
                format!("node-{}", i + 1)
            }
            "slow_reader" => {
                let d = rng.random_range(0..w.paused_until.len());
                let until = w.rec.now() + rng.random_range(3000..15000);
                if let Some(p) = w.paused_until.get(d) {
                    p.store(until, Ordering::SeqCst);
                }
                format!("device {d}")
            }
            "db_cut" => {
                rig.db_cut();
                tokio::time::sleep(ms(&mut rng, 500, 4000)).await;
                rig.db_restore();
                rig.db_kind.to_owned()
            }
            "db_stall" => {
                rig.db_stall(true);
                tokio::time::sleep(ms(&mut rng, 500, 4000)).await;
                rig.db_restore();
                rig.db_kind.to_owned()
            }
            "db_server_restart" => {
                rig.restart_database_server().await?;
                rig.db_kind.to_owned()
            }
            "redis_restart" => {
                let down = ms(&mut rng, 200, 2000);
                rig.redis_restart(down).await?;
                "redis".to_owned()
            }
            "redis_flush" => {
                rig.redis_flush().await?;
                "redis".to_owned()
            }
            _ => continue,
        };
        let end = w.rec.now();
        println!(
            "soak: fault {kind} on {target} at {:.1} s ({} ms)",
            start as f64 / 1000.0,
            end - start
        );
        w.rec.fault(FaultRec {
            kind,
            target,
            start,
            end,
        });
    }
    Ok(())
}

fn report(
    args: &Args,
    profile: &str,
    seed: u64,
    secs: u64,
    dir: &std::path::Path,
    h: &History,
    violations: &[checker::Violation],
) -> anyhow::Result<Verdict> {
    let acked = h.sends.iter().filter(|s| s.acked().is_some()).count();
    let stored: BTreeSet<_> = h
        .devices
        .iter()
        .flat_map(|d| d.final_view.keys().chain(d.held.keys()))
        .collect();
    let mut faults: BTreeMap<&str, usize> = BTreeMap::new();
    for f in &h.faults {
        *faults.entry(f.kind).or_default() += 1;
    }
    let ops: u64 = h.ops.values().sum();
    let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
    for v in violations {
        *kinds.entry(v.kind).or_default() += 1;
    }
    let (known, violations): (Vec<_>, Vec<_>) = violations
        .iter()
        .cloned()
        .partition(|v| args.known.iter().any(|k| k == v.kind));
    let violations = violations.as_slice();
    let summary = json!({
        "profile": profile,
        "seed": seed,
        "seconds": secs,
        "operations": ops,
        "ops": h.ops,
        "messages_sent": h.sends.len(),
        "messages_acked": acked,
        "messages_stored": stored.len(),
        "membership_changes": h.members.len(),
        "recalls": h.recalls.len(),
        "read_receipts": h.receipts.len(),
        "faults": faults,
        "violations": violations.len(),
        "known_bug_hits": known.len(),
        "violation_kinds": kinds,
    });
    println!("soak: {}", serde_json::to_string_pretty(&summary)?);
    std::fs::create_dir_all(dir)?;
    std::fs::write(
        dir.join("report.json"),
        serde_json::to_vec_pretty(&summary)?,
    )?;
    if !known.is_empty() {
        history::dump(h, &dir.join("history"))?;
        std::fs::write(dir.join("known.txt"), minimized(h, &known))?;
        println!(
            "soak: KNOWN BUGS (not failing the run): {} hits of {:?}; records in {}",
            known.len(),
            args.known,
            dir.join("known.txt").display()
        );
    }
    if violations.is_empty() {
        println!("soak: PASS (profile {profile}, seed {seed}): 0 violations");
        if !args.keep && known.is_empty() {
            let _ = std::fs::remove_dir_all(dir);
        }
        return Ok(Verdict::Pass);
    }
    history::dump(h, &dir.join("history"))?;
    std::fs::write(dir.join("violations.txt"), minimized(h, violations))?;
    for v in violations.iter().take(30) {
        println!("soak: VIOLATION {}: {}", v.kind, v.detail);
    }
    println!(
        "soak: FAIL (profile {profile}, seed {seed}): {} violations; histories, the records of each \
         violation's messages (violations.txt) and the server logs are in {}; replay with \
         --profile {profile} --seed {seed} --seconds {secs} --users {} --groups {}",
        violations.len(),
        dir.display(),
        args.users,
        args.groups
    );
    Ok(Verdict::Fail)
}

/// For each violation, only the records about its messages: the sends
/// (every attempt), each device's copy, recalls, and the membership
/// changes and faults around them.
fn minimized(h: &History, violations: &[checker::Violation]) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    for v in violations {
        let _ = writeln!(out, "== {}: {}", v.kind, v.detail);
        for k in &v.keys {
            for s in h.sends.iter().filter(|s| &s.key == k) {
                let _ = writeln!(out, "  send {k} from device {}: {:?}", s.device, s.attempts);
                let (from, to) = (s.first_start(), s.attempts.last().map_or(0, |a| a.end));
                for f in h
                    .faults
                    .iter()
                    .filter(|f| f.start <= to + 5000 && from <= f.end + 5000)
                {
                    let _ = writeln!(
                        out,
                        "  fault {} on {} {}..{} ms",
                        f.kind, f.target, f.start, f.end
                    );
                }
            }
            for d in &h.devices {
                if let Some(x) = d.held.get(k) {
                    let _ = writeln!(out, "  {} held {x:?}", d.name);
                }
                if let Some(x) = d.final_view.get(k) {
                    let _ = writeln!(out, "  {} final {x:?}", d.name);
                }
            }
            for r in h.recalls.iter().filter(|r| &r.key == k) {
                let _ = writeln!(out, "  recall {r:?}");
            }
            if let Some(g) = k.conv.strip_prefix("group_") {
                for m in h.members.iter().filter(|m| m.group == g) {
                    let _ = writeln!(
                        out,
                        "  member {} {:?} {}..{} ok={:?}",
                        m.user, m.op, m.start, m.end, m.ok
                    );
                }
            }
        }
    }
    out
}
