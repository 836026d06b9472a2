//! Sync: v2 BATCH_SYNC with the backlog streamed after it, v2 SYNC_RANGE and
//! v1 SYNC_REQ (issue 18, items 5, 7 and 8).
//!
//! * Frame sizes are exact: every message and conversation entry is counted
//!   with `im_protocol::convert::size` (prost's `encoded_len` of what the
//!   encoder writes), plus the reply's own fields and the transport's
//!   header, so no frame exceeds `sync_max_reply_bytes` nor the SDK's 1 MiB
//!   packet limit (`IMPacketCodec.swift:44` @07bf3fe: larger is fatal, and
//!   the SDK would reconnect and get the same reply forever).
//! * A v2 device's BATCH_SYNC leaves out the messages that device
//!   acknowledged (MSG_ACK rows per message, keyed by platform and token):
//!   the SDK stores a push before it acks it (`IMMessageManager.swift:324-341`)
//!   and moves its cursor only on a BATCH_SYNC reply
//!   (`IMMessageSyncManager.swift:692`), so without this every push of the
//!   last session comes back and is counted unread again (contract §7.8).
//!   `max_seq` still covers them, so the cursor moves past them.
//! * What one reply cannot carry (a conversation past its per-conversation
//!   page, or conversations past the byte budget) follows as BATCH_MSG (204)
//!   frames, which the SDK handles like pushes (`IMClient.swift:1064-1066`,
//!   `1271-1306`, TCP `284-285`, `1618-1623`). See [`Backlog`].

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use im_core::command::{ConversationBatch, Event, Reply, SyncState};
use im_core::model::{MessageView, StoredMessage};
use im_core::{ErrorCode, Generation, StoreError, UserId};
use im_protocol::convert::size::{
    FRAME_OVERHEAD_MAX, Slot, conversation_len, message_len, reply_len,
};
use parking_lot::Mutex;
use sha2::Digest;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::conversations::access;
use crate::hub::Outbound;
use crate::messaging::{MessagingService, store_code, wire_error};
use crate::queue;

/// The SDK's largest packet body (`IMPacketCodec.swift:44` @07bf3fe).
pub const SDK_MAX_PACKET: usize = 1 << 20;

/// Messages read from the store per query while streaming a backlog: with
/// `max_content_bytes` of content and of extra, a page is at most this many
/// times twice that in memory.
const STREAM_PAGE: u32 = 64;

/// BATCH_MSG frames of one session queued or being written at once: what
/// the server buffers for a slow reader is at most this many frames.
const STREAM_FRAMES_IN_FLIGHT: usize = 2;

/// The byte budget of one frame body (transport overhead taken off).
pub(crate) fn frame_budget(max_reply_bytes: usize) -> usize {
    max_reply_bytes
        .min(SDK_MAX_PACKET)
        .saturating_sub(FRAME_OVERHEAD_MAX)
}

/// The key MSG_ACK rows are recorded under for a session: its platform and
/// the `jti` of its token. `None` (no per-message acks kept, nothing left
/// out of syncs) for tokens without a `jti` (demo tokens, tokens minted
/// elsewhere): every install of one user announces the same platform
/// ("iOS"), so only the login tells two installs apart, and leaving out
/// what another install acknowledged would lose messages.
pub(crate) fn ack_device(platform: &str, token_id: Option<&str>) -> Option<String> {
    let jti = token_id?;
    let mut h = sha2::Sha256::new();
    h.update(platform.as_bytes());
    h.update([0u8]);
    h.update(jti.as_bytes());
    let digest = h.finalize();
    Some(format!(
        "t{}",
        hex::encode(digest.get(..16).unwrap_or_default())
    ))
}

/// One BATCH_MSG frame on its way to the writer; holds one of the session's
/// stream slots until the writer has dropped it.
#[derive(Debug, Clone)]
pub struct BatchFrame {
    pub messages: Vec<MessageView>,
    _slot: Option<Arc<OwnedSemaphorePermit>>,
}

impl BatchFrame {
    /// A frame that holds no stream slot (tests, other producers).
    pub fn new(messages: Vec<MessageView>) -> Self {
        Self {
            messages,
            _slot: None,
        }
    }
}

