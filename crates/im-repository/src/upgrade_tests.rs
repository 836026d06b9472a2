//! The `2025-12-01-000000_sync_clock` upgrade on every backend: a database
//! migrated up to the migration before it gets data written the old way
//! (per-user `user_inbox` rows and `user_cursors`), then the store opens it
//! (applying the new migration), and v1 sync must serve every message of each
//! user's conversations in the old order, from cursor 0 and from any cursor
//! the old schema could have handed out.

use diesel::backend::Backend as DieselBackend;
use diesel::migration::{Migration, MigrationSource};
use diesel_async::AsyncConnection;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness};
use im_core::UserId;
use im_core::ports::MessageStore;

use crate::any::{AnyStore, Backend, DbOptions};
use crate::scratch::{Gate, ScratchDb, gate};
use crate::server::ServerDbOptions;
use crate::sqlite::SqliteOptions;

const NEW: &str = "2025-12-01-000000_sync_clock";

/// Every migration before [`NEW`], oldest first.
fn before_new<DB: DieselBackend>(
    migrations: &EmbeddedMigrations,
) -> Vec<Box<dyn Migration<DB> + '_>>
where
    EmbeddedMigrations: MigrationSource<DB>,
{
    let mut all = MigrationSource::<DB>::migrations(migrations).unwrap();
    all.sort_by(|a, b| a.name().version().cmp(&b.name().version()));
    assert!(
        all.iter().any(|m| m.name().to_string() == NEW),
        "{NEW} is not embedded"
    );
    all.into_iter()
        .take_while(|m| m.name().to_string() != NEW)
        .collect()
}

/// What the old `append` wrote for five messages (ids 1..=5, in this order):
///
/// | id | conversation | seq | from | inbox rows (user:cursor) |
/// |----|--------------|-----|------|--------------------------|
/// | 1 | single_a_b | 1 | a | a:1 b:1 |
/// | 2 | group_g    | 1 | c | a:2 b:2 c:1 |
/// | 3 | single_a_b | 2 | b | a:3 b:3 |
/// | 4 | group_g    | 2 | a | a:4 b:4 c:2 |
/// | 5 | single_a_c | 1 | c | a:5 c:3 |
///
/// `blob` is the backend's literal for the content bytes `hi`.
fn old_data(blob: &str) -> String {
    let msg = |n: u32, conv: &str, ty: i32, seq: i64, from: &str, to: &str, gid: &str| {
        format!(
            "INSERT INTO messages (server_msg_id, client_msg_id, conversation_id, \
             conversation_type, sender_id, receiver_id, group_id, message_type, content, \
             send_time, server_time, seq, extra) VALUES ('s{n}', 'c{n}', '{conv}', {ty}, \
             '{from}', '{to}', '{gid}', 1, {blob}, {n}, {n}, {seq}, '');\n"
        )
    };
    let mut sql = String::from(
        "INSERT INTO conversations (conversation_id, conversation_type, max_seq, created_at, \
         updated_at) VALUES ('single_a_b', 1, 2, 1, 3), ('group_g', 2, 2, 2, 4), \
         ('single_a_c', 1, 1, 5, 5);\n",
    );
    sql += &msg(1, "single_a_b", 1, 1, "a", "b", "");
    sql += &msg(2, "group_g", 2, 1, "c", "", "g");
    sql += &msg(3, "single_a_b", 1, 2, "b", "a", "");
    sql += &msg(4, "group_g", 2, 2, "a", "", "g");
    sql += &msg(5, "single_a_c", 1, 1, "c", "a", "");
    sql += "INSERT INTO user_inbox (user_id, cursor_pos, conversation_id, seq) VALUES \
            ('a', 1, 'single_a_b', 1), ('b', 1, 'single_a_b', 1), \
            ('a', 2, 'group_g', 1), ('b', 2, 'group_g', 1), ('c', 1, 'group_g', 1), \
            ('a', 3, 'single_a_b', 2), ('b', 3, 'single_a_b', 2), \
            ('a', 4, 'group_g', 2), ('b', 4, 'group_g', 2), ('c', 2, 'group_g', 2), \
            ('a', 5, 'single_a_c', 1), ('c', 3, 'single_a_c', 1);\n\
            INSERT INTO user_cursors (user_id, head) VALUES ('a', 5), ('b', 4), ('c', 3);\n\
            INSERT INTO user_conversations (user_id, conversation_id, created_at, updated_at) \
            VALUES ('a', 'single_a_b', 1, 1), ('b', 'single_a_b', 1, 1), \
            ('a', 'group_g', 2, 2), ('b', 'group_g', 2, 2), ('c', 'group_g', 2, 2), \
            ('a', 'single_a_c', 5, 5), ('c', 'single_a_c', 5, 5);\n";
    sql
}

/// Runs the migrations before [`NEW`] and writes [`old_data`] on `conn`.
/// (`migrations` makes a fresh value of the backend's `MIGRATIONS` constant:
/// each run of diesel's harness consumes one.)
fn prepare<C>(conn: &mut C, migrations: impl Fn() -> EmbeddedMigrations, blob: &str)
where
    C: MigrationHarness<C::Backend> + diesel::Connection,
    EmbeddedMigrations: MigrationSource<C::Backend>,
{
    let before = before_new::<C::Backend>(&migrations()).len();
    for _ in 0..before {
        conn.run_next_migration(migrations()).unwrap();
    }
    let pending = conn.pending_migrations(migrations()).unwrap();
    assert_eq!(
        pending.first().map(|m| m.name().to_string()),
        Some(NEW.to_owned())
    );
    drop(pending);
    conn.batch_execute(&old_data(blob)).unwrap();
}

