//! `UserStore` (accounts, profiles, search), `FriendStore` (requests,
//! friendships, remarks, blocklists) and `TokenRevocationStore` — the same
//! tests on every backend.

use im_core::StoreError;
use im_core::model::{
    Account, Block, Friend, FriendRequest, FriendRequestStatus, ProfilePatch, UserProfile,
};
use im_core::ports::{FriendStore, TokenRevocationStore, UserStore};
use im_repository::AnyStore;

use crate::common::{TestDb, store_tests, uid};

store_tests!(
    create_account_stores_profile_and_credentials,
    create_account_on_a_taken_id_is_a_conflict,
    concurrent_registrations_of_one_id_conflict,
    touch_provisions_an_empty_profile,
    profiles_omit_unknown_ids,
    update_profile_patches_and_creates_unknown_users,
    search_matches_id_or_nickname_case_insensitively,
    search_treats_like_wildcards_literally_and_respects_the_limit,
    put_request_creates_and_refreshes,
    requests_list_newest_first,
    resolve_request_changes_only_pending_ones,
    add_friendship_creates_both_sides_and_accepts_requests,
    add_friendship_keeps_existing_rows,
    concurrent_add_friendship_in_both_directions,
    remove_friendship_removes_both_sides,
    set_remark_only_for_friends,
    block_unblock_and_list,
    revoke_is_idempotent,
    purge_expired_counts_what_it_deletes,
);

fn profile(user: &str, nickname: &str, t: i64) -> UserProfile {
    UserProfile {
        user_id: user.to_owned(),
        nickname: nickname.to_owned(),
        avatar: format!("https://x/{user}.png"),
        phone: "+15550100".to_owned(),
        email: format!("{user}@example.com"),
        gender: 2,
        birth: 631_152_000_000,
        signature: "hello 👋".to_owned(),
        extra: r#"{"k":"v"}"#.to_owned(),
        created_at: t,
        updated_at: t,
    }
}

fn account(user: &str, t: i64) -> Account {
    Account {
        user_id: user.to_owned(),
        password_hash: format!("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA${user}"),
        created_at: t,
    }
}

fn empty_profile(user: &str, created: i64, updated: i64) -> UserProfile {
    UserProfile {
        user_id: user.to_owned(),
        created_at: created,
        updated_at: updated,
        ..UserProfile::default()
    }
}

fn request(from: &str, to: &str, message: &str, t: i64) -> FriendRequest {
    FriendRequest {
        from_id: from.to_owned(),
        to_id: to.to_owned(),
        message: message.to_owned(),
        status: FriendRequestStatus::Pending,
        created_at: t,
        updated_at: t,
    }
}

/// `owner`'s side of a friendship with `friend`, accepted by `operator` at `t`.
fn side(owner: &str, friend: &str, operator: &str, t: i64) -> Friend {
    Friend {
        owner_id: owner.to_owned(),
        friend_id: friend.to_owned(),
        remark: String::new(),
        add_source: 1,
        operator_id: operator.to_owned(),
        extra: String::new(),
        created_at: t,
    }
}

async fn befriend(s: &AnyStore, a: &str, b: &str, t: i64) {
    s.add_friendship(&side(a, b, b, t), &side(b, a, b, t), t)
        .await
        .unwrap();
}

fn ids(users: &[UserProfile]) -> Vec<&str> {
    users.iter().map(|u| u.user_id.as_str()).collect()
}

async fn friend_ids(s: &AnyStore, owner: &str) -> Vec<String> {
    s.friends(owner)
        .await
        .unwrap()
        .into_iter()
        .map(|f| f.friend_id)
        .collect()
}

async fn create_account_stores_profile_and_credentials(db: TestDb) {
    let s = &db.store;
    let p = profile("alice", "Alice", 1_000);
    s.create_account(&p, &account("alice", 1_000))
        .await
        .unwrap();

    assert_eq!(
        s.account("alice").await.unwrap(),
        Some(account("alice", 1_000))
    );
    assert_eq!(s.account("bob").await.unwrap(), None);
    assert!(s.exists(&uid("alice")).await.unwrap());
    assert_eq!(
        s.profiles(&["alice".into()]).await.unwrap(),
        vec![p.clone()]
    );

    // a later login moves last_seen, not the profile
    s.touch(&uid("alice"), 5_000).await.unwrap();
    assert_eq!(s.profiles(&["alice".into()]).await.unwrap(), vec![p]);

    // profile and account must name the same user
    let err = s
        .create_account(&profile("carol", "", 1), &account("dave", 1))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Other(_)), "{err:?}");
    assert!(!s.exists(&uid("carol")).await.unwrap());
    assert!(!s.exists(&uid("dave")).await.unwrap());
}

