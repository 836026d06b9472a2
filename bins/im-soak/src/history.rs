//! What the clients saw, recorded as it happens: every send attempt and its
//! outcome, every message a device received (by push, by each kind of sync,
//! by the final full read), group membership changes, recalls, read
//! receipts, the final conversation lists and the faults injected.
//!
//! Times are milliseconds since the start of the run on one monotonic
//! clock; every process runs on this machine, so a client's "before" and
//! "after" bracket what the server did in between.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

use serde::Serialize;

/// Milliseconds since the start of the run.
pub type Ms = u64;

/// A message's identity: the sender's client id is unique per sender and
/// the one thing every generation shows of it (v1 shows its own messages
/// by client id, everybody else's by server id).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Key {
    pub conv: String,
    pub sender: String,
    pub cid: String,
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.conv, self.sender, self.cid)
    }
}

/// How one send attempt ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Outcome {
    Acked {
        smid: String,
        seq: i64,
    },
    /// A reply with a non-zero code.
    Refused {
        code: i32,
        msg: String,
    },
    /// No reply within the client's timeout (the server may have stored it).
    NoReply,
    /// The connection failed before a reply (the server may have stored it).
    Lost(String),
}

#[derive(Debug, Clone, Serialize)]
pub struct Attempt {
    pub start: Ms,
    pub end: Ms,
    pub outcome: Outcome,
}

/// One message a device sent, with every attempt (same client id).
#[derive(Debug, Clone, Serialize)]
pub struct SendRec {
    pub key: Key,
    pub device: usize,
    pub content: String,
    pub send_time: i64,
    pub attempts: Vec<Attempt>,
}

impl SendRec {
    /// The first acknowledgement, if any.
    pub fn acked(&self) -> Option<(&str, i64, Ms)> {
        self.attempts.iter().find_map(|a| match &a.outcome {
            Outcome::Acked { smid, seq } => Some((smid.as_str(), *seq, a.end)),
            _ => None,
        })
    }

    pub fn first_start(&self) -> Ms {
        self.attempts.first().map_or(0, |a| a.start)
    }
}

/// How a device received a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Via {
    /// Its own send's acknowledgement.
    Own,
    /// PUSH_MSG, or an element of BATCH_MSG.
    Push,
    BatchSync,
    SyncRange,
    /// v1 SYNC_REQ on the socket.
    SyncInbox,
    /// `POST /api/v1/messages/sync`.
    HttpSync,
}

/// A message as a device holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Holding {
    pub seq: i64,
    /// The server id, when the device was shown it (v1 shows its own
    /// messages by client id only).
    pub smid: Option<String>,
    pub content: String,
    pub send_time: i64,
    pub revoked: bool,
    pub first_at: Ms,
    pub first_via: Via,
}

/// One observation of a message by a device.
#[derive(Debug, Clone, Serialize)]
pub struct Seen {
    pub key: Key,
    pub seq: i64,
    pub smid: Option<String>,
    pub content: String,
    pub send_time: i64,
    pub revoked: bool,
}

/// A group membership change, requested over HTTP.
#[derive(Debug, Clone, Serialize)]
pub struct MemberOp {
    pub group: String,
    pub user: String,
    pub op: MemberChange,
    pub start: Ms,
    pub end: Ms,
    /// `Some(true)`: done, `Some(false)`: refused (no effect), `None`: no
    /// answer (may or may not have happened).
    pub ok: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum MemberChange {
    /// Added when the group was created.
    Create,
    Join,
    Leave,
    Kick,
}

impl MemberChange {
    pub fn adds(self) -> bool {
        matches!(self, Self::Create | Self::Join)
    }
}

/// A recall request.
#[derive(Debug, Clone, Serialize)]
pub struct RecallRec {
    pub key: Key,
    pub start: Ms,
    pub end: Ms,
    /// `Some(code)` of the reply (0 = done), `None` = no reply.
    pub code: Option<i32>,
}

/// A read receipt naming the message at `seq`.
#[derive(Debug, Clone, Serialize)]
pub struct ReceiptRec {
    pub user: String,
    pub conv: String,
    pub seq: i64,
    pub start: Ms,
    pub end: Ms,
    pub code: Option<i32>,
}

/// One entry of a user's final `GET /api/conversations`.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub user: String,
    pub conv: String,
    pub unread: i64,
    pub read_seq: i64,
    pub max_seq: i64,
}

