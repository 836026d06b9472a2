//! Query-plan checks on the server backends (unit tests only): an
//! `EXPLAIN` wrapper that keeps a query's binds, a store with realistic
//! data on a scratch database, and the gate of `scratch`.

use diesel::backend::Backend as DieselBackend;
use diesel::mysql::Mysql;
use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::sql_types::{Nullable, Text, Untyped};
use diesel::{QueryResult, QueryableByName};
use diesel_async::{AsyncMysqlConnection, AsyncPgConnection, RunQueryDsl};
use im_core::model::NewMessage;
use im_core::ports::{MessageStore, UserStore};
use im_core::{ConversationType, UserId};

use crate::any::{AnyStore, Backend, DbOptions};
use crate::scratch::{Gate, ScratchDb, gate};
use crate::server::ServerDbOptions;

/// `EXPLAIN <query>`, with the query's binds.
#[derive(Debug, Clone)]
pub(crate) struct Explain<Q>(pub(crate) &'static str, pub(crate) Q);

impl<Q> QueryId for Explain<Q> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<Q, DB> QueryFragment<DB> for Explain<Q>
where
    DB: DieselBackend,
    Q: QueryFragment<DB>,
{
    fn walk_ast<'b>(&'b self, mut pass: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        pass.unsafe_to_cache_prepared();
        pass.push_sql(self.0);
        pass.push_sql(" ");
        self.1.walk_ast(pass.reborrow())
    }
}

impl<Q> Query for Explain<Q> {
    type SqlType = Untyped;
}

/// A scratch database of `backend` holding a few thousand messages (and
/// fresh statistics), or `None` when the backend's tests are skipped.
pub(crate) async fn populated(backend: Backend) -> Option<(ScratchDb, AnyStore)> {
    let admin = match gate(backend) {
        Ok(Gate::Run(url)) => url,
        Ok(Gate::Skip(why)) => {
            println!("skipping: {why}");
            return None;
        }
        Err(e) => panic!("{e}"),
    };
    let db = ScratchDb::create(&admin).await.unwrap();
    let opts = ServerDbOptions::new(db.url());
    let opts = match backend {
        Backend::Postgres => DbOptions::Postgres(opts),
        _ => DbOptions::Mysql(opts),
    };
    let store = AnyStore::open(opts).await.unwrap();
    let users: Vec<UserId> = (0..200)
        .map(|i| UserId::parse(format!("u{i}")).unwrap())
        .collect();
    for b in 0..8 {
        let batch: Vec<NewMessage> = (0..500)
            .map(|i| {
                let n = b * 500 + i;
                let a = &users[n % 200];
                let z = &users[(n * 7 + 3) % 200];
                let z = if a == z { &users[(n + 1) % 200] } else { z };
                let conv = im_core::ConversationId::single(a, z).to_string();
                NewMessage {
                    server_msg_id: format!("s{n}"),
                    client_msg_id: format!("c{n}"),
                    conversation_id: conv,
                    conversation_type: ConversationType::Single,
                    sender_id: a.clone(),
                    receiver_id: z.as_str().to_owned(),
                    group_id: String::new(),
                    message_type: 1,
                    content: bytes::Bytes::from_static(b"hello"),
                    send_time: 1,
                    server_time: 2,
                    extra: String::new(),
                    participants: vec![a.clone(), z.clone()],
                }
            })
            .collect();
        store.append(&batch).await.unwrap();
    }
    for u in &users {
        store.touch(u, 1).await.unwrap();
        store
            .record_delivered(u, "ios", "single_u0_u1", 1)
            .await
            .unwrap();
    }
    Some((db, store))
}

#[derive(QueryableByName)]
pub(crate) struct PgLine {
    #[diesel(sql_type = Text, column_name = "QUERY PLAN")]
    line: String,
}

pub(crate) async fn pg_plan<Q>(c: &mut AsyncPgConnection, q: Q) -> String
where
    Q: QueryFragment<Pg> + Send,
{
    Explain("EXPLAIN", q)
        .load::<PgLine>(c)
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.line)
        .collect::<Vec<_>>()
        .join("\n")
}

/// No sequential scan; a sort only when `sorted`; every `expected` fragment
/// (an index, or `on <table>` where the planner may pick either of two
/// suitable indexes) present.
pub(crate) fn pg_assert(plan: &str, sorted: bool, expected: &[&str]) {
    assert!(!plan.contains("Seq Scan"), "sequential scan:\n{plan}");
    if !sorted {
        assert!(!plan.contains("Sort"), "sort:\n{plan}");
    }
    for e in expected {
        assert!(plan.contains(e), "{e:?} missing from:\n{plan}");
    }
}

#[derive(Debug, QueryableByName)]
pub(crate) struct MysqlRow {
    #[diesel(sql_type = Nullable<Text>)]
    pub(crate) table: Option<String>,
    #[diesel(sql_type = Nullable<Text>, column_name = "type")]
    pub(crate) access: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub(crate) key: Option<String>,
    #[diesel(sql_type = Nullable<Text>, column_name = "Extra")]
    pub(crate) extra: Option<String>,
}

pub(crate) async fn mysql_plan<Q>(c: &mut AsyncMysqlConnection, q: Q) -> Vec<MysqlRow>
where
    Q: QueryFragment<Mysql> + Send,
{
    Explain("EXPLAIN", q).load::<MysqlRow>(c).await.unwrap()
}

/// No full scan; a filesort only when `sorted`; each table of `expected`
/// read through that index.
pub(crate) fn mysql_assert(rows: &[MysqlRow], sorted: bool, expected: &[(&str, &str)]) {
    for r in rows {
        let access = r.access.as_deref().unwrap_or("");
        assert!(
            access != "ALL" && access != "index",
            "full scan in {rows:#?}"
        );
        let extra = r.extra.as_deref().unwrap_or("");
        assert!(
            sorted || !extra.contains("filesort"),
            "filesort in {rows:#?}"
        );
    }
    for (table, key) in expected {
        assert!(
            rows.iter()
                .any(|r| r.table.as_deref() == Some(*table) && r.key.as_deref() == Some(*key)),
            "{table} not read through {key}: {rows:#?}"
        );
    }
}
