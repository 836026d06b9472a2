//! The Redis adapters against a real Redis.
//!
//! `IM_TEST_REDIS_URL` (e.g. `redis://127.0.0.1:6379`) names the server;
//! unset, these tests skip, and with `IM_TEST_REQUIRE_BACKENDS=1` (CI) they
//! fail instead. Each test works under a key prefix of its own and deletes
//! its keys at the end. The reconnect test starts a private `redis-server`
//! (found on PATH) on a free port instead.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use im_cache::{RedisCache, RedisOptions};
use im_core::StoreError;
use im_core::cluster::{Bus, BusHandler, Route, RouteTable};
use im_core::command::UserStatus;
use im_core::ports::{HealthCheck, PresenceStore};

const URL_ENV: &str = "IM_TEST_REDIS_URL";
const REQUIRE_ENV: &str = "IM_TEST_REQUIRE_BACKENDS";
const LONG_TTL: Duration = Duration::from_secs(30);
const SHORT_TTL: Duration = Duration::from_millis(300);

fn backends_required() -> bool {
    std::env::var(REQUIRE_ENV).is_ok_and(|v| v.trim() == "1")
}

/// The Redis URL, or None (with the reason printed) when the test skips.
fn redis_url(test: &str) -> Option<String> {
    match std::env::var(URL_ENV) {
        Ok(url) if !url.trim().is_empty() => Some(url.trim().to_owned()),
        _ if backends_required() => {
            panic!("{URL_ENV} not set, but {REQUIRE_ENV}=1 requires the redis tests to run")
        }
        _ => {
            eprintln!("skipping {test}: {URL_ENV} not set");
            None
        }
    }
}

/// One test's view of Redis: its URL and a key prefix of its own.
struct Ctx {
    url: String,
    prefix: String,
}

impl Ctx {
    fn new(test: &str) -> Option<Self> {
        let url = redis_url(test)?;
        Some(Self::with_url(url))
    }

    fn with_url(url: String) -> Self {
        Self {
            url,
            prefix: format!("imtest:{:016x}:", rand::random::<u64>()),
        }
    }

    fn opts(&self, node: &str, ttl: Duration) -> RedisOptions {
        let mut o = RedisOptions::new(self.url.clone(), node);
        o.key_prefix = self.prefix.clone();
        o.route_ttl = ttl;
        o.pool_size = 4;
        o
    }

    async fn node(&self, node: &str, ttl: Duration) -> RedisCache {
        RedisCache::connect(self.opts(node, ttl)).await.unwrap()
    }

    async fn raw(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url.as_str())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }

    /// Deletes every key under the prefix.
    async fn cleanup(self) {
        let mut c = self.raw().await;
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{}*", self.prefix))
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut c)
                .await
                .unwrap();
            if !keys.is_empty() {
                redis::cmd("DEL")
                    .arg(&keys)
                    .query_async::<()>(&mut c)
                    .await
                    .unwrap();
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
    }
}

