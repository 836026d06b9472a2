//! Every read and the dedupe lookup must be index searches on PostgreSQL:
//! `EXPLAIN` of the exact statements (with their binds) on a populated,
//! analyzed scratch database, with sequential scans priced out so that the
//! plan shows which index the planner *can* use.

use diesel::QueryableByName;
use diesel::pg::Pg;
use diesel::query_builder::QueryFragment;
use diesel::sql_types::{Array, Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};

use super::write::{FIND_EXISTING, Prepared};
use crate::any::Backend;
use crate::explain_util::{Explain, pg_assert, populated};
use crate::read;

#[derive(QueryableByName)]
struct PlanLine {
    #[diesel(sql_type = Text, column_name = "QUERY PLAN")]
    line: String,
}

async fn plan<Q>(c: &mut AsyncPgConnection, q: Q) -> String
where
    Q: QueryFragment<Pg> + Send,
{
    Explain("EXPLAIN", q)
        .load::<PlanLine>(c)
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.line)
        .collect::<Vec<_>>()
        .join("\n")
}

/// No sequential scan, and every `expected` fragment present.
fn assert_indexed(plan: &str, expected: &[&str]) {
    assert!(!plan.contains("Seq Scan"), "sequential scan:\n{plan}");
    for e in expected {
        assert!(plan.contains(e), "{e:?} missing from:\n{plan}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_and_dedupe_use_indexes() {
    let Some((db, store)) = populated(Backend::Postgres).await else {
        return;
    };
    let mut c = AsyncPgConnection::establish(db.url()).await.unwrap();
    c.batch_execute("ANALYZE; SET enable_seqscan = off;")
        .await
        .unwrap();

    // The paging reads must come out of the index in order (no sort under
    // the LIMIT); a user's conversation list may be sorted (it is bounded
    // by the index condition, and small).
    let p = plan(&mut c, read::conversation_range("single_u0_u3", 0, 10, 5)).await;
    assert_indexed(&p, &["messages_conversation_seq_key", "Limit"]);
    assert!(!p.contains("Sort"), "{p}");
    let p = plan(&mut c, read::by_client_id("u1", "c1")).await;
    assert_indexed(&p, &["messages_sender_client_key"]);
    let p = plan(&mut c, read::by_server_id("s1")).await;
    assert_indexed(&p, &["messages_server_msg_id_key"]);
    let p = plan(&mut c, read::user_conversations("u1")).await;
    assert_indexed(&p, &["user_conversations_pkey", "conversations_pkey"]);
    let p = plan(&mut c, read::inbox_head("u1")).await;
    assert_indexed(&p, &["user_conversations_pkey", "conversations_pkey"]);
    // v1 sync merges the user's conversations by position (from a cursor
    // near the head, as a client's is: 4,000 messages are populated): a (top-N) sort
    // of what the index ranges yield, never a scan of messages.
    let p = plan(&mut c, read::inbox_positions("u1", 3_990, 10)).await;
    pg_assert(
        &p,
        true,
        &["user_conversations_pkey", "messages_conversation_pos_key"],
    );
    let ids = [3_i64, 1, 2];
    let p = plan(&mut c, read::messages_by_id(&ids)).await;
    assert_indexed(&p, &["messages_pkey"]);
    let p = plan(&mut c, read::delivered_seq("u1", "ios", "single_u0_u1")).await;
    assert_indexed(&p, &["deliveries_pkey"]);
    let p = plan(&mut c, read::user_exists("u1")).await;
    assert_indexed(&p, &["users_pkey"]);

    let dedupe = Prepared(
        diesel::sql_query(FIND_EXISTING)
            .bind::<Array<Text>, _>(vec!["u1", "u2", "u3"])
            .bind::<Array<Text>, _>(vec!["c1", "c2", "c3"]),
    );
    let p = plan(&mut c, dedupe).await;
    assert_indexed(&p, &["messages_sender_client_key", "Function Scan"]);

    drop((c, store));
    db.drop_database().await.unwrap();
}
