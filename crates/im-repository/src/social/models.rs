//! Rows of the social tables (and the profile columns of `users`) and their
//! conversions to the im-core model.

use diesel::prelude::*;
use im_core::StoreError;
use im_core::model::{
    Account, Block, Friend, FriendRequest, FriendRequestStatus, ProfilePatch, UserProfile,
};

use super::schema::{accounts, blocks, friend_requests, friends, revoked_tokens};
use crate::schema::users;

/// The columns of [`ProfileRow`], in its field order.
pub(crate) type ProfileSelect = (
    users::user_id,
    users::nickname,
    users::avatar,
    users::phone,
    users::email,
    users::gender,
    users::birth,
    users::signature,
    users::extra,
    users::created_at,
    users::updated_at,
);

/// The value of [`ProfileSelect`].
pub(crate) const PROFILE_SELECT: ProfileSelect = (
    users::user_id,
    users::nickname,
    users::avatar,
    users::phone,
    users::email,
    users::gender,
    users::birth,
    users::signature,
    users::extra,
    users::created_at,
    users::updated_at,
);

/// A profile as read back from `users`.
#[derive(Debug, Clone, Queryable)]
pub(crate) struct ProfileRow {
    pub user_id: String,
    pub nickname: String,
    pub avatar: String,
    pub phone: String,
    pub email: String,
    pub gender: i32,
    pub birth: i64,
    pub signature: String,
    pub extra: String,
    pub created_at: i64,
    pub updated_at: i64,
}

impl From<ProfileRow> for UserProfile {
    fn from(r: ProfileRow) -> Self {
        UserProfile {
            // A row provisioned before the profile columns existed, or by a
            // server that does not know them, has `updated_at` 0: it was
            // never updated, so its profile dates from its creation.
            updated_at: r.updated_at.max(r.created_at),
            user_id: r.user_id,
            nickname: r.nickname,
            avatar: r.avatar,
            phone: r.phone,
            email: r.email,
            gender: r.gender,
            birth: r.birth,
            signature: r.signature,
            extra: r.extra,
            created_at: r.created_at,
        }
    }
}

/// A new `users` row with its profile.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = users)]
pub(crate) struct NewProfileRow<'a> {
    pub user_id: &'a str,
    pub nickname: &'a str,
    pub avatar: &'a str,
    pub phone: &'a str,
    pub email: &'a str,
    pub gender: i32,
    pub birth: i64,
    pub signature: &'a str,
    pub extra: &'a str,
    pub created_at: i64,
    pub updated_at: i64,
    pub last_seen: i64,
}

impl<'a> NewProfileRow<'a> {
    /// The row of a registered user (`last_seen` = registration time).
    pub(crate) fn new(p: &'a UserProfile) -> Self {
        Self {
            user_id: &p.user_id,
            nickname: &p.nickname,
            avatar: &p.avatar,
            phone: &p.phone,
            email: &p.email,
            gender: p.gender,
            birth: p.birth,
            signature: &p.signature,
            extra: &p.extra,
            created_at: p.created_at,
            updated_at: p.updated_at,
            last_seen: p.created_at,
        }
    }

    /// The row of a user first seen at `now_ms`, with an empty profile.
    pub(crate) fn empty(user_id: &'a str, now_ms: i64) -> Self {
        Self {
            user_id,
            nickname: "",
            avatar: "",
            phone: "",
            email: "",
            gender: 0,
            birth: 0,
            signature: "",
            extra: "",
            created_at: now_ms,
            updated_at: now_ms,
            last_seen: now_ms,
        }
    }
}

/// The profile columns a patch changes: `None` fields are left alone.
#[derive(Debug, Clone, AsChangeset)]
#[diesel(table_name = users)]
pub(crate) struct ProfileChanges<'a> {
    pub nickname: Option<&'a str>,
    pub avatar: Option<&'a str>,
    pub phone: Option<&'a str>,
    pub email: Option<&'a str>,
    pub gender: Option<i32>,
    pub birth: Option<i64>,
    pub signature: Option<&'a str>,
    pub extra: Option<&'a str>,
    pub updated_at: i64,
}

impl<'a> ProfileChanges<'a> {
    pub(crate) fn new(p: &'a ProfilePatch, now_ms: i64) -> Self {
        Self {
            nickname: p.nickname.as_deref(),
            avatar: p.avatar.as_deref(),
            phone: p.phone.as_deref(),
            email: p.email.as_deref(),
            gender: p.gender,
            birth: p.birth,
            signature: p.signature.as_deref(),
            extra: p.extra.as_deref(),
            updated_at: now_ms,
        }
    }
}

/// Credentials as read back (every column of `accounts`, in order).
#[derive(Debug, Clone, Queryable)]
pub(crate) struct AccountRow {
    pub user_id: String,
    pub password_hash: String,
    pub created_at: i64,
}

impl From<AccountRow> for Account {
    fn from(r: AccountRow) -> Self {
        Account {
            user_id: r.user_id,
            password_hash: r.password_hash,
            created_at: r.created_at,
        }
    }
}

/// A new `accounts` row.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = accounts)]
pub(crate) struct NewAccountRow<'a> {
    pub user_id: &'a str,
    pub password_hash: &'a str,
    pub created_at: i64,
}