async fn create_account_on_a_taken_id_is_a_conflict(db: TestDb) {
    let s = &db.store;
    s.create_account(&profile("alice", "Alice", 1), &account("alice", 1))
        .await
        .unwrap();
    let err = s
        .create_account(&profile("alice", "Other", 2), &account("alice", 2))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(s.account("alice").await.unwrap(), Some(account("alice", 1)));
    assert_eq!(
        s.profiles(&["alice".into()]).await.unwrap(),
        vec![profile("alice", "Alice", 1)]
    );

    // provisioned by a token: taken too, and no credentials are left behind
    s.touch(&uid("bob"), 10).await.unwrap();
    let err = s
        .create_account(&profile("bob", "Bob", 20), &account("bob", 20))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(s.account("bob").await.unwrap(), None);
    assert_eq!(
        s.profiles(&["bob".into()]).await.unwrap(),
        vec![empty_profile("bob", 10, 10)]
    );
}

/// Registrations of one id racing on two stores (two server processes):
/// exactly one wins, the others are conflicts.
async fn concurrent_registrations_of_one_id_conflict(db: TestDb) {
    let other = db.another().await;
    let mut tasks = Vec::new();
    for i in 0..8_i64 {
        let store = if i % 2 == 0 {
            db.store.clone()
        } else {
            other.clone()
        };
        tasks.push(tokio::spawn(async move {
            store
                .create_account(&profile("zed", &format!("zed {i}"), i), &account("zed", i))
                .await
        }));
    }
    let (mut ok, mut conflicts) = (0, 0);
    for t in tasks {
        match t.await.unwrap() {
            Ok(()) => ok += 1,
            Err(StoreError::Conflict(_)) => conflicts += 1,
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!((ok, conflicts), (1, 7));
    let acc = db.store.account("zed").await.unwrap().unwrap();
    let prof = db.store.profiles(&["zed".into()]).await.unwrap();
    // the winner's profile and credentials belong together
    assert_eq!(
        prof,
        vec![profile(
            "zed",
            &format!("zed {}", acc.created_at),
            acc.created_at
        )]
    );
}

async fn touch_provisions_an_empty_profile(db: TestDb) {
    let s = &db.store;
    s.touch(&uid("u1"), 100).await.unwrap();
    s.touch(&uid("u1"), 200).await.unwrap();
    s.touch(&uid("u1"), 50).await.unwrap();
    assert!(s.exists(&uid("u1")).await.unwrap());
    assert_eq!(
        s.profiles(&["u1".into()]).await.unwrap(),
        vec![empty_profile("u1", 100, 100)]
    );
    assert_eq!(s.account("u1").await.unwrap(), None);
}

async fn profiles_omit_unknown_ids(db: TestDb) {
    let s = &db.store;
    assert!(s.profiles(&[]).await.unwrap().is_empty());
    for (i, u) in ["a", "b", "c"].iter().enumerate() {
        s.touch(&uid(u), i as i64 + 1).await.unwrap();
    }
    // more ids than one IN list takes, a few of them known, one twice
    let mut wanted: Vec<String> = (0..1_200).map(|i| format!("ghost{i}")).collect();
    wanted.insert(3, "c".into());
    wanted.insert(700, "a".into());
    wanted.push("c".into());
    let mut got = s.profiles(&wanted).await.unwrap();
    got.sort_by(|x, y| x.user_id.cmp(&y.user_id));
    got.dedup();
    assert_eq!(
        got,
        vec![empty_profile("a", 1, 1), empty_profile("c", 3, 3)]
    );
    assert!(s.profiles(&["nobody".into()]).await.unwrap().is_empty());
}

async fn update_profile_patches_and_creates_unknown_users(db: TestDb) {
    let s = &db.store;
    // never seen: created with the patch
    let patch = ProfilePatch {
        nickname: Some("Neo".into()),
        gender: Some(1),
        ..ProfilePatch::default()
    };
    let p = s.update_profile("neo", &patch, 1_000).await.unwrap();
    let expected = UserProfile {
        nickname: "Neo".into(),
        gender: 1,
        ..empty_profile("neo", 1_000, 1_000)
    };
    assert_eq!(p, expected);
    assert!(s.exists(&uid("neo")).await.unwrap());
    assert_eq!(
        s.profiles(&["neo".into()]).await.unwrap(),
        vec![expected.clone()]
    );

    // only the given fields change; created_at stays
    let patch = ProfilePatch {
        avatar: Some("https://x/neo.png".into()),
        phone: Some("+1".into()),
        email: Some("neo@x".into()),
        birth: Some(42),
        signature: Some("wake up".into()),
        extra: Some("{}".into()),
        ..ProfilePatch::default()
    };
    let p = s.update_profile("neo", &patch, 2_000).await.unwrap();
    let expected = UserProfile {
        avatar: "https://x/neo.png".into(),
        phone: "+1".into(),
        email: "neo@x".into(),
        birth: 42,
        signature: "wake up".into(),
        extra: "{}".into(),
        updated_at: 2_000,
        ..expected
    };
    assert_eq!(p, expected);

    // clearing a field; an empty patch only bumps updated_at
    let p = s
        .update_profile(
            "neo",
            &ProfilePatch {
                nickname: Some(String::new()),
                ..ProfilePatch::default()
            },
            3_000,
        )
        .await
        .unwrap();
    assert_eq!(p.nickname, "");
    assert_eq!(p.avatar, "https://x/neo.png");
    let p = s
        .update_profile("neo", &ProfilePatch::default(), 4_000)
        .await
        .unwrap();
    assert_eq!((p.created_at, p.updated_at), (1_000, 4_000));

    // a user provisioned by touch keeps its created_at
    s.touch(&uid("trin"), 10).await.unwrap();
    let p = s
        .update_profile(
            "trin",
            &ProfilePatch {
                nickname: Some("Trinity".into()),
                ..ProfilePatch::default()
            },
            20,
        )
        .await
        .unwrap();
    assert_eq!(
        p,
        UserProfile {
            nickname: "Trinity".into(),
            ..empty_profile("trin", 10, 20)
        }
    );
}

async fn search_matches_id_or_nickname_case_insensitively(db: TestDb) {
    let s = &db.store;
    for (u, nick) in [
        ("alice", "Wonderland"),
        ("bob", "ALICE's friend"),
        ("carol", "Carol"),
        ("Malice", ""),
        ("dave", "dAVE"),
    ] {
        s.update_profile(
            u,
            &ProfilePatch {
                nickname: Some(nick.into()),
                ..ProfilePatch::default()
            },
            1,
        )
        .await
        .unwrap();
    }
    // by id (either case) or nickname, ordered by user id (byte-wise)
    let got = s.search_users("ALICE", 10).await.unwrap();
    assert_eq!(ids(&got), vec!["Malice", "alice", "bob"]);
    let got = s.search_users("wonder", 10).await.unwrap();
    assert_eq!(ids(&got), vec!["alice"]);
    assert_eq!(got[0].nickname, "Wonderland");
    let got = s.search_users("Ave", 10).await.unwrap();
    assert_eq!(ids(&got), vec!["dave"]);
    assert!(s.search_users("zzz", 10).await.unwrap().is_empty());
    // an empty keyword matches everyone
    let got = s.search_users("", 10).await.unwrap();
    assert_eq!(ids(&got), vec!["Malice", "alice", "bob", "carol", "dave"]);
    assert!(s.search_users("alice", 0).await.unwrap().is_empty());
}

async fn search_treats_like_wildcards_literally_and_respects_the_limit(db: TestDb) {
    let s = &db.store;
    for (u, nick) in [
        ("u1", "100% real"),
        ("u2", "100 real"),
        ("u3", "a_b"),
        ("u4", "axb"),
        ("u5", r"back\slash"),
        ("u6", "backslash"),
        ("u_7", ""),
        ("u8", "user_8"),
    ] {
        s.update_profile(
            u,
            &ProfilePatch {
                nickname: Some(nick.into()),
                ..ProfilePatch::default()
            },
            1,
        )
        .await
        .unwrap();
    }
    assert_eq!(ids(&s.search_users("0%", 10).await.unwrap()), vec!["u1"]);
    assert_eq!(ids(&s.search_users("%", 10).await.unwrap()), vec!["u1"]);
    assert_eq!(ids(&s.search_users("a_b", 10).await.unwrap()), vec!["u3"]);
    assert_eq!(
        ids(&s.search_users("_", 10).await.unwrap()),
        vec!["u3", "u8", "u_7"]
    );
    assert_eq!(ids(&s.search_users(r"k\s", 10).await.unwrap()), vec!["u5"]);
    assert_eq!(ids(&s.search_users(r"\", 10).await.unwrap()), vec!["u5"]);

    // the limit keeps the first ids
    let got = s.search_users("u", 3).await.unwrap();
    assert_eq!(ids(&got), vec!["u1", "u2", "u3"]);
    let got = s.search_users("U", 100).await.unwrap();
    assert_eq!(got.len(), 8);
}

async fn put_request_creates_and_refreshes(db: TestDb) {
    let s = &db.store;
    assert_eq!(s.request("a", "b").await.unwrap(), None);
    s.put_request(&request("a", "b", "hi", 100)).await.unwrap();
    assert_eq!(
        s.request("a", "b").await.unwrap(),
        Some(request("a", "b", "hi", 100))
    );
    assert_eq!(s.request("b", "a").await.unwrap(), None);

    // rejected, then asked again: pending, new message, created_at kept
    assert!(
        s.resolve_request("a", "b", FriendRequestStatus::Rejected, 150)
            .await
            .unwrap()
    );
    let mut again = request("a", "b", "please", 200);
    again.status = FriendRequestStatus::Rejected; // ignored: a put is pending
    again.created_at = 999;
    s.put_request(&again).await.unwrap();
    assert_eq!(
        s.request("a", "b").await.unwrap(),
        Some(FriendRequest {
            created_at: 100,
            ..request("a", "b", "please", 200)
        })
    );
}

async fn requests_list_newest_first(db: TestDb) {
    let s = &db.store;
    s.put_request(&request("x", "me", "1", 10)).await.unwrap();
    s.put_request(&request("y", "me", "2", 30)).await.unwrap();
    s.put_request(&request("z", "me", "3", 20)).await.unwrap();
    s.put_request(&request("me", "p", "4", 5)).await.unwrap();
    s.put_request(&request("me", "q", "5", 50)).await.unwrap();
    s.put_request(&request("x", "other", "6", 99))
        .await
        .unwrap();

    let from = |rs: Vec<FriendRequest>| rs.into_iter().map(|r| r.from_id).collect::<Vec<_>>();
    let to = |rs: Vec<FriendRequest>| rs.into_iter().map(|r| r.to_id).collect::<Vec<_>>();
    assert_eq!(
        from(s.requests("me", true, 10).await.unwrap()),
        vec!["y", "z", "x"]
    );
    assert_eq!(
        from(s.requests("me", true, 2).await.unwrap()),
        vec!["y", "z"]
    );
    assert_eq!(
        to(s.requests("me", false, 10).await.unwrap()),
        vec!["q", "p"]
    );
    assert!(s.requests("me", true, 0).await.unwrap().is_empty());
    assert!(s.requests("nobody", true, 10).await.unwrap().is_empty());

    // asking again makes a request the newest
    s.put_request(&request("x", "me", "again", 40))
        .await
        .unwrap();
    let got = s.requests("me", true, 10).await.unwrap();
    assert_eq!(from(got.clone()), vec!["x", "y", "z"]);
    assert_eq!(
        got[0],
        FriendRequest {
            created_at: 10,
            ..request("x", "me", "again", 40)
        }
    );
}

async fn resolve_request_changes_only_pending_ones(db: TestDb) {
    let s = &db.store;
    assert!(
        !s.resolve_request("a", "b", FriendRequestStatus::Accepted, 1)
            .await
            .unwrap()
    );
    s.put_request(&request("a", "b", "hi", 10)).await.unwrap();
    assert!(
        s.resolve_request("a", "b", FriendRequestStatus::Rejected, 20)
            .await
            .unwrap()
    );
    // no longer pending
    assert!(
        !s.resolve_request("a", "b", FriendRequestStatus::Accepted, 30)
            .await
            .unwrap()
    );
    let r = s.request("a", "b").await.unwrap().unwrap();
    assert_eq!(
        (r.status, r.created_at, r.updated_at),
        (FriendRequestStatus::Rejected, 10, 20)
    );
    // the reverse direction is another request
    assert!(
        !s.resolve_request("b", "a", FriendRequestStatus::Accepted, 30)
            .await
            .unwrap()
    );
}

async fn add_friendship_creates_both_sides_and_accepts_requests(db: TestDb) {
    let s = &db.store;
    s.put_request(&request("alice", "bob", "hi", 10))
        .await
        .unwrap();
    s.put_request(&request("bob", "alice", "hey", 11))
        .await
        .unwrap();
    // other pairs and settled requests are left alone
    s.put_request(&request("alice", "carol", "yo", 12))
        .await
        .unwrap();
    s.put_request(&request("carol", "bob", "hm", 13))
        .await
        .unwrap();
    assert!(
        s.resolve_request("carol", "bob", FriendRequestStatus::Rejected, 14)
            .await
            .unwrap()
    );

    let mut a = side("bob", "alice", "bob", 100);
    a.remark = "Al".into();
    a.extra = "{\"x\":1}".into();
    let b = side("alice", "bob", "bob", 100);
    s.add_friendship(&a, &b, 100).await.unwrap();

    assert_eq!(s.friend("bob", "alice").await.unwrap(), Some(a.clone()));
    assert_eq!(s.friend("alice", "bob").await.unwrap(), Some(b.clone()));
    assert_eq!(s.friends("bob").await.unwrap(), vec![a]);
    assert_eq!(s.friends("alice").await.unwrap(), vec![b]);
    assert_eq!(s.friend("alice", "carol").await.unwrap(), None);

    let status = |r: Option<FriendRequest>| r.map(|r| (r.status, r.updated_at));
    assert_eq!(
        status(s.request("alice", "bob").await.unwrap()),
        Some((FriendRequestStatus::Accepted, 100))
    );
    assert_eq!(
        status(s.request("bob", "alice").await.unwrap()),
        Some((FriendRequestStatus::Accepted, 100))
    );
    assert_eq!(
        status(s.request("alice", "carol").await.unwrap()),
        Some((FriendRequestStatus::Pending, 12))
    );
    assert_eq!(
        status(s.request("carol", "bob").await.unwrap()),
        Some((FriendRequestStatus::Rejected, 14))
    );

    // sides that do not mirror each other are refused
    let err = s
        .add_friendship(&side("a", "b", "b", 1), &side("c", "a", "b", 1), 1)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Other(_)), "{err:?}");
    assert!(s.friends("a").await.unwrap().is_empty());
}

async fn add_friendship_keeps_existing_rows(db: TestDb) {
    let s = &db.store;
    befriend(s, "a", "b", 10).await;
    assert!(s.set_remark("a", "bee", "x").await.unwrap().is_none());
    let kept = s.set_remark("a", "b", "Bee").await.unwrap().unwrap();
    // added again (e.g. a repeated accept): nothing changes
    let mut a2 = side("a", "b", "a", 20);
    a2.remark = "other".into();
    s.add_friendship(&a2, &side("b", "a", "a", 20), 20)
        .await
        .unwrap();
    assert_eq!(s.friend("a", "b").await.unwrap(), Some(kept));
    assert_eq!(
        s.friend("b", "a").await.unwrap(),
        Some(side("b", "a", "b", 10))
    );

    // friends again after a removal: new rows
    befriend(s, "c", "d", 30).await;
    assert!(s.remove_friendship("c", "d").await.unwrap());
    befriend(s, "d", "c", 35).await;
    assert_eq!(
        s.friend("c", "d").await.unwrap(),
        Some(side("c", "d", "c", 35))
    );
    befriend(s, "a", "c", 40).await;
    befriend(s, "c", "e", 41).await;
    assert_eq!(friend_ids(s, "c").await, vec!["a", "d", "e"]);
    assert_eq!(friend_ids(s, "a").await, vec!["b", "c"]);
}

/// Two accepts of one pair racing in opposite directions on two stores:
/// no deadlock, no error, one friendship.
async fn concurrent_add_friendship_in_both_directions(db: TestDb) {
    let other = db.another().await;
    let mut tasks = Vec::new();
    for i in 0..10_i64 {
        let (store, x, y) = if i % 2 == 0 {
            (db.store.clone(), "p", "q")
        } else {
            (other.clone(), "q", "p")
        };
        tasks.push(tokio::spawn(async move {
            store.put_request(&request(y, x, "hi", i)).await?;
            store
                .add_friendship(&side(x, y, x, i), &side(y, x, x, i), i)
                .await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(friend_ids(&db.store, "p").await, vec!["q"]);
    assert_eq!(friend_ids(&db.store, "q").await, vec!["p"]);
}

async fn remove_friendship_removes_both_sides(db: TestDb) {
    let s = &db.store;
    assert!(!s.remove_friendship("a", "b").await.unwrap());
    befriend(s, "a", "b", 1).await;
    befriend(s, "a", "c", 2).await;
    assert!(s.remove_friendship("b", "a").await.unwrap());
    assert_eq!(s.friend("a", "b").await.unwrap(), None);
    assert_eq!(s.friend("b", "a").await.unwrap(), None);
    assert_eq!(friend_ids(s, "a").await, vec!["c"]);
    assert!(friend_ids(s, "b").await.is_empty());
    assert!(!s.remove_friendship("a", "b").await.unwrap());
    assert_eq!(friend_ids(s, "c").await, vec!["a"]);
}

async fn set_remark_only_for_friends(db: TestDb) {
    let s = &db.store;
    assert_eq!(s.set_remark("a", "b", "x").await.unwrap(), None);
    befriend(s, "a", "b", 5).await;
    let got = s.set_remark("a", "b", "Bestie").await.unwrap();
    assert_eq!(
        got,
        Some(Friend {
            remark: "Bestie".into(),
            ..side("a", "b", "b", 5)
        })
    );
    // the same remark again still reports the entry
    assert_eq!(s.set_remark("a", "b", "Bestie").await.unwrap(), got);
    // the other side is untouched
    assert_eq!(s.friend("b", "a").await.unwrap().unwrap().remark, "");
    assert_eq!(s.set_remark("b", "c", "x").await.unwrap(), None);
    assert!(s.remove_friendship("a", "b").await.unwrap());
    assert_eq!(s.set_remark("a", "b", "gone").await.unwrap(), None);
}

async fn block_unblock_and_list(db: TestDb) {
    let s = &db.store;
    assert!(!s.is_blocked("a", "b").await.unwrap());
    assert!(s.block("a", "c", 10).await.unwrap());
    assert!(s.block("a", "b", 20).await.unwrap());
    // twice: false, the first time is kept
    assert!(!s.block("a", "b", 30).await.unwrap());
    assert!(s.is_blocked("a", "b").await.unwrap());
    assert!(!s.is_blocked("b", "a").await.unwrap());
    let block = |o: &str, b: &str, t| Block {
        owner_id: o.into(),
        blocked_id: b.into(),
        created_at: t,
    };
    assert_eq!(
        s.blocks("a").await.unwrap(),
        vec![block("a", "b", 20), block("a", "c", 10)]
    );
    assert!(s.blocks("b").await.unwrap().is_empty());

    assert!(s.unblock("a", "b").await.unwrap());
    assert!(!s.unblock("a", "b").await.unwrap());
    assert!(!s.is_blocked("a", "b").await.unwrap());
    assert_eq!(s.blocks("a").await.unwrap(), vec![block("a", "c", 10)]);
    // blocked again after an unblock
    assert!(s.block("a", "b", 40).await.unwrap());
}

async fn revoke_is_idempotent(db: TestDb) {
    let s = &db.store;
    assert!(!s.is_revoked("j1").await.unwrap());
    TokenRevocationStore::revoke(s, "j1", "alice", 1_000)
        .await
        .unwrap();
    TokenRevocationStore::revoke(s, "j1", "alice", 1_000)
        .await
        .unwrap();
    TokenRevocationStore::revoke(s, "j1", "alice", 2_000)
        .await
        .unwrap();
    assert!(s.is_revoked("j1").await.unwrap());
    assert!(!s.is_revoked("j2").await.unwrap());
    // kept with its first expiry: gone once that passed
    assert_eq!(s.purge_expired(1_001).await.unwrap(), 1);
    assert!(!s.is_revoked("j1").await.unwrap());
}

async fn purge_expired_counts_what_it_deletes(db: TestDb) {
    let s = &db.store;
    assert_eq!(s.purge_expired(100).await.unwrap(), 0);
    for (jti, exp) in [("a", 10), ("b", 20), ("c", 20), ("d", 30)] {
        TokenRevocationStore::revoke(s, jti, "u", exp)
            .await
            .unwrap();
    }
    // strictly before now_secs
    assert_eq!(s.purge_expired(20).await.unwrap(), 1);
    assert!(!s.is_revoked("a").await.unwrap());
    assert!(s.is_revoked("b").await.unwrap());
    assert_eq!(s.purge_expired(20).await.unwrap(), 0);
    assert_eq!(s.purge_expired(31).await.unwrap(), 3);
    for jti in ["b", "c", "d"] {
        assert!(!s.is_revoked(jti).await.unwrap());
    }
}
