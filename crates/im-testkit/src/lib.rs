//! Test kit: in-memory fakes of the ports, a controllable clock and
//! predictable ids. Dev-only; never linked into the server.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

use async_trait::async_trait;
use im_core::model::{NewMessage, StoredMessage};
use im_core::ports::{
    Appended, Clock, ConversationHead, IdGen, InboxEntry, MessageStore, StoreResult, UserStore,
};
use im_core::{StoreError, UserId};
use parking_lot::Mutex;

#[derive(Default)]
struct State {
    messages: Vec<StoredMessage>,
    by_server: HashMap<String, usize>,
    by_client: HashMap<(String, String), usize>,
    by_conv: HashMap<String, BTreeMap<i64, usize>>,
    inbox: HashMap<String, Vec<(i64, usize)>>,
    member_of: HashMap<String, HashSet<String>>,
    delivered: HashMap<(String, String, String), i64>,
    users: HashMap<String, i64>,
}

/// An in-memory `MessageStore` + `UserStore` with the same semantics as the
/// SQL stores. `fail_next_appends(n)` makes the next n appends fail with a
/// retryable error, for writer tests.
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
            for p in &m.participants {
                let inbox = st.inbox.entry(p.as_str().to_owned()).or_default();
                let cursor = inbox.last().map_or(0, |e| e.0) + 1;
                inbox.push((cursor, idx));
                st.member_of
                    .entry(p.as_str().to_owned())
                    .or_default()
                    .insert(m.conversation_id.clone());
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
        let mut v: Vec<ConversationHead> = st
            .member_of
            .get(user.as_str())
            .map(|set| {
                set.iter()
                    .map(|c| ConversationHead {
                        conversation_id: c.clone(),
                        max_seq: st
                            .by_conv
                            .get(c)
                            .and_then(|m| m.keys().next_back().copied())
                            .unwrap_or(0),
                    })
                    .collect()
            })
            .unwrap_or_default();
        v.sort_by(|a, b| a.conversation_id.cmp(&b.conversation_id));
        Ok(v)
    }

    async fn inbox_head(&self, user: &UserId) -> StoreResult<i64> {
        self.check()?;
        Ok(self
            .state
            .lock()
            .inbox
            .get(user.as_str())
            .and_then(|v| v.last())
            .map_or(0, |e| e.0))
    }

    async fn inbox_after(
        &self,
        user: &UserId,
        after: i64,
        limit: u32,
    ) -> StoreResult<Vec<InboxEntry>> {
        self.check()?;
        let st = self.state.lock();
        Ok(st
            .inbox
            .get(user.as_str())
            .map(|v| {
                v.iter()
                    .filter(|e| e.0 > after)
                    .take(limit as usize)
                    .filter_map(|&(cursor, i)| {
                        st.messages.get(i).map(|m| InboxEntry {
                            cursor,
                            message: m.clone(),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default())
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
}

#[async_trait]
impl UserStore for MemoryStore {
    async fn touch(&self, user: &UserId, now_ms: i64) -> StoreResult<()> {
        self.check()?;
        self.state
            .lock()
            .users
            .insert(user.as_str().to_owned(), now_ms);
        Ok(())
    }

    async fn exists(&self, user: &UserId) -> StoreResult<bool> {
        self.check()?;
        Ok(self.state.lock().users.contains_key(user.as_str()))
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

/// Ids `m1`, `m2`, … in order.
#[derive(Debug, Default)]
pub struct SeqIds(AtomicU64);

impl IdGen for SeqIds {
    fn server_msg_id(&self) -> String {
        format!("m{}", self.0.fetch_add(1, Ordering::SeqCst) + 1)
    }
}
