//! Users and their relations: profiles (info, batch, update, search),
//! friends (requests, accept/reject, delete, remark, check, list) and the
//! blocklist that stops messages (the send path asks [`BlockCache`]).

use std::collections::HashMap;
use std::sync::Arc;

use im_core::UserId;
use im_core::model::{
    Block, Friend, FriendRequest, FriendRequestStatus, ProfilePatch, UserProfile,
};
use im_core::ports::{Clock, FriendStore, UserStore};

use crate::blocks::BlockCache;
use crate::error::ServiceError;

type Result<T> = std::result::Result<T, ServiceError>;

/// Most users in one batch lookup.
pub const MAX_BATCH_USERS: usize = 500;
/// Most results of one search.
pub const MAX_SEARCH_RESULTS: u32 = 100;
/// Most friend requests listed at once.
pub const MAX_REQUESTS_LISTED: u32 = 500;

/// How `add_friend` ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FriendAdd {
    /// A request was sent (or refreshed); the other side must accept.
    Requested,
    /// The other side had already asked: now friends.
    Friends(Friend),
}

/// A friend entry with the friend's profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FriendView {
    pub friend: Friend,
    pub user: UserProfile,
}

/// Profiles, friends and blocklists.
pub struct SocialService {
    users: Arc<dyn UserStore>,
    friends: Arc<dyn FriendStore>,
    blocks: Arc<BlockCache>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for SocialService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SocialService").finish_non_exhaustive()
    }
}

fn parse_user(field: &str, id: &str) -> Result<UserId> {
    UserId::parse(id).map_err(|e| ServiceError::invalid(format!("{field}: {e}")))
}

fn check_len(field: &str, value: Option<&String>, max_chars: usize) -> Result<()> {
    if let Some(v) = value {
        crate::error::check_no_nul(field, v)?;
    }
    match value {
        Some(v) if v.chars().count() > max_chars => Err(ServiceError::invalid(format!(
            "{field} is longer than {max_chars} characters"
        ))),
        _ => Ok(()),
    }
}

/// The profile shown for a user id nobody registered: nickname = id (the
/// reference server's behaviour, which the v1 SDK login relies on).
fn synthetic(user_id: &str) -> UserProfile {
    UserProfile {
        user_id: user_id.to_owned(),
        nickname: user_id.to_owned(),
        ..UserProfile::default()
    }
}

