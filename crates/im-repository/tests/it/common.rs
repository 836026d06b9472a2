//! Fixtures: a store on a fresh file, message builders.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use im_core::model::NewMessage;
use im_core::{ConversationId, ConversationType, UserId};
use im_repository::{SqliteOptions, SqliteStore};
use tempfile::TempDir;

/// A store on a fresh database file; the directory lives as long as this.
pub struct TestDb {
    _dir: TempDir,
    pub store: SqliteStore,
}

pub fn options_in(dir: &TempDir) -> SqliteOptions {
    SqliteOptions {
        path: dir.path().join("data").join("im.db"),
        synchronous_full: true,
        read_pool_size: 2,
        busy_timeout: Duration::from_secs(10),
        migrate: true,
    }
}

pub async fn open() -> TestDb {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(options_in(&dir)).await.unwrap();
    TestDb { _dir: dir, store }
}

pub fn uid(s: &str) -> UserId {
    UserId::parse(s).unwrap()
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A fresh, unique server message id.
pub fn server_id() -> String {
    format!("srv-{}", NEXT_ID.fetch_add(1, Ordering::Relaxed))
}

/// A 1:1 message from `from` to `to` with client id `cid`.
pub fn single(from: &str, to: &str, cid: &str) -> NewMessage {
    let conv = ConversationId::single(&uid(from), &uid(to)).to_string();
    NewMessage {
        server_msg_id: server_id(),
        client_msg_id: cid.to_owned(),
        conversation_id: conv,
        conversation_type: ConversationType::Single,
        sender_id: uid(from),
        receiver_id: to.to_owned(),
        group_id: String::new(),
        message_type: 1,
        content: Bytes::from(format!("{from}->{to}:{cid}")),
        send_time: 1_000,
        server_time: 2_000,
        extra: "{}".to_owned(),
        participants: vec![uid(from), uid(to)],
    }
}

/// A group message from `from` to the members of `gid`.
pub fn group(gid: &str, from: &str, members: &[&str], cid: &str) -> NewMessage {
    NewMessage {
        server_msg_id: server_id(),
        client_msg_id: cid.to_owned(),
        conversation_id: format!("group_{gid}"),
        conversation_type: ConversationType::Group,
        sender_id: uid(from),
        receiver_id: String::new(),
        group_id: gid.to_owned(),
        message_type: 1,
        content: Bytes::from(vec![0u8, 1, 2, 255]),
        send_time: 1_000,
        server_time: 2_000,
        extra: String::new(),
        participants: members.iter().map(|m| uid(m)).collect(),
    }
}
