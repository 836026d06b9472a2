//! Account, profile, friend, block and token-revocation writes on SQLite,
//! each on the writer connection (a multi-statement one as one `BEGIN
//! IMMEDIATE` transaction), and the social port impls.

use diesel::SqliteConnection;
use diesel::prelude::*;
use diesel::upsert::excluded;
use im_core::model::{
    Account, Friend, FriendRequest, FriendRequestStatus, ProfilePatch, UserProfile,
};
use im_core::ports::StoreResult;

use super::SqliteStore;
use crate::error::RepoError;
use crate::schema::users;
use crate::social::models::{
    NewAccountRow, NewBlockRow, NewFriendRow, NewProfileRow, NewRequestRow, ProfileChanges,
    ProfileRow, RevokedRow, count,
};
use crate::social::schema::{accounts, blocks, friend_requests, friends, revoked_tokens};
use crate::social::{ordered, read};

/// The user row and the credentials; a taken id fails with a unique
/// violation (Conflict).
pub(crate) fn create_account(
    c: &mut SqliteConnection,
    profile: &UserProfile,
    account: &Account,
) -> Result<(), RepoError> {
    c.immediate_transaction(|c| {
        diesel::insert_into(users::table)
            .values(NewProfileRow::new(profile))
            .execute(c)?;
        diesel::insert_into(accounts::table)
            .values(NewAccountRow::from(account))
            .execute(c)?;
        Ok(())
    })
}

/// Creates the user if missing, applies the patch, reads the profile back.
pub(crate) fn update_profile(
    c: &mut SqliteConnection,
    user: &str,
    patch: &ProfilePatch,
    now_ms: i64,
) -> Result<UserProfile, RepoError> {
    c.immediate_transaction(|c| {
        diesel::insert_into(users::table)
            .values(NewProfileRow::empty(user, now_ms))
            .on_conflict_do_nothing()
            .execute(c)?;
        diesel::update(users::table.filter(users::user_id.eq(user)))
            .set(ProfileChanges::new(patch, now_ms))
            .execute(c)?;
        let row = read::profile(user).first::<ProfileRow>(c)?;
        Ok(UserProfile::from(row))
    })
}

/// Creates the request, or refreshes it (message, status, `updated_at`).
pub(crate) fn put_request(c: &mut SqliteConnection, req: &FriendRequest) -> Result<(), RepoError> {
    use friend_requests::dsl as fr;
    diesel::insert_into(fr::friend_requests)
        .values(NewRequestRow::from(req))
        .on_conflict((fr::from_id, fr::to_id))
        .do_update()
        .set((
            fr::message.eq(excluded(fr::message)),
            fr::status.eq(excluded(fr::status)),
            fr::updated_at.eq(excluded(fr::updated_at)),
        ))
        .execute(c)?;
    Ok(())
}

/// Sets the status of the pending request `from -> to`; false if none.
pub(crate) fn resolve_request(
    c: &mut SqliteConnection,
    from: &str,
    to: &str,
    status: FriendRequestStatus,
    now_ms: i64,
) -> Result<bool, RepoError> {
    use friend_requests::dsl as fr;
    let n = diesel::update(
        fr::friend_requests
            .filter(fr::from_id.eq(from))
            .filter(fr::to_id.eq(to))
            .filter(fr::status.eq(FriendRequestStatus::Pending.code())),
    )
    .set((fr::status.eq(status.code()), fr::updated_at.eq(now_ms)))
    .execute(c)?;
    Ok(n > 0)
}

/// Both friend rows (kept when present) and the pending requests between
/// the two marked accepted, in one transaction.
pub(crate) fn add_friendship(
    c: &mut SqliteConnection,
    a: &Friend,
    b: &Friend,
    now_ms: i64,
) -> Result<(), RepoError> {
    use friend_requests::dsl as fr;
    let sides = ordered(a, b, |f: &Friend| f.owner_id.as_str());
    c.immediate_transaction(|c| {
        for side in sides {
            diesel::insert_into(friends::table)
                .values(NewFriendRow::from(side))
                .on_conflict_do_nothing()
                .execute(c)?;
        }
        for side in sides {
            diesel::update(
                fr::friend_requests
                    .filter(fr::from_id.eq(&side.owner_id))
                    .filter(fr::to_id.eq(&side.friend_id))
                    .filter(fr::status.eq(FriendRequestStatus::Pending.code())),
            )
            .set((
                fr::status.eq(FriendRequestStatus::Accepted.code()),
                fr::updated_at.eq(now_ms),
            ))
            .execute(c)?;
        }
        Ok(())
    })
}

