//! Rows of the group tables and their conversions to the im-core model.

use diesel::prelude::*;
use im_core::StoreError;
use im_core::model::{Group, GroupMember, GroupPatch, GroupRole};

use super::schema::{chat_groups, group_members, read_cursors};
use crate::models::MembershipRow;

/// The columns of [`GroupRow`], in its field order.
pub(crate) type GroupSelect = (
    chat_groups::group_id,
    chat_groups::name,
    chat_groups::face_url,
    chat_groups::introduction,
    chat_groups::notification,
    chat_groups::extra,
    chat_groups::owner_id,
    chat_groups::status,
    chat_groups::mute_all,
    chat_groups::created_at,
    chat_groups::updated_at,
);

/// The value of [`GroupSelect`].
pub(crate) const GROUP_SELECT: GroupSelect = (
    chat_groups::group_id,
    chat_groups::name,
    chat_groups::face_url,
    chat_groups::introduction,
    chat_groups::notification,
    chat_groups::extra,
    chat_groups::owner_id,
    chat_groups::status,
    chat_groups::mute_all,
    chat_groups::created_at,
    chat_groups::updated_at,
);

/// A group as read back (without its member count).
#[derive(Debug, Clone, Queryable)]
pub(crate) struct GroupRow {
    pub group_id: String,
    pub name: String,
    pub face_url: String,
    pub introduction: String,
    pub notification: String,
    pub extra: String,
    pub owner_id: String,
    pub status: i32,
    pub mute_all: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

impl GroupRow {
    /// The group with `member_count` members.
    pub(crate) fn into_group(self, member_count: i64) -> Group {
        Group {
            group_id: self.group_id,
            name: self.name,
            face_url: self.face_url,
            introduction: self.introduction,
            notification: self.notification,
            extra: self.extra,
            owner_id: self.owner_id,
            status: self.status,
            mute_all: self.mute_all,
            member_count,
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

/// A new group row.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = chat_groups)]
pub(crate) struct NewGroupRow<'a> {
    pub group_id: &'a str,
    pub name: &'a str,
    pub face_url: &'a str,
    pub introduction: &'a str,
    pub notification: &'a str,
    pub extra: &'a str,
    pub owner_id: &'a str,
    pub status: i32,
    pub mute_all: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

impl<'a> From<&'a Group> for NewGroupRow<'a> {
    fn from(g: &'a Group) -> Self {
        Self {
            group_id: &g.group_id,
            name: &g.name,
            face_url: &g.face_url,
            introduction: &g.introduction,
            notification: &g.notification,
            extra: &g.extra,
            owner_id: &g.owner_id,
            status: g.status,
            mute_all: g.mute_all,
            created_at: g.created_at,
            updated_at: g.updated_at,
        }
    }
}

/// The columns an update may change: `None` fields are left alone.
#[derive(Debug, Clone, AsChangeset)]
#[diesel(table_name = chat_groups)]
pub(crate) struct GroupChanges<'a> {
    pub name: Option<&'a str>,
    pub face_url: Option<&'a str>,
    pub introduction: Option<&'a str>,
    pub notification: Option<&'a str>,
    pub extra: Option<&'a str>,
    pub mute_all: Option<bool>,
    pub updated_at: i64,
}

impl<'a> GroupChanges<'a> {
    pub(crate) fn new(p: &'a GroupPatch, now_ms: i64) -> Self {
        Self {
            name: p.name.as_deref(),
            face_url: p.face_url.as_deref(),
            introduction: p.introduction.as_deref(),
            notification: p.notification.as_deref(),
            extra: p.extra.as_deref(),
            mute_all: p.mute_all,
            updated_at: now_ms,
        }
    }
}

/// The columns of [`MemberRow`], in its field order.
pub(crate) type MemberSelect = (
    group_members::group_id,
    group_members::user_id,
    group_members::role,
    group_members::muted_until,
    group_members::joined_at,
);

/// The value of [`MemberSelect`].
pub(crate) const MEMBER_SELECT: MemberSelect = (
    group_members::group_id,
    group_members::user_id,
    group_members::role,
    group_members::muted_until,
    group_members::joined_at,
);

/// A member as read back.
#[derive(Debug, Clone, Queryable)]
pub(crate) struct MemberRow {
    pub group_id: String,
    pub user_id: String,
    pub role: i32,
    pub muted_until: i64,
    pub joined_at: i64,
}

impl TryFrom<MemberRow> for GroupMember {
    type Error = StoreError;

