//! Backend-neutral planning of one `append` batch.
//!
//! A backend runs the I/O in one transaction and asks the plan what to write:
//!
//! 1. [`lookup_keys`]: the distinct (sender, client_msg_id) pairs to look up;
//! 2. [`BatchPlan::new`] with what the lookup found: dedupe against the store
//!    and within the batch (first occurrence wins);
//! 3. advance the sync clock (`sync_clock`, one row) by
//!    [`BatchPlan::clock_demand`] -> [`BatchPlan::assign_positions`] with its new
//!    head;
//! 4. [`BatchPlan::counter_demand`] -> advance the conversation counters (in
//!    that sorted order: the lock order of multi-writer backends; the same
//!    upsert sets each conversation's `last_pos`) ->
//!    [`BatchPlan::assign_seqs`] with the new heads;
//! 5. [`BatchPlan::message_rows`] -> insert (with seq and pos);
//! 6. [`BatchPlan::membership_rows`] -> insert-or-ignore (1:1 only);
//! 7. commit, then [`BatchPlan::into_results`].
//!
//! Counters are advanced by the number of new messages and return the new
//! head `h`; the batch then owns `h - n + 1 ..= h`. This makes allocation one
//! statement per counter row, with no read-modify-write race on backends
//! whose update locks the row.
//!
//! Nothing is written per recipient: a group message to 100 members is one
//! message row, one conversation counter and the shared clock. A user's v1
//! sync reads the messages of their conversations by position instead
//! (`read::inbox_after`).
//!
//! # Why positions are in commit order
//!
//! A reader follows its cursor (`pos > after`) and must never skip a
//! position that commits later. The clock row is the first lock an append
//! takes and it is held from the allocation until commit. So while a
//! transaction holds positions `a ..= b`, no other transaction can allocate
//! any position: the next one waits for the lock, and on PostgreSQL (the
//! blocked `UPDATE` re-reads the row once the holder committed) and
//! MySQL/InnoDB (locks are released after the commit is visible) it gets
//! `b + 1 ..` only after `a ..= b` is visible. A rolled-back transaction
//! also rolls the clock back. At any moment the committed positions are
//! therefore every position up to some `p` (apart from the permanent holes
//! left by the migration's backfill), and a reader that has seen position
//! `q` sees everything committed at or below `q`. On SQLite there is one
//! writer at a time (`BEGIN IMMEDIATE`) and readers see whole commits.
//!
//! The clock is taken before the conversation rows (its positions go into
//! their `last_pos` in the same upsert), so the lock order is clock, then
//! conversations by id: acyclic, and the transactions that lock conversation
//! rows without appending (group creation and dismissal) never wait for the
//! clock. Appends are serialised by the clock from allocation to commit;
//! per-conversation seqs are still allocated under the conversation row.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use im_core::StoreError;
use im_core::model::{NewMessage, StoredMessage};
use im_core::ports::Appended;

use crate::models::{MembershipRow, NewMessageRow};

/// (sender_id, client_msg_id): the idempotency key of a send.
pub(crate) type ClientKey<'a> = (&'a str, &'a str);

/// The idempotency key of `m`.
pub(crate) fn client_key(m: &NewMessage) -> ClientKey<'_> {
    (m.sender_id.as_str(), m.client_msg_id.as_str())
}

/// The distinct idempotency keys of `batch`, in first-occurrence order.
pub(crate) fn lookup_keys(batch: &[NewMessage]) -> Vec<ClientKey<'_>> {
    let mut seen = BTreeSet::new();
    batch
        .iter()
        .map(client_key)
        .filter(|k| seen.insert(*k))
        .collect()
}

/// How one input of the batch resolves.
#[derive(Debug)]
enum Slot {
    /// Stored by this batch: index into `BatchPlan::new`.
    New(usize),
    /// Already in the store.
    Existing(Box<StoredMessage>),
    /// A later occurrence of the key first seen at this batch index.
    SameAs(usize),
}

/// How far one conversation counter must advance, with the times of the
/// batch's messages in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CounterDemand<'a> {
    pub conversation_id: &'a str,
    /// Type of the first new message of the conversation in the batch.
    pub conversation_type: i32,
    /// Number of new messages (> 0).
    pub count: i64,
    /// Smallest `server_time` of those messages.
    pub first_time: i64,
    /// Largest `server_time` of those messages.
    pub last_time: i64,
    /// Sync position of the last of those messages (the new `last_pos`).
    pub last_pos: i64,
}