/// Removes both sides (one statement); false if neither existed.
pub(crate) fn remove_friendship(
    c: &mut SqliteConnection,
    a: &str,
    b: &str,
) -> Result<bool, RepoError> {
    use friends::dsl as f;
    let n = diesel::delete(
        f::friends.filter(
            f::owner_id
                .eq(a)
                .and(f::friend_id.eq(b))
                .or(f::owner_id.eq(b).and(f::friend_id.eq(a))),
        ),
    )
    .execute(c)?;
    Ok(n > 0)
}

/// Sets `owner`'s remark for `friend`; false if not friends.
pub(crate) fn set_remark(
    c: &mut SqliteConnection,
    owner: &str,
    friend: &str,
    remark: &str,
) -> Result<bool, RepoError> {
    use friends::dsl as f;
    let n = diesel::update(
        f::friends
            .filter(f::owner_id.eq(owner))
            .filter(f::friend_id.eq(friend)),
    )
    .set(f::remark.eq(remark))
    .execute(c)?;
    Ok(n > 0)
}

/// Insert-or-keep of a block; true when it is new.
pub(crate) fn block(
    c: &mut SqliteConnection,
    owner: &str,
    target: &str,
    now_ms: i64,
) -> Result<bool, RepoError> {
    let n = diesel::insert_into(blocks::table)
        .values(NewBlockRow {
            owner_id: owner,
            blocked_id: target,
            created_at: now_ms,
        })
        .on_conflict_do_nothing()
        .execute(c)?;
    Ok(n > 0)
}

/// Removes a block; false if there was none.
pub(crate) fn unblock(
    c: &mut SqliteConnection,
    owner: &str,
    target: &str,
) -> Result<bool, RepoError> {
    let n = diesel::delete(
        blocks::table
            .filter(blocks::owner_id.eq(owner))
            .filter(blocks::blocked_id.eq(target)),
    )
    .execute(c)?;
    Ok(n > 0)
}

/// Insert-or-keep of a revoked token.
pub(crate) fn revoke_token(
    c: &mut SqliteConnection,
    jti: &str,
    user: &str,
    expires_at: i64,
) -> Result<(), RepoError> {
    diesel::insert_into(revoked_tokens::table)
        .values(RevokedRow {
            jti,
            user_id: user,
            expires_at,
        })
        .on_conflict_do_nothing()
        .execute(c)?;
    Ok(())
}

/// Deletes the revocations of tokens that expired before `now_secs`.
pub(crate) fn purge_revoked(c: &mut SqliteConnection, now_secs: i64) -> Result<u64, RepoError> {
    let n = diesel::delete(revoked_tokens::table.filter(revoked_tokens::expires_at.lt(now_secs)))
        .execute(c)?;
    Ok(count(n))
}

impl SqliteStore {
    async fn create_account_impl(
        &self,
        profile: &UserProfile,
        account: &Account,
    ) -> StoreResult<()> {
        let (profile, account) = (profile.clone(), account.clone());
        self.write(move |c| create_account(c, &profile, &account))
            .await
    }

    async fn update_profile_impl(
        &self,
        user: &str,
        patch: &ProfilePatch,
        now_ms: i64,
    ) -> StoreResult<UserProfile> {
        let (user, patch) = (user.to_owned(), patch.clone());
        self.write(move |c| update_profile(c, &user, &patch, now_ms))
            .await
    }

    async fn put_request_impl(&self, req: &FriendRequest) -> StoreResult<()> {
        let req = req.clone();
        self.write(move |c| put_request(c, &req)).await
    }

    async fn resolve_request_impl(
        &self,
        from: &str,
        to: &str,
        status: FriendRequestStatus,
        now_ms: i64,
    ) -> StoreResult<bool> {
        let (from, to) = (from.to_owned(), to.to_owned());
        self.write(move |c| resolve_request(c, &from, &to, status, now_ms))
            .await
    }

