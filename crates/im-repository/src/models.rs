//! Row structs shared by every backend, and their conversions to and from the
//! im-core model.

use bytes::Bytes;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use im_core::model::{NewMessage, Revocation, StoredMessage};
use im_core::{ConversationType, StoreError};

use crate::schema::{messages, user_conversations};

/// A message as read back from `messages` (every column but the surrogate
/// `id` and the sync position `pos`, which only v1 sync reads).
#[derive(Debug, Clone, Queryable, QueryableByName, Selectable)]
#[diesel(table_name = messages)]
#[diesel(check_for_backend(diesel::sqlite::Sqlite, diesel::pg::Pg, diesel::mysql::Mysql))]
pub(crate) struct MessageRow {
    pub server_msg_id: String,
    pub client_msg_id: String,
    pub conversation_id: String,
    pub conversation_type: i32,
    pub sender_id: String,
    pub receiver_id: String,
    pub group_id: String,
    pub message_type: i32,
    pub content: Vec<u8>,
    pub send_time: i64,
    pub server_time: i64,
    pub seq: i64,
    pub extra: String,
    pub revoked_by: Option<String>,
    pub revoked_time: Option<i64>,
}

/// The columns of [`MessageRow`], in declaration order, for hand-written SQL.
pub(crate) const MESSAGE_COLUMNS: [&str; 15] = [
    "server_msg_id",
    "client_msg_id",
    "conversation_id",
    "conversation_type",
    "sender_id",
    "receiver_id",
    "group_id",
    "message_type",
    "content",
    "send_time",
    "server_time",
    "seq",
    "extra",
    "revoked_by",
    "revoked_time",
];

/// `alias.col AS col, ...` for every column of [`MessageRow`].
pub(crate) fn message_select_list(alias: &str) -> String {
    MESSAGE_COLUMNS
        .iter()
        .map(|c| format!("{alias}.{c} AS {c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl TryFrom<MessageRow> for StoredMessage {
    type Error = StoreError;

    fn try_from(r: MessageRow) -> Result<Self, StoreError> {
        let conversation_type =
            ConversationType::from_code(r.conversation_type).ok_or_else(|| {
                StoreError::Other(format!(
                    "message {} has unknown conversation_type {}",
                    r.server_msg_id, r.conversation_type
                ))
            })?;
        let revoked = r.revoked_by.map(|by| Revocation {
            by,
            time: r.revoked_time.unwrap_or(0),
        });
        Ok(StoredMessage {
            server_msg_id: r.server_msg_id,
            client_msg_id: r.client_msg_id,
            conversation_id: r.conversation_id,
            conversation_type,
            sender_id: r.sender_id,
            receiver_id: r.receiver_id,
            group_id: r.group_id,
            message_type: r.message_type,
            content: Bytes::from(r.content),
            send_time: r.send_time,
            server_time: r.server_time,
            seq: r.seq,
            extra: r.extra,
            revoked,
        })
    }
}

/// Converts rows read from the database, failing on the first bad one.
pub(crate) fn to_stored(rows: Vec<MessageRow>) -> Result<Vec<StoredMessage>, StoreError> {
    rows.into_iter().map(StoredMessage::try_from).collect()
}

/// A new message row, bound by the backends' hand-written multi-row
/// `INSERT`s. New messages are never revoked, so the nullable revocation
/// columns are left out. `pos` is the sync position.
#[derive(Debug, Clone)]
pub(crate) struct NewMessageRow<'a> {
    pub server_msg_id: &'a str,
    pub client_msg_id: &'a str,
    pub conversation_id: &'a str,
    pub conversation_type: i32,
    pub sender_id: &'a str,
    pub receiver_id: &'a str,
    pub group_id: &'a str,
    pub message_type: i32,
    pub content: &'a [u8],
    pub send_time: i64,
    pub server_time: i64,
    pub seq: i64,
    pub extra: &'a str,
    pub pos: i64,
}

impl<'a> NewMessageRow<'a> {
    /// The row of `m` once it got `seq` and the sync position `pos`.
    pub(crate) fn new(m: &'a NewMessage, seq: i64, pos: i64) -> Self {
        Self {
            server_msg_id: &m.server_msg_id,
            client_msg_id: &m.client_msg_id,
            conversation_id: &m.conversation_id,
            conversation_type: m.conversation_type.code(),
            sender_id: m.sender_id.as_str(),
            receiver_id: &m.receiver_id,
            group_id: &m.group_id,
            message_type: m.message_type,
            content: &m.content,
            send_time: m.send_time,
            server_time: m.server_time,
            seq,
            extra: &m.extra,
            pos,
        }
    }
}

/// One membership row to insert (ignored when it exists).
#[derive(Debug, Clone, PartialEq, Eq, Insertable)]
#[diesel(table_name = user_conversations)]
pub(crate) struct MembershipRow<'a> {
    pub user_id: &'a str,
    pub conversation_id: &'a str,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A counter after it was advanced: `(id, head)` as returned by the
/// conversation counter upsert (`conversations.max_seq`).
#[derive(Debug, Clone, QueryableByName)]
pub(crate) struct CounterHead {
    #[diesel(sql_type = Text)]
    pub id: String,
    #[diesel(sql_type = BigInt)]
    pub head: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> MessageRow {
        MessageRow {
            server_msg_id: "s1".into(),
            client_msg_id: "c1".into(),
            conversation_id: "single_a_b".into(),
            conversation_type: 1,
            sender_id: "a".into(),
            receiver_id: "b".into(),
            group_id: String::new(),
            message_type: 1,
            content: b"hi".to_vec(),
            send_time: 1,
            server_time: 2,
            seq: 3,
            extra: "{}".into(),
            revoked_by: None,
            revoked_time: None,
        }
    }

    #[test]
    fn row_converts() {
        let m = StoredMessage::try_from(row()).unwrap();
        assert_eq!(m.conversation_type, ConversationType::Single);
        assert_eq!(&m.content[..], b"hi");
        assert_eq!(m.revoked, None);
    }

    #[test]
    fn revocation_converts() {
        let mut r = row();
        r.revoked_by = Some("a".into());
        r.revoked_time = Some(9);
        let m = StoredMessage::try_from(r).unwrap();
        assert_eq!(
            m.revoked,
            Some(Revocation {
                by: "a".into(),
                time: 9
            })
        );
    }

    #[test]
    fn bad_conversation_type_is_an_error() {
        let mut r = row();
        r.conversation_type = 77;
        assert!(matches!(
            StoredMessage::try_from(r),
            Err(StoreError::Other(_))
        ));
    }

    #[test]
    fn select_list_names_every_column() {
        let s = message_select_list("m");
        assert!(s.starts_with("m.server_msg_id AS server_msg_id, "));
        assert!(s.ends_with("m.revoked_time AS revoked_time"));
    }
}
