//! Opening, migrations, and data surviving a reopen.

use im_core::ports::{MessageStore, UserStore};
use im_repository::{SqliteOptions, SqliteStore, run_sqlite_migrations};

use crate::common::{group, options_in, single, uid};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let opts = options_in(&dir);
    let written = {
        let store = SqliteStore::open(opts.clone()).await.unwrap();
        let res = store
            .append(&[
                single("alice", "bob", "1"),
                group("g", "bob", &["alice", "bob"], "2"),
            ])
            .await
            .unwrap();
        store
            .record_delivered(&uid("bob"), "d", "group_g", 1)
            .await
            .unwrap();
        store.touch(&uid("alice"), 5).await.unwrap();
        // WAL mode is on: the log sits beside the database
        assert!(opts.path.with_extension("db-wal").exists());
        res
    };
    // every clone and pooled connection is gone: reopen the file
    let store = SqliteStore::open(opts).await.unwrap();
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_are_idempotent_and_create_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a").join("b").join("im.db");
    // without auto-migration, an unmigrated database is refused
    let no_migrate = SqliteOptions {
        migrate: false,
        ..SqliteOptions::at(&path)
    };
    let err = SqliteStore::open(no_migrate.clone()).await.unwrap_err();
    assert!(err.to_string().contains("im-server migrate"), "{err}");
    let applied = run_sqlite_migrations(&path).unwrap();
    assert!(!applied.is_empty());
    assert!(path.exists());
    assert!(run_sqlite_migrations(&path).unwrap().is_empty());
    SqliteStore::open(no_migrate).await.unwrap();
    // open() on a migrated file applies nothing and works
    let store = SqliteStore::open(SqliteOptions::at(&path)).await.unwrap();
    assert_eq!(store.path(), path.as_path());
    assert!(store.options().synchronous_full);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synchronous_normal_works() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options_in(&dir);
    opts.synchronous_full = false;
    opts.read_pool_size = 0; // clamped to one reader
    let store = SqliteStore::open(opts).await.unwrap();
    store.append(&[single("alice", "bob", "1")]).await.unwrap();
    assert_eq!(store.inbox_head(&uid("bob")).await.unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_paths_are_refused() {
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
