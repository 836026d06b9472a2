//! Group management: create, join, leave, dismiss, invite, kick, update,
//! members, roles and mutes. Every change is committed through the
//! [`GroupStore`] and then invalidates the [`GroupDirectory`] entry, so the
//! send path sees it at once (on this node).
//!
//! Permissions:
//! - anyone authenticated may look a group up and join it (groups are open,
//!   as in the reference server); members may invite;
//! - owner and admins update the group, mute members and mute everyone,
//!   and kick members; an admin cannot kick or mute another admin or the
//!   owner, and nobody can kick the owner;
//! - only the owner dismisses the group and changes roles; the owner cannot
//!   leave (dismiss instead; ownership transfer needs an `owner_id` in
//!   `GroupPatch` and is not offered yet);
//! - only members list the members.
//!
//! New members start with everything already in the conversation marked
//! read: they can sync the history, but it does not count as unread.

use std::sync::Arc;

use im_core::model::{GROUP_STATUS_DISMISSED, GROUP_STATUS_NORMAL};
use im_core::ports::{AddMembers, Clock, GroupStore, IdGen, UserStore};
use im_core::{Group, GroupMember, GroupPatch, GroupRole, StoreError, UserId, ids::validate_id};

use crate::directory::GroupDirectory;
use crate::error::ServiceError;

/// Longest group name, in bytes.
pub const MAX_GROUP_NAME: usize = 256;
/// Longest face URL, in bytes.
pub const MAX_FACE_URL: usize = 2048;
/// Longest introduction or notification, in bytes.
pub const MAX_GROUP_TEXT: usize = 8192;
/// Longest `extra`, in bytes.
pub const MAX_GROUP_EXTRA: usize = 16 * 1024;

/// What a client asks for when creating a group.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewGroup {
    pub name: String,
    pub face_url: String,
    pub introduction: String,
    pub notification: String,
    pub extra: String,
    /// Initial members besides the owner (duplicates and the owner are ignored).
    pub members: Vec<String>,
}

type Result<T> = std::result::Result<T, ServiceError>;

/// The group use cases.
pub struct GroupService {
    store: Arc<dyn GroupStore>,
    users: Arc<dyn UserStore>,
    directory: Arc<GroupDirectory>,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn IdGen>,
    max_members: u32,
    require_registered_users: bool,
}

impl std::fmt::Debug for GroupService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupService")
            .field("max_members", &self.max_members)
            .finish_non_exhaustive()
    }
}

fn check_len(field: &'static str, value: &str, max: usize) -> Result<()> {
    crate::error::check_no_nul(field, value)?;
    if value.len() > max {
        return Err(ServiceError::invalid(format!(
            "{field} is longer than {max} bytes"
        )));
    }
    Ok(())
}

fn check_patch(p: &GroupPatch) -> Result<()> {
    let fields = [
        ("groupName", &p.name, MAX_GROUP_NAME),
        ("faceURL", &p.face_url, MAX_FACE_URL),
        ("introduction", &p.introduction, MAX_GROUP_TEXT),
        ("notification", &p.notification, MAX_GROUP_TEXT),
        ("extra", &p.extra, MAX_GROUP_EXTRA),
    ];
    for (name, value, max) in fields {
        if let Some(v) = value {
            check_len(name, v, max)?;
        }
    }
    Ok(())
}

/// Validates user ids and drops duplicates and `except`, keeping order.
fn user_list(users: &[String], except: &UserId) -> Result<Vec<String>> {
    let mut out: Vec<String> = Vec::with_capacity(users.len());
    for u in users {
        validate_id(u).map_err(|_| ServiceError::invalid(format!("malformed user id {u:?}")))?;
        if u != except.as_str() && !out.contains(u) {
            out.push(u.clone());
        }
    }
    Ok(out)
}