/// The plan of one batch. See the module docs for the protocol.
#[derive(Debug)]
pub(crate) struct BatchPlan<'a> {
    batch: &'a [NewMessage],
    slots: Vec<Slot>,
    /// Batch indexes of the messages to store, in batch order.
    new: Vec<usize>,
    /// Sync positions of `new`, once assigned.
    positions: Vec<i64>,
    /// Seqs of `new`, once assigned.
    seqs: Vec<i64>,
}

fn missing(what: &str) -> StoreError {
    StoreError::Other(format!("append plan: {what}"))
}

/// The error when the `sync_clock` row is missing (its migration inserts it).
pub(crate) fn no_clock_row() -> StoreError {
    StoreError::Other("the sync_clock row is missing (migration 2025-12-01 not applied?)".into())
}

impl<'a> BatchPlan<'a> {
    /// Dedupes `batch` against `existing` (what the store holds for the keys
    /// of [`lookup_keys`]) and within itself.
    pub(crate) fn new(
        batch: &'a [NewMessage],
        mut existing: HashMap<(String, String), StoredMessage>,
    ) -> Self {
        let mut first: HashMap<ClientKey<'a>, usize> = HashMap::with_capacity(batch.len());
        let mut slots = Vec::with_capacity(batch.len());
        let mut new = Vec::with_capacity(batch.len());
        for (i, m) in batch.iter().enumerate() {
            let key = client_key(m);
            if let Some(&j) = first.get(&key) {
                slots.push(Slot::SameAs(j));
                continue;
            }
            first.insert(key, i);
            match existing.remove(&(key.0.to_owned(), key.1.to_owned())) {
                Some(orig) => slots.push(Slot::Existing(Box::new(orig))),
                None => {
                    slots.push(Slot::New(new.len()));
                    new.push(i);
                }
            }
        }
        Self {
            batch,
            slots,
            new,
            positions: Vec::new(),
            seqs: Vec::new(),
        }
    }

    /// Whether the batch stores anything (false: all duplicates, or empty).
    pub(crate) fn has_new(&self) -> bool {
        !self.new.is_empty()
    }

    /// Number of messages this batch stores.
    pub(crate) fn new_count(&self) -> usize {
        self.new.len()
    }

    /// How far the sync clock must advance: [`Self::new_count`] as a SQL value.
    pub(crate) fn clock_demand(&self) -> Result<i64, StoreError> {
        i64::try_from(self.new.len()).map_err(|_| missing("batch too large"))
    }

    fn new_messages(&self) -> impl Iterator<Item = &'a NewMessage> + '_ {
        let batch = self.batch;
        self.new.iter().filter_map(move |&i| batch.get(i))
    }

    /// Assigns the sync positions from the clock's new head (after advancing
    /// it by [`Self::clock_demand`]): `head - n + 1 ..= head`, in batch order.
    pub(crate) fn assign_positions(&mut self, head: i64) -> Result<(), StoreError> {
        let first = head - self.clock_demand()? + 1;
        if first < 1 {
            return Err(missing("sync clock head below the batch size"));
        }
        self.positions = (first..=head).collect();
        Ok(())
    }

    fn check_positions(&self) -> Result<(), StoreError> {
        if self.positions.len() == self.new.len() {
            Ok(())
        } else {
            Err(missing("positions not assigned"))
        }
    }

