//! The checker: given the recorded [`History`] of a quiesced run (every
//! device did its catch-up sync and a full read of its conversations), lists
//! every violation of what the server promises.
//!
//! 1. Every acknowledged message is stored exactly once, with the seq and
//!    server id of its acknowledgement; every acknowledgement of one client
//!    id (retries included) names the same message; nothing refused is
//!    stored; nothing is stored that nobody sent.
//! 2. Per conversation the stored seqs are 1..=head without a hole, each
//!    seq names one message for everyone, and content and send time are
//!    what the sender sent.
//! 3. Every device of a user who was a member from before a message was
//!    sent to the end holds it (push or sync during the run, or the
//!    catch-up sync); no device holds a message of a conversation its user
//!    was never a member of while it was sent or received; no message is
//!    pushed twice on one connection.
//! 4. A recalled message shows as recalled in every final read; all final
//!    reads agree on every message's recall state.
//! 5. `/api/conversations`: the head is the stored head, the read position
//!    covers every acknowledged receipt, and the unread count is what the
//!    stored messages after it imply.
//! 6. A group send is acknowledged only for a possible member and refused
//!    as "not a member" only for a non-member.
//!
//! Membership is known only up to the HTTP request's window: a user is
//! *possibly* a member from the start of an add to the end of a removal,
//! and *surely* one from the end of an add to the start of a removal.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use im_core::ErrorCode;
use serde::Serialize;

use crate::history::{History, Holding, Key, Ms, Outcome, SendRec};

/// One broken promise, with the messages it is about.
#[derive(Debug, Clone, Serialize)]
pub struct Violation {
    pub kind: &'static str,
    pub detail: String,
    pub keys: Vec<Key>,
}

const FOREVER: Ms = Ms::MAX;

/// Membership windows of one user in one group.
#[derive(Debug, Default)]
struct Windows {
    /// `[start of add, end of removal]`.
    possible: Vec<(Ms, Ms)>,
    /// `[end of add, start of removal)`.
    sure: Vec<(Ms, Ms)>,
}

impl Windows {
    fn possibly(&self, from: Ms, to: Ms) -> bool {
        self.possible.iter().any(|&(s, e)| s <= to && from <= e)
    }

    /// Surely a member during all of `from..=to`.
    fn surely(&self, from: Ms, to: Ms) -> bool {
        self.sure.iter().any(|&(s, e)| s <= from && to < e)
    }
}

/// `lag`: how long after its HTTP answer a membership change may take to
/// reach the other nodes (their caches learn it from a bus broadcast).
fn windows(h: &History, lag: Ms) -> HashMap<(String, String), Windows> {
    let mut ops: HashMap<(String, String), Vec<_>> = HashMap::new();
    for op in &h.members {
        ops.entry((op.group.clone(), op.user.clone()))
            .or_default()
            .push(op);
    }
    let mut out = HashMap::new();
    for (k, mut list) in ops {
        list.sort_by_key(|o| o.start);
        let mut w = Windows::default();
        let (mut possible_since, mut sure_since): (Option<Ms>, Option<Ms>) = (None, None);
        for op in list {
            if op.ok == Some(false) {
                continue;
            }
            if op.op.adds() {
                possible_since.get_or_insert(op.start);
                if op.ok == Some(true) {
                    sure_since.get_or_insert(op.end.saturating_add(lag));
                }
            } else {
                if let Some(s) = sure_since.take() {
                    w.sure.push((s, op.start));
                }
                if op.ok == Some(true) {
                    if let Some(s) = possible_since.take() {
                        w.possible.push((s, op.end.saturating_add(lag)));
                    }
                }
            }
        }
        if let Some(s) = possible_since {
            w.possible.push((s, FOREVER));
        }
        if let Some(s) = sure_since {
            w.sure.push((s, FOREVER));
        }
        out.insert(k, w);
    }
    out
}

/// Who may see a conversation, by id.
enum Conv<'a> {
    Single(&'a str, &'a str),
    Group(&'a str),
}

fn parse_conv(conv: &str) -> Option<Conv<'_>> {
    if let Some(g) = conv.strip_prefix("group_") {
        return Some(Conv::Group(g));
    }
    let pair = conv.strip_prefix("single_")?;
    // User ids may contain '_': the soak's ids never do.
    let (a, b) = pair.split_once('_')?;
    Some(Conv::Single(a, b))
}

/// A message as stored, merged from every observation.
struct Stored<'a> {
    holding: &'a Holding,
}

