//! Read queries of profiles, accounts, friends, requests, blocks and revoked
//! tokens, shared by every backend (like [`crate::read`]): each function
//! returns the diesel query, so the stores run exactly what the query-plan
//! tests check.

use diesel::dsl::{Escape, Like, auto_type};
use diesel::prelude::*;
use diesel::sql_types::Text;

use super::LIKE_ESCAPE;
use super::models::{PROFILE_SELECT, ProfileSelect};
use super::schema::{accounts, blocks, friend_requests, friends, revoked_tokens};
use crate::schema::users;

#[diesel::declare_sql_function]
extern "SQL" {
    /// `LOWER(x)`: folds ASCII on SQLite and PostgreSQL (`COLLATE "C"`
    /// columns), Unicode on MySQL.
    fn lower(x: Text) -> Text;
}

/// The profile of `user` (primary key).
#[auto_type(no_type_alias)]
pub(crate) fn profile<'a>(user: &'a str) -> _ {
    let select: ProfileSelect = PROFILE_SELECT;
    users::table.filter(users::user_id.eq(user)).select(select)
}

/// The profiles of those of `ids` who exist (primary key probes).
#[auto_type(no_type_alias)]
pub(crate) fn profiles<'a>(ids: &'a [String]) -> _ {
    let select: ProfileSelect = PROFILE_SELECT;
    users::table
        .filter(users::user_id.eq_any(ids))
        .select(select)
}

/// Users whose lowered id or nickname is `LIKE pattern` (see
/// [`super::like_pattern`]), by id, at most `limit`: a walk of the primary
/// key that stops after `limit` matches (a substring match cannot use an
/// index).
#[auto_type(no_type_alias)]
pub(crate) fn search<'a>(pattern: &'a str, limit: i64) -> _ {
    let select: ProfileSelect = PROFILE_SELECT;
    let by_id: Escape<Like<lower<users::user_id>, &'a str>> =
        lower(users::user_id).like(pattern).escape(LIKE_ESCAPE);
    let by_nickname: Escape<Like<lower<users::nickname>, &'a str>> =
        lower(users::nickname).like(pattern).escape(LIKE_ESCAPE);
    users::table
        .filter(by_id.or(by_nickname))
        .order(users::user_id.asc())
        .limit(limit)
        .select(select)
}

/// The credentials of `user` (primary key).
#[auto_type(no_type_alias)]
pub(crate) fn account<'a>(user: &'a str) -> _ {
    accounts::table.filter(accounts::user_id.eq(user))
}

/// The request `from -> to` (primary key).
#[auto_type(no_type_alias)]
pub(crate) fn request<'a>(from: &'a str, to: &'a str) -> _ {
    friend_requests::table
        .filter(friend_requests::from_id.eq(from))
        .filter(friend_requests::to_id.eq(to))
}

/// Requests sent to `user`, most recently updated first, at most `limit`
/// (a backward range of `friend_requests_to_key`).
#[auto_type(no_type_alias)]
pub(crate) fn requests_to<'a>(user: &'a str, limit: i64) -> _ {
    friend_requests::table
        .filter(friend_requests::to_id.eq(user))
        .order((
            friend_requests::updated_at.desc(),
            friend_requests::from_id.desc(),
        ))
        .limit(limit)
}

/// Requests sent by `user`, most recently updated first, at most `limit`
/// (a range of the primary key, sorted: one user's sent requests).
#[auto_type(no_type_alias)]
pub(crate) fn requests_from<'a>(user: &'a str, limit: i64) -> _ {
    friend_requests::table
        .filter(friend_requests::from_id.eq(user))
        .order((
            friend_requests::updated_at.desc(),
            friend_requests::to_id.desc(),
        ))
        .limit(limit)
}

/// `owner`'s entry for `friend` (primary key).
#[auto_type(no_type_alias)]
pub(crate) fn friend<'a>(owner: &'a str, friend: &'a str) -> _ {
    friends::table
        .filter(friends::owner_id.eq(owner))
        .filter(friends::friend_id.eq(friend))
}

