//! Append throughput per backend and batch size (a measurement, not a test).
//!
//! ```text
//! cargo run --release -p im-repository --example append_sweep -- \
//!     [--messages 100000] [--seconds 20] [--batches 1,16,64,256,1024] [--writers 1] \
//!     sqlite[:DIR] postgres://postgres@127.0.0.1:5432/test mysql://root@127.0.0.1:3306/test
//! ```
//!
//! For every target and batch size it opens a store on a fresh database (a
//! file in a temporary directory for `sqlite`; for a server URL, a scratch
//! database created with that account and dropped afterwards), then calls
//! `MessageStore::append` with batches of 1:1 messages (1000 users, 100-byte
//! bodies) until `--messages` are stored or `--seconds` have passed, and
//! prints msgs/s and rows/s. Rows are the rows a message writes: the message
//! row only since v1 sync reads by position (nothing is written per
//! participant); counter updates and membership rows are not counted.
//!
//! `--writers W` runs W appenders at once, conversations sharded over them
//! like the service's writer workers (so they contend on the sync clock,
//! not on conversation counters).

use std::collections::hash_map::DefaultHasher;
use std::error::Error;
use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant};

use bytes::Bytes;
use im_core::model::NewMessage;
use im_core::ports::MessageStore;
use im_core::{ConversationId, ConversationType, UserId};
use im_repository::scratch::ScratchDb;
use im_repository::{AnyStore, Backend, DbOptions, ServerDbOptions, SqliteOptions};

type AnyError = Box<dyn Error + Send + Sync>;

#[derive(Debug)]
struct Args {
    messages: usize,
    seconds: f64,
    batches: Vec<usize>,
    writers: usize,
    targets: Vec<String>,
}

fn usage() -> String {
    "usage: append_sweep [--messages N] [--seconds S] [--batches 1,16,64,256,1024] \
     [--writers W] TARGET...\n  TARGET: sqlite[:DIR] | postgres://... | mysql://..."
        .to_owned()
}

fn parse_args() -> Result<Args, AnyError> {
    let mut args = Args {
        messages: 100_000,
        seconds: 20.0,
        batches: vec![1, 16, 64, 256, 1024],
        writers: 1,
        targets: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = || {
            it.next()
                .ok_or_else(|| format!("{a} needs a value\n{}", usage()))
        };
        match a.as_str() {
            "--messages" => args.messages = value()?.parse()?,
            "--seconds" => args.seconds = value()?.parse()?,
            "--writers" => args.writers = value()?.parse::<usize>()?.max(1),
            "--batches" => {
                args.batches = value()?
                    .split(',')
                    .map(|s| s.trim().parse::<usize>())
                    .collect::<Result<_, _>>()?;
            }
            "-h" | "--help" => return Err(usage().into()),
            _ if a.starts_with("--") => return Err(format!("unknown flag {a}\n{}", usage()).into()),
            _ => args.targets.push(a),
        }
    }
    if args.targets.is_empty() {
        return Err(usage().into());
    }
    Ok(args)
}

/// `n` 1:1 messages among 1000 users (about two participants each).
fn workload(n: usize, run: &str) -> Result<Vec<NewMessage>, AnyError> {
    let users: Vec<UserId> = (0..1000)
        .map(|i| UserId::parse(format!("user{i}")))
        .collect::<Result<_, _>>()?;
    let body = Bytes::from(vec![b'x'; 100]);
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let a = i % 1000;
        let mut b = (i * 7 + 13) % 1000;
        if a == b {
            b = (b + 1) % 1000;
        }
        let (Some(from), Some(to)) = (users.get(a), users.get(b)) else {
            return Err("user index out of range".into());
        };
        out.push(NewMessage {
            server_msg_id: format!("{run}-s{i}"),
            client_msg_id: format!("c{i}"),
            conversation_id: ConversationId::single(from, to).to_string(),
            conversation_type: ConversationType::Single,
            sender_id: from.clone(),
            receiver_id: to.as_str().to_owned(),
            group_id: String::new(),
            message_type: 1,
            content: body.clone(),
            send_time: 1_700_000_000_000,
            server_time: 1_700_000_000_000 + i as i64,
            extra: String::new(),
            participants: vec![from.clone(), to.clone()],
        });
    }
    Ok(out)
}

/// A fresh database for one setting, and what keeps it alive.
enum Place {
    Sqlite(tempfile::TempDir),
    Server(ScratchDb),
}