/// Holds back live message pushes of the conversations a session is
/// catching up on, so that a push never overtakes the backlog of its
/// conversation: the SDK would see a seq gap, fetch the range by SYNC_RANGE
/// and then get the same messages again from the backlog (and count them
/// unread twice, contract §7.8).
///
/// While a conversation is being caught up, its pushes are dropped and the
/// highest seq is remembered; the catch-up does not finish before it has
/// streamed up to that seq (those messages were committed before their
/// push). Afterwards pushes at or below what was streamed are dropped
/// (already delivered), later ones pass.
///
/// It also remembers the messages pushed or streamed on this connection
/// that it has not acknowledged yet (the newest [`DELIVERED_CAP`]), which
/// the backlog stream leaves out like acknowledged ones: a push queued just
/// before the client's BATCH_SYNC (the SDK sends it right after AUTH and
/// acknowledges pushes as it reads them), or a frame of an earlier stream
/// queued before the client repeated its BATCH_SYNC, was otherwise
/// streamed again, arriving twice on one connection like two pushes (found
/// by the soak, `bins/im-soak`). The BATCH_SYNC reply itself is not
/// filtered: sync stays the source of truth for a client that keeps no
/// pushes.
#[derive(Debug, Default)]
pub struct SyncGate {
    active: AtomicBool,
    state: Mutex<GateState>,
    sent: Mutex<Sent>,
}

/// The messages a connection was sent and has not acknowledged.
///
/// An acknowledgement forgets its message only while no backlog stream
/// runs: a stream checks a page it read from the store against this record
/// message by message, and a page read before the MSG_ACK row was stored
/// still holds the message. Forgotten in between, it was streamed again
/// (found by the soak). Acknowledged entries are forgotten when the last
/// stream ends.
#[derive(Debug, Default)]
struct Sent {
    /// Oldest first; `true`: acknowledged while a stream ran.
    entries: VecDeque<(Arc<Event>, bool)>,
    /// Backlog streams of the connection running now.
    streams: u32,
}

impl Sent {
    fn forget_acked(&mut self) {
        self.entries.retain(|(_, acked)| !acked);
        if self.entries.is_empty() {
            // An acknowledging client keeps no memory here.
            self.entries = VecDeque::new();
        }
    }
}

/// A backlog stream running on the connection (see [`Sent`]).
struct Streaming<'a>(&'a SyncGate);

impl Drop for Streaming<'_> {
    fn drop(&mut self) {
        let mut s = self.0.sent.lock();
        s.streams = s.streams.saturating_sub(1);
        if s.streams == 0 {
            s.forget_acked();
        }
    }
}

/// Most pushes remembered per connection until acknowledged; an older one
/// may come again in a sync (never lost).
pub const DELIVERED_CAP: usize = 256;

#[derive(Debug, Default)]
struct GateState {
    /// Which sync the entries belong to: a stream of an earlier one (still
    /// winding down) must not open the gate of a later one.
    epoch: u64,
    entries: HashMap<String, GateEntry>,
}

#[derive(Debug, Clone, Copy)]
enum GateEntry {
    CatchingUp { held: i64 },
    Done { upto: i64 },
}

impl SyncGate {
    /// Records that `event` (a message push) was queued on the connection.
    pub fn delivered(&self, event: &Arc<Event>) {
        if let Event::Message(_) = event.as_ref() {
            let mut s = self.sent.lock();
            if s.entries.len() >= DELIVERED_CAP {
                s.entries.pop_front();
            }
            s.entries.push_back((Arc::clone(event), false));
        }
    }

    /// The client acknowledged `message_id` (its server id, or the v1
    /// public id, which is the server id for messages of others) and its
    /// MSG_ACK row is stored.
    pub(crate) fn acked(&self, message_id: &str) {
        let mut s = self.sent.lock();
        let streaming = s.streams > 0;
        for (e, acked) in &mut s.entries {
            if matches!(e.as_ref(), Event::Message(m) if m.server_msg_id == message_id) {
                *acked = true;
            }
        }
        if !streaming {
            s.forget_acked();
        }
    }

    /// Whether `m` was pushed or streamed on this connection and not
    /// acknowledged before the running streams began.
    fn was_delivered(&self, m: &StoredMessage) -> bool {
        let s = self.sent.lock();
        s.entries.iter().any(|(e, _)| {
            matches!(e.as_ref(), Event::Message(x)
                if x.seq == m.seq && x.conversation_id == m.conversation_id)
        })
    }

