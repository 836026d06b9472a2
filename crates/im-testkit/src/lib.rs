//! Test kit: in-memory fakes of the ports, a controllable clock and
//! predictable ids. Dev-only; never linked into the server.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

use async_trait::async_trait;
use im_core::model::{
    Account, Block, ConversationSummary, Friend, FriendRequest, FriendRequestStatus,
    GROUP_STATUS_DISMISSED, GROUP_STATUS_NORMAL, Group, GroupMember, GroupPatch, GroupRole,
    NewMessage, ProfilePatch, Revocation, StoredMessage, UserProfile,
};
use im_core::ports::{
    AddMembers, Appended, Clock, ConversationHead, ConversationStore, FriendStore, GroupStore,
    IdGen, InboxEntry, MessageStore, StoreResult, TokenRevocationStore, UserStore,
};
use im_core::{ConversationType, StoreError, UserId};
use parking_lot::Mutex;

#[derive(Default)]
struct State {
    messages: Vec<StoredMessage>,
    by_server: HashMap<String, usize>,
    by_client: HashMap<(String, String), usize>,
    by_conv: HashMap<String, BTreeMap<i64, usize>>,
    member_of: HashMap<String, HashSet<String>>,
    delivered: HashMap<(String, String, String), i64>,
    /// (user, device, conversation) -> acknowledged seqs.
    /// (user, device, conversation) -> seq -> when it was acked.
    acked: HashMap<(String, String, String), std::collections::BTreeMap<i64, i64>>,
    users: HashMap<String, i64>,
    groups: HashMap<String, Group>,
    /// group id -> version (raised by every write to the group or its
    /// members, as the SQL stores do).
    group_versions: HashMap<String, i64>,
    /// group id -> user id -> member.
    members: HashMap<String, HashMap<String, GroupMember>>,
    /// (user, conversation) -> read seq.
    read: HashMap<(String, String), i64>,
    profiles: BTreeMap<String, UserProfile>,
    accounts: HashMap<String, Account>,
    /// (owner, friend) -> entry.
    friends: BTreeMap<(String, String), Friend>,
    /// (from, to) -> request.
    requests: HashMap<(String, String), FriendRequest>,
    /// (owner, blocked) -> block.
    blocks: BTreeMap<(String, String), Block>,
    /// jti -> expiry (seconds).
    revoked: HashMap<String, i64>,
}

/// The v1 sync position of the message at index `i` of `State::messages`
/// (stored in commit order, from 1).
fn position(i: usize) -> i64 {
    i64::try_from(i).map_or(i64::MAX, |i| i + 1)
}

/// The group id of a `group_<gid>` conversation.
fn group_of(conversation_id: &str) -> Option<&str> {
    conversation_id.strip_prefix("group_")
}

impl State {
    fn max_seq(&self, conversation_id: &str) -> i64 {
        self.by_conv
            .get(conversation_id)
            .and_then(|m| m.keys().next_back().copied())
            .unwrap_or(0)
    }

    fn last_message(&self, conversation_id: &str) -> Option<&StoredMessage> {
        self.by_conv
            .get(conversation_id)
            .and_then(|m| m.values().next_back())
            .and_then(|&i| self.messages.get(i))
    }

    fn read_seq(&self, user: &str, conversation_id: &str) -> i64 {
        self.read
            .get(&(user.to_owned(), conversation_id.to_owned()))
            .copied()
            .unwrap_or(0)
    }

    fn unread(&self, user: &str, conversation_id: &str) -> i64 {
        let read = self.read_seq(user, conversation_id);
        self.by_conv.get(conversation_id).map_or(0, |c| {
            let n = c
                .range(read.saturating_add(1)..)
                .filter_map(|(_, &i)| self.messages.get(i))
                .filter(|m| m.sender_id != user && m.revoked.is_none())
                .count();
            i64::try_from(n).unwrap_or(i64::MAX)
        })
    }

    /// Conversations `user` takes part in: 1:1 ones by their messages,
    /// groups by current membership.
    fn conversations_of(&self, user: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .member_of
            .get(user)
            .map(|set| set.iter().cloned().collect())
            .unwrap_or_default();
        v.extend(
            self.members
                .iter()
                .filter(|(_, m)| m.contains_key(user))
                .map(|(gid, _)| format!("group_{gid}")),
        );
        v.sort();
        v.dedup();
        v
    }

    fn group_with_count(&self, group_id: &str) -> Option<Group> {
        self.groups.get(group_id).map(|g| Group {
            member_count: self
                .members
                .get(group_id)
                .map_or(0, |m| i64::try_from(m.len()).unwrap_or(i64::MAX)),
            ..g.clone()
        })
    }
}

/// An in-memory `MessageStore`, `UserStore`, `GroupStore` and
/// `ConversationStore` with the same semantics as the SQL stores (the port
/// docs). Group membership is conversation membership: a member takes part
/// in `group_<gid>` from the moment they are added until they are removed.
/// `fail_next_appends(n)` makes the next n appends fail with a retryable
/// error, for writer tests.
#[derive(Default)]
pub struct MemoryStore {
    state: Mutex<State>,
    failures: AtomicU64,
    appends: AtomicU64,
    closed: AtomicBool,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// The next `n` calls to `append` fail with `StoreError::Unavailable`.
    pub fn fail_next_appends(&self, n: u64) {
        self.failures.store(n, Ordering::SeqCst);
    }

    /// Makes every call fail as if the backend were gone.
    pub fn set_unavailable(&self, down: bool) {
        self.closed.store(down, Ordering::SeqCst);
    }

