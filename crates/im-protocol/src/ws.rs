//! WebSocket framing (sdk-contract.md §2): every binary frame is one
//! serialized `WebSocketMessage{command=1, sequence=2, body=3, timestamp=4}`.
//! The envelope is identical in both generations.

use bytes::{BufMut, Bytes, BytesMut};
use prost::Message;
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint, key_len};

use crate::error::DecodeError;
use crate::pb;

/// A decoded `WebSocketMessage`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// Command number (`CommandType`); unknown values are kept as they are.
    pub command: i32,
    /// Sequence: echoed in responses, 0 on pushes (the SDK ignores it on WS).
    pub sequence: u32,
    /// The serialized message of `command`.
    pub body: Bytes,
    /// Milliseconds; the SDK never sets it.
    pub timestamp: i64,
}

/// Decodes one WebSocket frame (binary, or the UTF-8 bytes of a text frame).
pub fn decode_envelope(frame: &[u8]) -> Result<Envelope, DecodeError> {
    from_pb(pb::v2::WebSocketMessage::decode(frame))
}

/// Like [`decode_envelope`], but the returned `body` shares `frame`'s
/// allocation instead of copying it.
pub fn decode_envelope_shared(frame: Bytes) -> Result<Envelope, DecodeError> {
    from_pb(pb::v2::WebSocketMessage::decode(frame))
}

fn from_pb(
    r: Result<pb::v2::WebSocketMessage, prost::DecodeError>,
) -> Result<Envelope, DecodeError> {
    let m = r.map_err(|e| DecodeError::BadEnvelope(e.to_string()))?;
    Ok(Envelope {
        command: m.command,
        sequence: m.sequence,
        body: m.body,
        timestamp: m.timestamp,
    })
}

/// Appends the serialized `WebSocketMessage` to `dst`, byte-identical to what
/// prost would produce for the same values (proto3: default values are
/// omitted), without copying `body` into an intermediate message.
pub fn encode_envelope(
    command: i32,
    sequence: u32,
    body: &[u8],
    timestamp: i64,
    dst: &mut BytesMut,
) {
    dst.reserve(envelope_len(command, sequence, body.len(), timestamp));
    if command != 0 {
        encode_key(1, WireType::Varint, dst);
        // Negative enum values are sign-extended to 10 bytes, as protobuf does.
        encode_varint(i64::from(command) as u64, dst);
    }
    if sequence != 0 {
        encode_key(2, WireType::Varint, dst);
        encode_varint(u64::from(sequence), dst);
    }
    if !body.is_empty() {
        encode_key(3, WireType::LengthDelimited, dst);
        encode_varint(body.len() as u64, dst);
        dst.put_slice(body);
    }
    if timestamp != 0 {
        encode_key(4, WireType::Varint, dst);
        encode_varint(timestamp as u64, dst);
    }
}

/// The encoded length of an envelope with these values.
pub fn envelope_len(command: i32, sequence: u32, body_len: usize, timestamp: i64) -> usize {
    let mut n = 0;
    if command != 0 {
        n += key_len(1) + encoded_len_varint(i64::from(command) as u64);
    }
    if sequence != 0 {
        n += key_len(2) + encoded_len_varint(u64::from(sequence));
    }
    if body_len != 0 {
        n += key_len(3) + encoded_len_varint(body_len as u64) + body_len;
    }
    if timestamp != 0 {
        n += key_len(4) + encoded_len_varint(timestamp as u64);
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        s.split_whitespace()
            .map(|b| u8::from_str_radix(b, 16).unwrap())
            .collect()
    }

    const AUTH_FRAME: &str = "08 64 10 01 1A 1E 0A 05 61 6C 69 63 65 12 10 64 65 6D 6F 5F 74 6F 6B 65 6E \
                              5F 61 6C 69 63 65 1A 03 69 4F 53";

    #[test]
    fn auth_example_bytes() {
        let frame = hex(AUTH_FRAME);
        let env = decode_envelope(&frame).unwrap();
        assert_eq!((env.command, env.sequence, env.timestamp), (100, 1, 0));
        let auth = pb::v2::AuthRequest::decode(env.body.clone()).unwrap();
        assert_eq!(auth.user_id, "alice");
        assert_eq!(auth.token, "demo_token_alice");
        assert_eq!(auth.platform, "iOS");

        let mut dst = BytesMut::new();
        encode_envelope(100, 1, &env.body, 0, &mut dst);
        assert_eq!(&dst[..], &frame[..]);
        assert_eq!(envelope_len(100, 1, env.body.len(), 0), frame.len());

        let shared = decode_envelope_shared(Bytes::from(frame)).unwrap();
        assert_eq!(shared, env);
    }

    #[test]
    fn matches_prost_for_edge_values() {
        for (command, sequence, body, timestamp) in [
            (0, 0, &b""[..], 0),
            (202, 0, &b"x"[..], 1_732_000_000_000),
            (-1, u32::MAX, &[0u8; 300][..], -5),
            (601, 9, &b""[..], 0),
        ] {
            let mut dst = BytesMut::new();
            encode_envelope(command, sequence, body, timestamp, &mut dst);
            let want = pb::v2::WebSocketMessage {
                command,
                sequence,
                body: Bytes::copy_from_slice(body),
                timestamp,
            }
            .encode_to_vec();
            assert_eq!(&dst[..], &want[..]);
            assert_eq!(
                envelope_len(command, sequence, body.len(), timestamp),
                want.len()
            );
            let env = decode_envelope(&dst).unwrap();
            assert_eq!(
                (env.command, env.sequence, &env.body[..], env.timestamp),
                (command, sequence, body, timestamp)
            );
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(matches!(
            decode_envelope(&[0x1A, 0x05, 0x01]),
            Err(DecodeError::BadEnvelope(_))
        ));
        assert!(matches!(
            decode_envelope(&[0xFF; 12]),
            Err(DecodeError::BadEnvelope(_))
        ));
        // A text frame with JSON is not protobuf either.
        assert!(decode_envelope(br#"{"type":"auth"}"#).is_err());
    }
}