    fn try_from(r: MemberRow) -> Result<Self, StoreError> {
        let role = GroupRole::from_code(r.role).ok_or_else(|| {
            StoreError::Other(format!(
                "member {} of group {} has unknown role {}",
                r.user_id, r.group_id, r.role
            ))
        })?;
        Ok(GroupMember {
            group_id: r.group_id,
            user_id: r.user_id,
            role,
            muted_until: r.muted_until,
            joined_at: r.joined_at,
        })
    }
}

/// Converts member rows, failing on the first bad one.
pub(crate) fn to_members(rows: Vec<MemberRow>) -> Result<Vec<GroupMember>, StoreError> {
    rows.into_iter().map(GroupMember::try_from).collect()
}

/// A member row to insert.
#[derive(Debug, Clone, PartialEq, Eq, Insertable)]
#[diesel(table_name = group_members)]
pub(crate) struct NewMemberRow<'a> {
    pub group_id: &'a str,
    pub user_id: &'a str,
    pub role: i32,
    pub muted_until: i64,
    pub joined_at: i64,
}

/// The distinct members of `members` (first occurrence wins) as rows of
/// `group_id` (whatever group the inputs name), leaving out `skip`.
pub(crate) fn member_rows<'a>(
    group_id: &'a str,
    members: &'a [GroupMember],
    skip: &std::collections::HashSet<String>,
) -> Vec<NewMemberRow<'a>> {
    let mut seen = std::collections::HashSet::new();
    members
        .iter()
        .filter(|m| !skip.contains(&m.user_id) && seen.insert(m.user_id.as_str()))
        .map(|m| NewMemberRow {
            group_id,
            user_id: &m.user_id,
            role: m.role.code(),
            muted_until: m.muted_until,
            joined_at: m.joined_at,
        })
        .collect()
}

/// The `user_conversations` rows of new members in `conversation_id` (the
/// membership starts when they join).
pub(crate) fn membership_rows<'a>(
    conversation_id: &'a str,
    members: &[NewMemberRow<'a>],
) -> Vec<MembershipRow<'a>> {
    let mut rows: Vec<MembershipRow<'a>> = members
        .iter()
        .map(|m| MembershipRow {
            user_id: m.user_id,
            conversation_id,
            created_at: m.joined_at,
            updated_at: m.joined_at,
        })
        .collect();
    // The append path inserts memberships in user order too: concurrent
    // inserts of the same keys wait for each other instead of deadlocking.
    rows.sort_by(|a, b| a.user_id.cmp(b.user_id));
    rows
}

/// A read cursor row to insert.
#[derive(Debug, Clone, PartialEq, Eq, Insertable)]
#[diesel(table_name = read_cursors)]
pub(crate) struct ReadCursorRow<'a> {
    pub user_id: &'a str,
    pub conversation_id: &'a str,
    pub read_seq: i64,
    pub updated_at: i64,
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn member(u: &str, role: GroupRole, t: i64) -> GroupMember {
        GroupMember {
            group_id: "other".into(),
            user_id: u.into(),
            role,
            muted_until: 0,
            joined_at: t,
        }
    }

    #[test]
    fn member_rows_dedupe_skip_and_take_the_group() {
        let ms = [
            member("b", GroupRole::Owner, 1),
            member("a", GroupRole::Member, 2),
            member("b", GroupRole::Member, 3),
            member("c", GroupRole::Member, 4),
        ];
        let skip = HashSet::from(["c".to_owned()]);
        let rows = member_rows("g", &ms, &skip);
        assert_eq!(
            rows.iter()
                .map(|r| (r.group_id, r.user_id, r.role, r.joined_at))
                .collect::<Vec<_>>(),
            vec![("g", "b", 1, 1), ("g", "a", 3, 2)]
        );
        let uc = membership_rows("group_g", &rows);
        assert_eq!(
            uc.iter()
                .map(|r| (r.user_id, r.conversation_id, r.created_at))
                .collect::<Vec<_>>(),
            vec![("a", "group_g", 2), ("b", "group_g", 1)]
        );
    }

    #[test]
    fn unknown_role_is_an_error() {
        let r = MemberRow {
            group_id: "g".into(),
            user_id: "u".into(),
            role: 9,
            muted_until: 0,
            joined_at: 0,
        };
        assert!(matches!(
            GroupMember::try_from(r),
            Err(StoreError::Other(_))
        ));
    }
}