    /// How many `append` transactions ran (committed or not).
    pub fn append_calls(&self) -> u64 {
        self.appends.load(Ordering::SeqCst)
    }

    /// Every stored message, in insertion order.
    pub fn all_messages(&self) -> Vec<StoredMessage> {
        self.state.lock().messages.clone()
    }

    fn check(&self) -> StoreResult<()> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable(
                "memory store marked unavailable".into(),
            ));
        }
        Ok(())
    }
}

#[async_trait]
impl MessageStore for MemoryStore {
    async fn append(&self, batch: &[NewMessage]) -> StoreResult<Vec<Appended>> {
        self.check()?;
        self.appends.fetch_add(1, Ordering::SeqCst);
        if self
            .failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(StoreError::Unavailable("injected failure".into()));
        }
        let mut st = self.state.lock();
        let mut out = Vec::with_capacity(batch.len());
        for m in batch {
            let key = (m.sender_id.as_str().to_owned(), m.client_msg_id.clone());
            if let Some(&i) = st.by_client.get(&key) {
                if let Some(orig) = st.messages.get(i) {
                    out.push(Appended {
                        message: orig.clone(),
                        duplicate: true,
                    });
                    continue;
                }
            }
            let seq = st
                .by_conv
                .get(&m.conversation_id)
                .and_then(|c| c.keys().next_back().copied())
                .unwrap_or(0)
                + 1;
            let stored = StoredMessage::from_new(m, seq);
            let idx = st.messages.len();
            st.messages.push(stored.clone());
            st.by_server.insert(stored.server_msg_id.clone(), idx);
            st.by_client.insert(key, idx);
            st.by_conv
                .entry(m.conversation_id.clone())
                .or_default()
                .insert(seq, idx);
            // Groups take their participants from membership, not from
            // messages. Nothing is written per recipient: v1 sync reads the
            // messages of the user's conversations by position (index + 1).
            if group_of(&m.conversation_id).is_none() {
                for p in &m.participants {
                    st.member_of
                        .entry(p.as_str().to_owned())
                        .or_default()
                        .insert(m.conversation_id.clone());
                }
            }
            out.push(Appended {
                message: stored,
                duplicate: false,
            });
        }
        Ok(out)
    }

    async fn find_by_client_id(
        &self,
        sender: &UserId,
        client_msg_id: &str,
    ) -> StoreResult<Option<StoredMessage>> {
        self.check()?;
        let st = self.state.lock();
        Ok(st
            .by_client
            .get(&(sender.as_str().to_owned(), client_msg_id.to_owned()))
            .and_then(|&i| st.messages.get(i).cloned()))
    }

    async fn find_by_server_id(&self, server_msg_id: &str) -> StoreResult<Option<StoredMessage>> {
        self.check()?;
        let st = self.state.lock();
        Ok(st
            .by_server
            .get(server_msg_id)
            .and_then(|&i| st.messages.get(i).cloned()))
    }

    async fn conversation_range(
        &self,
        conversation_id: &str,
        after_seq: i64,
        up_to_seq: i64,
        limit: u32,
    ) -> StoreResult<Vec<StoredMessage>> {
        self.check()?;
        let st = self.state.lock();
        if after_seq >= up_to_seq {
            return Ok(Vec::new());
        }
        Ok(st
            .by_conv
            .get(conversation_id)
            .map(|c| {
                c.range(after_seq + 1..=up_to_seq)
                    .take(limit as usize)
                    .filter_map(|(_, &i)| st.messages.get(i).cloned())
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn user_conversations(&self, user: &UserId) -> StoreResult<Vec<ConversationHead>> {
        self.check()?;
        let st = self.state.lock();
        Ok(st
            .conversations_of(user.as_str())
            .into_iter()
            .map(|c| ConversationHead {
                max_seq: st.max_seq(&c),
                conversation_id: c,
            })
            .collect())
    }

    async fn inbox_head(&self, user: &UserId) -> StoreResult<i64> {
        self.check()?;
        let st = self.state.lock();
        Ok(st
            .conversations_of(user.as_str())
            .iter()
            .filter_map(|c| st.by_conv.get(c).and_then(|m| m.values().next_back()))
            .map(|&i| position(i))
            .max()
            .unwrap_or(0))
    }

    async fn inbox_count_after(&self, user: &UserId, after: i64, cap: u32) -> StoreResult<u64> {
        Ok(self.inbox_after(user, after, cap).await?.len() as u64)
    }

    async fn inbox_after(
        &self,
        user: &UserId,
        after: i64,
        limit: u32,
    ) -> StoreResult<Vec<InboxEntry>> {
        self.check()?;
        let st = self.state.lock();
        let mut idxs: Vec<usize> = st
            .conversations_of(user.as_str())
            .iter()
            .filter_map(|c| st.by_conv.get(c))
            .flat_map(|m| m.values().copied())
            .filter(|&i| position(i) > after)
            .collect();
        idxs.sort_unstable();
        Ok(idxs
            .into_iter()
            .take(limit as usize)
            .filter_map(|i| {
                st.messages.get(i).map(|m| InboxEntry {
                    cursor: position(i),
                    message: m.clone(),
                })
            })
            .collect())
    }

    async fn record_delivered(
        &self,
        user: &UserId,
        device: &str,
        conversation_id: &str,
        seq: i64,
    ) -> StoreResult<()> {
        self.check()?;
        let mut st = self.state.lock();
        let e = st
            .delivered
            .entry((
                user.as_str().to_owned(),
                device.to_owned(),
                conversation_id.to_owned(),
            ))
            .or_insert(0);
        *e = (*e).max(seq);
        Ok(())
    }

    async fn delivered_seq(
        &self,
        user: &UserId,
        device: &str,
        conversation_id: &str,
    ) -> StoreResult<i64> {
        self.check()?;
        let st = self.state.lock();
        Ok(st
            .delivered
            .get(&(
                user.as_str().to_owned(),
                device.to_owned(),
                conversation_id.to_owned(),
            ))
            .copied()
            .unwrap_or(0))
    }

    async fn record_acked(
        &self,
        user: &UserId,
        device: &str,
        conversation_id: &str,
        seq: i64,
        now_ms: i64,
    ) -> StoreResult<()> {
        self.check()?;
        self.state
            .lock()
            .acked
            .entry((
                user.as_str().to_owned(),
                device.to_owned(),
                conversation_id.to_owned(),
            ))
            .or_default()
            .entry(seq)
            .or_insert(now_ms);
        Ok(())
    }

    async fn purge_acked(&self, before_ms: i64) -> StoreResult<u64> {
        self.check()?;
        let mut st = self.state.lock();
        let mut n = 0u64;
        st.acked.retain(|_, seqs| {
            let had = seqs.len();
            seqs.retain(|_, at| *at >= before_ms);
            n += (had - seqs.len()) as u64;
            !seqs.is_empty()
        });
        Ok(n)
    }

    async fn conversation_unacked(
        &self,
        conversation_id: &str,
        after_seq: i64,
        up_to_seq: i64,
        user: &UserId,
        device: &str,
        limit: u32,
    ) -> StoreResult<Vec<StoredMessage>> {
        self.check()?;
        let st = self.state.lock();
        if after_seq >= up_to_seq {
            return Ok(Vec::new());
        }
        let key = (
            user.as_str().to_owned(),
            device.to_owned(),
            conversation_id.to_owned(),
        );
        let acked = st.acked.get(&key);
        Ok(st
            .by_conv
            .get(conversation_id)
            .map(|c| {
                c.range(after_seq + 1..=up_to_seq)
                    .filter(|(seq, _)| !acked.is_some_and(|a| a.contains_key(seq)))
                    .take(limit as usize)
                    .filter_map(|(_, &i)| st.messages.get(i).cloned())
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn forget_acked(
        &self,
        user: &UserId,
        device: &str,
        cursors: &[(String, i64)],
    ) -> StoreResult<u64> {
        self.check()?;
        let mut st = self.state.lock();
        let mut n = 0u64;
        for (conversation_id, cursor) in cursors {
            let key = (
                user.as_str().to_owned(),
                device.to_owned(),
                conversation_id.clone(),
            );
            if let Some(set) = st.acked.get_mut(&key) {
                let keep = set.split_off(&(cursor.saturating_add(1)));
                n += set.len() as u64;
                *set = keep;
                if set.is_empty() {
                    st.acked.remove(&key);
                }
            }
        }
        Ok(n)
    }
}

#[async_trait]
impl UserStore for MemoryStore {
    async fn touch(&self, user: &UserId, now_ms: i64) -> StoreResult<()> {
        self.check()?;
        let mut st = self.state.lock();
        st.users.insert(user.as_str().to_owned(), now_ms);
        st.profiles
            .entry(user.as_str().to_owned())
            .or_insert_with(|| UserProfile {
                user_id: user.as_str().to_owned(),
                created_at: now_ms,
                updated_at: now_ms,
                ..UserProfile::default()
            });
        Ok(())
    }

    async fn exists(&self, user: &UserId) -> StoreResult<bool> {
        self.check()?;
        Ok(self.state.lock().profiles.contains_key(user.as_str()))
    }

    async fn create_account(&self, profile: &UserProfile, account: &Account) -> StoreResult<()> {
        self.check()?;
        let mut st = self.state.lock();
        if st.profiles.contains_key(&profile.user_id) {
            return Err(StoreError::Conflict(format!(
                "user {} exists",
                profile.user_id
            )));
        }
        st.users.insert(profile.user_id.clone(), profile.created_at);
        st.profiles.insert(profile.user_id.clone(), profile.clone());
        st.accounts.insert(account.user_id.clone(), account.clone());
        Ok(())
    }

    async fn account(&self, user_id: &str) -> StoreResult<Option<Account>> {
        self.check()?;
        Ok(self.state.lock().accounts.get(user_id).cloned())
    }

    async fn profiles(&self, users: &[String]) -> StoreResult<Vec<UserProfile>> {
        self.check()?;
        let st = self.state.lock();
        Ok(users
            .iter()
            .filter_map(|u| st.profiles.get(u).cloned())
            .collect())
    }

    async fn update_profile(
        &self,
        user: &str,
        patch: &ProfilePatch,
        now_ms: i64,
    ) -> StoreResult<UserProfile> {
        self.check()?;
        let mut st = self.state.lock();
        let p = st
            .profiles
            .entry(user.to_owned())
            .or_insert_with(|| UserProfile {
                user_id: user.to_owned(),
                created_at: now_ms,
                ..UserProfile::default()
            });
        let set = |dst: &mut String, v: &Option<String>| {
            if let Some(v) = v {
                dst.clone_from(v);
            }
        };
        set(&mut p.nickname, &patch.nickname);
        set(&mut p.avatar, &patch.avatar);
        set(&mut p.phone, &patch.phone);
        set(&mut p.email, &patch.email);
        set(&mut p.signature, &patch.signature);
        set(&mut p.extra, &patch.extra);
        if let Some(g) = patch.gender {
            p.gender = g;
        }
        if let Some(b) = patch.birth {
            p.birth = b;
        }
        p.updated_at = now_ms;
        let out = p.clone();
        st.users.entry(user.to_owned()).or_insert(now_ms);
        Ok(out)
    }

    async fn search_users(&self, keyword: &str, limit: u32) -> StoreResult<Vec<UserProfile>> {
        self.check()?;
        let k = keyword.to_ascii_lowercase();
        Ok(self
            .state
            .lock()
            .profiles
            .values()
            .filter(|p| {
                p.user_id.to_ascii_lowercase().contains(&k)
                    || p.nickname.to_ascii_lowercase().contains(&k)
            })
            .take(limit as usize)
            .cloned()
            .collect())
    }
}

fn pair(a: &str, b: &str) -> (String, String) {
    (a.to_owned(), b.to_owned())
}

#[async_trait]
impl FriendStore for MemoryStore {
    async fn put_request(&self, req: &FriendRequest) -> StoreResult<()> {
        self.check()?;
        let mut st = self.state.lock();
        let key = pair(&req.from_id, &req.to_id);
        let created = st
            .requests
            .get(&key)
            .map_or(req.created_at, |r| r.created_at);
        st.requests.insert(
            key,
            FriendRequest {
                status: FriendRequestStatus::Pending,
                created_at: created,
                ..req.clone()
            },
        );
        Ok(())
    }

    async fn request(&self, from: &str, to: &str) -> StoreResult<Option<FriendRequest>> {
        self.check()?;
        Ok(self.state.lock().requests.get(&pair(from, to)).cloned())
    }

    async fn requests(
        &self,
        user: &str,
        incoming: bool,
        limit: u32,
    ) -> StoreResult<Vec<FriendRequest>> {
        self.check()?;
        let st = self.state.lock();
        let mut v: Vec<FriendRequest> = st
            .requests
            .values()
            .filter(|r| {
                if incoming {
                    r.to_id == user
                } else {
                    r.from_id == user
                }
            })
            .cloned()
            .collect();
        v.sort_by_key(|r| std::cmp::Reverse(r.updated_at));
        v.truncate(limit as usize);
        Ok(v)
    }

    async fn resolve_request(
        &self,
        from: &str,
        to: &str,
        status: FriendRequestStatus,
        now_ms: i64,
    ) -> StoreResult<bool> {
        self.check()?;
        let mut st = self.state.lock();
        match st.requests.get_mut(&pair(from, to)) {
            Some(r) if r.status == FriendRequestStatus::Pending => {
                r.status = status;
                r.updated_at = now_ms;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn add_friendship(&self, a: &Friend, b: &Friend, now_ms: i64) -> StoreResult<()> {
        self.check()?;
        let mut st = self.state.lock();
        st.friends
            .entry(pair(&a.owner_id, &a.friend_id))
            .or_insert_with(|| a.clone());
        st.friends
            .entry(pair(&b.owner_id, &b.friend_id))
            .or_insert_with(|| b.clone());
        for key in [
            pair(&a.owner_id, &b.owner_id),
            pair(&b.owner_id, &a.owner_id),
        ] {
            if let Some(r) = st.requests.get_mut(&key) {
                if r.status == FriendRequestStatus::Pending {
                    r.status = FriendRequestStatus::Accepted;
                    r.updated_at = now_ms;
                }
            }
        }
        Ok(())
    }

    async fn remove_friendship(&self, a: &str, b: &str) -> StoreResult<bool> {
        self.check()?;
        let mut st = self.state.lock();
        let x = st.friends.remove(&pair(a, b)).is_some();
        let y = st.friends.remove(&pair(b, a)).is_some();
        Ok(x || y)
    }

    async fn friend(&self, owner: &str, friend: &str) -> StoreResult<Option<Friend>> {
        self.check()?;
        Ok(self.state.lock().friends.get(&pair(owner, friend)).cloned())
    }

    async fn friends(&self, owner: &str) -> StoreResult<Vec<Friend>> {
        self.check()?;
        Ok(self
            .state
            .lock()
            .friends
            .values()
            .filter(|f| f.owner_id == owner)
            .cloned()
            .collect())
    }

    async fn set_remark(
        &self,
        owner: &str,
        friend: &str,
        remark: &str,
    ) -> StoreResult<Option<Friend>> {
        self.check()?;
        Ok(self
            .state
            .lock()
            .friends
            .get_mut(&pair(owner, friend))
            .map(|f| {
                remark.clone_into(&mut f.remark);
                f.clone()
            }))
    }

    async fn block(&self, owner: &str, target: &str, now_ms: i64) -> StoreResult<bool> {
        self.check()?;
        let mut st = self.state.lock();
        let key = pair(owner, target);
        if st.blocks.contains_key(&key) {
            return Ok(false);
        }
        st.blocks.insert(
            key,
            Block {
                owner_id: owner.to_owned(),
                blocked_id: target.to_owned(),
                created_at: now_ms,
            },
        );
        Ok(true)
    }

    async fn unblock(&self, owner: &str, target: &str) -> StoreResult<bool> {
        self.check()?;
        Ok(self
            .state
            .lock()
            .blocks
            .remove(&pair(owner, target))
            .is_some())
    }

    async fn blocks(&self, owner: &str) -> StoreResult<Vec<Block>> {
        self.check()?;
        Ok(self
            .state
            .lock()
            .blocks
            .values()
            .filter(|b| b.owner_id == owner)
            .cloned()
            .collect())
    }

    async fn is_blocked(&self, owner: &str, target: &str) -> StoreResult<bool> {
        self.check()?;
        Ok(self.state.lock().blocks.contains_key(&pair(owner, target)))
    }
}

#[async_trait]
impl TokenRevocationStore for MemoryStore {
    async fn revoke(&self, jti: &str, _user: &str, expires_at: i64) -> StoreResult<()> {
        self.check()?;
        self.state.lock().revoked.insert(jti.to_owned(), expires_at);
        Ok(())
    }

    async fn is_revoked(&self, jti: &str) -> StoreResult<bool> {
        self.check()?;
        Ok(self.state.lock().revoked.contains_key(jti))
    }

    async fn purge_expired(&self, now_secs: i64) -> StoreResult<u64> {
        self.check()?;
        let mut st = self.state.lock();
        let before = st.revoked.len();
        st.revoked.retain(|_, exp| *exp >= now_secs);
        Ok((before - st.revoked.len()) as u64)
    }
}

#[async_trait]
impl GroupStore for MemoryStore {
    async fn create_group(&self, group: &Group, members: &[GroupMember]) -> StoreResult<()> {
        self.check()?;
        let mut st = self.state.lock();
        if st.groups.contains_key(&group.group_id) {
            return Err(StoreError::Conflict(format!(
                "group {} exists",
                group.group_id
            )));
        }
        st.groups.insert(
            group.group_id.clone(),
            Group {
                member_count: 0,
                ..group.clone()
            },
        );
        let map = st.members.entry(group.group_id.clone()).or_default();
        for m in members {
            map.entry(m.user_id.clone()).or_insert_with(|| GroupMember {
                group_id: group.group_id.clone(),
                ..m.clone()
            });
        }
        Ok(())
    }

    async fn get_group(&self, group_id: &str) -> StoreResult<Option<Group>> {
        self.check()?;
        Ok(self.state.lock().group_with_count(group_id))
    }

    async fn group_version(&self, group_id: &str) -> StoreResult<Option<i64>> {
        self.check()?;
        let st = self.state.lock();
        Ok(st
            .groups
            .contains_key(group_id)
            .then(|| st.group_versions.get(group_id).copied().unwrap_or(0)))
    }

    async fn update_group(
        &self,
        group_id: &str,
        patch: &GroupPatch,
        now_ms: i64,
    ) -> StoreResult<Option<Group>> {
        self.check()?;
        let mut st = self.state.lock();
        *st.group_versions.entry(group_id.to_owned()).or_default() += 1;
        let Some(g) = st.groups.get_mut(group_id) else {
            return Ok(None);
        };
        let set = |field: &mut String, v: &Option<String>| {
            if let Some(v) = v {
                field.clone_from(v);
            }
        };
        set(&mut g.name, &patch.name);
        set(&mut g.face_url, &patch.face_url);
        set(&mut g.introduction, &patch.introduction);
        set(&mut g.notification, &patch.notification);
        set(&mut g.extra, &patch.extra);
        if let Some(on) = patch.mute_all {
            g.mute_all = on;
        }
        g.updated_at = now_ms;
        Ok(st.group_with_count(group_id))
    }

    async fn dismiss_group(&self, group_id: &str, now_ms: i64) -> StoreResult<bool> {
        self.check()?;
        let mut st = self.state.lock();
        *st.group_versions.entry(group_id.to_owned()).or_default() += 1;
        match st.groups.get_mut(group_id) {
            Some(g) if g.status != GROUP_STATUS_DISMISSED => {
                g.status = GROUP_STATUS_DISMISSED;
                g.updated_at = now_ms;
                st.members.remove(group_id);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn add_members(
        &self,
        group_id: &str,
        members: &[GroupMember],
        max_members: u32,
    ) -> StoreResult<AddMembers> {
        self.check()?;
        let mut st = self.state.lock();
        *st.group_versions.entry(group_id.to_owned()).or_default() += 1;
        if st
            .groups
            .get(group_id)
            .is_none_or(|g| g.status != GROUP_STATUS_NORMAL)
        {
            return Ok(AddMembers::NoGroup);
        }
        let map = st.members.entry(group_id.to_owned()).or_default();
        let mut new: Vec<&GroupMember> = Vec::new();
        for m in members {
            if !map.contains_key(&m.user_id) && !new.iter().any(|n| n.user_id == m.user_id) {
                new.push(m);
            }
        }
        if map.len() + new.len() > max_members as usize {
            return Ok(AddMembers::Full);
        }
        let added: Vec<String> = new.iter().map(|m| m.user_id.clone()).collect();
        for m in new {
            map.insert(
                m.user_id.clone(),
                GroupMember {
                    group_id: group_id.to_owned(),
                    ..m.clone()
                },
            );
        }
        // A new member has read the history from before they joined.
        let conversation = format!("group_{group_id}");
        let head = st
            .by_conv
            .get(&conversation)
            .and_then(|m| m.keys().next_back().copied())
            .unwrap_or(0);
        if head > 0 {
            for u in &added {
                let e = st
                    .read
                    .entry((u.clone(), conversation.clone()))
                    .or_insert(0);
                *e = (*e).max(head);
            }
        }
        Ok(AddMembers::Added(added))
    }

    async fn remove_members(&self, group_id: &str, users: &[String]) -> StoreResult<Vec<String>> {
        self.check()?;
        let mut st = self.state.lock();
        *st.group_versions.entry(group_id.to_owned()).or_default() += 1;
        let Some(map) = st.members.get_mut(group_id) else {
            return Ok(Vec::new());
        };
        let mut removed = Vec::new();
        for u in users {
            if map.remove(u).is_some() {
                removed.push(u.clone());
            }
        }
        Ok(removed)
    }

    async fn get_member(&self, group_id: &str, user: &str) -> StoreResult<Option<GroupMember>> {
        self.check()?;
        Ok(self
            .state
            .lock()
            .members
            .get(group_id)
            .and_then(|m| m.get(user))
            .cloned())
    }

    async fn list_members(&self, group_id: &str) -> StoreResult<Vec<GroupMember>> {
        self.check()?;
        let mut v: Vec<GroupMember> = self
            .state
            .lock()
            .members
            .get(group_id)
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default();
        v.sort_by(|a, b| {
            a.joined_at
                .cmp(&b.joined_at)
                .then_with(|| a.user_id.cmp(&b.user_id))
        });
        Ok(v)
    }

    async fn set_member_role(
        &self,
        group_id: &str,
        user: &str,
        role: GroupRole,
    ) -> StoreResult<bool> {
        self.check()?;
        let mut st = self.state.lock();
        *st.group_versions.entry(group_id.to_owned()).or_default() += 1;
        match st.members.get_mut(group_id).and_then(|m| m.get_mut(user)) {
            Some(m) => {
                m.role = role;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn set_member_mute(
        &self,
        group_id: &str,
        user: &str,
        muted_until: i64,
    ) -> StoreResult<bool> {
        self.check()?;
        let mut st = self.state.lock();
        *st.group_versions.entry(group_id.to_owned()).or_default() += 1;
        match st.members.get_mut(group_id).and_then(|m| m.get_mut(user)) {
            Some(m) => {
                m.muted_until = muted_until;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn groups_of(&self, user: &str) -> StoreResult<Vec<Group>> {
        self.check()?;
        let st = self.state.lock();
        let mut v: Vec<Group> = st
            .members
            .iter()
            .filter(|(_, m)| m.contains_key(user))
            .filter_map(|(gid, _)| st.group_with_count(gid))
            .filter(|g| g.status == GROUP_STATUS_NORMAL)
            .collect();
        v.sort_by(|a, b| {
            a.created_at
                .cmp(&b.created_at)
                .then_with(|| a.group_id.cmp(&b.group_id))
        });
        Ok(v)
    }
}

#[async_trait]
impl ConversationStore for MemoryStore {
    async fn revoke(
        &self,
        server_msg_id: &str,
        by: &str,
        time_ms: i64,
    ) -> StoreResult<Option<StoredMessage>> {
        self.check()?;
        let mut st = self.state.lock();
        let Some(&i) = st.by_server.get(server_msg_id) else {
            return Ok(None);
        };
        Ok(st.messages.get_mut(i).map(|m| {
            if m.revoked.is_none() {
                m.revoked = Some(Revocation {
                    by: by.to_owned(),
                    time: time_ms,
                });
            }
            m.clone()
        }))
    }

    async fn mark_read(
        &self,
        user: &str,
        conversation_id: &str,
        up_to_seq: i64,
        _now_ms: i64,
    ) -> StoreResult<i64> {
        self.check()?;
        let mut st = self.state.lock();
        let e = st
            .read
            .entry((user.to_owned(), conversation_id.to_owned()))
            .or_insert(0);
        let before = *e;
        *e = before.max(up_to_seq);
        Ok(before)
    }

    async fn read_seq(&self, user: &str, conversation_id: &str) -> StoreResult<i64> {
        self.check()?;
        Ok(self.state.lock().read_seq(user, conversation_id))
    }

    async fn read_cursors(&self, conversation_id: &str) -> StoreResult<Vec<(String, i64)>> {
        self.check()?;
        let st = self.state.lock();
        let mut v: Vec<(String, i64)> = st
            .read
            .iter()
            .filter(|((_, c), _)| c == conversation_id)
            .map(|((u, _), &seq)| (u.clone(), seq))
            .collect();
        v.sort();
        Ok(v)
    }

    async fn unread_count(&self, user: &str, conversation_id: &str) -> StoreResult<i64> {
        self.check()?;
        Ok(self.state.lock().unread(user, conversation_id))
    }

    async fn conversation_list(
        &self,
        user: &str,
        limit: u32,
    ) -> StoreResult<Vec<ConversationSummary>> {
        self.check()?;
        let st = self.state.lock();
        let mut v: Vec<ConversationSummary> = st
            .conversations_of(user)
            .into_iter()
            .map(|c| {
                let last_message = st.last_message(&c).cloned();
                let joined = group_of(&c)
                    .and_then(|gid| st.members.get(gid))
                    .and_then(|m| m.get(user))
                    .map_or(0, |m| m.joined_at);
                ConversationSummary {
                    conversation_type: if group_of(&c).is_some() {
                        ConversationType::Group
                    } else {
                        ConversationType::Single
                    },
                    updated_at: last_message.as_ref().map_or(joined, |m| m.server_time),
                    last_message,
                    unread_count: st.unread(user, &c),
                    read_seq: st.read_seq(user, &c),
                    max_seq: st.max_seq(&c),
                    conversation_id: c,
                }
            })
            .collect();
        v.sort_by(|a, b| {
            b.updated_at
                .cmp(&a.updated_at)
                .then_with(|| a.conversation_id.cmp(&b.conversation_id))
        });
        v.truncate(limit as usize);
        Ok(v)
    }

    async fn history(
        &self,
        conversation_id: &str,
        before_seq: i64,
        limit: u32,
    ) -> StoreResult<Vec<StoredMessage>> {
        self.check()?;
        let st = self.state.lock();
        let upper = if before_seq <= 0 {
            i64::MAX
        } else {
            before_seq
        };
        Ok(st
            .by_conv
            .get(conversation_id)
            .map(|c| {
                c.range(..upper)
                    .rev()
                    .take(limit as usize)
                    .filter_map(|(_, &i)| st.messages.get(i).cloned())
                    .collect()
            })
            .unwrap_or_default())
    }
}

/// A clock that only moves when told to.
#[derive(Debug)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn new(start_ms: i64) -> Self {
        Self(AtomicI64::new(start_ms))
    }

    pub fn advance(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// Ids `m1`, `m2`, … in order (`<prefix>-m1`, … with a prefix, so several
/// nodes sharing one store never collide).
#[derive(Debug, Default)]
pub struct SeqIds {
    next: AtomicU64,
    prefix: String,
}

impl SeqIds {
    pub fn with_prefix(prefix: &str) -> Self {
        Self {
            next: AtomicU64::new(0),
            prefix: format!("{prefix}-"),
        }
    }
}

impl IdGen for SeqIds {
    fn server_msg_id(&self) -> String {
        format!(
            "{}m{}",
            self.prefix,
            self.next.fetch_add(1, Ordering::SeqCst) + 1
        )
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;
    use build::msg;

    mod build {
        use im_core::model::NewMessage;
        use im_core::{ConversationType, UserId};

        /// A text message of `sender` in `conv` (empty content).
        pub fn msg(conv: &str, sender: &str, cid: &str, participants: &[&str]) -> NewMessage {
            let group = conv.strip_prefix("group_").unwrap_or("");
            NewMessage {
                server_msg_id: format!("s-{sender}-{cid}"),
                client_msg_id: cid.into(),
                conversation_id: conv.into(),
                conversation_type: if group.is_empty() {
                    ConversationType::Single
                } else {
                    ConversationType::Group
                },
                sender_id: UserId::parse(sender).unwrap(),
                receiver_id: String::new(),
                group_id: group.into(),
                message_type: 1,
                content: Default::default(),
                send_time: 0,
                server_time: 10,
                extra: String::new(),
                participants: participants
                    .iter()
                    .map(|p| UserId::parse(*p).unwrap())
                    .collect(),
            }
        }
    }

    fn member(gid: &str, user: &str, role: GroupRole, at: i64) -> GroupMember {
        GroupMember {
            group_id: gid.into(),
            user_id: user.into(),
            role,
            muted_until: 0,
            joined_at: at,
        }
    }

    fn group(gid: &str) -> Group {
        Group {
            group_id: gid.into(),
            owner_id: "a".into(),
            ..Group::default()
        }
    }

    fn convs(heads: Vec<ConversationHead>) -> Vec<(String, i64)> {
        heads
            .into_iter()
            .map(|h| (h.conversation_id, h.max_seq))
            .collect()
    }

    #[tokio::test]
    async fn group_membership_is_conversation_membership() {
        let s = MemoryStore::new();
        s.create_group(
            &group("g"),
            &[
                member("g", "a", GroupRole::Owner, 1),
                member("g", "b", GroupRole::Member, 2),
            ],
        )
        .await
        .unwrap();
        let b = UserId::parse("b").unwrap();
        let c = UserId::parse("c").unwrap();
        assert_eq!(
            convs(s.user_conversations(&b).await.unwrap()),
            vec![("group_g".into(), 0)]
        );
        s.append(&[msg("group_g", "a", "1", &["a", "b"])])
            .await
            .unwrap();
        assert_eq!(
            convs(s.user_conversations(&b).await.unwrap()),
            vec![("group_g".into(), 1)]
        );
        // Adding beyond the limit adds nobody; within it, only newcomers.
        let cm = member("g", "c", GroupRole::Member, 3);
        assert_eq!(
            s.add_members("g", std::slice::from_ref(&cm), 2)
                .await
                .unwrap(),
            AddMembers::Full
        );
        assert_eq!(
            s.add_members(
                "g",
                &[cm.clone(), member("g", "b", GroupRole::Member, 3)],
                3
            )
            .await
            .unwrap(),
            AddMembers::Added(vec!["c".into()])
        );
        assert_eq!(s.user_conversations(&c).await.unwrap().len(), 1);
        assert_eq!(
            s.remove_members("g", &["b".into(), "x".into()])
                .await
                .unwrap(),
            vec!["b".to_owned()]
        );
        assert!(s.user_conversations(&b).await.unwrap().is_empty());
        assert_eq!(s.get_group("g").await.unwrap().unwrap().member_count, 2);
        let order: Vec<String> = s
            .list_members("g")
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.user_id)
            .collect();
        assert_eq!(order, vec!["a".to_owned(), "c".to_owned()]);
        // Dismissal removes everyone; the group stays readable.
        assert!(s.dismiss_group("g", 9).await.unwrap());
        assert!(!s.dismiss_group("g", 9).await.unwrap());
        assert!(s.user_conversations(&c).await.unwrap().is_empty());
        assert!(s.groups_of("a").await.unwrap().is_empty());
        assert_eq!(
            s.get_group("g").await.unwrap().unwrap().status,
            GROUP_STATUS_DISMISSED
        );
        assert_eq!(
            s.add_members("g", &[cm], 10).await.unwrap(),
            AddMembers::NoGroup
        );
        assert!(matches!(
            s.create_group(&group("g"), &[]).await,
            Err(StoreError::Conflict(_))
        ));
    }

    #[tokio::test]
    async fn unread_read_cursors_recall_and_history() {
        let s = MemoryStore::new();
        let conv = "single_a_b";
        for (sender, cid) in [("a", "1"), ("a", "2"), ("b", "3"), ("a", "4")] {
            s.append(&[msg(conv, sender, cid, &["a", "b"])])
                .await
                .unwrap();
        }
        assert_eq!(s.unread_count("b", conv).await.unwrap(), 3);
        assert_eq!(s.unread_count("a", conv).await.unwrap(), 1);
        assert_eq!(s.mark_read("b", conv, 2, 0).await.unwrap(), 0);
        assert_eq!(s.mark_read("b", conv, 1, 0).await.unwrap(), 2);
        assert_eq!(s.read_seq("b", conv).await.unwrap(), 2);
        assert_eq!(s.unread_count("b", conv).await.unwrap(), 1);
        let r = ConversationStore::revoke(&s, "s-a-4", "a", 50)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(r.revoked.as_ref().unwrap().time, 50);
        let again = ConversationStore::revoke(&s, "s-a-4", "b", 60)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(again.revoked.unwrap().by, "a");
        assert!(
            ConversationStore::revoke(&s, "nope", "a", 1)
                .await
                .unwrap()
                .is_none()
        );
        assert_eq!(s.unread_count("b", conv).await.unwrap(), 0);
        assert_eq!(
            s.read_cursors(conv).await.unwrap(),
            vec![("b".to_owned(), 2)]
        );
        let seqs = |v: Vec<StoredMessage>| v.into_iter().map(|m| m.seq).collect::<Vec<_>>();
        assert_eq!(seqs(s.history(conv, 0, 2).await.unwrap()), vec![4, 3]);
        assert_eq!(seqs(s.history(conv, 3, 10).await.unwrap()), vec![2, 1]);
        let list = s.conversation_list("b", 10).await.unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].max_seq, 4);
        assert_eq!(list[0].read_seq, 2);
        assert_eq!(list[0].unread_count, 0);
        assert!(list[0].last_message.as_ref().unwrap().revoked.is_some());
    }
}

/// An in-process "Redis" for service tests of several nodes: a shared
/// route table and a bus that calls the addressed nodes' handlers
/// directly. `set_down(true)` makes every call fail, like Redis away.
pub mod cluster {
    use std::collections::HashMap;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use async_trait::async_trait;
    use im_core::StoreError;
    use im_core::cluster::{Bus, BusHandler, Route, RouteTable};
    use im_core::ports::StoreResult;
    use parking_lot::Mutex;

    /// Session key -> (node, platform).
    type Sessions = HashMap<String, (String, String)>;

    /// What the nodes share.
    #[derive(Default)]
    pub struct Shared {
        /// user -> their sessions.
        routes: Mutex<HashMap<String, Sessions>>,
        handlers: Mutex<HashMap<String, Arc<dyn BusHandler>>>,
        down: AtomicBool,
    }

    impl Shared {
        pub fn new() -> Arc<Self> {
            Arc::new(Self::default())
        }

        /// Every call fails while `down`.
        pub fn set_down(&self, down: bool) {
            self.down.store(down, Ordering::SeqCst);
        }

        fn check(&self) -> StoreResult<()> {
            if self.down.load(Ordering::SeqCst) {
                return Err(StoreError::Unavailable("memory cluster is down".into()));
            }
            Ok(())
        }

        /// The adapters of node `node_id`.
        pub fn node(self: &Arc<Self>, node_id: &str) -> Arc<MemoryNode> {
            Arc::new(MemoryNode {
                shared: Arc::clone(self),
                node_id: node_id.to_owned(),
            })
        }
    }

    /// One node's view: implements both `RouteTable` and `Bus`.
    pub struct MemoryNode {
        shared: Arc<Shared>,
        node_id: String,
    }

    #[async_trait]
    impl RouteTable for MemoryNode {
        async fn add(&self, user: &str, session_key: &str, platform: &str) -> StoreResult<()> {
            self.shared.check()?;
            self.shared
                .routes
                .lock()
                .entry(user.to_owned())
                .or_default()
                .insert(
                    session_key.to_owned(),
                    (self.node_id.clone(), platform.to_owned()),
                );
            Ok(())
        }

        async fn remove(&self, user: &str, session_key: &str) -> StoreResult<()> {
            self.shared.check()?;
            if let Some(m) = self.shared.routes.lock().get_mut(user) {
                m.remove(session_key);
            }
            Ok(())
        }

        async fn routes(&self, users: &[String]) -> StoreResult<Vec<Vec<Route>>> {
            self.shared.check()?;
            let routes = self.shared.routes.lock();
            Ok(users
                .iter()
                .map(|u| {
                    routes
                        .get(u)
                        .map(|m| {
                            m.iter()
                                .map(|(k, (n, p))| Route {
                                    node_id: n.clone(),
                                    session_key: k.clone(),
                                    platform: p.clone(),
                                })
                                .collect()
                        })
                        .unwrap_or_default()
                })
                .collect())
        }

        async fn refresh(&self) -> StoreResult<()> {
            self.shared.check()
        }

        fn node_id(&self) -> &str {
            &self.node_id
        }
    }

    #[async_trait]
    impl Bus for MemoryNode {
        async fn publish(&self, node_id: &str, payload: &[u8]) -> StoreResult<()> {
            self.shared.check()?;
            let h = self.shared.handlers.lock().get(node_id).cloned();
            if let Some(h) = h {
                h.on_message(payload);
            }
            Ok(())
        }

        async fn broadcast(&self, payload: &[u8]) -> StoreResult<()> {
            self.shared.check()?;
            let all: Vec<Arc<dyn BusHandler>> =
                self.shared.handlers.lock().values().cloned().collect();
            for h in all {
                h.on_message(payload);
            }
            Ok(())
        }

        fn start(&self, handler: Arc<dyn BusHandler>) {
            self.shared
                .handlers
                .lock()
                .insert(self.node_id.clone(), Arc::clone(&handler));
            handler.on_subscription(true);
        }
    }
}