    /// Marks a backlog stream as running until the guard drops.
    fn streaming(&self) -> Streaming<'_> {
        self.sent.lock().streams += 1;
        Streaming(self)
    }

    /// Whether a push of `m` may be queued now (false: held back).
    pub fn admit(&self, m: &StoredMessage) -> bool {
        if !self.active.load(Ordering::Acquire) {
            return true;
        }
        let mut st = self.state.lock();
        match st.entries.get_mut(&m.conversation_id) {
            None => true,
            Some(GateEntry::CatchingUp { held }) => {
                *held = (*held).max(m.seq);
                false
            }
            Some(GateEntry::Done { upto }) => m.seq > *upto,
        }
    }

    /// Starts catching up on `conversations` (forgetting earlier state);
    /// returns the epoch the stream of this sync passes to `finish`/`release`.
    fn begin<'a>(&self, conversations: impl Iterator<Item = &'a str>) -> u64 {
        let mut st = self.state.lock();
        st.epoch += 1;
        st.entries.clear();
        for c in conversations {
            st.entries
                .insert(c.to_owned(), GateEntry::CatchingUp { held: 0 });
        }
        self.active.store(!st.entries.is_empty(), Ordering::Release);
        st.epoch
    }

    /// Holds nothing back any more.
    pub(crate) fn reset(&self) {
        let mut st = self.state.lock();
        st.epoch += 1;
        st.entries.clear();
        self.active.store(false, Ordering::Release);
    }

    /// Ends catching up on `conversation` after everything up to `sent` was
    /// queued; `Some(held)` if a push above `sent` was held back meanwhile
    /// (stream up to it, then call again).
    fn finish(&self, epoch: u64, conversation: &str, sent: i64) -> Option<i64> {
        let mut st = self.state.lock();
        if st.epoch != epoch {
            return None;
        }
        match st.entries.get(conversation) {
            Some(GateEntry::CatchingUp { held }) if *held > sent => Some(*held),
            Some(GateEntry::CatchingUp { .. }) => {
                st.entries
                    .insert(conversation.to_owned(), GateEntry::Done { upto: sent });
                None
            }
            _ => None,
        }
    }

    /// Gives up on `conversation` (stream cap, error, session gone): pushes
    /// above `sent` pass from now on; held ones above it are left to the
    /// client's gap fill or next sync.
    fn release(&self, epoch: u64, conversation: &str, sent: i64) {
        let mut st = self.state.lock();
        if st.epoch != epoch {
            return;
        }
        if let Some(GateEntry::CatchingUp { .. }) = st.entries.get(conversation) {
            st.entries
                .insert(conversation.to_owned(), GateEntry::Done { upto: sent });
        }
    }
}

/// Per-session state of the backlog stream.
#[derive(Debug, Clone)]
pub struct SyncStreams {
    pub(crate) gate: Arc<SyncGate>,
    slots: Arc<Semaphore>,
    current: Arc<Mutex<Option<CancellationToken>>>,
}

impl Default for SyncStreams {
    fn default() -> Self {
        Self {
            gate: Arc::new(SyncGate::default()),
            slots: Arc::new(Semaphore::new(STREAM_FRAMES_IN_FLIGHT)),
            current: Arc::new(Mutex::new(None)),
        }
    }
}

impl SyncStreams {
    /// Stops the running stream, if any.
    pub(crate) fn cancel(&self) {
        if let Some(t) = self.current.lock().take() {
            t.cancel();
        }
    }

    /// Stops the running stream and lets every push through again.
    pub(crate) fn stop(&self) {
        self.cancel();
        self.gate.reset();
    }

    pub(crate) fn set_current(&self, token: CancellationToken) {
        *self.current.lock() = Some(token);
    }

    /// Whether the gate holds back any conversation.
    pub(crate) fn gate_active(&self) -> bool {
        self.gate.active.load(Ordering::Acquire)
    }
}

/// One conversation to catch up on after a BATCH_SYNC reply: everything in
/// `(from, head]` the reply did not carry.
#[derive(Debug, Clone)]
struct Pending {
    conversation_id: String,
    from: i64,
    head: i64,
}

/// What a BATCH_SYNC reply left for the stream, and for whom.
#[derive(Debug)]
pub struct Backlog {
    user: UserId,
    device: Option<String>,
    items: Vec<Pending>,
    /// The gate epoch of this sync (0: no gate).
    epoch: u64,
}

impl Backlog {
    /// Messages of the backlog that would still have to be streamed (for tests).
    pub fn conversations(&self) -> usize {
        self.items.iter().filter(|p| p.head > p.from).count()
    }
}

/// Who asks for a sync.
#[derive(Debug, Clone, Copy)]
pub struct Syncer<'a> {
    pub user: &'a UserId,
    /// The MSG_ACK key of the session ([`ack_device`]); `None`: nothing is
    /// left out.
    pub device: Option<&'a str>,
}

