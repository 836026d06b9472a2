//! The social reads must be index searches on the server backends too:
//! `EXPLAIN` of the exact statements on a populated, analyzed scratch
//! database (gated like every server test, see `crate::scratch`). The
//! exceptions are those the query docs name: the substring search walks the
//! primary key of `users` in result order (no sort, stopped by the limit);
//! a user's sent requests are sorted, and PostgreSQL may sort a user's few
//! friends or blocks rather than read them in key order.

use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use im_core::model::{Friend, FriendRequest, FriendRequestStatus};
use im_core::ports::{FriendStore, TokenRevocationStore};

use super::read;
use crate::any::{AnyStore, Backend};
use crate::explain_util::{mysql_assert, mysql_plan, pg_assert, pg_plan, populated};

/// Friendships, requests (u0 gets one from everyone), blocks and revoked tokens among the 200 users
/// (with empty profiles) of `populated`.
async fn add_social(store: &AnyStore) {
    for u in 0..200 {
        let (me, next) = (format!("u{u}"), format!("u{}", (u + 1) % 200));
        let side = |owner: &str, friend: &str| Friend {
            owner_id: owner.to_owned(),
            friend_id: friend.to_owned(),
            remark: String::new(),
            add_source: 1,
            operator_id: friend.to_owned(),
            extra: String::new(),
            created_at: u,
        };
        store
            .add_friendship(&side(&me, &next), &side(&next, &me), u)
            .await
            .unwrap();
        // two requests each, and everyone else asks u0 (many incoming requests)
        let to: Vec<String> = [7, 31]
            .iter()
            .map(|k| format!("u{}", (u + k) % 200))
            .chain((u != 0).then(|| "u0".to_owned()))
            .collect();
        for to in to {
            let req = FriendRequest {
                from_id: me.clone(),
                to_id: to,
                message: "hi".to_owned(),
                status: FriendRequestStatus::Pending,
                created_at: u,
                updated_at: u,
            };
            store.put_request(&req).await.unwrap();
        }
        store
            .block(&me, &format!("u{}", (u + 3) % 200), u)
            .await
            .unwrap();
        store
            .revoke(&format!("jti-{u}"), &me, 1_000 + u)
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_reads_use_indexes() {
    let Some((db, store)) = populated(Backend::Postgres).await else {
        return;
    };
    add_social(&store).await;
    let mut c = AsyncPgConnection::establish(db.url()).await.unwrap();
    c.batch_execute("ANALYZE; SET enable_seqscan = off;")
        .await
        .unwrap();
    let ids = vec!["u1".to_owned(), "u2".to_owned()];

    let p = pg_plan(&mut c, read::profile("u1")).await;
    pg_assert(&p, false, &["users_pkey"]);
    let p = pg_plan(&mut c, read::profiles(&ids)).await;
    pg_assert(&p, false, &["users_pkey"]);
    let p = pg_plan(&mut c, read::search("%u1%", 20)).await;
    pg_assert(&p, false, &["users_pkey", "Limit"]);
    let p = pg_plan(&mut c, read::account("u1")).await;
    pg_assert(&p, false, &["accounts_pkey"]);
    let p = pg_plan(&mut c, read::request("u1", "u8")).await;
    pg_assert(&p, false, &["friend_requests_pkey"]);
    let p = pg_plan(&mut c, read::requests_to("u0", 20)).await;
    pg_assert(&p, false, &["friend_requests_to_key", "Limit"]);
    let p = pg_plan(&mut c, read::requests_from("u1", 20)).await;
    pg_assert(&p, true, &["on friend_requests"]);
    let p = pg_plan(&mut c, read::friend("u1", "u2")).await;
    pg_assert(&p, false, &["friends_pkey"]);
    // (may sort: one user's few friends or blocks; the key has them in order)
    let p = pg_plan(&mut c, read::friends_of("u1")).await;
    pg_assert(&p, true, &["friends_pkey"]);
    let p = pg_plan(&mut c, read::blocks_of("u1")).await;
    pg_assert(&p, true, &["blocks_pkey"]);
    let p = pg_plan(&mut c, read::is_blocked("u1", "u4")).await;
    pg_assert(&p, false, &["blocks_pkey"]);
    let p = pg_plan(&mut c, read::is_revoked("jti-1")).await;
    pg_assert(&p, false, &["revoked_tokens_pkey"]);

    drop((c, store));
    db.drop_database().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_reads_use_indexes() {
    let Some((db, store)) = populated(Backend::Mysql).await else {
        return;
    };
    add_social(&store).await;
    let mut c = crate::mysql::establish(db.url()).await.unwrap();
    c.batch_execute(
        "ANALYZE TABLE users, accounts, friends, friend_requests, blocks, revoked_tokens",
    )
    .await
    .unwrap();
    let ids = vec!["u1".to_owned(), "u2".to_owned()];

    let p = mysql_plan(&mut c, read::profile("u1")).await;
    mysql_assert(&p, false, &[("users", "PRIMARY")]);
    let p = mysql_plan(&mut c, read::profiles(&ids)).await;
    mysql_assert(&p, false, &[("users", "PRIMARY")]);
    // a walk of the primary key in order (type `index`), no filesort
    let p = mysql_plan(&mut c, read::search("%u1%", 20)).await;
    assert!(
        p.iter().all(|r| r.table.as_deref() == Some("users")
            && r.key.as_deref() == Some("PRIMARY")
            && !r.extra.as_deref().unwrap_or("").contains("filesort")),
        "{p:#?}"
    );
    let p = mysql_plan(&mut c, read::account("u1")).await;
    // (no accounts at all: MySQL may answer from the statistics alone)
    for r in &p {
        assert_ne!(r.access.as_deref(), Some("ALL"), "{p:#?}");
    }
    let p = mysql_plan(&mut c, read::request("u1", "u8")).await;
    mysql_assert(&p, false, &[("friend_requests", "PRIMARY")]);
    let p = mysql_plan(&mut c, read::requests_to("u0", 20)).await;
    mysql_assert(&p, false, &[("friend_requests", "friend_requests_to_key")]);
    let p = mysql_plan(&mut c, read::requests_from("u1", 20)).await;
    mysql_assert(&p, true, &[("friend_requests", "PRIMARY")]);
    let p = mysql_plan(&mut c, read::friend("u1", "u2")).await;
    mysql_assert(&p, false, &[("friends", "PRIMARY")]);
    let p = mysql_plan(&mut c, read::friends_of("u1")).await;
    mysql_assert(&p, false, &[("friends", "PRIMARY")]);
    let p = mysql_plan(&mut c, read::blocks_of("u1")).await;
    mysql_assert(&p, false, &[("blocks", "PRIMARY")]);
    let p = mysql_plan(&mut c, read::is_blocked("u1", "u4")).await;
    mysql_assert(&p, false, &[]);
    let p = mysql_plan(&mut c, read::is_revoked("jti-1")).await;
    mysql_assert(&p, false, &[]);

    drop((c, store));
    db.drop_database().await.unwrap();
}