fn users(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

fn route(node: &str, session: &str, platform: &str) -> Route {
    Route {
        node_id: node.to_owned(),
        session_key: session.to_owned(),
        platform: platform.to_owned(),
    }
}

/// Polls `cond` every 20 ms until it holds; panics after `timeout`.
async fn eventually<F, Fut>(what: &str, timeout: Duration, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if cond().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn hlen(ctx: &Ctx, key: &str) -> i64 {
    let mut c = ctx.raw().await;
    redis::cmd("HLEN")
        .arg(format!("{}{key}", ctx.prefix))
        .query_async(&mut c)
        .await
        .unwrap()
}

#[tokio::test]
async fn routes_across_two_nodes() {
    let Some(ctx) = Ctx::new("routes_across_two_nodes") else {
        return;
    };
    let a = ctx.node("node-a", LONG_TTL).await.routes();
    let b = ctx.node("node-b", LONG_TTL).await.routes();
    assert_eq!(a.node_id(), "node-a");
    assert_eq!(b.node_id(), "node-b");
    assert!(a.routes(&[]).await.unwrap().is_empty());

    a.add("alice", "node-a:1", "iOS").await.unwrap();
    b.add("alice", "node-b:1", "Web").await.unwrap();
    b.add("bob", "node-b:2", "Android").await.unwrap();
    let expected = vec![
        vec![
            route("node-a", "node-a:1", "iOS"),
            route("node-b", "node-b:1", "Web"),
        ],
        vec![],
        vec![route("node-b", "node-b:2", "Android")],
    ];
    let asked = users(&["alice", "carol", "bob"]);
    assert_eq!(a.routes(&asked).await.unwrap(), expected);
    assert_eq!(b.routes(&asked).await.unwrap(), expected);

    // Adding again replaces; removing twice is fine.
    a.add("alice", "node-a:1", "Android").await.unwrap();
    b.remove("alice", "node-b:1").await.unwrap();
    b.remove("alice", "node-b:1").await.unwrap();
    b.remove("nobody", "node-b:9").await.unwrap();
    assert_eq!(
        b.routes(&users(&["alice", "bob"])).await.unwrap(),
        vec![
            vec![route("node-a", "node-a:1", "Android")],
            vec![route("node-b", "node-b:2", "Android")],
        ]
    );
    ctx.cleanup().await;
}

#[tokio::test]
async fn a_node_that_stops_refreshing_disappears_after_its_ttl() {
    let Some(ctx) = Ctx::new("a_node_that_stops_refreshing_disappears_after_its_ttl") else {
        return;
    };
    let a = ctx.node("node-a", LONG_TTL).await.routes();
    let b = ctx.node("node-b", SHORT_TTL).await.routes();
    a.add("alice", "node-a:1", "iOS").await.unwrap();
    b.add("alice", "node-b:1", "Web").await.unwrap();

    // While B refreshes, its route stays, well past one TTL.
    let start = Instant::now();
    while start.elapsed() < SHORT_TTL * 3 {
        b.refresh().await.unwrap();
        assert_eq!(a.routes(&users(&["alice"])).await.unwrap()[0].len(), 2);
        tokio::time::sleep(SHORT_TTL / 4).await;
    }

    // B stops refreshing (killed): its route goes, A's stays.
    eventually(
        "node-b's route to expire",
        Duration::from_secs(5),
        || async {
            a.routes(&users(&["alice"])).await.unwrap()
                == vec![vec![route("node-a", "node-a:1", "iOS")]]
        },
    )
    .await;
    // And the dead entry is pruned from the hash.
    eventually(
        "the dead route to be pruned",
        Duration::from_secs(5),
        || async { hlen(&ctx, "routes:alice").await == 1 },
    )
    .await;
    ctx.cleanup().await;
}

#[tokio::test]
async fn a_restarted_node_drops_the_routes_of_its_previous_run() {
    let Some(ctx) = Ctx::new("a_restarted_node_drops_the_routes_of_its_previous_run") else {
        return;
    };
    let a = ctx.node("node-a", LONG_TTL).await.routes();
    let b = ctx.node("node-b", LONG_TTL).await.routes();
    b.add("alice", "node-b:1", "Web").await.unwrap();
    assert_eq!(a.routes(&users(&["alice"])).await.unwrap()[0].len(), 1);
    // node-b is killed and starts again at once, under the same id.
    let b2 = ctx.node("node-b", LONG_TTL).await.routes();
    assert_eq!(a.routes(&users(&["alice"])).await.unwrap(), vec![vec![]]);
    b2.add("alice", "node-b:1", "iOS").await.unwrap();
    assert_eq!(
        a.routes(&users(&["alice"])).await.unwrap(),
        vec![vec![route("node-b", "node-b:1", "iOS")]]
    );
    ctx.cleanup().await;
}

#[tokio::test]
async fn a_refresh_after_a_lapse_writes_the_sessions_again() {
    let Some(ctx) = Ctx::new("a_refresh_after_a_lapse_writes_the_sessions_again") else {
        return;
    };
    let a = ctx.node("node-a", LONG_TTL).await;
    let b = ctx.node("node-b", SHORT_TTL).await;
    b.routes().add("alice", "node-b:1", "Web").await.unwrap();
    assert!(
        b.presence()
            .session_up("alice", "node-b:1", "Web", 5)
            .await
            .unwrap()
    );
    // B stalls past its TTL; A prunes its entries.
    eventually(
        "node-b to count as dead",
        Duration::from_secs(5),
        || async {
            a.routes().routes(&users(&["alice"])).await.unwrap() == vec![vec![]]
                && !a.presence().statuses(&users(&["alice"])).await.unwrap()[0].online
        },
    )
    .await;
    eventually(
        "the dead entries to be pruned",
        Duration::from_secs(5),
        || async {
            hlen(&ctx, "routes:alice").await == 0 && hlen(&ctx, "presence:alice").await == 0
        },
    )
    .await;
    // B comes back: its refresh restores what it holds.
    b.routes().refresh().await.unwrap();
    assert_eq!(
        a.routes().routes(&users(&["alice"])).await.unwrap(),
        vec![vec![route("node-b", "node-b:1", "Web")]]
    );
    let s = a.presence().statuses(&users(&["alice"])).await.unwrap();
    assert!(s[0].online);
    assert_eq!(s[0].platforms, vec!["Web".to_owned()]);
    ctx.cleanup().await;
}

#[tokio::test]
async fn presence_transitions_across_two_nodes() {
    let Some(ctx) = Ctx::new("presence_transitions_across_two_nodes") else {
        return;
    };
    let a = ctx.node("node-a", LONG_TTL).await.presence();
    let b = ctx.node("node-b", LONG_TTL).await.presence();
    assert!(a.statuses(&[]).await.unwrap().is_empty());

    assert!(a.session_up("alice", "node-a:1", "iOS", 10).await.unwrap());
    assert!(!b.session_up("alice", "node-b:1", "Web", 20).await.unwrap());
    // The same session again is not a transition.
    assert!(!b.session_up("alice", "node-b:1", "Web", 25).await.unwrap());
    let s = b
        .statuses(&users(&["carol", "alice", "carol"]))
        .await
        .unwrap();
    assert_eq!(
        s,
        vec![
            UserStatus {
                user_id: "carol".into(),
                ..UserStatus::default()
            },
            UserStatus {
                user_id: "alice".into(),
                online: true,
                platforms: vec!["Web".into(), "iOS".into()],
                last_seen: 25,
            },
            UserStatus {
                user_id: "carol".into(),
                ..UserStatus::default()
            },
        ]
    );

    assert!(!a.session_down("alice", "node-a:1", 30).await.unwrap());
    let s = a.statuses(&users(&["alice"])).await.unwrap();
    assert!(s[0].online);
    assert_eq!(s[0].platforms, vec!["Web".to_owned()]);
    assert_eq!(s[0].last_seen, 30);

    assert!(b.session_down("alice", "node-b:1", 40).await.unwrap());
    // Already gone, or never there: nothing happens (last_seen kept).
    assert!(!b.session_down("alice", "node-b:1", 50).await.unwrap());
    assert!(!a.session_down("nobody", "node-a:9", 50).await.unwrap());
    let s = a.statuses(&users(&["alice"])).await.unwrap();
    assert_eq!(
        s[0],
        UserStatus {
            user_id: "alice".into(),
            online: false,
            platforms: vec![],
            last_seen: 40,
        }
    );

    // A kicked session going down after its replacement is up keeps the user online.
    assert!(a.session_up("bob", "node-a:2", "iOS", 60).await.unwrap());
    assert!(!b.session_up("bob", "node-b:2", "iOS", 61).await.unwrap());
    assert!(!a.session_down("bob", "node-a:2", 62).await.unwrap());
    assert!(b.statuses(&users(&["bob"])).await.unwrap()[0].online);
    // last_seen never moves backwards.
    assert!(!b.session_up("bob", "node-b:3", "Web", 1).await.unwrap());
    assert_eq!(b.statuses(&users(&["bob"])).await.unwrap()[0].last_seen, 62);
    ctx.cleanup().await;
}

#[tokio::test]
async fn the_sessions_of_a_dead_node_stop_counting() {
    let Some(ctx) = Ctx::new("the_sessions_of_a_dead_node_stop_counting") else {
        return;
    };
    let a = ctx.node("node-a", LONG_TTL).await.presence();
    let b = ctx.node("node-b", SHORT_TTL).await.presence();
    assert!(b.session_up("alice", "node-b:1", "iOS", 100).await.unwrap());
    assert!(a.statuses(&users(&["alice"])).await.unwrap()[0].online);
    // node-b is killed: no refresh, no session_down.
    eventually("alice to go offline", Duration::from_secs(5), || async {
        !a.statuses(&users(&["alice"])).await.unwrap()[0].online
    })
    .await;
    let s = a.statuses(&users(&["alice"])).await.unwrap();
    assert_eq!(s[0].last_seen, 100);
    assert!(s[0].platforms.is_empty());
    // She logs in on node-a: an online transition, the dead session not counting.
    assert!(a.session_up("alice", "node-a:1", "Web", 200).await.unwrap());
    assert!(a.session_down("alice", "node-a:1", 300).await.unwrap());
    ctx.cleanup().await;
}

#[tokio::test]
async fn racing_nodes_report_one_transition() {
    let Some(ctx) = Ctx::new("racing_nodes_report_one_transition") else {
        return;
    };
    let a = ctx.node("node-a", LONG_TTL).await.presence();
    let b = ctx.node("node-b", LONG_TTL).await.presence();
    for i in 0..30 {
        let user = format!("user{i}");
        let sa = format!("node-a:{i}");
        let sb = format!("node-b:{i}");
        let (ua, ub) = tokio::join!(
            a.session_up(&user, &sa, "iOS", 10),
            b.session_up(&user, &sb, "Web", 10)
        );
        let ups = [ua.unwrap(), ub.unwrap()];
        assert_eq!(ups.iter().filter(|t| **t).count(), 1, "{user}: {ups:?}");
        let (da, db) = tokio::join!(
            a.session_down(&user, &sa, 20),
            b.session_down(&user, &sb, 20)
        );
        let downs = [da.unwrap(), db.unwrap()];
        assert_eq!(downs.iter().filter(|t| **t).count(), 1, "{user}: {downs:?}");
    }
    ctx.cleanup().await;
}

/// Collects what the bus delivers, and counts resubscriptions.
#[derive(Default)]
struct Collector(Mutex<Vec<Vec<u8>>>, std::sync::atomic::AtomicUsize);

impl BusHandler for Collector {
    fn on_message(&self, payload: &[u8]) {
        self.0.lock().unwrap().push(payload.to_vec());
    }

    fn on_subscription(&self, up: bool) {
        if !up {
            self.1.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }
}

impl Collector {
    fn has(&self, payload: &[u8]) -> bool {
        self.0.lock().unwrap().iter().any(|p| p == payload)
    }
    fn count(&self, payload: &[u8]) -> usize {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|p| *p == payload)
            .count()
    }
    fn clear(&self) {
        self.0.lock().unwrap().clear();
    }
}

/// Broadcasts probes until every collector got one (the subscriptions are up).
async fn wait_subscribed(bus: &dyn Bus, collectors: &[&Collector]) {
    eventually("the bus subscriptions", Duration::from_secs(10), || async {
        let _ = bus.broadcast(b"probe").await;
        collectors.iter().all(|c| c.has(b"probe"))
    })
    .await;
    for c in collectors {
        c.clear();
    }
}

#[tokio::test]
async fn the_bus_delivers_to_one_node_or_all() {
    let Some(ctx) = Ctx::new("the_bus_delivers_to_one_node_or_all") else {
        return;
    };
    let (a, b, c) = (
        ctx.node("node-a", LONG_TTL).await.bus(),
        ctx.node("node-b", LONG_TTL).await.bus(),
        ctx.node("node-c", LONG_TTL).await.bus(),
    );
    let (ha, hb, hc) = (
        Arc::new(Collector::default()),
        Arc::new(Collector::default()),
        Arc::new(Collector::default()),
    );
    a.start(ha.clone());
    b.start(hb.clone());
    c.start(hc.clone());
    // A second start is ignored (no second subscription, no duplicates).
    b.start(Arc::new(Collector::default()));
    wait_subscribed(&a, &[&ha, &hb, &hc]).await;

    a.publish("node-b", b"to-b").await.unwrap();
    a.broadcast(b"fence").await.unwrap();
    eventually("the fence everywhere", Duration::from_secs(5), || async {
        ha.has(b"fence") && hb.has(b"fence") && hc.has(b"fence")
    })
    .await;
    // Redis delivers in publish order: to-b arrived before the fence.
    assert_eq!(hb.count(b"to-b"), 1);
    assert!(!ha.has(b"to-b"));
    assert!(!hc.has(b"to-b"));
    // Each got the broadcast once, the sender included; B's second start added nothing.
    assert_eq!(ha.count(b"fence"), 1);
    assert_eq!(hb.count(b"fence"), 1);
    assert_eq!(hc.count(b"fence"), 1);

    // To a node nobody runs: lost, not an error.
    a.publish("node-z", b"lost").await.unwrap();
    // Binary payloads pass unchanged.
    let binary: Vec<u8> = (0..=255).collect();
    c.publish("node-a", &binary).await.unwrap();
    eventually("the binary payload", Duration::from_secs(5), || async {
        ha.has(&binary)
    })
    .await;
    ctx.cleanup().await;
}

/// A `redis-server` of this test's own, on a free port.
struct PrivateRedis {
    port: u16,
    child: Option<tokio::process::Child>,
}

impl PrivateRedis {
    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    /// Starts it; Err when `redis-server` cannot be run.
    async fn start(port: u16) -> Result<Self, String> {
        let child = tokio::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot run redis-server: {e}"))?;
        let server = Self {
            port,
            child: Some(child),
        };
        let url = server.url();
        eventually(
            "the private redis-server",
            Duration::from_secs(10),
            || async {
                match redis::Client::open(url.as_str()) {
                    Ok(client) => match client.get_multiplexed_async_connection().await {
                        Ok(mut c) => redis::cmd("PING")
                            .query_async::<String>(&mut c)
                            .await
                            .is_ok(),
                        Err(_) => false,
                    },
                    Err(_) => false,
                }
            },
        )
        .await;
        Ok(server)
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.unwrap();
        }
    }
}

#[tokio::test]
async fn the_bus_reconnects_after_a_redis_restart() {
    let port = PrivateRedis::free_port();
    let mut server = match PrivateRedis::start(port).await {
        Ok(s) => s,
        Err(e) if backends_required() => panic!("{e}, but {REQUIRE_ENV}=1"),
        Err(e) => {
            eprintln!("skipping the_bus_reconnects_after_a_redis_restart: {e}");
            return;
        }
    };
    let ctx = Ctx::with_url(server.url());
    let cache = ctx.node("node-a", LONG_TTL).await;
    let bus = cache.bus();
    let handler = Arc::new(Collector::default());
    bus.start(handler.clone());
    wait_subscribed(&bus, &[&handler]).await;
    bus.publish("node-a", b"before").await.unwrap();
    eventually("the first message", Duration::from_secs(5), || async {
        handler.has(b"before")
    })
    .await;
    assert_eq!(
        handler.1.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "no subscription lost yet"
    );

    server.kill().await;
    // While Redis is away, publishing fails as retryable.
    let err = bus.broadcast(b"lost").await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert!(cache.health().ping().await.is_err());

    let _server = PrivateRedis::start(port).await.unwrap();
    eventually(
        "messages after the restart",
        Duration::from_secs(20),
        || async {
            let _ = bus.publish("node-a", b"after").await;
            handler.has(b"after")
        },
    )
    .await;
    cache.health().ping().await.unwrap();
    assert!(!handler.has(b"lost"));
    // The handler was told that broadcasts were being missed (the cluster
    // stops trusting its invalidation-kept caches then).
    assert!(handler.1.load(std::sync::atomic::Ordering::SeqCst) >= 1);
}

#[tokio::test]
async fn health_and_connection_errors() {
    let Some(ctx) = Ctx::new("health_and_connection_errors") else {
        return;
    };
    let cache = ctx.node("node-a", LONG_TTL).await;
    cache.health().ping().await.unwrap();
    assert_eq!(cache.node_id(), "node-a");

    // Nothing listens there: unavailable.
    let mut o = RedisOptions::new(
        format!("redis://127.0.0.1:{}", PrivateRedis::free_port()),
        "node-a",
    );
    o.connect_timeout = Duration::from_secs(2);
    let err = RedisCache::connect(o).await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    // Bad options: not retryable.
    let err = RedisCache::connect(RedisOptions::new("http://x", "n"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Other(_)), "{err:?}");
    ctx.cleanup().await;
}