impl MessagingService {
    /// MSG_ACK: records the delivered seq for (user, platform) and, with a
    /// `device` key (v2 sessions whose token has a `jti`), the message
    /// itself if someone else sent it, so that device's next BATCH_SYNC
    /// leaves it out. No reply. Returns whether that per-message row was
    /// stored: only then may the connection forget what it was sent (an
    /// ack of a message whose group the user has just left stores
    /// nothing, and the message comes back with the group if they rejoin;
    /// found by the soak).
    pub async fn ack(
        &self,
        user: &UserId,
        platform: &str,
        device: Option<&str>,
        message_id: &str,
    ) -> Result<bool, StoreError> {
        match self.resolve_message(user, message_id).await? {
            // Chat rooms keep no per-member state (one row per member per
            // message would be the cost of a large room).
            Some(m) if m.conversation_type == im_core::ConversationType::ChatRoom => Ok(false),
            Some(m) if self.is_participant(user, &m).await? => {
                self.store
                    .record_delivered(user, platform, &m.conversation_id, m.seq)
                    .await?;
                // Own messages are never left out: the SDK keeps its own
                // sends, and one pushed from another device (and acked) is
                // better replaced by the synced copy, which says "sent".
                if let Some(device) = device.filter(|_| m.sender_id != user.as_str()) {
                    let now = self.clock.now_ms();
                    self.store
                        .record_acked(user, device, &m.conversation_id, m.seq, now)
                        .await?;
                    return Ok(true);
                }
                Ok(false)
            }
            _ => Ok(false),
        }
    }

    /// Forgets the MSG_ACK rows older than `ack_retention`: those of logins
    /// that stopped syncing (reinstalled apps, lost devices). A login that
    /// comes back after that gets those messages again in its BATCH_SYNC.
    /// Returns how many rows went; nothing when the retention is zero.
    pub async fn purge_old_acks(&self) -> Result<u64, crate::error::ServiceError> {
        let keep = self.cfg.ack_retention;
        if keep.is_zero() {
            return Ok(0);
        }
        let keep_ms = i64::try_from(keep.as_millis()).unwrap_or(i64::MAX);
        let before = self.clock.now_ms().saturating_sub(keep_ms);
        Ok(self.store.purge_acked(before).await?)
    }

    /// v2 BATCH_SYNC: per conversation the messages after the client's
    /// cursor, at most `per_conv` (clamped), without those this device
    /// acknowledged, within one frame. `max_seq` is the client's next
    /// cursor: the conversation's head when everything up to it is in the
    /// reply or acknowledged, else the last seq included (`has_more`).
    /// The [`Backlog`] is what the reply could not carry; hand it to
    /// [`MessagingService::stream_backlog`] once the reply is queued.
    pub async fn batch_sync(
        &self,
        who: Syncer<'_>,
        states: Vec<SyncState>,
        per_conv: i32,
        gate: Option<&SyncGate>,
    ) -> (Reply, Backlog) {
        let user = who.user;
        let mut backlog = Backlog {
            user: user.clone(),
            device: who.device.map(str::to_owned),
            items: Vec::new(),
            epoch: 0,
        };
        let limit = self.clamp_count(per_conv);
        let now = self.clock.now_ms();
        let heads = match self.store.user_conversations(user).await {
            Ok(h) => h,
            Err(e) => return (sync_error(&e, now), backlog),
        };
        let cursors: HashMap<String, i64> = states
            .into_iter()
            .map(|s| (s.conversation_id, s.last_seq.max(0)))
            .collect();
        if let Some(device) = who.device {
            // Acks at or below a cursor the device presents are not needed
            // any more: it never asks for those seqs again.
            let presented: Vec<(String, i64)> = cursors
                .iter()
                .filter(|(_, c)| **c > 0)
                .map(|(id, c)| (id.clone(), *c))
                .collect();
            if let Err(e) = self.store.forget_acked(user, device, &presented).await {
                tracing::warn!(error = %e, "forgetting old MSG_ACK rows failed");
            }
        }
        let behind: Vec<Pending> = heads
            .into_iter()
            .filter_map(|h| {
                let after = cursors.get(&h.conversation_id).copied().unwrap_or(0);
                (h.max_seq > after).then_some(Pending {
                    conversation_id: h.conversation_id,
                    from: after,
                    head: h.max_seq,
                })
            })
            .collect();
        if let Some(g) = gate {
            backlog.epoch = g.begin(behind.iter().map(|p| p.conversation_id.as_str()));
        }
        let base = reply_len(
            Generation::V2,
            &Reply::BatchSync {
                code: ErrorCode::Success,
                msg: String::new(),
                conversations: Vec::new(),
                server_time: now,
                total: i32::MAX,
            },
            user.as_str(),
        );
        let budget = frame_budget(self.cfg.sync_max_reply_bytes);
        let mut used = base;
        let mut full = false;
        let mut conversations = Vec::new();
        let mut total = 0i32;
        for p in behind {
            if full {
                backlog.items.push(p);
                continue;
            }
            let fetched = match self
                .unacked(who, &p.conversation_id, p.from, p.head, limit)
                .await
            {
                Ok(m) => match self.read_seq(user, &p.conversation_id).await {
                    Ok(r) => Ok((m, r)),
                    Err(e) => Err(e),
                },
                Err(e) => Err(e),
            };
            let (msgs, read) = match fetched {
                Ok(x) => x,
                Err(e) => {
                    if let Some(g) = gate {
                        g.reset();
                    }
                    backlog.items.clear();
                    return (sync_error(&e, now), backlog);
                }
            };
            // Everything in (from, head] is in `msgs` or acknowledged.
            let complete = (msgs.len() as u64) < u64::from(limit);
            // Sized with the largest values the entry can end up with.
            let bound = ConversationBatch {
                conversation_id: p.conversation_id.clone(),
                messages: Vec::new(),
                max_seq: p.head,
                synced_seq: p.head,
                has_more: true,
            };
            let mut msgs_len = 0usize;
            let mut views = Vec::with_capacity(msgs.len());
            for m in msgs.iter() {
                let v = Self::view(user, read, m.clone());
                let n = message_len(
                    Generation::V2,
                    Slot::BatchSync,
                    &v.message,
                    v.is_read,
                    user.as_str(),
                );
                if used + conversation_len(&bound, msgs_len + n) > budget {
                    break;
                }
                msgs_len += n;
                views.push(v);
            }
            let cut = views.len() < msgs.len();
            if (views.is_empty() && !msgs.is_empty())
                || used + conversation_len(&bound, msgs_len) > budget
            {
                // Not even this conversation's first message (or its empty
                // entry) fits: it and the rest follow by stream.
                full = true;
                backlog.items.push(p);
                continue;
            }
            used += conversation_len(&bound, msgs_len);
            let max_seq = if complete && !cut {
                p.head
            } else {
                views.last().map_or(p.from, |v| v.message.seq)
            };
            total = total.saturating_add(i32::try_from(views.len()).unwrap_or(i32::MAX));
            backlog.items.push(Pending {
                conversation_id: p.conversation_id.clone(),
                from: max_seq,
                head: p.head,
            });
            conversations.push(ConversationBatch {
                conversation_id: p.conversation_id,
                messages: views,
                max_seq,
                synced_seq: max_seq,
                has_more: max_seq < p.head,
            });
        }
        let reply = Reply::BatchSync {
            code: ErrorCode::Success,
            msg: String::new(),
            conversations,
            server_time: now,
            total,
        };
        (reply, backlog)
    }