async fn fresh(target: &str, pool: usize) -> Result<(DbOptions, Place), AnyError> {
    if target == "sqlite" || target.starts_with("sqlite:") {
        let dir = match target.strip_prefix("sqlite:") {
            Some(parent) if !parent.is_empty() => tempfile::tempdir_in(parent)?,
            _ => tempfile::tempdir()?,
        };
        let opts = SqliteOptions::at(dir.path().join("im.db"));
        return Ok((DbOptions::Sqlite(opts), Place::Sqlite(dir)));
    }
    let db = ScratchDb::create(target).await?;
    let mut server = ServerDbOptions::new(db.url());
    server.max_open_conns = pool;
    server.acquire_timeout = Duration::from_secs(60);
    let opts = match Backend::of_url(target) {
        Backend::Postgres => DbOptions::Postgres(server),
        Backend::Mysql => DbOptions::Mysql(server),
        Backend::Sqlite => return Err(format!("not a database URL: {target}").into()),
    };
    Ok((opts, Place::Server(db)))
}

fn shard(m: &NewMessage, writers: usize) -> usize {
    let mut h = DefaultHasher::new();
    m.conversation_id.hash(&mut h);
    (h.finish() % writers as u64) as usize
}

struct Outcome {
    messages: usize,
    rows: usize,
    batches: usize,
    retries: usize,
    elapsed: Duration,
}

/// One appender: its shard of the messages, in batches, until done or the
/// deadline.
async fn appender(
    store: AnyStore,
    msgs: Vec<NewMessage>,
    batch: usize,
    deadline: Instant,
) -> Result<(usize, usize, usize, usize), AnyError> {
    let (mut messages, mut rows, mut batches, mut retries) = (0, 0, 0, 0);
    for chunk in msgs.chunks(batch.max(1)) {
        if Instant::now() >= deadline {
            break;
        }
        loop {
            match store.append(chunk).await {
                Ok(res) => {
                    let new = res.iter().filter(|a| !a.duplicate).count();
                    messages += new;
                    batches += 1;
                    break;
                }
                Err(e) if e.is_retryable() && retries < 1_000 => retries += 1,
                Err(e) => return Err(e.into()),
            }
        }
        rows += chunk.len();
    }
    Ok((messages, rows, batches, retries))
}

async fn measure(
    store: &AnyStore,
    args: &Args,
    batch: usize,
    run: &str,
) -> Result<Outcome, AnyError> {
    let msgs = workload(args.messages, run)?;
    let mut shards: Vec<Vec<NewMessage>> = vec![Vec::new(); args.writers];
    for m in msgs {
        let s = shard(&m, args.writers);
        if let Some(v) = shards.get_mut(s) {
            v.push(m);
        }
    }
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(args.seconds);
    let tasks: Vec<_> = shards
        .into_iter()
        .map(|s| tokio::spawn(appender(store.clone(), s, batch, deadline)))
        .collect();
    let mut out = Outcome {
        messages: 0,
        rows: 0,
        batches: 0,
        retries: 0,
        elapsed: Duration::ZERO,
    };
    for t in tasks {
        let (m, r, b, x) = t.await??;
        out.messages += m;
        out.rows += r;
        out.batches += b;
        out.retries += x;
    }
    out.elapsed = start.elapsed();
    Ok(out)
}

#[tokio::main]
async fn main() -> Result<(), AnyError> {
    let args = parse_args()?;
    println!(
        "append sweep: up to {} messages or {} s per setting, {} writer(s)",
        args.messages, args.seconds, args.writers
    );
    println!("| backend | batch | messages | seconds | commits/s | msgs/s | rows/s | retries |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for target in &args.targets {
        for &batch in &args.batches {
            let (opts, place) = fresh(target, args.writers + 1).await?;
            let backend = opts.backend();
            let store = AnyStore::open(opts).await?;
            let run = im_repository::scratch::unique_name("run");
            let o = measure(&store, &args, batch, &run).await?;
            let secs = o.elapsed.as_secs_f64().max(1e-9);
            println!(
                "| {backend} | {batch} | {} | {:.1} | {:.0} | {:.0} | {:.0} | {} |",
                o.messages,
                secs,
                o.batches as f64 / secs,
                o.messages as f64 / secs,
                o.rows as f64 / secs,
                o.retries
            );
            drop(store);
            match place {
                Place::Server(db) => db.drop_database().await?,
                Place::Sqlite(dir) => drop(dir),
            }
        }
    }
    Ok(())
}
