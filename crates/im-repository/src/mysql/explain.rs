//! Every read, the dedupe lookup and the counter read-back must be index
//! searches on MySQL/MariaDB: `EXPLAIN` of the exact statements (with their
//! binds) on a populated, analyzed scratch database.

use diesel::QueryableByName;
use diesel::mysql::Mysql;
use diesel::query_builder::QueryFragment;
use diesel::sql_types::{Nullable, Text};
use diesel_async::{AsyncMysqlConnection, RunQueryDsl, SimpleAsyncConnection};

use super::write::find_existing_query;
use crate::any::Backend;
use crate::explain_util::{Explain, mysql_assert, mysql_plan, populated};
use crate::read;

#[derive(Debug, QueryableByName)]
struct PlanRow {
    #[diesel(sql_type = Nullable<Text>)]
    table: Option<String>,
    #[diesel(sql_type = Nullable<Text>, column_name = "type")]
    access: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    key: Option<String>,
    #[diesel(sql_type = Nullable<Text>, column_name = "Extra")]
    extra: Option<String>,
}

async fn plan<Q>(c: &mut AsyncMysqlConnection, q: Q) -> Vec<PlanRow>
where
    Q: QueryFragment<Mysql> + Send,
{
    Explain("EXPLAIN", q).load::<PlanRow>(c).await.unwrap()
}

/// Each table of `expected` is read through that index, never by a full
/// scan (`ALL`, `index`) or a filesort.
fn assert_indexed(rows: &[PlanRow], expected: &[(&str, &str)]) {
    for r in rows {
        let access = r.access.as_deref().unwrap_or("");
        assert!(
            access != "ALL" && access != "index",
            "full scan in {rows:#?}"
        );
        let extra = r.extra.as_deref().unwrap_or("");
        assert!(!extra.contains("filesort"), "filesort in {rows:#?}");
    }
    for (table, key) in expected {
        assert!(
            rows.iter()
                .any(|r| r.table.as_deref() == Some(*table) && r.key.as_deref() == Some(*key)),
            "{table} not read through {key}: {rows:#?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_and_dedupe_use_indexes() {
    let Some((db, store)) = populated(Backend::Mysql).await else {
        return;
    };
    let mut c = super::establish(db.url()).await.unwrap();
    c.batch_execute("ANALYZE TABLE messages, conversations, user_conversations, deliveries, users")
        .await
        .unwrap();

    let p = plan(&mut c, read::conversation_range("single_u0_u3", 0, 10, 5)).await;
    assert_indexed(&p, &[("messages", "messages_conversation_seq_key")]);
    let p = plan(&mut c, read::by_client_id("u1", "c1")).await;
    assert_indexed(&p, &[("messages", "messages_sender_client_key")]);
    let p = plan(&mut c, read::by_server_id("s1")).await;
    assert_indexed(&p, &[("messages", "messages_server_msg_id_key")]);
    let p = plan(&mut c, read::user_conversations("u1")).await;
    assert_indexed(
        &p,
        &[
            ("user_conversations", "PRIMARY"),
            ("conversations", "PRIMARY"),
        ],
    );
    let p = plan(&mut c, read::inbox_head("u1")).await;
    assert_indexed(
        &p,
        &[
            ("user_conversations", "PRIMARY"),
            ("conversations", "PRIMARY"),
        ],
    );
    // v1 sync merges the user's conversations by position (from a cursor
    // near the head, as a client's is: 4,000 messages are populated): a filesort of
    // what the index ranges yield (bounded by the LIMIT), never a scan.
    let p = mysql_plan(&mut c, read::inbox_positions("u1", 3_990, 10)).await;
    mysql_assert(
        &p,
        true,
        &[
            ("user_conversations", "PRIMARY"),
            ("messages", "messages_conversation_pos_key"),
        ],
    );
    let ids = [3_i64, 1, 2];
    let p = plan(&mut c, read::messages_by_id(&ids)).await;
    assert_indexed(&p, &[("messages", "PRIMARY")]);
    let p = plan(&mut c, read::delivered_seq("u1", "ios", "single_u0_u1")).await;
    assert_indexed(&p, &[("deliveries", "PRIMARY")]);
    let p = plan(&mut c, read::user_exists("u1")).await;
    assert_indexed(&p, &[("users", "PRIMARY")]);

    let keys = [("u1", "c1"), ("u2", "c2"), ("u3", "c3")];
    let p = plan(&mut c, find_existing_query(&keys)).await;
    assert_indexed(&p, &[("m", "messages_sender_client_key")]);

    drop((c, store));
    db.drop_database().await.unwrap();
}