impl SocialService {
    pub(crate) fn new(
        users: Arc<dyn UserStore>,
        friends: Arc<dyn FriendStore>,
        blocks: Arc<BlockCache>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            users,
            friends,
            blocks,
            clock,
        }
    }

    /// The profile of `user_id` (a synthetic one when never seen).
    pub async fn user_info(&self, user_id: &str) -> Result<UserProfile> {
        let mut v = self.users_info(&[user_id.to_owned()]).await?;
        Ok(v.pop().unwrap_or_else(|| synthetic(user_id)))
    }

    /// Profiles of `ids`, in the same order (synthetic for unknown ids,
    /// duplicates kept).
    pub async fn users_info(&self, ids: &[String]) -> Result<Vec<UserProfile>> {
        if ids.len() > MAX_BATCH_USERS {
            return Err(ServiceError::invalid(format!(
                "at most {MAX_BATCH_USERS} user ids per request"
            )));
        }
        for id in ids {
            parse_user("userIDs", id)?;
        }
        let found: HashMap<String, UserProfile> = self
            .users
            .profiles(ids)
            .await?
            .into_iter()
            .map(|p| (p.user_id.clone(), p))
            .collect();
        Ok(ids
            .iter()
            .map(|id| found.get(id).cloned().unwrap_or_else(|| synthetic(id)))
            .collect())
    }

    /// Updates `me`'s own profile (`target` must be empty or `me`).
    pub async fn update_profile(
        &self,
        me: &UserId,
        target: &str,
        patch: ProfilePatch,
    ) -> Result<UserProfile> {
        if !target.is_empty() && target != me.as_str() {
            return Err(ServiceError::denied("you can only update your own profile"));
        }
        check_len("nickname", patch.nickname.as_ref(), 64)?;
        check_len("avatar", patch.avatar.as_ref(), 2048)?;
        check_len("phone", patch.phone.as_ref(), 32)?;
        check_len("email", patch.email.as_ref(), 254)?;
        check_len("signature", patch.signature.as_ref(), 512)?;
        check_len("extra", patch.extra.as_ref(), 4096)?;
        if let Some(g) = patch.gender {
            if !(0..=2).contains(&g) {
                return Err(ServiceError::invalid(
                    "gender must be 0 (unknown), 1 (male) or 2 (female)",
                ));
            }
        }
        if let Some(b) = patch.birth {
            if b < 0 {
                return Err(ServiceError::invalid("birth must be ms since the epoch"));
            }
        }
        let now = self.clock.now_ms();
        Ok(self.users.update_profile(me.as_str(), &patch, now).await?)
    }

    /// Users whose id or nickname contains `keyword`.
    pub async fn search(&self, keyword: &str, limit: Option<u32>) -> Result<Vec<UserProfile>> {
        let keyword = keyword.trim();
        crate::error::check_no_nul("keyword", keyword)?;
        if keyword.is_empty() {
            return Err(ServiceError::invalid("keyword must not be empty"));
        }
        if keyword.chars().count() > 64 {
            return Err(ServiceError::invalid(
                "keyword is longer than 64 characters",
            ));
        }
        let limit = limit.unwrap_or(20).clamp(1, MAX_SEARCH_RESULTS);
        Ok(self.users.search_users(keyword, limit).await?)
    }

    async fn existing_user(&self, field: &str, id: &str) -> Result<UserId> {
        let user = parse_user(field, id)?;
        if !self.users.exists(&user).await? {
            return Err(ServiceError::UserNotExist(id.to_owned()));
        }
        Ok(user)
    }

    fn not_self(me: &UserId, other: &UserId) -> Result<()> {
        if me == other {
            return Err(ServiceError::invalid("that is you"));
        }
        Ok(())
    }

    /// `me` asks `target` to be friends. If `target` already asked `me`,
    /// they become friends at once.
    pub async fn add_friend(&self, me: &UserId, target: &str, message: &str) -> Result<FriendAdd> {
        let target = self.existing_user("userID", target).await?;
        Self::not_self(me, &target)?;
        crate::error::check_no_nul("message", message)?;
        if message.chars().count() > 256 {
            return Err(ServiceError::invalid(
                "message is longer than 256 characters",
            ));
        }
        if self.blocks.is_blocked(target.as_str(), me.as_str()).await? {
            return Err(ServiceError::denied(
                "this user does not accept your requests",
            ));
        }
        if self
            .friends
            .friend(me.as_str(), target.as_str())
            .await?
            .is_some()
        {
            return Err(ServiceError::Conflict("already friends".into()));
        }
        let now = self.clock.now_ms();
        let reverse = self.friends.request(target.as_str(), me.as_str()).await?;
        if reverse.is_some_and(|r| r.status == FriendRequestStatus::Pending) {
            let mine = self.befriend(me, &target, now).await?;
            return Ok(FriendAdd::Friends(mine));
        }
        self.friends
            .put_request(&FriendRequest {
                from_id: me.as_str().to_owned(),
                to_id: target.as_str().to_owned(),
                message: message.to_owned(),
                status: FriendRequestStatus::Pending,
                created_at: now,
                updated_at: now,
            })
            .await?;
        Ok(FriendAdd::Requested)
    }

    /// Both friend rows; `me` completes it. Returns `me`'s side.
    async fn befriend(&self, me: &UserId, other: &UserId, now: i64) -> Result<Friend> {
        let side = |owner: &UserId, friend: &UserId| Friend {
            owner_id: owner.as_str().to_owned(),
            friend_id: friend.as_str().to_owned(),
            remark: String::new(),
            add_source: 1,
            operator_id: me.as_str().to_owned(),
            extra: String::new(),
            created_at: now,
        };
        let mine = side(me, other);
        self.friends
            .add_friendship(&mine, &side(other, me), now)
            .await?;
        // The stored row (an older friendship is kept as it was).
        Ok(self
            .friends
            .friend(me.as_str(), other.as_str())
            .await?
            .unwrap_or(mine))
    }

    /// `me` accepts the pending request of `from`.
    pub async fn accept_friend(&self, me: &UserId, from: &str) -> Result<FriendView> {
        let from = parse_user("userID", from)?;
        let pending = self.friends.request(from.as_str(), me.as_str()).await?;
        if !pending.is_some_and(|r| r.status == FriendRequestStatus::Pending) {
            return Err(ServiceError::not_found(
                "no pending friend request from this user",
            ));
        }
        let now = self.clock.now_ms();
        let mine = self.befriend(me, &from, now).await?;
        self.view(mine).await
    }

    /// `me` rejects the pending request of `from`.
    pub async fn reject_friend(&self, me: &UserId, from: &str) -> Result<()> {
        let from = parse_user("userID", from)?;
        let now = self.clock.now_ms();
        if !self
            .friends
            .resolve_request(
                from.as_str(),
                me.as_str(),
                FriendRequestStatus::Rejected,
                now,
            )
            .await?
        {
            return Err(ServiceError::not_found(
                "no pending friend request from this user",
            ));
        }
        Ok(())
    }

    /// Ends the friendship on both sides.
    pub async fn delete_friend(&self, me: &UserId, other: &str) -> Result<()> {
        let other = parse_user("userID", other)?;
        if !self
            .friends
            .remove_friendship(me.as_str(), other.as_str())
            .await?
        {
            return Err(ServiceError::not_found("not friends"));
        }
        Ok(())
    }

    /// Every friend of `me`, with profiles.
    pub async fn friends(&self, me: &UserId) -> Result<Vec<FriendView>> {
        let list = self.friends.friends(me.as_str()).await?;
        let ids: Vec<String> = list.iter().map(|f| f.friend_id.clone()).collect();
        let mut out = Vec::with_capacity(list.len());
        for (chunk_friends, chunk_ids) in list
            .chunks(MAX_BATCH_USERS)
            .zip(ids.chunks(MAX_BATCH_USERS))
        {
            let profiles = self.users_info(chunk_ids).await?;
            out.extend(
                chunk_friends
                    .iter()
                    .cloned()
                    .zip(profiles)
                    .map(|(friend, user)| FriendView { friend, user }),
            );
        }
        Ok(out)
    }

    /// Whether `other` is `me`'s friend.
    pub async fn is_friend(&self, me: &UserId, other: &str) -> Result<bool> {
        let other = parse_user("userID", other)?;
        Ok(self
            .friends
            .friend(me.as_str(), other.as_str())
            .await?
            .is_some())
    }

    /// Sets `me`'s remark for `other`.
    pub async fn set_remark(&self, me: &UserId, other: &str, remark: &str) -> Result<FriendView> {
        let other = parse_user("userID", other)?;
        crate::error::check_no_nul("remark", remark)?;
        if remark.chars().count() > 64 {
            return Err(ServiceError::invalid("remark is longer than 64 characters"));
        }
        let Some(f) = self
            .friends
            .set_remark(me.as_str(), other.as_str(), remark)
            .await?
        else {
            return Err(ServiceError::not_found("not friends"));
        };
        self.view(f).await
    }

    /// Friend requests to `me` (`incoming`) or from `me`, newest first.
    pub async fn requests(&self, me: &UserId, incoming: bool) -> Result<Vec<FriendRequest>> {
        Ok(self
            .friends
            .requests(me.as_str(), incoming, MAX_REQUESTS_LISTED)
            .await?)
    }

    /// `me` blocks `target` (idempotent).
    pub async fn block(&self, me: &UserId, target: &str) -> Result<()> {
        let target = parse_user("userID", target)?;
        Self::not_self(me, &target)?;
        let now = self.clock.now_ms();
        self.friends
            .block(me.as_str(), target.as_str(), now)
            .await?;
        self.blocks.invalidate(me.as_str());
        Ok(())
    }

    /// `me` unblocks `target`.
    pub async fn unblock(&self, me: &UserId, target: &str) -> Result<()> {
        let target = parse_user("userID", target)?;
        let removed = self.friends.unblock(me.as_str(), target.as_str()).await?;
        self.blocks.invalidate(me.as_str());
        if !removed {
            return Err(ServiceError::not_found("not blocked"));
        }
        Ok(())
    }

    /// Whom `me` blocked.
    pub async fn blocklist(&self, me: &UserId) -> Result<Vec<Block>> {
        Ok(self.friends.blocks(me.as_str()).await?)
    }

    async fn view(&self, friend: Friend) -> Result<FriendView> {
        let user = self.user_info(&friend.friend_id).await?;
        Ok(FriendView { friend, user })
    }
}