    async fn add_friendship_impl(&self, a: &Friend, b: &Friend, now_ms: i64) -> StoreResult<()> {
        let (a, b) = (a.clone(), b.clone());
        self.write(move |c| add_friendship(c, &a, &b, now_ms)).await
    }

    async fn remove_friendship_impl(&self, a: &str, b: &str) -> StoreResult<bool> {
        let (a, b) = (a.to_owned(), b.to_owned());
        self.write(move |c| remove_friendship(c, &a, &b)).await
    }

    async fn set_remark_impl(&self, owner: &str, friend: &str, remark: &str) -> StoreResult<bool> {
        let (owner, friend, remark) = (owner.to_owned(), friend.to_owned(), remark.to_owned());
        self.write(move |c| set_remark(c, &owner, &friend, &remark))
            .await
    }

    async fn block_impl(&self, owner: &str, target: &str, now_ms: i64) -> StoreResult<bool> {
        let (owner, target) = (owner.to_owned(), target.to_owned());
        self.write(move |c| block(c, &owner, &target, now_ms)).await
    }

    async fn unblock_impl(&self, owner: &str, target: &str) -> StoreResult<bool> {
        let (owner, target) = (owner.to_owned(), target.to_owned());
        self.write(move |c| unblock(c, &owner, &target)).await
    }

    async fn revoke_token_impl(&self, jti: &str, user: &str, expires_at: i64) -> StoreResult<()> {
        let (jti, user) = (jti.to_owned(), user.to_owned());
        self.write(move |c| revoke_token(c, &jti, &user, expires_at))
            .await
    }

    async fn purge_revoked_impl(&self, now_secs: i64) -> StoreResult<u64> {
        self.write(move |c| purge_revoked(c, now_secs)).await
    }
}

crate::social::ports::impl_social_ports!(SqliteStore);

#[cfg(test)]
mod tests {
    use diesel::connection::SimpleConnection;
    use diesel_migrations::MigrationHarness;

    use super::*;
    use crate::sqlite::migrate::MIGRATIONS;

    fn profile_of(c: &mut SqliteConnection, user: &str) -> UserProfile {
        UserProfile::from(read::profile(user).first::<ProfileRow>(c).unwrap())
    }

    #[test]
    fn existing_users_become_empty_profiles_and_the_migration_reverts() {
        let mut c = SqliteConnection::establish(":memory:").unwrap();
        // the schema before this migration, with a user
        c.run_next_migration(MIGRATIONS).unwrap();
        c.run_next_migration(MIGRATIONS).unwrap();
        c.batch_execute("INSERT INTO users (user_id, created_at, last_seen) VALUES ('old', 5, 9)")
            .unwrap();
        c.run_pending_migrations(MIGRATIONS).unwrap();
        let stored: i64 = users::table
            .select(users::updated_at)
            .first(&mut c)
            .unwrap();
        assert_eq!(stored, 5);
        assert_eq!(
            profile_of(&mut c, "old"),
            UserProfile {
                user_id: "old".into(),
                created_at: 5,
                updated_at: 5,
                ..UserProfile::default()
            }
        );
        // a row written without the profile columns (an older server)
        // still reads as a profile dating from its creation
        c.batch_execute(
            "INSERT INTO users (user_id, created_at, last_seen) VALUES ('legacy', 7, 7)",
        )
        .unwrap();
        assert_eq!(profile_of(&mut c, "legacy").updated_at, 7);

        // down keeps the users, without their profiles; up again works
        // (the later sync_clock migration is reverted first)
        let applied = c.applied_migrations().unwrap().len();
        c.revert_last_migration(MIGRATIONS).unwrap();
        c.revert_last_migration(MIGRATIONS).unwrap();
        c.batch_execute("INSERT INTO users (user_id, created_at, last_seen) VALUES ('x', 1, 1)")
            .unwrap();
        c.run_pending_migrations(MIGRATIONS).unwrap();
        assert_eq!(c.applied_migrations().unwrap().len(), applied);
        assert_eq!(profile_of(&mut c, "x").updated_at, 1);
        assert_eq!(users::table.count().get_result::<i64>(&mut c).unwrap(), 3);
    }
}
