//! A rough throughput measurement, not run by default:
//! `cargo test -p im-repository --release --test it -- --ignored --nocapture append_throughput`

use std::time::Instant;

use im_core::ports::MessageStore;
use im_repository::SqliteStore;

use crate::common::{options_in, single};

async fn run(synchronous_full: bool) -> f64 {
    const TOTAL: usize = 100_000;
    const BATCH: usize = 256;
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options_in(&dir);
    opts.synchronous_full = synchronous_full;
    let store = SqliteStore::open(opts).await.unwrap();
    // 1:1 traffic among 1000 users, ~2 participants per message
    let msgs: Vec<_> = (0..TOTAL)
        .map(|i| {
            let a = i % 1000;
            let b = (i * 7 + 13) % 1000;
            let b = if a == b { (b + 1) % 1000 } else { b };
            let mut m = single(&format!("u{a}"), &format!("u{b}"), &format!("c{i}"));
            m.content = bytes::Bytes::from(vec![b'x'; 100]);
            m
        })
        .collect();
    let start = Instant::now();
    for batch in msgs.chunks(BATCH) {
        store.append(batch).await.unwrap();
    }
    let rate = TOTAL as f64 / start.elapsed().as_secs_f64();
    println!(
        "append: {TOTAL} msgs in batches of {BATCH}, synchronous={}: {:.0} msgs/s ({:.2?})",
        if synchronous_full { "FULL" } else { "NORMAL" },
        rate,
        start.elapsed()
    );
    rate
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement; run with --ignored --nocapture"]
async fn append_throughput() {
    assert!(run(true).await > 0.0);
    assert!(run(false).await > 0.0);
}

#[allow(dead_code)]
fn _assert_store_is_send_sync(s: SqliteStore) -> impl Send + Sync + Clone {
    s
}
