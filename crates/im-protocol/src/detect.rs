//! Which SDK generation a WebSocket client on plain `/ws` speaks, told from
//! the bodies of its requests (sans-IO).
//!
//! Most requests are encoded alike in both generations (heartbeat, AUTH,
//! MSG_ACK, revoke, presence, read receipts, typing: the v1 `message_id` and
//! the v2 `server_msg_id` are both field 1 strings). Three differ:
//!
//! | command | v1 | v2 |
//! |---|---|---|
//! | SEND_MSG_REQ 200 | flat fields 1–8, 10 | field 1 only: a `MessageInfo` |
//! | 300 | `SyncRequest`: varints 1, 2, 3 | `BatchSyncRequest`: repeated message 1, varint 2 |
//! | SYNC_RANGE_REQ 303 | does not exist | `SyncRangeRequest` |
//!
//! [`evidence`] says which schemas a body fits, strictly (every top-level
//! field known to that generation's message, and the whole body decodable
//! as it); [`detect`] turns that into a decision:
//!
//! * SEND_MSG_REQ tells only through a reading that names a conversation
//!   (a conversation, receiver or group id; the server refuses a send that
//!   names none, and both SDKs always set `conversation_id`). A body whose
//!   only field is field 1 fits both schemas: as v1 it names no
//!   conversation, so it is v2 when its `MessageInfo` names one, else
//!   undecided.
//! * 300 with no field 1 or 3 (empty, or only field 2): v2, because the v1
//!   SDK never sends 300 over a WebSocket (it syncs over HTTP,
//!   `IMMessageSyncManager.swift:464`@5529e01) while the v2 SDK's first full
//!   sync is exactly `10 64` (`IMMessageSyncManager.swift:259-261`@07bf3fe).
//!   A non-SDK v1 client that sends such a 300 on plain `/ws` must say `?v=1`
//!   or use `/ws/v1`.
//!
//! Nothing here panics or allocates on any input beyond what decoding the
//! body needs.

use im_core::Generation;
use im_core::command::{Request, cmd};

use crate::convert::decode_request;

/// Which generations' schemas a request body fits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Evidence {
    /// Only this generation's request message fits the body.
    Only(Generation),
    /// Both fit, or the command is encoded alike in both generations.
    Both,
    /// Neither fits (malformed, or not a request of either generation).
    Neither,
}

/// The generation a request reveals, if any (see the module docs for the
/// rules). `Some(g)` implies that [`decode_request`] with `g` accepts the
/// body.
pub fn detect(command: i32, body: &[u8]) -> Option<Generation> {
    let found = evidence(command, body);
    if command == cmd::SEND_MSG_REQ {
        // A send tells only through a reading that names a conversation.
        let routed = |g| {
            matches!(
                decode_request(g, command, body),
                Ok(Request::Send(s)) if !(s.conversation_id.is_empty()
                    && s.receiver_id.is_empty()
                    && s.group_id.is_empty())
            )
        };
        return match found {
            Evidence::Only(g) => routed(g).then_some(g),
            Evidence::Both => match (routed(Generation::V1), routed(Generation::V2)) {
                (false, true) => Some(Generation::V2),
                (true, false) => Some(Generation::V1),
                _ => None,
            },
            Evidence::Neither => None,
        };
    }
    match found {
        Evidence::Only(g) => Some(g),
        Evidence::Both if command == cmd::SYNC_REQ => Some(Generation::V2),
        Evidence::Both | Evidence::Neither => None,
    }
}

/// Which schemas `body` fits as a request with `command`.
pub fn evidence(command: i32, body: &[u8]) -> Evidence {
    match command {
        cmd::SEND_MSG_REQ | cmd::SYNC_REQ | cmd::SYNC_RANGE_REQ => {
            match (
                fits(Generation::V1, command, body),
                fits(Generation::V2, command, body),
            ) {
                (true, true) => Evidence::Both,
                (true, false) => Evidence::Only(Generation::V1),
                (false, true) => Evidence::Only(Generation::V2),
                (false, false) => Evidence::Neither,
            }
        }
        cmd::HEARTBEAT_REQ
        | cmd::AUTH_REQ
        | cmd::MSG_ACK
        | cmd::REVOKE_MSG_REQ
        | cmd::ONLINE_STATUS_REQ
        | cmd::READ_RECEIPT_REQ
        | cmd::TYPING_STATUS_REQ => Evidence::Both,
        _ => Evidence::Neither,
    }
}

/// The top-level field numbers of `command`'s request message in
/// `generation` (only for the commands whose encoding differs).
fn known_fields(generation: Generation, command: i32) -> &'static [u64] {
    match (generation, command) {
        (Generation::V1, cmd::SEND_MSG_REQ) => &[1, 2, 3, 4, 5, 6, 7, 8, 10],
        (Generation::V2, cmd::SEND_MSG_REQ) => &[1],
        (Generation::V1, cmd::SYNC_REQ) => &[1, 2, 3],
        (Generation::V2, cmd::SYNC_REQ) => &[1, 2],
        (Generation::V2, cmd::SYNC_RANGE_REQ) => &[1, 2, 3, 4, 5],
        _ => &[],
    }
}

