//! Client helpers of the multi-node tests: authenticating, sending, waiting
//! for pushes, syncing, presence queries.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use im_client::Client;
use im_core::command::{Event, Reply, Request, SendRequest, SyncState, UserStatus};
use im_core::{ErrorCode, StoredMessage};

use crate::harness::Cluster;

/// How long a client waits for something that should arrive.
pub(crate) const WAIT: Duration = Duration::from_secs(5);
/// How long we watch to be sure something does NOT arrive.
pub(crate) const QUIET: Duration = Duration::from_millis(500);

pub(crate) fn assert_auth_ok(r: Reply) {
    assert!(
        matches!(
            r,
            Reply::Auth {
                code: ErrorCode::Success,
                ..
            }
        ),
        "auth failed: {r:?}"
    );
}

/// (server id, seq) of a successful send.
fn sent_ok(r: &Reply) -> (String, i64) {
    match r {
        Reply::Send {
            code: ErrorCode::Success,
            server_msg_id,
            seq,
            ..
        } => (server_msg_id.clone(), *seq),
        other => panic!("send failed: {other:?}"),
    }
}

/// `single_<a>_<b>` with the ids in order.
pub(crate) fn conv(a: &str, b: &str) -> String {
    if a < b {
        format!("single_{a}_{b}")
    } else {
        format!("single_{b}_{a}")
    }
}

pub(crate) fn text_req(cid: &str, conversation: &str) -> Request {
    Request::Send(SendRequest {
        client_msg_id: cid.to_owned(),
        conversation_id: conversation.to_owned(),
        message_type: 1,
        content: bytes::Bytes::from(cid.to_owned()),
        ..SendRequest::default()
    })
}

/// Sends a text whose content is its client id; (server id, seq).
pub(crate) async fn send(c: &mut Client, conversation: &str, cid: &str) -> (String, i64) {
    sent_ok(&c.request(text_req(cid, conversation)).await.unwrap())
}

/// The first event matching `pred` within `within` (others are skipped).
pub(crate) async fn next_matching(
    c: &mut Client,
    within: Duration,
    pred: impl Fn(&Event) -> bool,
) -> Option<Event> {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        match c.next_event(left).await {
            Ok(Some(e)) if pred(&e) => return Some(e),
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => return None,
        }
    }
}

/// The next pushed message within `WAIT`.
pub(crate) async fn next_message(c: &mut Client) -> Option<Arc<StoredMessage>> {
    match next_matching(c, WAIT, |e| matches!(e, Event::Message(_))).await? {
        Event::Message(m) => Some(m),
        _ => unreachable!(),
    }
}

/// Every message pushed to `c` until it is quiet for `QUIET` (or closed).
pub(crate) async fn drain_messages(c: &mut Client) -> Vec<Arc<StoredMessage>> {
    let mut out = Vec::new();
    while let Ok(Some(e)) = c.next_event(QUIET).await {
        if let Event::Message(m) = e {
            out.push(m);
        }
    }
    out
}

/// Asserts that no message is pushed to `c` within `QUIET`.
pub(crate) async fn assert_no_message(c: &mut Client, who: &str) {
    let extra = drain_messages(c).await;
    assert!(
        extra.is_empty(),
        "{who} got unexpected (duplicate?) pushes: {:?}",
        extra
            .iter()
            .map(|m| (&m.client_msg_id, m.seq))
            .collect::<Vec<_>>()
    );
}

/// The messages of `conversation` after `cursor`, by v2 BATCH_SYNC pages.
pub(crate) async fn batch_sync_after(
    c: &mut Client,
    conversation: &str,
    mut cursor: i64,
) -> Vec<StoredMessage> {
    let mut out = Vec::new();
    loop {
        let r = c
            .request(Request::BatchSync {
                states: vec![SyncState {
                    conversation_id: conversation.to_owned(),
                    last_seq: cursor,
                }],
                max_per_conversation: 50,
            })
            .await
            .unwrap();
        let Reply::BatchSync {
            code: ErrorCode::Success,
            conversations,
            ..
        } = r
        else {
            panic!("batch sync failed: {r:?}")
        };
        let Some(batch) = conversations
            .into_iter()
            .find(|b| b.conversation_id == conversation)
        else {
            return out;
        };
        out.extend(batch.messages.into_iter().map(|m| m.message));
        cursor = batch.max_seq;
        if !batch.has_more {
            return out;
        }
    }
}

/// Every message of `conversation`, by SYNC_RANGE pages.
pub(crate) async fn all_messages(c: &mut Client, conversation: &str) -> Vec<StoredMessage> {
    let mut out = Vec::new();
    let mut start = 1;
    loop {
        let r = c
            .request(Request::SyncRange {
                request_id: format!("r{start}"),
                conversation_id: conversation.to_owned(),
                start_seq: start,
                end_seq: i64::from(i32::MAX),
                count: 200,
            })
            .await
            .unwrap();
        let Reply::SyncRange {
            code: ErrorCode::Success,
            messages,
            ..
        } = r
        else {
            panic!("range sync failed: {r:?}")
        };
        let Some(last) = messages.last() else {
            return out;
        };
        start = last.message.seq + 1;
        out.extend(messages.into_iter().map(|m| m.message));
    }
}

/// The highest seq `n` such that seqs 1..=n were all seen: where a client
/// that detects gaps resumes its sync.
pub(crate) fn contiguous_cursor(seqs: impl IntoIterator<Item = i64>) -> i64 {
    let seen: HashSet<i64> = seqs.into_iter().collect();
    let mut n = 0;
    while seen.contains(&(n + 1)) {
        n += 1;
    }
    n
}

/// Presence of `user` as node-local ONLINE_STATUS_REQ answers it (this also
/// subscribes `c` to `user`).
pub(crate) async fn status_of(c: &mut Client, user: &str) -> UserStatus {
    let r = c
        .request(Request::OnlineStatus {
            user_ids: vec![user.to_owned()],
        })
        .await
        .unwrap();
    let Reply::OnlineStatus {
        code: ErrorCode::Success,
        mut statuses,
        ..
    } = r
    else {
        panic!("status query failed: {r:?}")
    };
    assert_eq!(statuses.len(), 1, "{statuses:?}");
    statuses.remove(0)
}

/// Polls ONLINE_STATUS_REQ until `user` is `online` (true) or offline
/// (false); the last status seen, and whether it matched before `within`.
pub(crate) async fn poll_status(
    c: &mut Client,
    user: &str,
    online: bool,
    within: Duration,
) -> (bool, UserStatus) {
    let deadline = Instant::now() + within;
    loop {
        let st = status_of(c, user).await;
        if st.online == online {
            return (true, st);
        }
        if Instant::now() >= deadline {
            return (false, st);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub(crate) async fn create_group(
    c: &Cluster,
    node: usize,
    owner: &str,
    members: &[&str],
) -> String {
    let body = serde_json::json!({
        "groupName": "team", "faceURL": "", "introduction": "", "memberUserIDs": members,
    });
    let (status, v) = c
        .api(node, Some(owner), "POST", "/api/group/create", &body)
        .await;
    assert_eq!(status, 200, "{v}");
    v["data"]["groupID"].as_str().unwrap().to_owned()
}