    /// Messages in `(after, up_to]`, without those `who.device` acknowledged.
    async fn unacked(
        &self,
        who: Syncer<'_>,
        conversation_id: &str,
        after: i64,
        up_to: i64,
        limit: u32,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        match who.device {
            Some(device) => {
                self.store
                    .conversation_unacked(conversation_id, after, up_to, who.user, device, limit)
                    .await
            }
            None => {
                self.store
                    .conversation_range(conversation_id, after, up_to, limit)
                    .await
            }
        }
    }

    /// Streams `backlog` to a session after its BATCH_SYNC reply was queued
    /// on `tx`: per conversation, in order, the messages the reply did not
    /// carry, as BATCH_MSG frames of at most one frame budget each.
    ///
    /// Only what the SDK's push path shows correctly is streamed: messages
    /// from others, unread, not recalled, not acknowledged by this device
    /// (the push path forces "received", counts every message unread and
    /// ignores `is_revoked`). The others stay behind the client's cursor
    /// and come with its next BATCH_SYNC (or its gap fill by SYNC_RANGE),
    /// flagged correctly.
    ///
    /// Bounded per connection: at most `sync_stream_max_messages` messages
    /// and `sync_stream_max_bytes` bytes per BATCH_SYNC; at most
    /// [`STREAM_FRAMES_IN_FLIGHT`] frames queued or being written, so a
    /// slow reader holds the stream, not server memory. Past the cap the
    /// rest stays for the next BATCH_SYNC. Ends when `cancel` fires or the
    /// session's queue closes.
    pub async fn stream_backlog(
        &self,
        backlog: Backlog,
        streams: &SyncStreams,
        generation: Generation,
        tx: &queue::Sender<Outbound>,
        cancel: &CancellationToken,
    ) {
        let gate = &streams.gate;
        let _streaming = gate.streaming();
        let budget = frame_budget(self.cfg.sync_max_reply_bytes);
        let mut left_msgs = u64::from(self.cfg.sync_stream_max_messages);
        let mut left_bytes = self.cfg.sync_stream_max_bytes as u64;
        let who = Syncer {
            user: &backlog.user,
            device: backlog.device.as_deref(),
        };
        let viewer = backlog.user.as_str();
        let mut stopped = false;
        let mut frame: Vec<MessageView> = Vec::new();
        let mut frame_len = 0usize;
        for p in &backlog.items {
            let mut pos = p.from;
            let mut head = p.head;
            let mut read: Option<i64> = None;
            'conv: while !stopped {
                while pos < head && !stopped {
                    let page_limit = STREAM_PAGE.min(u32::try_from(left_msgs).unwrap_or(u32::MAX));
                    if page_limit == 0 || cancel.is_cancelled() {
                        stopped = true;
                        break;
                    }
                    let page = match self
                        .unacked(who, &p.conversation_id, pos, head, page_limit)
                        .await
                    {
                        Ok(v) => v,
                        Err(e) => {
                            tracing::warn!(error = %e, "streaming a sync backlog failed");
                            stopped = true;
                            break;
                        }
                    };
                    let r = match read {
                        Some(r) => r,
                        None => match self.read_seq(&backlog.user, &p.conversation_id).await {
                            Ok(r) => *read.insert(r),
                            Err(e) => {
                                tracing::warn!(error = %e, "streaming a sync backlog failed");
                                stopped = true;
                                break;
                            }
                        },
                    };
                    let page_full = (page.len() as u64) >= u64::from(page_limit);
                    let page_end = page.last().map_or(head, |m| m.seq);
                    for m in page {
                        let seq = m.seq;
                        if gate.was_delivered(&m) {
                            pos = seq;
                            continue;
                        }
                        let v = Self::view(&backlog.user, r, m);
                        if v.is_read
                            || v.message.sender_id == backlog.user.as_str()
                            || v.message.revoked.is_some()
                        {
                            pos = seq;
                            continue;
                        }
                        let n = message_len(generation, Slot::BatchMsg, &v.message, false, viewer);
                        if left_bytes < n as u64 || left_msgs == 0 {
                            stopped = true;
                            break;
                        }
                        if frame_len + n > budget && !frame.is_empty() {
                            if !self
                                .send_frame(streams, tx, cancel, std::mem::take(&mut frame))
                                .await
                            {
                                stopped = true;
                                break;
                            }
                            frame_len = 0;
                        }
                        frame_len += n;
                        left_bytes -= n as u64;
                        left_msgs -= 1;
                        frame.push(v);
                        pos = seq;
                    }
                    if !stopped {
                        pos = if page_full { pos.max(page_end) } else { head };
                    }
                }
                if stopped {
                    // What was taken counts against the cap: send it.
                    if !frame.is_empty() {
                        let pending = std::mem::take(&mut frame);
                        self.send_frame(streams, tx, cancel, pending).await;
                    }
                    break 'conv;
                }
                // Queue what is pending before the gate opens for this
                // conversation: later pushes must come after it.
                if !frame.is_empty() {
                    if !self
                        .send_frame(streams, tx, cancel, std::mem::take(&mut frame))
                        .await
                    {
                        stopped = true;
                        break 'conv;
                    }
                    frame_len = 0;
                }
                match gate.finish(backlog.epoch, &p.conversation_id, pos) {
                    Some(held) => head = held,
                    None => break 'conv,
                }
            }
            if stopped {
                gate.release(backlog.epoch, &p.conversation_id, pos);
            }
        }
        if stopped {
            metrics::counter!(crate::metrics::SYNC_STREAMS_CUT).increment(1);
            // Give every conversation not finished back to live pushes.
            for p in &backlog.items {
                gate.release(backlog.epoch, &p.conversation_id, p.from);
            }
        }
    }

    /// Queues one BATCH_MSG frame, waiting for a stream slot and queue room.
    async fn send_frame(
        &self,
        streams: &SyncStreams,
        tx: &queue::Sender<Outbound>,
        cancel: &CancellationToken,
        messages: Vec<MessageView>,
    ) -> bool {
        let n = messages.len() as u64;
        // Remembered as delivered once queued: a BATCH_SYNC repeated before
        // the client read (and acknowledged) them does not send them again.
        let delivered: Vec<Arc<Event>> = messages
            .iter()
            .map(|v| Arc::new(Event::Message(Arc::new(v.message.clone()))))
            .collect();
        // `biased`: once a newer BATCH_SYNC cancelled this stream, nothing
        // more of it is queued, even when a slot or queue room is free (an
        // unbiased select took either branch at random, and the frame came
        // again from the new sync: twice on one connection, found by the
        // soak).
        let slot = tokio::select! {
            biased;
            () = cancel.cancelled() => return false,
            s = Arc::clone(&streams.slots).acquire_owned() => match s {
                Ok(s) => s,
                Err(_) => return false,
            },
        };
        let frame = Outbound::Batch(Box::new(BatchFrame {
            messages,
            _slot: Some(Arc::new(slot)),
        }));
        let sent = tokio::select! {
            biased;
            () = cancel.cancelled() => false,
            r = tx.send(frame) => r.is_ok(),
        };
        if sent {
            metrics::counter!(crate::metrics::SYNC_STREAMED_MESSAGES).increment(n);
            for e in &delivered {
                streams.gate.delivered(e);
            }
        }
        sent
    }

    /// v2 SYNC_RANGE: `start_seq..=end_seq` of one conversation, at most
    /// `count` (clamped) and one frame.
    pub async fn sync_range(
        &self,
        user: &UserId,
        request_id: String,
        conversation_id: String,
        start_seq: i64,
        end_seq: i64,
        count: i32,
    ) -> Reply {
        let fail = |code: ErrorCode, msg: &str, request_id: String, conversation_id: String| {
            Reply::SyncRange {
                code,
                msg: msg.to_owned(),
                request_id,
                conversation_id,
                messages: Vec::new(),
                start_seq,
                end_seq,
                has_more: false,
            }
        };
        let a = match access(&self.directory, user, &conversation_id).await {
            Ok(a) => a,
            Err(e) => {
                let (code, msg) = wire_error(&e);
                return fail(code, &msg, request_id, conversation_id);
            }
        };
        if start_seq < 1 || end_seq < start_seq {
            return fail(
                ErrorCode::InvalidParam,
                "need 1 <= start_seq <= end_seq",
                request_id,
                conversation_id,
            );
        }
        // A chat room serves only its newest messages.
        let floor = match crate::chatrooms::readable_floor(
            self.conversations.as_ref(),
            &a.conversation,
            self.rooms().config().history_messages,
        )
        .await
        {
            Ok(f) => f,
            Err(e) => {
                let (code, m) = store_code(&e);
                return fail(code, m, request_id, conversation_id);
            }
        };
        let limit = self.clamp_count(count);
        let msgs = match self
            .store
            .conversation_range(&conversation_id, start_seq.max(floor) - 1, end_seq, limit)
            .await
        {
            Ok(m) => m,
            Err(e) => {
                let (code, m) = store_code(&e);
                return fail(code, m, request_id, conversation_id);
            }
        };
        let read = match self.read_seq(user, &conversation_id).await {
            Ok(r) => r,
            Err(e) => {
                let (code, m) = store_code(&e);
                return fail(code, m, request_id, conversation_id);
            }
        };
        let fetched = msgs.len();
        let mut reply = Reply::SyncRange {
            code: ErrorCode::Success,
            msg: String::new(),
            request_id,
            conversation_id,
            messages: Vec::new(),
            start_seq,
            end_seq,
            has_more: true,
        };
        // `end_seq` in the reply only shrinks: sized with the request's.
        let mut used = reply_len(Generation::V2, &reply, user.as_str());
        let budget = frame_budget(self.cfg.sync_max_reply_bytes);
        let mut views = Vec::with_capacity(msgs.len());
        for m in msgs {
            let v = Self::view(user, read, m);
            let n = message_len(
                Generation::V2,
                Slot::SyncRange,
                &v.message,
                v.is_read,
                user.as_str(),
            );
            if used + n > budget {
                break;
            }
            used += n;
            views.push(v);
        }
        let cut = views.len() < fetched;
        let last = views.last().map_or(start_seq - 1, |v| v.message.seq);
        let has_more = (cut || fetched as u64 >= u64::from(limit)) && last < end_seq;
        if let Reply::SyncRange {
            messages,
            end_seq: e,
            has_more: h,
            ..
        } = &mut reply
        {
            *messages = views;
            *e = if has_more {
                last.max(start_seq - 1)
            } else {
                end_seq
            };
            *h = has_more;
        }
        reply
    }

    /// v1 socket sync: messages of the user's conversations after the
    /// per-user cursor (a store-wide position, see `MessageStore::inbox_after`),
    /// at most `limit` (clamped) and one frame.
    pub async fn sync_inbox(&self, user: &UserId, after: i64, up_to: i64, limit: i32) -> Reply {
        let limit = self.clamp_count(limit);
        let fail = |e: &StoreError| {
            let (code, m) = store_code(e);
            Reply::SyncInbox {
                code,
                msg: m.to_owned(),
                messages: Vec::new(),
                server_max_seq: 0,
                has_more: false,
            }
        };
        let head = match self.store.inbox_head(user).await {
            Ok(h) => h,
            Err(e) => return fail(&e),
        };
        let mut entries = match self.store.inbox_after(user, after.max(0), limit).await {
            Ok(v) => v,
            Err(e) => return fail(&e),
        };
        if up_to > 0 {
            entries.retain(|e| e.cursor <= up_to);
        }
        let stop = if up_to > 0 { up_to.min(head) } else { head };
        let bound = Reply::SyncInbox {
            code: ErrorCode::Success,
            msg: String::new(),
            messages: Vec::new(),
            server_max_seq: head.max(after),
            has_more: true,
        };
        let mut used = reply_len(Generation::V1, &bound, user.as_str());
        let budget = frame_budget(self.cfg.sync_max_reply_bytes);
        let mut last = after.max(0).min(head);
        let mut reads: HashMap<String, i64> = HashMap::new();
        let mut messages = Vec::with_capacity(entries.len());
        for e in entries {
            let read = match reads.get(&e.message.conversation_id) {
                Some(r) => *r,
                None => match self.read_seq(user, &e.message.conversation_id).await {
                    Ok(r) => {
                        reads.insert(e.message.conversation_id.clone(), r);
                        r
                    }
                    Err(err) => return fail(&err),
                },
            };
            let v = Self::view(user, read, e.message);
            let n = message_len(
                Generation::V1,
                Slot::SyncInbox,
                &v.message,
                v.is_read,
                user.as_str(),
            );
            if used + n > budget {
                break;
            }
            used += n;
            last = e.cursor;
            messages.push(v);
        }
        Reply::SyncInbox {
            code: ErrorCode::Success,
            msg: String::new(),
            messages,
            server_max_seq: last,
            has_more: last < stop,
        }
    }
}