/// Whether `body` is exactly a `command` request of `generation`: only
/// fields that message has, and decodable as it.
fn fits(generation: Generation, command: i32, body: &[u8]) -> bool {
    let known = known_fields(generation, command);
    !known.is_empty()
        && only_fields(body, known)
        && decode_request(generation, command, body).is_ok()
}

/// Whether `body` is well-formed protobuf whose top-level fields are all in
/// `known` (wire types are checked by the decoder).
fn only_fields(body: &[u8], known: &[u64]) -> bool {
    let mut rest = body;
    while !rest.is_empty() {
        let Some(key) = varint(&mut rest) else {
            return false;
        };
        if !known.contains(&(key >> 3)) {
            return false;
        }
        let skip = match key & 7 {
            0 => {
                if varint(&mut rest).is_none() {
                    return false;
                }
                0
            }
            1 => 8,
            2 => match varint(&mut rest).and_then(|n| usize::try_from(n).ok()) {
                Some(n) => n,
                None => return false,
            },
            5 => 4,
            // Groups (3, 4) and the undefined types 6, 7.
            _ => return false,
        };
        match rest.get(skip..) {
            Some(r) => rest = r,
            None => return false,
        }
    }
    true
}

/// Reads one base-128 varint off the front of `buf`.
fn varint(buf: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..70).step_by(7) {
        let (&b, rest) = buf.split_first()?;
        *buf = rest;
        value |= u64::from(b & 0x7f).checked_shl(shift).unwrap_or(0);
        if b & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1: Option<Generation> = Some(Generation::V1);
    const V2: Option<Generation> = Some(Generation::V2);

    #[test]
    fn sdk_first_requests() {
        // v2 full sync: max_count_per_conversation = 100 and nothing else.
        assert_eq!(detect(cmd::SYNC_REQ, &[0x10, 0x64]), V2);
        assert_eq!(evidence(cmd::SYNC_REQ, &[0x10, 0x64]), Evidence::Both);
        assert_eq!(detect(cmd::SYNC_REQ, &[]), V2);
        // v2 incremental sync: one state {conversation_id "c", last_seq 1}.
        let inc = [0x0a, 0x05, 0x0a, 0x01, b'c', 0x10, 0x01, 0x10, 0x64];
        assert_eq!(
            evidence(cmd::SYNC_REQ, &inc),
            Evidence::Only(Generation::V2)
        );
        // v1 SyncRequest {min_seq 5, limit 50}.
        assert_eq!(detect(cmd::SYNC_REQ, &[0x08, 0x05, 0x18, 0x32]), V1);
        // v1 SyncRequest {limit 50} alone: field 3 is not in BatchSyncRequest.
        assert_eq!(detect(cmd::SYNC_REQ, &[0x18, 0x32]), V1);
        // v1 send {client_msg_id "a", conversation_id "b"}.
        assert_eq!(
            detect(cmd::SEND_MSG_REQ, &[0x0a, 0x01, b'a', 0x12, 0x01, b'b']),
            V1
        );
        // v2 send {message {client_msg_id "a", conversation_id "b"}}.
        let v2 = [0x0a, 0x06, 0x12, 0x01, b'a', 0x1a, 0x01, b'b'];
        assert_eq!(detect(cmd::SEND_MSG_REQ, &v2), V2);
        // Empty message / empty v1 client_msg_id: nothing to tell.
        assert_eq!(detect(cmd::SEND_MSG_REQ, &[0x0a, 0x00]), None);
        assert_eq!(detect(cmd::SEND_MSG_REQ, &[]), None);
        assert_eq!(detect(cmd::SYNC_RANGE_REQ, &[0x0a, 0x01, b'r']), V2);
    }

    #[test]
    fn malformed_and_alike() {
        assert_eq!(detect(cmd::SEND_MSG_REQ, &[0xff]), None);
        assert_eq!(detect(cmd::SYNC_REQ, &[0x0a, 0x09, 0x01]), None);
        // Field 1 as a varint and as a message at once.
        assert_eq!(detect(cmd::SYNC_REQ, &[0x08, 0x01, 0x0a, 0x00]), None);
        assert_eq!(detect(cmd::MSG_ACK, &[0x0a, 0x01, b'x']), None);
        assert_eq!(detect(cmd::AUTH_REQ, &[]), None);
        assert_eq!(detect(cmd::SYNC_RANGE_RSP, &[]), None);
        assert_eq!(detect(12345, &[0x0a, 0x00]), None);
        // Unterminated varint.
        assert_eq!(detect(cmd::SYNC_REQ, &[0x08, 0xff, 0xff]), None);
        assert_eq!(
            detect(
                cmd::SYNC_REQ,
                &[
                    0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01
                ]
            ),
            None
        );
        // Field 1 repeated: the last value wins, still v1.
        assert_eq!(detect(cmd::SYNC_REQ, &[0x08; 12]), V1);
    }
}
