//! Two nodes in one test process — two real `App`s with their own
//! listeners — sharing a PostgreSQL database and the real Redis (own key
//! prefix). Needs IM_TEST_POSTGRES_URL and IM_TEST_REDIS_URL (skips with a
//! reason otherwise, fails under IM_TEST_REQUIRE_BACKENDS=1). The
//! three-process suite is `tests/multinode.rs`.

use im_core::Generation;
use im_core::command::Event;

use crate::durability::PgDatabase;
use crate::{TestServer, WAIT, next_text, sent_ok};

fn redis_url() -> Option<String> {
    match std::env::var("IM_TEST_REDIS_URL") {
        Ok(u) => Some(u),
        Err(_) => {
            let required = std::env::var("IM_TEST_REQUIRE_BACKENDS").is_ok_and(|v| v == "1");
            assert!(
                !required,
                "IM_TEST_REQUIRE_BACKENDS=1 but IM_TEST_REDIS_URL is not set"
            );
            eprintln!("skipping: IM_TEST_REDIS_URL not set");
            None
        }
    }
}

async fn two_nodes() -> Option<(TestServer, TestServer, PgDatabase)> {
    let redis = redis_url()?;
    let db = PgDatabase::create()?;
    let prefix = format!("imit{}:", rand_suffix());
    let node = |id: &'static str| {
        let (redis, prefix, url) = (redis.clone(), prefix.clone(), db.url.clone());
        move |c: &mut im_server::config::Config| {
            c.database.kind = im_server::config::DatabaseKind::Postgres;
            c.database.url = Some(url.into());
            c.redis.enabled = true;
            c.redis.url = Some(redis.into());
            c.redis.key_prefix = prefix;
            c.cluster.node_id = Some(id.to_owned());
            c.cluster.route_ttl = std::time::Duration::from_secs(3);
            c.cluster.refresh_interval = std::time::Duration::from_millis(500);
        }
    };
    let a = TestServer::start_with(node("n1")).await;
    let b = TestServer::start_with(node("n2")).await;
    Some((a, b, db))
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        ^ u64::from(std::process::id())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_and_kicks_cross_nodes() {
    let Some((a, b, _db)) = two_nodes().await else {
        return;
    };
    let mut alice = a.tcp("alice").await;
    let mut bob = b.ws("bob", Generation::V2, "iOS").await;
    sent_ok(
        &alice
            .send_text("single_alice_bob", "c1", "hello across")
            .await
            .unwrap(),
    );
    let (body, m) = next_text(&mut bob).await.expect("cross-node push");
    assert_eq!(body, "hello across");
    assert_eq!(m.seq, 1);
    // bob logs in again on node 1, same platform: node 2's session is kicked.
    let _bob_again = a.ws("bob", Generation::V2, "iOS").await;
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut kicked = false;
    while tokio::time::Instant::now() < deadline {
        match bob.next_event(WAIT).await {
            Ok(Some(Event::KickOut { .. })) => {
                kicked = true;
                break;
            }
            Ok(Some(_)) => {}
            _ => break,
        }
    }
    assert!(kicked, "the node-2 session was not kicked");
    a.stop().await;
    b.stop().await;
}