fn uid(s: &str) -> UserId {
    UserId::parse(s).unwrap()
}

/// The checks on the upgraded store.
async fn check(store: &AnyStore) {
    let ids = |v: &[im_core::ports::InboxEntry]| -> Vec<String> {
        v.iter().map(|e| e.message.server_msg_id.clone()).collect()
    };
    // H = 5 (the largest old cursor), pos = id + H
    for (user, want, head) in [
        ("a", vec!["s1", "s2", "s3", "s4", "s5"], 10),
        ("b", vec!["s1", "s2", "s3", "s4"], 9),
        ("c", vec!["s2", "s4", "s5"], 10),
    ] {
        let all = store.inbox_after(&uid(user), 0, 100).await.unwrap();
        assert_eq!(ids(&all), want, "{user}");
        assert!(all.windows(2).all(|w| w[0].cursor < w[1].cursor), "{user}");
        assert_eq!(all.first().map(|e| e.message.seq), Some(1), "{user}");
        assert_eq!(store.inbox_head(&uid(user)).await.unwrap(), head, "{user}");
        // any cursor the old schema handed out is below every message:
        // a v1 client re-receives its history once and misses nothing
        for old in 0..=5 {
            assert_eq!(
                ids(&store.inbox_after(&uid(user), old, 100).await.unwrap()),
                want,
                "{user} after old cursor {old}"
            );
        }
        // paging by the new cursors
        let first = store.inbox_after(&uid(user), 0, 2).await.unwrap();
        let rest = store
            .inbox_after(&uid(user), first.last().unwrap().cursor, 100)
            .await
            .unwrap();
        assert_eq!([ids(&first), ids(&rest)].concat(), want, "{user}");
    }
    // new messages continue the clock and the conversation counters
    let m = im_core::model::NewMessage {
        server_msg_id: "s6".into(),
        client_msg_id: "c6".into(),
        conversation_id: "single_a_b".into(),
        conversation_type: im_core::ConversationType::Single,
        sender_id: uid("a"),
        receiver_id: "b".into(),
        group_id: String::new(),
        message_type: 1,
        content: bytes::Bytes::from_static(b"hi"),
        send_time: 6,
        server_time: 6,
        extra: String::new(),
        participants: vec![uid("a"), uid("b")],
    };
    let res = store.append(&[m]).await.unwrap();
    assert_eq!(res.first().unwrap().message.seq, 3);
    let new = store.inbox_after(&uid("b"), 9, 10).await.unwrap();
    assert_eq!(ids(&new), ["s6"]);
    assert_eq!(new.first().unwrap().cursor, 11);
    assert_eq!(store.inbox_head(&uid("b")).await.unwrap(), 11);
    assert_eq!(store.inbox_head(&uid("c")).await.unwrap(), 10);
    // the old content reads back unchanged
    let s1 = store.find_by_server_id("s1").await.unwrap().unwrap();
    assert_eq!(&s1.content[..], b"hi");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_upgrade_backfills_positions() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("im.db");
    let url = path.to_str().unwrap().to_owned();
    tokio::task::spawn_blocking(move || {
        let mut conn = <diesel::SqliteConnection as diesel::Connection>::establish(&url).unwrap();
        prepare(&mut conn, || crate::sqlite::migrate::MIGRATIONS, "X'6869'");
    })
    .await
    .unwrap();
    let store = AnyStore::open(DbOptions::Sqlite(SqliteOptions::at(&path)))
        .await
        .unwrap();
    check(&store).await;
}

/// A scratch database of `backend`, or `None` when its tests are skipped.
async fn scratch(backend: Backend) -> Option<ScratchDb> {
    match gate(backend) {
        Ok(Gate::Run(url)) => Some(ScratchDb::create(&url).await.unwrap()),
        Ok(Gate::Skip(why)) => {
            println!("skipping: {why}");
            None
        }
        Err(e) => panic!("{e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_upgrade_backfills_positions() {
    let Some(db) = scratch(Backend::Postgres).await else {
        return;
    };
    let conn = diesel_async::AsyncPgConnection::establish(db.url())
        .await
        .unwrap();
    tokio::task::spawn_blocking(move || {
        let mut conn = AsyncConnectionWrapper::<diesel_async::AsyncPgConnection>::from(conn);
        prepare(
            &mut conn,
            || crate::pg::migrate::MIGRATIONS,
            "'\\x6869'::bytea",
        );
    })
    .await
    .unwrap();
    let store = AnyStore::open(DbOptions::Postgres(ServerDbOptions::new(db.url())))
        .await
        .unwrap();
    check(&store).await;
    drop(store);
    db.drop_database().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_upgrade_backfills_positions() {
    let Some(db) = scratch(Backend::Mysql).await else {
        return;
    };
    let conn = crate::mysql::establish(db.url()).await.unwrap();
    tokio::task::spawn_blocking(move || {
        let mut conn = AsyncConnectionWrapper::<diesel_async::AsyncMysqlConnection>::from(conn);
        prepare(&mut conn, || crate::mysql::migrate::MIGRATIONS, "X'6869'");
    })
    .await
    .unwrap();
    let store = AnyStore::open(DbOptions::Mysql(ServerDbOptions::new(db.url())))
        .await
        .unwrap();
    check(&store).await;
    drop(store);
    db.drop_database().await.unwrap();
}