/// A fault the nemesis injected.
#[derive(Debug, Clone, Serialize)]
pub struct FaultRec {
    pub kind: &'static str,
    pub target: String,
    pub start: Ms,
    pub end: Ms,
}

/// What one device holds, and what went wrong while it received.
#[derive(Debug, Default, Serialize)]
pub struct DeviceHist {
    pub user: String,
    pub name: String,
    /// Everything received during the run and the final catch-up sync.
    #[serde(serialize_with = "entries")]
    pub held: BTreeMap<Key, Holding>,
    /// The final full read of every conversation of the user.
    #[serde(serialize_with = "entries")]
    pub final_view: BTreeMap<Key, Holding>,
    /// Observations that contradict an earlier one of the same message.
    pub conflicts: Vec<String>,
    /// Messages pushed twice on one connection, with when.
    pub push_dups: Vec<(Key, String)>,
}

/// A map with structured keys as a JSON list of `[key, value]` pairs.
fn entries<S: serde::Serializer>(map: &BTreeMap<Key, Holding>, s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(map.iter())
}

/// Everything recorded in one run.
#[derive(Debug, Default, Serialize)]
pub struct History {
    pub sends: Vec<SendRec>,
    pub devices: Vec<DeviceHist>,
    pub members: Vec<MemberOp>,
    pub recalls: Vec<RecallRec>,
    pub receipts: Vec<ReceiptRec>,
    pub summaries: Vec<Summary>,
    pub faults: Vec<FaultRec>,
    /// Operations by name.
    pub ops: BTreeMap<String, u64>,
    /// Where each send is in `sends`.
    #[serde(skip)]
    pub(crate) send_index: HashMap<Key, usize>,
}

/// The shared recorder: one lock, held only to append.
pub struct Recorder {
    t0: Instant,
    inner: Mutex<History>,
}

impl Recorder {
    pub fn new(devices: Vec<(String, String)>) -> Self {
        let devices = devices
            .into_iter()
            .map(|(user, name)| DeviceHist {
                user,
                name,
                ..DeviceHist::default()
            })
            .collect();
        Self {
            t0: Instant::now(),
            inner: Mutex::new(History {
                devices,
                ..History::default()
            }),
        }
    }