impl GroupService {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        store: Arc<dyn GroupStore>,
        users: Arc<dyn UserStore>,
        directory: Arc<GroupDirectory>,
        clock: Arc<dyn Clock>,
        ids: Arc<dyn IdGen>,
        max_members: u32,
        require_registered_users: bool,
    ) -> Self {
        Self {
            store,
            users,
            directory,
            clock,
            ids,
            max_members,
            require_registered_users,
        }
    }

    /// The most members a group may have (owner included).
    pub fn max_members(&self) -> u32 {
        self.max_members
    }

    /// The group, if it exists and is not dismissed.
    async fn live_group(&self, group_id: &str) -> Result<Group> {
        if validate_id(group_id).is_err() {
            return Err(ServiceError::not_found("no such group"));
        }
        match self.store.get_group(group_id).await? {
            Some(g) if g.status == GROUP_STATUS_NORMAL => Ok(g),
            _ => Err(ServiceError::not_found("no such group")),
        }
    }

    /// `user`'s membership of the live group `group_id`.
    async fn membership(&self, group_id: &str, user: &UserId) -> Result<(Group, GroupMember)> {
        let group = self.live_group(group_id).await?;
        match self.store.get_member(group_id, user.as_str()).await? {
            Some(m) => Ok((group, m)),
            None => Err(ServiceError::denied("not a member of this group")),
        }
    }

    async fn manager(&self, group_id: &str, user: &UserId) -> Result<(Group, GroupMember)> {
        let (g, m) = self.membership(group_id, user).await?;
        if !m.role.is_manager() {
            return Err(ServiceError::denied(
                "only the owner or an admin may do this",
            ));
        }
        Ok((g, m))
    }

    async fn check_registered(&self, users: &[String]) -> Result<()> {
        if !self.require_registered_users {
            return Ok(());
        }
        for u in users {
            let id = UserId::parse(u.as_str())
                .map_err(|_| ServiceError::invalid(format!("malformed user id {u:?}")))?;
            if !self.users.exists(&id).await? {
                return Err(ServiceError::UserNotExist(u.clone()));
            }
        }
        Ok(())
    }

    fn new_member(&self, group_id: &str, user: &str, role: GroupRole, now: i64) -> GroupMember {
        GroupMember {
            group_id: group_id.to_owned(),
            user_id: user.to_owned(),
            role,
            muted_until: 0,
            joined_at: now,
        }
    }

    /// Adds members as plain members; returns who was added.
    async fn add(&self, group_id: &str, users: &[String]) -> Result<Vec<String>> {
        let now = self.clock.now_ms();
        let members: Vec<GroupMember> = users
            .iter()
            .map(|u| self.new_member(group_id, u, GroupRole::Member, now))
            .collect();
        let outcome = self
            .store
            .add_members(group_id, &members, self.max_members)
            .await;
        self.directory.invalidate(group_id);
        match outcome? {
            AddMembers::Added(added) => Ok(added),
            AddMembers::Full => Err(ServiceError::Full {
                max: self.max_members,
            }),
            AddMembers::NoGroup => Err(ServiceError::not_found("no such group")),
        }
    }

    /// Creates a group owned by `owner` with `req.members` as members.
    pub async fn create(&self, owner: &UserId, req: NewGroup) -> Result<Group> {
        check_len("groupName", &req.name, MAX_GROUP_NAME)?;
        check_len("faceURL", &req.face_url, MAX_FACE_URL)?;
        check_len("introduction", &req.introduction, MAX_GROUP_TEXT)?;
        check_len("notification", &req.notification, MAX_GROUP_TEXT)?;
        check_len("extra", &req.extra, MAX_GROUP_EXTRA)?;
        let others = user_list(&req.members, owner)?;
        if others.len().saturating_add(1) > self.max_members as usize {
            return Err(ServiceError::Full {
                max: self.max_members,
            });
        }
        self.check_registered(&others).await?;
        let now = self.clock.now_ms();
        let mut attempt = 0;
        loop {
            let group_id = self.ids.server_msg_id();
            let group = Group {
                group_id: group_id.clone(),
                name: req.name.clone(),
                face_url: req.face_url.clone(),
                introduction: req.introduction.clone(),
                notification: req.notification.clone(),
                extra: req.extra.clone(),
                owner_id: owner.as_str().to_owned(),
                status: GROUP_STATUS_NORMAL,
                mute_all: false,
                member_count: 0,
                created_at: now,
                updated_at: now,
            };
            let mut members = Vec::with_capacity(others.len() + 1);
            members.push(self.new_member(&group_id, owner.as_str(), GroupRole::Owner, now));
            members.extend(
                others
                    .iter()
                    .map(|u| self.new_member(&group_id, u, GroupRole::Member, now)),
            );
            match self.store.create_group(&group, &members).await {
                Ok(()) => {
                    self.directory.invalidate(&group_id);
                    let count = i64::try_from(members.len()).unwrap_or(i64::MAX);
                    return Ok(self.store.get_group(&group_id).await?.unwrap_or(Group {
                        member_count: count,
                        ..group
                    }));
                }
                // An id collision: draw another id once.
                Err(StoreError::Conflict(_)) if attempt == 0 => attempt += 1,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The group (dismissed ones too, with status 1), for any authenticated user.
    pub async fn get(&self, _user: &UserId, group_id: &str) -> Result<Group> {
        if validate_id(group_id).is_err() {
            return Err(ServiceError::not_found("no such group"));
        }
        self.store
            .get_group(group_id)
            .await?
            .ok_or_else(|| ServiceError::not_found("no such group"))
    }

    /// `user` joins the group. Conflict if already a member.
    pub async fn join(&self, user: &UserId, group_id: &str) -> Result<Group> {
        self.live_group(group_id).await?;
        if self
            .store
            .get_member(group_id, user.as_str())
            .await?
            .is_some()
        {
            return Err(ServiceError::Conflict(
                "already a member of this group".into(),
            ));
        }
        self.add(group_id, &[user.as_str().to_owned()]).await?;
        self.live_group(group_id).await
    }

    /// `user` leaves the group. The owner cannot leave (400, as in the
    /// reference server: dismiss the group instead).
    pub async fn leave(&self, user: &UserId, group_id: &str) -> Result<()> {
        let (_, me) = self.membership(group_id, user).await?;
        if me.role == GroupRole::Owner {
            return Err(ServiceError::invalid(
                "the owner cannot leave the group; dismiss it instead",
            ));
        }
        let removed = self
            .store
            .remove_members(group_id, &[user.as_str().to_owned()])
            .await;
        self.directory.invalidate(group_id);
        removed?;
        Ok(())
    }

    /// Dismisses the group (owner only): every member is removed.
    pub async fn dismiss(&self, user: &UserId, group_id: &str) -> Result<()> {
        let (_, me) = self.membership(group_id, user).await?;
        if me.role != GroupRole::Owner {
            return Err(ServiceError::denied("only the owner may dismiss the group"));
        }
        let now = self.clock.now_ms();
        let done = self.store.dismiss_group(group_id, now).await;
        self.directory.invalidate(group_id);
        if done? {
            Ok(())
        } else {
            Err(ServiceError::not_found("no such group"))
        }
    }

    /// A member invites `users`; returns who was added (members already in
    /// the group are skipped). Full if the group would exceed its limit.
    pub async fn invite(
        &self,
        user: &UserId,
        group_id: &str,
        users: &[String],
    ) -> Result<Vec<String>> {
        self.membership(group_id, user).await?;
        let users = user_list(users, user)?;
        if users.is_empty() {
            return Ok(Vec::new());
        }
        self.check_registered(&users).await?;
        self.add(group_id, &users).await
    }

    /// The owner or an admin removes `users`; returns who was removed
    /// (non-members are skipped). Nothing is removed if any target is
    /// protected (the owner; an admin when the actor is an admin).
    pub async fn kick(
        &self,
        user: &UserId,
        group_id: &str,
        users: &[String],
    ) -> Result<Vec<String>> {
        let (_, me) = self.manager(group_id, user).await?;
        if users.iter().any(|u| u == user.as_str()) {
            return Err(ServiceError::invalid("use leave to leave a group"));
        }
        let targets = user_list(users, user)?;
        for t in &targets {
            let Some(m) = self.store.get_member(group_id, t).await? else {
                continue;
            };
            if m.role == GroupRole::Owner {
                return Err(ServiceError::denied("the owner cannot be kicked"));
            }
            if m.role == GroupRole::Admin && me.role != GroupRole::Owner {
                return Err(ServiceError::denied("only the owner may kick an admin"));
            }
        }
        if targets.is_empty() {
            return Ok(Vec::new());
        }
        let removed = self.store.remove_members(group_id, &targets).await;
        self.directory.invalidate(group_id);
        Ok(removed?)
    }

    /// The owner or an admin changes the group's profile (and `mute_all`).
    pub async fn update(&self, user: &UserId, group_id: &str, patch: GroupPatch) -> Result<Group> {
        check_patch(&patch)?;
        self.manager(group_id, user).await?;
        let now = self.clock.now_ms();
        let updated = self.store.update_group(group_id, &patch, now).await;
        self.directory.invalidate(group_id);
        updated?.ok_or_else(|| ServiceError::not_found("no such group"))
    }

    /// Mutes (or with `on = false` unmutes) everyone but the owner and admins.
    pub async fn mute_all(&self, user: &UserId, group_id: &str, on: bool) -> Result<Group> {
        self.update(
            user,
            group_id,
            GroupPatch {
                mute_all: Some(on),
                ..GroupPatch::default()
            },
        )
        .await
    }

    /// Members of the group, for its members.
    pub async fn members(&self, user: &UserId, group_id: &str) -> Result<Vec<GroupMember>> {
        self.membership(group_id, user).await?;
        Ok(self.store.list_members(group_id).await?)
    }

    /// The groups `user` is a member of.
    pub async fn my_groups(&self, user: &UserId) -> Result<Vec<Group>> {
        Ok(self.store.groups_of(user.as_str()).await?)
    }

    /// The owner makes `target` an admin or a plain member.
    pub async fn set_role(
        &self,
        user: &UserId,
        group_id: &str,
        target: &str,
        role: GroupRole,
    ) -> Result<()> {
        let (_, me) = self.membership(group_id, user).await?;
        if me.role != GroupRole::Owner {
            return Err(ServiceError::denied("only the owner may change roles"));
        }
        if role == GroupRole::Owner {
            return Err(ServiceError::invalid("ownership transfer is not supported"));
        }
        if target == user.as_str() {
            return Err(ServiceError::invalid("the owner's role cannot change"));
        }
        let changed = self.store.set_member_role(group_id, target, role).await;
        self.directory.invalidate(group_id);
        if changed? {
            Ok(())
        } else {
            Err(ServiceError::invalid("not a member of this group"))
        }
    }

    /// The owner or an admin mutes `target` until `until_ms` (0 unmutes).
    pub async fn mute_member(
        &self,
        user: &UserId,
        group_id: &str,
        target: &str,
        until_ms: i64,
    ) -> Result<()> {
        let (_, me) = self.manager(group_id, user).await?;
        if until_ms != 0 && until_ms <= self.clock.now_ms() {
            return Err(ServiceError::invalid("mute end must be in the future"));
        }
        let Some(t) = self.store.get_member(group_id, target).await? else {
            return Err(ServiceError::invalid("not a member of this group"));
        };
        if t.role == GroupRole::Owner {
            return Err(ServiceError::denied("the owner cannot be muted"));
        }
        if t.role == GroupRole::Admin && me.role != GroupRole::Owner {
            return Err(ServiceError::denied("only the owner may mute an admin"));
        }
        let changed = self.store.set_member_mute(group_id, target, until_ms).await;
        self.directory.invalidate(group_id);
        if changed? {
            Ok(())
        } else {
            Err(ServiceError::invalid("not a member of this group"))
        }
    }

    /// Mutes `target` for `duration` from now (owner or admin).
    pub async fn mute_member_for(
        &self,
        user: &UserId,
        group_id: &str,
        target: &str,
        duration: std::time::Duration,
    ) -> Result<()> {
        let ms = i64::try_from(duration.as_millis()).unwrap_or(i64::MAX);
        if ms <= 0 {
            return Err(ServiceError::invalid("mute duration must be positive"));
        }
        let until = self.clock.now_ms().saturating_add(ms);
        self.mute_member(user, group_id, target, until).await
    }

    /// Lifts `target`'s mute.
    pub async fn unmute_member(&self, user: &UserId, group_id: &str, target: &str) -> Result<()> {
        self.mute_member(user, group_id, target, 0).await
    }

    /// Whether the group is dismissed (helper for callers that got a `Group`).
    pub fn is_dismissed(group: &Group) -> bool {
        group.status == GROUP_STATUS_DISMISSED
    }
}