/// Checks a quiesced run's history; `lag` is the membership propagation
/// bound between nodes (0 for one node).
pub fn check(h: &History, lag: Ms) -> Vec<Violation> {
    let mut out = Vec::new();
    let mut v = |kind: &'static str, detail: String, keys: Vec<Key>| {
        out.push(Violation { kind, detail, keys });
    };
    let members = windows(h, lag);
    let no_windows = Windows::default();
    let win = |group: &str, user: &str| {
        members
            .get(&(group.to_owned(), user.to_owned()))
            .unwrap_or(&no_windows)
    };

    // What each device saw contradicting itself, and pushes seen twice.
    for d in &h.devices {
        for c in &d.conflicts {
            v("observation-conflict", format!("{}: {c}", d.name), vec![]);
        }
        for (k, when) in &d.push_dups {
            v(
                "pushed-twice",
                format!("{} got {k} twice on one connection ({when})", d.name),
                vec![k.clone()],
            );
        }
    }

    // The stored state: every observation of every device, merged.
    let mut stored: BTreeMap<&Key, Stored<'_>> = BTreeMap::new();
    let mut by_seq: BTreeMap<(&str, i64), BTreeSet<&Key>> = BTreeMap::new();
    for d in &h.devices {
        for (k, held) in d.held.iter().chain(d.final_view.iter()) {
            by_seq.entry((&k.conv, held.seq)).or_default().insert(k);
            match stored.get(k) {
                None => {
                    stored.insert(k, Stored { holding: held });
                }
                Some(s) => {
                    let first = s.holding;
                    let smid_differs =
                        matches!((&first.smid, &held.smid), (Some(a), Some(b)) if a != b);
                    if first.seq != held.seq || first.content != held.content || smid_differs {
                        v(
                            "one-message-two-forms",
                            format!(
                                "{k}: seq {} / {}, server id {:?} / {:?} on different devices",
                                first.seq, held.seq, first.smid, held.smid
                            ),
                            vec![k.clone()],
                        );
                    }
                }
            }
        }
    }
    for ((conv, seq), keys) in &by_seq {
        if keys.len() > 1 {
            v(
                "seq-names-two-messages",
                format!("{conv} seq {seq}: {keys:?}"),
                keys.iter().map(|k| (*k).clone()).collect(),
            );
        }
    }
    // Gapless per conversation.
    let mut heads: BTreeMap<&str, i64> = BTreeMap::new();
    let mut seqs: BTreeMap<&str, BTreeSet<i64>> = BTreeMap::new();
    for (conv, seq) in by_seq.keys() {
        seqs.entry(conv).or_default().insert(*seq);
    }
    for (conv, set) in &seqs {
        let head = set.iter().next_back().copied().unwrap_or(0);
        heads.insert(conv, head);
        let missing: Vec<i64> = (1..=head).filter(|s| !set.contains(s)).collect();
        if !missing.is_empty() {
            v(
                "seq-gap",
                format!(
                    "{conv}: head {head}, no device saw seqs {:?}",
                    missing.get(..missing.len().min(20)).unwrap_or_default()
                ),
                vec![],
            );
        }
    }

    // Sends against what is stored.
    let sends: HashMap<&Key, &SendRec> = h.sends.iter().map(|s| (&s.key, s)).collect();
    for s in &h.sends {
        let acks: BTreeSet<(&str, i64)> = s
            .attempts
            .iter()
            .filter_map(|a| match &a.outcome {
                Outcome::Acked { smid, seq } => Some((smid.as_str(), *seq)),
                _ => None,
            })
            .collect();
        if acks.len() > 1 {
            v(
                "acked-twice-differently",
                format!("{}: acknowledgements {acks:?}", s.key),
                vec![s.key.clone()],
            );
        }
        let got = stored.get(&s.key).map(|st| st.holding);
        match (s.acked(), got) {
            (Some((smid, seq, _)), None) => v(
                "acked-but-lost",
                format!("{}: acked as seq {seq} ({smid}), no device has it", s.key),
                vec![s.key.clone()],
            ),
            (Some((smid, seq, _)), Some(held)) => {
                // A v1 acknowledgement carries no server id.
                let smid_differs =
                    !smid.is_empty() && held.smid.as_deref().is_some_and(|m| m != smid);
                if held.seq != seq || smid_differs {
                    v(
                        "stored-differs-from-ack",
                        format!(
                            "{}: acked seq {seq} {smid}, stored seq {} {:?}",
                            s.key, held.seq, held.smid
                        ),
                        vec![s.key.clone()],
                    );
                }
            }
            (None, Some(_)) => {
                if s.attempts
                    .iter()
                    .any(|a| matches!(a.outcome, Outcome::Refused { .. }))
                {
                    v(
                        "refused-but-stored",
                        format!("{}: refused, yet stored", s.key),
                        vec![s.key.clone()],
                    );
                }
            }
            (None, None) => {}
        }
        if let Some(held) = got {
            if held.content != s.content || held.send_time != s.send_time {
                v(
                    "content-corrupted",
                    format!(
                        "{}: sent {:?} at {}, stored {:?} at {}",
                        s.key, s.content, s.send_time, held.content, held.send_time
                    ),
                    vec![s.key.clone()],
                );
            }
        }
        // Group permission.
        if let Some(Conv::Group(g)) = parse_conv(&s.key.conv) {
            let w = win(g, &s.key.sender);
            if let Some((_, _, at)) = s.acked() {
                if !w.possibly(s.first_start(), at) {
                    v(
                        "non-member-send-accepted",
                        format!("{}: acked, sender never a member meanwhile", s.key),
                        vec![s.key.clone()],
                    );
                }
            }
            for a in &s.attempts {
                if let Outcome::Refused { code, .. } = &a.outcome {
                    if *code == ErrorCode::PermissionDenied as i32 && w.surely(a.start, a.end) {
                        v(
                            "member-send-refused",
                            format!("{}: refused as not a member while surely one", s.key),
                            vec![s.key.clone()],
                        );
                    }
                }
            }
        }
    }
    for k in stored.keys() {
        if !sends.contains_key(k) {
            v(
                "stored-unsent",
                format!("{k}: nobody sent it"),
                vec![(*k).clone()],
            );
        }
    }

    // Devices: what they must hold and what they must not.
    for d in &h.devices {
        for (k, held) in d.held.iter().chain(d.final_view.iter()) {
            let allowed = match parse_conv(&k.conv) {
                Some(Conv::Single(a, b)) => a == d.user || b == d.user,
                Some(Conv::Group(g)) => {
                    let sent_at = sends.get(k).map_or(0, |s| s.first_start());
                    let w = win(g, &d.user);
                    w.possible
                        .iter()
                        .any(|&(s, e)| s <= held.first_at && sent_at <= e)
                }
                None => false,
            };
            if !allowed {
                v(
                    "held-without-right",
                    format!("{} holds {k}, its user was not a member", d.name),
                    vec![k.clone()],
                );
            }
        }
        for (k, _) in stored.iter() {
            let Some(s) = sends.get(k) else { continue };
            let required = match parse_conv(&k.conv) {
                Some(Conv::Single(a, b)) => a == d.user || b == d.user,
                Some(Conv::Group(g)) => win(g, &d.user)
                    .sure
                    .iter()
                    .any(|&(st, e)| st <= s.first_start() && e == FOREVER),
                None => false,
            };
            if required && !d.held.contains_key(*k) {
                v(
                    "member-device-lacks",
                    format!("{} never got {k} (by push or sync)", d.name),
                    vec![(*k).clone()],
                );
            }
        }
    }

    // Recalls.
    let recalled: BTreeSet<&Key> = h
        .recalls
        .iter()
        .filter(|r| r.code == Some(0))
        .map(|r| &r.key)
        .collect();
    let mut revoked_state: BTreeMap<&Key, BTreeSet<bool>> = BTreeMap::new();
    for d in &h.devices {
        for (k, held) in &d.final_view {
            revoked_state.entry(k).or_default().insert(held.revoked);
            if recalled.contains(k) && !held.revoked {
                v(
                    "recall-not-shown",
                    format!("{}: {k} recalled, final read shows it", d.name),
                    vec![k.clone()],
                );
            }
        }
    }
    for (k, states) in &revoked_state {
        if states.len() > 1 && !recalled.contains(k) {
            v(
                "recall-state-differs",
                format!("{k}: recalled for some devices only"),
                vec![(*k).clone()],
            );
        }
    }

    // Conversation lists.
    let mut acked_reads: HashMap<(&str, &str), i64> = HashMap::new();
    for r in &h.receipts {
        if r.code == Some(0) {
            let e = acked_reads.entry((&r.user, &r.conv)).or_default();
            *e = (*e).max(r.seq);
        }
    }
    for s in &h.summaries {
        let head = heads.get(s.conv.as_str()).copied().unwrap_or(0);
        if s.max_seq != head {
            v(
                "list-head-differs",
                format!(
                    "{} sees {} at head {}, stored head {head}",
                    s.user, s.conv, s.max_seq
                ),
                vec![],
            );
        }
        let read_floor = acked_reads
            .get(&(s.user.as_str(), s.conv.as_str()))
            .copied()
            .unwrap_or(0);
        if s.read_seq < read_floor {
            v(
                "read-position-lost",
                format!(
                    "{} in {}: read position {} below an acknowledged receipt at {read_floor}",
                    s.user, s.conv, s.read_seq
                ),
                vec![],
            );
        }
        let revoked_final: BTreeSet<&Key> = revoked_state
            .iter()
            .filter(|(_, st)| st.contains(&true))
            .map(|(k, _)| *k)
            .collect();
        let expected = stored
            .iter()
            .filter(|(k, st)| {
                k.conv == s.conv
                    && k.sender != s.user
                    && st.holding.seq > s.read_seq
                    && !revoked_final.contains(*k)
                    && !recalled.contains(*k)
            })
            .count();
        if i64::try_from(expected).unwrap_or(i64::MAX) != s.unread {
            v(
                "unread-count-wrong",
                format!(
                    "{} in {}: unread {}, the stored messages after read position {} imply {expected}",
                    s.user, s.conv, s.unread, s.read_seq
                ),
                vec![],
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{Attempt, DeviceHist, MemberChange, MemberOp, RecallRec, Summary, Via};

    fn key(conv: &str, sender: &str, cid: &str) -> Key {
        Key {
            conv: conv.into(),
            sender: sender.into(),
            cid: cid.into(),
        }
    }

    fn holding(seq: i64, smid: &str, content: &str, at: Ms) -> Holding {
        Holding {
            seq,
            smid: Some(smid.into()),
            content: content.into(),
            send_time: 1,
            revoked: false,
            first_at: at,
            first_via: Via::Push,
        }
    }

    fn acked_send(k: &Key, smid: &str, seq: i64, start: Ms) -> SendRec {
        SendRec {
            key: k.clone(),
            device: 0,
            content: k.cid.clone(),
            send_time: 1,
            attempts: vec![Attempt {
                start,
                end: start + 5,
                outcome: Outcome::Acked {
                    smid: smid.into(),
                    seq,
                },
            }],
        }
    }

    fn device(user: &str, name: &str, held: &[(&Key, Holding)]) -> DeviceHist {
        let map: BTreeMap<Key, Holding> = held
            .iter()
            .map(|(k, h)| ((*k).clone(), h.clone()))
            .collect();
        DeviceHist {
            user: user.into(),
            name: name.into(),
            held: map.clone(),
            final_view: map,
            ..DeviceHist::default()
        }
    }

    /// alice and bob exchange two messages; both devices hold both.
    fn clean() -> History {
        let conv = "single_alice_bob";
        let k1 = key(conv, "alice", "a1");
        let k2 = key(conv, "bob", "b1");
        let held = [
            (&k1, holding(1, "s1", "a1", 20)),
            (&k2, holding(2, "s2", "b1", 30)),
        ];
        History {
            sends: vec![acked_send(&k1, "s1", 1, 10), acked_send(&k2, "s2", 2, 20)],
            devices: vec![
                device("alice", "alice-0", &held),
                device("bob", "bob-0", &held),
            ],
            summaries: vec![Summary {
                user: "alice".into(),
                conv: conv.into(),
                unread: 1,
                read_seq: 1,
                max_seq: 2,
            }],
            ..History::default()
        }
    }

    fn kinds(h: &History) -> Vec<&'static str> {
        check(h, 0).into_iter().map(|v| v.kind).collect()
    }

    #[test]
    fn a_clean_history_passes() {
        assert_eq!(kinds(&clean()), Vec::<&str>::new());
    }

    #[test]
    fn a_lost_acked_message_is_caught() {
        let mut h = clean();
        for d in &mut h.devices {
            d.held.retain(|k, _| k.cid != "b1");
            d.final_view.retain(|k, _| k.cid != "b1");
        }
        h.summaries.clear();
        assert_eq!(kinds(&h), vec!["acked-but-lost"]);
    }

    #[test]
    fn a_retry_stored_twice_is_caught() {
        let mut h = clean();
        // The retry of a1 got a new seq and id: two acknowledgements, and
        // a device sees seq 3 for the same message.
        h.sends[0].attempts.push(Attempt {
            start: 40,
            end: 45,
            outcome: Outcome::Acked {
                smid: "s3".into(),
                seq: 3,
            },
        });
        let k1 = h.sends[0].key.clone();
        h.devices[1]
            .final_view
            .insert(k1, holding(3, "s3", "a1", 50));
        let k = kinds(&h);
        assert!(k.contains(&"acked-twice-differently"), "{k:?}");
        assert!(k.contains(&"one-message-two-forms"), "{k:?}");
    }

    #[test]
    fn a_gap_and_a_shared_seq_are_caught() {
        let mut h = clean();
        let conv = "single_alice_bob";
        let k3 = key(conv, "bob", "b2");
        let k4 = key(conv, "alice", "a2");
        h.sends.push(acked_send(&k3, "s4", 4, 60));
        h.sends.push(acked_send(&k4, "s5", 4, 60));
        h.devices[0]
            .held
            .insert(k3.clone(), holding(4, "s4", "b2", 70));
        h.devices[0]
            .held
            .insert(k4.clone(), holding(4, "s5", "a2", 70));
        h.devices[1].held.insert(k3, holding(4, "s4", "b2", 70));
        h.devices[1].held.insert(k4, holding(4, "s5", "a2", 70));
        let k = kinds(&h);
        assert!(k.contains(&"seq-gap"), "{k:?}");
        assert!(k.contains(&"seq-names-two-messages"), "{k:?}");
    }

    #[test]
    fn a_device_missing_a_message_and_a_wrong_unread_count_are_caught() {
        let mut h = clean();
        h.devices[1].held.retain(|k, _| k.cid != "a1");
        h.summaries[0].unread = 2;
        let k = kinds(&h);
        assert!(k.contains(&"member-device-lacks"), "{k:?}");
        assert!(k.contains(&"unread-count-wrong"), "{k:?}");
    }

    fn group_history(kick_end: Ms) -> History {
        let conv = "group_g1";
        let k = key(conv, "alice", "a1");
        let member = |user: &str, op, start, end| MemberOp {
            group: "g1".into(),
            user: user.into(),
            op,
            start,
            end,
            ok: Some(true),
        };
        History {
            sends: vec![acked_send(&k, "s1", 1, 100)],
            devices: vec![
                device("alice", "alice-0", &[(&k, holding(1, "s1", "a1", 110))]),
                device("carol", "carol-0", &[(&k, holding(1, "s1", "a1", 120))]),
            ],
            members: vec![
                member("alice", MemberChange::Create, 0, 10),
                member("carol", MemberChange::Create, 0, 10),
                member("carol", MemberChange::Kick, 50, kick_end),
            ],
            ..History::default()
        }
    }

    #[test]
    fn a_kicked_member_holding_a_later_message_is_caught() {
        // Kicked by 60, the message was sent at 100 (caught in what it got
        // during the run and in its final read).
        assert_eq!(kinds(&group_history(60)), vec!["held-without-right"; 2]);
        // The kick's answer came after the send started: it may have raced.
        assert_eq!(kinds(&group_history(150)), Vec::<&str>::new());
        // With 50 ms for the kick to reach the other nodes, a send 40 ms
        // after its answer may still have been fanned out there.
        let h = group_history(60);
        assert!(check(&h, 50).is_empty());
        assert_eq!(check(&h, 30).len(), 2);
    }

    #[test]
    fn a_recall_missing_from_a_final_read_is_caught() {
        let mut h = clean();
        let k1 = h.sends[0].key.clone();
        h.recalls.push(RecallRec {
            key: k1.clone(),
            start: 60,
            end: 61,
            code: Some(0),
        });
        if let Some(held) = h.devices[0].final_view.get_mut(&k1) {
            held.revoked = true;
        }
        assert_eq!(kinds(&h), vec!["recall-not-shown"]);
    }

    #[test]
    fn a_refused_send_that_was_stored_is_caught() {
        let mut h = clean();
        h.sends[1].attempts = vec![Attempt {
            start: 20,
            end: 21,
            outcome: Outcome::Refused {
                code: ErrorCode::PermissionDenied as i32,
                msg: "no".into(),
            },
        }];
        assert_eq!(kinds(&h), vec!["refused-but-stored"]);
    }
}