fn sync_error(e: &StoreError, now: i64) -> Reply {
    let (code, m) = store_code(e);
    Reply::BatchSync {
        code,
        msg: m.to_owned(),
        conversations: Vec::new(),
        server_time: now,
        total: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use im_core::ConversationType;

    fn msg(conv: &str, seq: i64) -> StoredMessage {
        StoredMessage {
            server_msg_id: format!("s{seq}"),
            client_msg_id: format!("c{seq}"),
            conversation_id: conv.into(),
            conversation_type: ConversationType::Single,
            sender_id: "a".into(),
            receiver_id: "b".into(),
            group_id: String::new(),
            message_type: 1,
            content: bytes::Bytes::new(),
            send_time: 0,
            server_time: 0,
            seq,
            extra: String::new(),
            revoked: None,
        }
    }

    #[test]
    fn the_gate_holds_pushes_until_the_stream_passed_them() {
        let g = SyncGate::default();
        assert!(
            g.admit(&msg("c1", 5)),
            "inactive gate lets everything through"
        );
        let epoch = g.begin(["c1", "c2"].into_iter());
        assert!(!g.admit(&msg("c1", 7)));
        assert!(!g.admit(&msg("c1", 6)));
        assert!(g.admit(&msg("c3", 1)), "other conversations pass");
        // The stream reached 5 only: it must go on to the held 7.
        assert_eq!(g.finish(epoch, "c1", 5), Some(7));
        assert_eq!(g.finish(epoch, "c1", 7), None);
        assert!(!g.admit(&msg("c1", 7)), "streamed: not pushed again");
        assert!(g.admit(&msg("c1", 8)));
        // A stream of an earlier sync cannot open the gate of a later one.
        let later = g.begin(["c2"].into_iter());
        g.release(epoch, "c2", 0);
        assert_eq!(g.finish(epoch, "c2", 100), None);
        assert!(!g.admit(&msg("c2", 3)));
        g.release(later, "c2", 2);
        assert!(!g.admit(&msg("c2", 2)));
        assert!(g.admit(&msg("c2", 3)));
        g.reset();
        assert!(g.admit(&msg("c2", 1)));
    }

    #[test]
    fn ack_keys_need_a_token_id_and_differ_per_login_and_platform() {
        assert_eq!(ack_device("iOS", None), None);
        let a = ack_device("iOS", Some("j1")).unwrap();
        assert_eq!(a.len(), 33);
        assert_eq!(Some(a.clone()), ack_device("iOS", Some("j1")));
        assert_ne!(Some(a.clone()), ack_device("iOS", Some("j2")));
        assert_ne!(Some(a), ack_device("Android", Some("j1")));
    }

    #[test]
    fn the_frame_budget_never_exceeds_the_sdk_limit() {
        assert_eq!(frame_budget(768 * 1024), 768 * 1024 - FRAME_OVERHEAD_MAX);
        assert_eq!(frame_budget(4 << 20), SDK_MAX_PACKET - FRAME_OVERHEAD_MAX);
        assert_eq!(frame_budget(3), 0);
    }
}
