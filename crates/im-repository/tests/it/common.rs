//! Fixtures: a fresh database per test on each backend, the macro that runs
//! one test body on every backend, message builders.
//!
//! SQLite runs always (a file in a temporary directory). PostgreSQL and
//! MySQL run when `IM_TEST_POSTGRES_URL` / `IM_TEST_MYSQL_URL` are set (see
//! `im_repository::scratch`): each test gets its own `im_test_<unique>`
//! database, dropped at the end.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use im_core::model::NewMessage;
use im_core::ports::{Appended, MessageStore};
use im_core::{ConversationId, ConversationType, UserId};
use im_repository::scratch::{self, Gate, ScratchDb};
use im_repository::{AnyStore, Backend, DbOptions, ServerDbOptions, SqliteOptions};
use tempfile::TempDir;

/// Runs each named `async fn(TestDb)` of the calling module as one test per
/// backend: `<module>::sqlite::<name>`, `<module>::postgres::<name>`,
/// `<module>::mysql::<name>`.
macro_rules! store_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    crate::common::run(im_repository::Backend::Sqlite, super::$name).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    crate::common::run(im_repository::Backend::Postgres, super::$name).await;
                }
            )*
        }
        mod mysql {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    crate::common::run(im_repository::Backend::Mysql, super::$name).await;
                }
            )*
        }
    };
}
pub(crate) use store_tests;

/// A fresh, empty (unmigrated) database and the options to open it; the
/// database lives as long as this.
pub struct Place {
    pub backend: Backend,
    pub opts: DbOptions,
    _dir: Option<TempDir>,
    _scratch: Option<ScratchDb>,
}

impl Place {
    /// A new database on `backend`, or `None` (after printing why) when the
    /// backend's tests are skipped. Panics when the backend is required
    /// (`IM_TEST_REQUIRE_BACKENDS=1`) but not configured, or configured but
    /// unreachable.
    pub async fn new(backend: Backend) -> Option<Self> {
        let admin_url = match scratch::gate(backend) {
            Ok(Gate::Run(url)) => url,
            Ok(Gate::Skip(why)) => {
                println!("skipping: {why}");
                return None;
            }
            Err(e) => panic!("{e}"),
        };
        if backend == Backend::Sqlite {
            let dir = tempfile::tempdir().unwrap();
            let opts = DbOptions::Sqlite(SqliteOptions {
                path: dir.path().join("data").join("im.db"),
                synchronous_full: true,
                read_pool_size: 2,
                busy_timeout: Duration::from_secs(10),
                migrate: true,
            });
            return Some(Self {
                backend,
                opts,
                _dir: Some(dir),
                _scratch: None,
            });
        }
        let db = match ScratchDb::create(&admin_url).await {
            Ok(db) => db,
            Err(e) => panic!(
                "{} is set but no database can be created there: {e}",
                scratch::url_env(backend).unwrap_or("url")
            ),
        };
        let server = ServerDbOptions {
            url: db.url().to_owned(),
            max_open_conns: 4,
            connect_timeout: Duration::from_secs(10),
            acquire_timeout: Duration::from_secs(60),
            conn_max_lifetime: None,
            migrate: true,
        };
        let opts = match backend {
            Backend::Postgres => DbOptions::Postgres(server),
            _ => DbOptions::Mysql(server),
        };
        Some(Self {
            backend,
            opts,
            _dir: None,
            _scratch: Some(db),
        })
    }

    /// Opens a store on this database (migrating it).
    pub async fn open(&self) -> AnyStore {
        AnyStore::open(self.opts.clone()).await.unwrap()
    }
}

/// A migrated store on a fresh database.
pub struct TestDb {
    pub store: AnyStore,
    // after `store`: dropped last
    pub place: Place,
}

impl TestDb {
    pub async fn open(backend: Backend) -> Option<Self> {
        let place = Place::new(backend).await?;
        let store = place.open().await;
        assert_eq!(store.backend(), backend);
        Some(Self { store, place })
    }

    /// Another, independent store on the same database (its own pool or
    /// writer connection: like a second server process).
    pub async fn another(&self) -> AnyStore {
        self.place.open().await
    }

    pub fn backend(&self) -> Backend {
        self.place.backend
    }
}

/// Runs `body` on a fresh database of `backend` (or skips).
pub async fn run<F, Fut>(backend: Backend, body: F)
where
    F: FnOnce(TestDb) -> Fut,
    Fut: Future<Output = ()>,
{
    if let Some(db) = TestDb::open(backend).await {
        body(db).await;
    }
}

/// Appends like the service's writer does: retries a retryable error
/// (after a conflict with another writer, or an unseen commit) with a short
/// pause. Returns the result and how many attempts failed.
pub async fn append_retrying(store: &AnyStore, batch: &[NewMessage]) -> (Vec<Appended>, usize) {
    let mut failures = 0;
    loop {
        match store.append(batch).await {
            Ok(res) => return (res, failures),
            Err(e) if e.is_retryable() && failures < 50 => {
                failures += 1;
                tokio::time::sleep(Duration::from_millis(5 * failures as u64)).await;
            }
            Err(e) => panic!("append failed after {failures} retries: {e:?}"),
        }
    }
}

pub fn uid(s: &str) -> UserId {
    UserId::parse(s).unwrap()
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A fresh, unique server message id.
pub fn server_id() -> String {
    format!("srv-{}", NEXT_ID.fetch_add(1, Ordering::Relaxed))
}

/// A 1:1 message from `from` to `to` with client id `cid`.
pub fn single(from: &str, to: &str, cid: &str) -> NewMessage {
    let conv = ConversationId::single(&uid(from), &uid(to)).to_string();
    NewMessage {
        server_msg_id: server_id(),
        client_msg_id: cid.to_owned(),
        conversation_id: conv,
        conversation_type: ConversationType::Single,
        sender_id: uid(from),
        receiver_id: to.to_owned(),
        group_id: String::new(),
        message_type: 1,
        content: Bytes::from(format!("{from}->{to}:{cid}")),
        send_time: 1_000,
        server_time: 2_000,
        extra: "{}".to_owned(),
        participants: vec![uid(from), uid(to)],
    }
}

/// A group message from `from` to the members of `gid`.
pub fn group(gid: &str, from: &str, members: &[&str], cid: &str) -> NewMessage {
    NewMessage {
        server_msg_id: server_id(),
        client_msg_id: cid.to_owned(),
        conversation_id: format!("group_{gid}"),
        conversation_type: ConversationType::Group,
        sender_id: uid(from),
        receiver_id: String::new(),
        group_id: gid.to_owned(),
        message_type: 1,
        content: Bytes::from(vec![0u8, 1, 2, 255]),
        send_time: 1_000,
        server_time: 2_000,
        extra: String::new(),
        participants: members.iter().map(|m| uid(m)).collect(),
    }
}