    pub fn now(&self) -> Ms {
        u64::try_from(self.t0.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn with<R>(&self, f: impl FnOnce(&mut History) -> R) -> R {
        let mut h = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut h)
    }

    pub fn op(&self, name: &str) {
        self.with(|h| *h.ops.entry(name.to_owned()).or_default() += 1);
    }

    pub fn new_send(&self, rec: SendRec) {
        self.with(|h| {
            h.send_index.insert(rec.key.clone(), h.sends.len());
            h.sends.push(rec);
        });
    }

    pub fn attempt(&self, key: &Key, attempt: Attempt) {
        self.with(|h| {
            if let Some(&i) = h.send_index.get(key) {
                if let Some(s) = h.sends.get_mut(i) {
                    s.attempts.push(attempt);
                }
            }
        });
    }

    /// Records that `device` received `seen` (merging with what it holds).
    pub fn seen(&self, device: usize, seen: Seen, via: Via, final_read: bool) {
        let at = self.now();
        self.with(|h| {
            let Some(d) = h.devices.get_mut(device) else {
                return;
            };
            let map = if final_read {
                &mut d.final_view
            } else {
                &mut d.held
            };
            match map.get_mut(&seen.key) {
                None => {
                    map.insert(
                        seen.key.clone(),
                        Holding {
                            seq: seen.seq,
                            smid: seen.smid,
                            content: seen.content,
                            send_time: seen.send_time,
                            revoked: seen.revoked,
                            first_at: at,
                            first_via: via,
                        },
                    );
                }
                Some(held) => {
                    let mut diff = Vec::new();
                    if held.seq != seen.seq {
                        diff.push(format!("seq {} then {}", held.seq, seen.seq));
                    }
                    if held.content != seen.content {
                        diff.push("content differs".to_owned());
                    }
                    if held.send_time != seen.send_time {
                        diff.push(format!(
                            "send_time {} then {}",
                            held.send_time, seen.send_time
                        ));
                    }
                    match (&held.smid, &seen.smid) {
                        (Some(a), Some(b)) if a != b => {
                            diff.push(format!("server id {a} then {b}"));
                        }
                        (None, Some(_)) => held.smid = seen.smid.clone(),
                        _ => {}
                    }
                    if !diff.is_empty() {
                        d.conflicts.push(format!(
                            "{} ({:?} then {via:?}): {}",
                            seen.key,
                            held.first_via,
                            diff.join(", ")
                        ));
                    }
                    held.revoked |= seen.revoked;
                }
            }
        });
    }

    /// A REVOKE_MSG_PUSH for a message the device may hold.
    pub fn revoked(&self, device: usize, conv: &str, smid: &str, cid: &str) {
        self.with(|h| {
            if let Some(d) = h.devices.get_mut(device) {
                for (k, held) in d.held.iter_mut() {
                    if k.conv == conv
                        && ((!cid.is_empty() && k.cid == cid)
                            || held.smid.as_deref() == Some(smid)
                            || k.cid == smid)
                    {
                        held.revoked = true;
                    }
                }
            }
        });
    }

    pub fn push_dup(&self, device: usize, key: Key, doing: &str) {
        let at = self.now();
        self.with(|h| {
            if let Some(d) = h.devices.get_mut(device) {
                let first = d
                    .held
                    .get(&key)
                    .map(|x| format!("first {:?} at {} ms", x.first_via, x.first_at))
                    .unwrap_or_default();
                d.push_dups
                    .push((key, format!("{first}, again at {at} ms while {doing}")));
            }
        });
    }

    pub fn member(&self, op: MemberOp) {
        self.with(|h| h.members.push(op));
    }

    pub fn recall(&self, r: RecallRec) {
        self.with(|h| h.recalls.push(r));
    }

    pub fn receipt(&self, r: ReceiptRec) {
        self.with(|h| h.receipts.push(r));
    }

    pub fn summary(&self, s: Summary) {
        self.with(|h| h.summaries.push(s));
    }

    pub fn fault(&self, f: FaultRec) {
        self.with(|h| h.faults.push(f));
    }

    pub fn into_history(self) -> History {
        self.inner.into_inner().unwrap_or_else(|p| p.into_inner())
    }
}

/// Writes the history as JSON files into `dir` (one per part, so a large
/// run can be read piecemeal).
pub fn dump(h: &History, dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let put = |name: &str, v: &dyn erased::Json| -> anyhow::Result<()> {
        let mut w = BufWriter::new(File::create(dir.join(name))?);
        v.write(&mut w)?;
        w.flush()?;
        Ok(())
    };
    put("sends.json", &h.sends)?;
    put("members.json", &h.members)?;
    put("recalls.json", &h.recalls)?;
    put("receipts.json", &h.receipts)?;
    put("summaries.json", &h.summaries)?;
    put("faults.json", &h.faults)?;
    put("ops.json", &h.ops)?;
    for (i, d) in h.devices.iter().enumerate() {
        put(&format!("device-{i:03}-{}.json", d.name), d)?;
    }
    Ok(())
}

mod erased {
    use std::io::Write;

    /// Serialize without naming the type (for the list in `dump`).
    pub trait Json {
        fn write(&self, w: &mut dyn Write) -> anyhow::Result<()>;
    }

    impl<T: serde::Serialize> Json for T {
        fn write(&self, w: &mut dyn Write) -> anyhow::Result<()> {
            serde_json::to_writer_pretty(w, self)?;
            Ok(())
        }
    }
}