impl<'a> From<&'a Account> for NewAccountRow<'a> {
    fn from(a: &'a Account) -> Self {
        Self {
            user_id: &a.user_id,
            password_hash: &a.password_hash,
            created_at: a.created_at,
        }
    }
}

/// A friend entry as read back (every column of `friends`, in order).
#[derive(Debug, Clone, Queryable)]
pub(crate) struct FriendRow {
    pub owner_id: String,
    pub friend_id: String,
    pub remark: String,
    pub add_source: i32,
    pub operator_id: String,
    pub extra: String,
    pub created_at: i64,
}

impl From<FriendRow> for Friend {
    fn from(r: FriendRow) -> Self {
        Friend {
            owner_id: r.owner_id,
            friend_id: r.friend_id,
            remark: r.remark,
            add_source: r.add_source,
            operator_id: r.operator_id,
            extra: r.extra,
            created_at: r.created_at,
        }
    }
}

/// A new `friends` row.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = friends)]
pub(crate) struct NewFriendRow<'a> {
    pub owner_id: &'a str,
    pub friend_id: &'a str,
    pub remark: &'a str,
    pub add_source: i32,
    pub operator_id: &'a str,
    pub extra: &'a str,
    pub created_at: i64,
}

impl<'a> From<&'a Friend> for NewFriendRow<'a> {
    fn from(f: &'a Friend) -> Self {
        Self {
            owner_id: &f.owner_id,
            friend_id: &f.friend_id,
            remark: &f.remark,
            add_source: f.add_source,
            operator_id: &f.operator_id,
            extra: &f.extra,
            created_at: f.created_at,
        }
    }
}

/// A friend request as read back (every column of `friend_requests`, in order).
#[derive(Debug, Clone, Queryable)]
pub(crate) struct RequestRow {
    pub from_id: String,
    pub to_id: String,
    pub message: String,
    pub status: i32,
    pub created_at: i64,
    pub updated_at: i64,
}

impl TryFrom<RequestRow> for FriendRequest {
    type Error = StoreError;

    fn try_from(r: RequestRow) -> Result<Self, StoreError> {
        let status = FriendRequestStatus::from_code(r.status).ok_or_else(|| {
            StoreError::Other(format!(
                "friend request {} -> {} has unknown status {}",
                r.from_id, r.to_id, r.status
            ))
        })?;
        Ok(FriendRequest {
            from_id: r.from_id,
            to_id: r.to_id,
            message: r.message,
            status,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

/// Converts request rows, failing on the first bad one.
pub(crate) fn to_requests(rows: Vec<RequestRow>) -> Result<Vec<FriendRequest>, StoreError> {
    rows.into_iter().map(FriendRequest::try_from).collect()
}

/// A request to create or refresh: always pending (whatever `status` the
/// input has); on refresh only `message`, `status` and `updated_at` change.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = friend_requests)]
pub(crate) struct NewRequestRow<'a> {
    pub from_id: &'a str,
    pub to_id: &'a str,
    pub message: &'a str,
    pub status: i32,
    pub created_at: i64,
    pub updated_at: i64,
}

impl<'a> From<&'a FriendRequest> for NewRequestRow<'a> {
    fn from(r: &'a FriendRequest) -> Self {
        Self {
            from_id: &r.from_id,
            to_id: &r.to_id,
            message: &r.message,
            status: FriendRequestStatus::Pending.code(),
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

/// A block as read back (every column of `blocks`, in order).
#[derive(Debug, Clone, Queryable)]
pub(crate) struct BlockRow {
    pub owner_id: String,
    pub blocked_id: String,
    pub created_at: i64,
}

impl From<BlockRow> for Block {
    fn from(r: BlockRow) -> Self {
        Block {
            owner_id: r.owner_id,
            blocked_id: r.blocked_id,
            created_at: r.created_at,
        }
    }
}

/// A new `blocks` row.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = blocks)]
pub(crate) struct NewBlockRow<'a> {
    pub owner_id: &'a str,
    pub blocked_id: &'a str,
    pub created_at: i64,
}

/// A new `revoked_tokens` row.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = revoked_tokens)]
pub(crate) struct RevokedRow<'a> {
    pub jti: &'a str,
    pub user_id: &'a str,
    pub expires_at: i64,
}

/// A row count as the `u64` of the ports.
pub(crate) fn count(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_request_status_is_an_error() {
        let r = RequestRow {
            from_id: "a".into(),
            to_id: "b".into(),
            message: String::new(),
            status: 7,
            created_at: 1,
            updated_at: 1,
        };
        assert!(matches!(
            FriendRequest::try_from(r),
            Err(StoreError::Other(_))
        ));
    }

    #[test]
    fn a_never_updated_profile_dates_from_its_creation() {
        let row = |updated_at| ProfileRow {
            user_id: "u".into(),
            nickname: String::new(),
            avatar: String::new(),
            phone: String::new(),
            email: String::new(),
            gender: 0,
            birth: 0,
            signature: String::new(),
            extra: String::new(),
            created_at: 5,
            updated_at,
        };
        assert_eq!(UserProfile::from(row(0)).updated_at, 5);
        assert_eq!(UserProfile::from(row(9)).updated_at, 9);
    }
}
