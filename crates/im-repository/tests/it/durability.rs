//! Opening, migrations, and data surviving a reopen (every backend), and
//! the SQLite file specifics.

use im_core::ports::{HealthCheck, MessageStore, UserStore};
use im_repository::{
    AnyStore, Backend, DbOptions, SqliteOptions, SqliteStore, run_migrations, run_sqlite_migrations,
};

use crate::common::{Place, TestDb, group, single, store_tests, uid};

store_tests!(
    data_survives_reopen,
    migrations_are_idempotent,
    old_pooled_connections_are_replaced,
);

async fn data_survives_reopen(db: TestDb) {
    crate::groups::create(&db.store, "g", "bob", &["alice"], 1).await;
    let written = db
        .store
        .append(&[
            single("alice", "bob", "1"),
            group("g", "bob", &["alice", "bob"], "2"),
        ])
        .await
        .unwrap();
    db.store
        .record_delivered(&uid("bob"), "d", "group_g", 1)
        .await
        .unwrap();
    db.store.touch(&uid("alice"), 5).await.unwrap();
    if let DbOptions::Sqlite(o) = &db.place.opts {
        // WAL mode is on: the log sits beside the database
        assert!(o.path.with_extension("db-wal").exists());
    }
    let TestDb { store, place } = db;
    // every clone and pooled connection is gone: reopen the database
    drop(store);
    let store = place.open().await;
    for a in &written {
        assert_eq!(
            store
                .find_by_server_id(&a.message.server_msg_id)
                .await
                .unwrap(),
            Some(a.message.clone())
        );
    }
    assert_eq!(store.inbox_head(&uid("alice")).await.unwrap(), 2);
    assert_eq!(
        store
            .delivered_seq(&uid("bob"), "d", "group_g")
            .await
            .unwrap(),
        1
    );
    assert!(store.exists(&uid("alice")).await.unwrap());
    // counters continue where they were
    let next = store.append(&[single("bob", "alice", "3")]).await.unwrap();
    assert_eq!(next.first().unwrap().message.seq, 2);
    // and the original client id still dedupes
    let again = store.append(&[single("alice", "bob", "1")]).await.unwrap();
    assert!(again.first().unwrap().duplicate);
}

/// `db` comes migrated; the test works on a second, empty database.
async fn migrations_are_idempotent(db: TestDb) {
    let backend = db.backend();
    drop(db);
    let place = Place::new(backend).await.unwrap();
    // without auto-migration, an unmigrated database is refused
    let no_migrate = place.opts.clone().with_migrate(false);
    let err = AnyStore::open(no_migrate.clone()).await.unwrap_err();
    assert!(err.to_string().contains("im-server migrate"), "{err}");
    let applied = run_migrations(&place.opts).await.unwrap();
    assert!(!applied.is_empty());
    assert!(run_migrations(&place.opts).await.unwrap().is_empty());
    let store = AnyStore::open(no_migrate).await.unwrap();
    store.ping().await.unwrap();
    // open() on a migrated database applies nothing and works
    let store = place.open().await;
    store.append(&[single("alice", "bob", "1")]).await.unwrap();
    // Two server processes starting at once on a fresh database: the
    // migration lock makes one apply and the other find nothing to do.
    // (SQLite is one node's file: not a case there.)
    if backend != Backend::Sqlite {
        let fresh = Place::new(backend).await.unwrap();
        let (a, b) = tokio::join!(run_migrations(&fresh.opts), run_migrations(&fresh.opts));
        let (a, b) = (a.unwrap(), b.unwrap());
        assert!(a.is_empty() != b.is_empty(), "{a:?} {b:?}");
        let fresh = Place::new(backend).await.unwrap();
        let (a, b) = tokio::join!(fresh.open(), fresh.open());
        a.ping().await.unwrap();
        b.ping().await.unwrap();
    }
}

/// A store whose connections outlive `conn_max_lifetime` at once keeps
/// working: each checkout drops the old connection and opens a new one.
async fn old_pooled_connections_are_replaced(db: TestDb) {
    let opts = match db.place.opts.clone() {
        DbOptions::Sqlite(_) => return, // one writer connection, no lifetime
        DbOptions::Postgres(mut o) => {
            o.conn_max_lifetime = Some(std::time::Duration::from_millis(1));
            DbOptions::Postgres(o)
        }
        DbOptions::Mysql(mut o) => {
            o.conn_max_lifetime = Some(std::time::Duration::from_millis(1));
            DbOptions::Mysql(o)
        }
    };
    let store = AnyStore::open(opts).await.unwrap();
    for i in 0..20 {
        store
            .append(&[single("alice", "bob", &format!("{i}"))])
            .await
            .unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        store.ping().await.unwrap();
    }
    assert_eq!(store.inbox_head(&uid("bob")).await.unwrap(), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_migrations_create_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a").join("b").join("im.db");
    let applied = run_sqlite_migrations(&path).unwrap();
    assert!(!applied.is_empty());
    assert!(path.exists());
    let store = SqliteStore::open(SqliteOptions::at(&path)).await.unwrap();
    assert_eq!(store.path(), path.as_path());
    assert!(store.options().synchronous_full);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_synchronous_normal_works() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = SqliteOptions::at(dir.path().join("im.db"));
    opts.synchronous_full = false;
    opts.read_pool_size = 0; // clamped to one reader
    let store = SqliteStore::open(opts).await.unwrap();
    store.append(&[single("alice", "bob", "1")]).await.unwrap();
    assert_eq!(store.inbox_head(&uid("bob")).await.unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_bad_paths_are_refused() {
    let err = SqliteStore::open(SqliteOptions::at(":memory:"))
        .await
        .unwrap_err();
    assert!(matches!(err, im_core::StoreError::Other(_)), "{err:?}");
    // a directory where the file should be
    let dir = tempfile::tempdir().unwrap();
    let err = SqliteStore::open(SqliteOptions::at(dir.path()))
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_servers_are_unavailable() {
    use std::time::Duration;
    // nothing listens on port 1
    for url in ["postgres://u@127.0.0.1:1/x", "mysql://u@127.0.0.1:1/x"] {
        let (DbOptions::Postgres(mut o) | DbOptions::Mysql(mut o)) = DbOptions::from_url(url)
        else {
            panic!("{url}");
        };
        o.connect_timeout = Duration::from_secs(2);
        let opts = match Backend::of_url(url) {
            Backend::Postgres => DbOptions::Postgres(o),
            _ => DbOptions::Mysql(o),
        };
        let err = AnyStore::open(opts).await.unwrap_err();
        assert!(
            matches!(err, im_core::StoreError::Unavailable(_)),
            "{url}: {err:?}"
        );
    }
}

#[test]
fn default_options() {
    let o = SqliteOptions::default();
    assert_eq!(
        o.path,
        std::path::PathBuf::from(im_repository::DEFAULT_SQLITE_PATH)
    );
    assert!(o.synchronous_full);
    assert!(o.read_pool_size >= 1);
}