    /// The conversation counters to advance, sorted by conversation id
    /// (after [`Self::assign_positions`]).
    pub(crate) fn counter_demand(&self) -> Result<Vec<CounterDemand<'a>>, StoreError> {
        self.check_positions()?;
        let mut by_conv: BTreeMap<&'a str, CounterDemand<'a>> = BTreeMap::new();
        for (m, &pos) in self.new_messages().zip(self.positions.iter()) {
            by_conv
                .entry(m.conversation_id.as_str())
                .and_modify(|d| {
                    d.count += 1;
                    d.first_time = d.first_time.min(m.server_time);
                    d.last_time = d.last_time.max(m.server_time);
                    d.last_pos = d.last_pos.max(pos);
                })
                .or_insert(CounterDemand {
                    conversation_id: &m.conversation_id,
                    conversation_type: m.conversation_type.code(),
                    count: 1,
                    first_time: m.server_time,
                    last_time: m.server_time,
                    last_pos: pos,
                });
        }
        Ok(by_conv.into_values().collect())
    }

    /// Assigns seqs from the counters' new heads (conversation id -> max_seq
    /// after advancing by [`CounterDemand::count`]).
    pub(crate) fn assign_seqs(&mut self, heads: &HashMap<String, i64>) -> Result<(), StoreError> {
        let demand = self.counter_demand()?;
        // next seq to hand out per conversation
        let mut next: HashMap<&str, i64> = HashMap::with_capacity(demand.len());
        for d in &demand {
            let head = heads
                .get(d.conversation_id)
                .ok_or_else(|| missing("conversation counter not returned"))?;
            next.insert(d.conversation_id, head - d.count + 1);
        }
        let mut seqs = Vec::with_capacity(self.new.len());
        for m in self.new_messages() {
            let n = next
                .get_mut(m.conversation_id.as_str())
                .ok_or_else(|| missing("conversation without demand"))?;
            seqs.push(*n);
            *n += 1;
        }
        self.seqs = seqs;
        Ok(())
    }

    fn check_seqs(&self) -> Result<(), StoreError> {
        if self.seqs.len() == self.new.len() {
            Ok(())
        } else {
            Err(missing("seqs not assigned"))
        }
    }

    /// The rows to insert into `messages` (after [`Self::assign_seqs`]).
    pub(crate) fn message_rows(&self) -> Result<Vec<NewMessageRow<'a>>, StoreError> {
        self.check_positions()?;
        self.check_seqs()?;
        Ok(self
            .new_messages()
            .zip(self.seqs.iter().zip(self.positions.iter()))
            .map(|(m, (&seq, &pos))| NewMessageRow::new(m, seq, pos))
            .collect())
    }

    /// Distinct participants of a message, in their given order.
    fn participants(m: &'a NewMessage) -> impl Iterator<Item = &'a str> {
        let mut seen = BTreeSet::new();
        m.participants
            .iter()
            .map(|p| p.as_str())
            .filter(move |p| seen.insert(*p))
    }

    /// One membership row per distinct (participant, conversation), sorted.
    pub(crate) fn membership_rows(&self) -> Vec<MembershipRow<'a>> {
        let mut pairs: BTreeMap<(&'a str, &'a str), i64> = BTreeMap::new();
        // Group conversation membership is owned by the GroupStore (added
        // and removed with the members); re-inserting it here could bring a
        // member kicked concurrently with a send back into the conversation.
        for m in self
            .new_messages()
            .filter(|m| m.conversation_type != im_core::ConversationType::Group)
        {
            for p in Self::participants(m) {
                pairs
                    .entry((p, m.conversation_id.as_str()))
                    .or_insert(m.server_time);
            }
        }
        pairs
            .into_iter()
            .map(|((user_id, conversation_id), at)| MembershipRow {
                user_id,
                conversation_id,
                created_at: at,
                updated_at: at,
            })
            .collect()
    }

    /// One result per input, in input order (after commit).
    pub(crate) fn into_results(self) -> Result<Vec<Appended>, StoreError> {
        if self.has_new() {
            self.check_seqs()?;
        }
        let batch = self.batch;
        let new = self.new;
        let seqs = self.seqs;
        let stored_new = |k: usize| -> Result<StoredMessage, StoreError> {
            let m = new
                .get(k)
                .and_then(|&i| batch.get(i))
                .ok_or_else(|| missing("new index out of range"))?;
            let seq = *seqs.get(k).ok_or_else(|| missing("seq out of range"))?;
            Ok(StoredMessage::from_new(m, seq))
        };
        let mut out: Vec<Appended> = Vec::with_capacity(self.slots.len());
        for slot in self.slots {
            let appended = match slot {
                Slot::New(k) => Appended {
                    message: stored_new(k)?,
                    duplicate: false,
                },
                Slot::Existing(message) => Appended {
                    message: *message,
                    duplicate: true,
                },
                // `j` < current index and is a first occurrence, so it is
                // already in `out`.
                Slot::SameAs(j) => Appended {
                    message: out
                        .get(j)
                        .map(|a| a.message.clone())
                        .ok_or_else(|| missing("duplicate of an unknown index"))?,
                    duplicate: true,
                },
            };
            out.push(appended);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use im_core::{ConversationType, UserId};

    use super::*;

    fn msg(sender: &str, cid: &str, conv: &str, participants: &[&str], t: i64) -> NewMessage {
        NewMessage {
            server_msg_id: format!("srv-{sender}-{cid}"),
            client_msg_id: cid.into(),
            conversation_id: conv.into(),
            conversation_type: ConversationType::Single,
            sender_id: UserId::parse(sender).unwrap(),
            receiver_id: String::new(),
            group_id: String::new(),
            message_type: 1,
            content: Bytes::from_static(b"x"),
            send_time: t,
            server_time: t,
            extra: String::new(),
            participants: participants
                .iter()
                .map(|p| UserId::parse(*p).unwrap())
                .collect(),
        }
    }

    #[test]
    fn lookup_keys_are_distinct_in_order() {
        let b = vec![
            msg("a", "1", "c", &[], 0),
            msg("b", "1", "c", &[], 0),
            msg("a", "1", "c", &[], 0),
            msg("a", "2", "c", &[], 0),
        ];
        assert_eq!(lookup_keys(&b), vec![("a", "1"), ("b", "1"), ("a", "2")]);
    }

    #[test]
    fn full_plan() {
        let b = vec![
            msg("a", "1", "single_a_b", &["a", "b"], 10),
            msg("b", "1", "single_a_b", &["b", "a", "b"], 11),
            msg("a", "1", "single_a_b", &["a", "b"], 12), // dup of #0
            msg("a", "2", "group_g", &["a", "b", "c"], 13),
            msg("c", "old", "group_g", &["c"], 14), // dup of store
            msg("a", "3", "single_a_b", &["a", "b"], 15),
        ];
        let mut original = StoredMessage::from_new(b.get(4).unwrap(), 7);
        original.server_msg_id = "orig".into();
        let existing = HashMap::from([(("c".to_owned(), "old".to_owned()), original.clone())]);
        let mut plan = BatchPlan::new(&b, existing);
        assert_eq!(plan.new_count(), 4);

        // demand needs the positions first
        assert!(plan.counter_demand().is_err());
        assert!(
            plan.assign_positions(3).is_err(),
            "head below the batch size"
        );
        // the clock was at 96: the batch owns 97..=100
        plan.assign_positions(100).unwrap();
        let demand = plan.counter_demand().unwrap();
        assert_eq!(
            demand,
            vec![
                CounterDemand {
                    conversation_id: "group_g",
                    conversation_type: 1,
                    count: 1,
                    first_time: 13,
                    last_time: 13,
                    last_pos: 99,
                },
                CounterDemand {
                    conversation_id: "single_a_b",
                    conversation_type: 1,
                    count: 3,
                    first_time: 10,
                    last_time: 15,
                    last_pos: 100,
                },
            ]
        );
        // single_a_b had max 5 -> now 8; group_g is new -> 1
        plan.assign_seqs(&HashMap::from([
            ("single_a_b".to_owned(), 8),
            ("group_g".to_owned(), 1),
        ]))
        .unwrap();
        let rows = plan.message_rows().unwrap();
        assert_eq!(
            rows.iter().map(|r| (r.seq, r.pos)).collect::<Vec<_>>(),
            vec![(6, 97), (7, 98), (1, 99), (8, 100)]
        );

        let members = plan.membership_rows();
        assert_eq!(
            members
                .iter()
                .map(|m| (m.user_id, m.conversation_id, m.created_at))
                .collect::<Vec<_>>(),
            vec![
                ("a", "group_g", 13),
                ("a", "single_a_b", 10),
                ("b", "group_g", 13),
                ("b", "single_a_b", 10),
                ("c", "group_g", 13),
            ]
        );

        let res = plan.into_results().unwrap();
        let summary: Vec<(i64, bool)> = res.iter().map(|a| (a.message.seq, a.duplicate)).collect();
        assert_eq!(
            summary,
            vec![
                (6, false),
                (7, false),
                (6, true),
                (1, false),
                (7, true),
                (8, false)
            ]
        );
        assert_eq!(res.get(2).unwrap().message, res.first().unwrap().message);
        assert_eq!(res.get(4).unwrap().message, original);
    }

    #[test]
    fn in_batch_duplicate_of_stored_message_returns_original() {
        let b = vec![msg("a", "1", "c", &["a"], 0), msg("a", "1", "c", &["a"], 0)];
        let orig = StoredMessage::from_new(b.first().unwrap(), 3);
        let plan = BatchPlan::new(
            &b,
            HashMap::from([(("a".to_owned(), "1".to_owned()), orig.clone())]),
        );
        assert!(!plan.has_new());
        let res = plan.into_results().unwrap();
        assert!(res.iter().all(|a| a.duplicate && a.message == orig));
    }

    #[test]
    fn missing_head_is_an_error() {
        let b = vec![msg("a", "1", "c", &["a"], 0)];
        let mut plan = BatchPlan::new(&b, HashMap::new());
        assert!(plan.assign_seqs(&HashMap::new()).is_err());
        assert!(plan.message_rows().is_err());
        plan.assign_positions(1).unwrap();
        assert!(plan.assign_seqs(&HashMap::new()).is_err());
        assert!(plan.message_rows().is_err());
        assert!(plan.into_results().is_err());
    }
}