/// Every friend of `owner`, by friend id (a range of the primary key).
#[auto_type(no_type_alias)]
pub(crate) fn friends_of<'a>(owner: &'a str) -> _ {
    friends::table
        .filter(friends::owner_id.eq(owner))
        .order(friends::friend_id.asc())
}

/// Whom `owner` blocked, by blocked id (a range of the primary key).
#[auto_type(no_type_alias)]
pub(crate) fn blocks_of<'a>(owner: &'a str) -> _ {
    blocks::table
        .filter(blocks::owner_id.eq(owner))
        .order(blocks::blocked_id.asc())
}

/// Whether `owner` blocked `target` (primary key).
#[auto_type(no_type_alias)]
pub(crate) fn is_blocked<'a>(owner: &'a str, target: &'a str) -> _ {
    diesel::dsl::select(diesel::dsl::exists(
        blocks::table
            .filter(blocks::owner_id.eq(owner))
            .filter(blocks::blocked_id.eq(target)),
    ))
}

/// Whether token `jti` was revoked (primary key).
#[auto_type(no_type_alias)]
pub(crate) fn is_revoked<'a>(jti: &'a str) -> _ {
    diesel::dsl::select(diesel::dsl::exists(
        revoked_tokens::table.filter(revoked_tokens::jti.eq(jti)),
    ))
}

#[cfg(test)]
mod tests {
    //! Every read is an index search, never a table scan, except the
    //! substring search (a walk of the primary key in result order, stopped
    //! by the limit); the only sort is over one user's sent requests.

    use super::*;
    use crate::sqlite::test_util::{assert_indexed, memory_conn, plan};

    #[test]
    fn reads_use_indexes() {
        let mut c = memory_conn();
        let ids = vec!["a".to_owned(), "b".to_owned()];
        let pk = |t: &str, cond: &str| format!("SEARCH {t} USING PRIMARY KEY ({cond})");
        let p = plan(&mut c, &profile("u"));
        assert_indexed(&p, &[&pk("users", "user_id=?")]);
        let p = plan(&mut c, &profiles(&ids));
        assert_indexed(&p, &[&pk("users", "user_id=?")]);
        let p = plan(&mut c, &account("u"));
        assert_indexed(&p, &[&pk("accounts", "user_id=?")]);
        let p = plan(&mut c, &request("a", "b"));
        assert_indexed(&p, &[&pk("friend_requests", "from_id=? AND to_id=?")]);
        let p = plan(&mut c, &requests_to("u", 10));
        assert_indexed(
            &p,
            &["SEARCH friend_requests USING INDEX friend_requests_to_key (to_id=?)"],
        );
        let p = plan(&mut c, &friend("a", "b"));
        assert_indexed(&p, &[&pk("friends", "owner_id=? AND friend_id=?")]);
        let p = plan(&mut c, &friends_of("a"));
        assert_indexed(&p, &[&pk("friends", "owner_id=?")]);
        let p = plan(&mut c, &blocks_of("a"));
        assert_indexed(&p, &[&pk("blocks", "owner_id=?")]);
        let p = plan(&mut c, &is_blocked("a", "b"));
        assert_indexed(&p, &[&pk("blocks", "owner_id=? AND blocked_id=?")]);
        let p = plan(&mut c, &is_revoked("j"));
        assert_indexed(&p, &[&pk("revoked_tokens", "jti=?")]);

        let p = plan(&mut c, &requests_from("u", 10));
        assert_eq!(
            p,
            vec![
                pk("friend_requests", "from_id=?"),
                "USE TEMP B-TREE FOR ORDER BY".to_owned()
            ]
        );
        // In primary-key order: no sort, stops at the limit.
        let p = plan(&mut c, &search("%x%", 10));
        assert_eq!(p, vec!["SCAN users".to_owned()]);
    }
}
