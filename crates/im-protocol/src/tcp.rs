//! TCP framing of generation v2 (sdk-contract.md §3).
//!
//! Every packet is a 16-byte big-endian header followed by the bare protobuf
//! body of the command's message (no `WebSocketMessage` envelope):
//!
//! | offset | size | field                                   |
//! |--------|------|-----------------------------------------|
//! | 0      | 2    | magic `0xEF89`                          |
//! | 2      | 1    | version `0x01`                          |
//! | 3      | 1    | flags (sent as 0, covered by the CRC)   |
//! | 4      | 2    | command                                 |
//! | 6      | 4    | sequence                                |
//! | 10     | 4    | body length                             |
//! | 14     | 2    | CRC-16/CCITT-FALSE over bytes 0..14     |

use bytes::{Buf, BufMut, Bytes, BytesMut};
use thiserror::Error;

/// Length of the fixed header.
pub const HEADER_LEN: usize = 16;
/// First two bytes of every packet.
pub const MAGIC: u16 = 0xEF89;
/// The only header version there is.
pub const VERSION: u8 = 1;

/// CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, no xor-out),
/// which the `crc` catalogue calls CRC-16/IBM-3740.
const CRC16: crc::Crc<u16> = crc::Crc::<u16>::new(&crc::CRC_16_IBM_3740);

/// One decoded packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    /// Command number (`CommandType`).
    pub command: u16,
    /// Sequence number: echoed in responses, 0 on pushes.
    pub sequence: u32,
    /// Header flags byte (the SDK always sends 0).
    pub flags: u8,
    /// The bare protobuf body.
    pub body: Bytes,
}

/// A header that can never become a valid packet. The stream is
/// desynchronised after one of these: close the connection. The offending
/// bytes are left in the buffer.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FrameError {
    /// The first two bytes are not [`MAGIC`].
    #[error("bad magic 0x{0:04X}")]
    BadMagic(u16),
    /// The version byte is not [`VERSION`].
    #[error("unsupported header version {0}")]
    BadVersion(u8),
    /// The header CRC does not match bytes 0..14.
    #[error("header CRC mismatch (got 0x{got:04X}, expected 0x{expected:04X})")]
    BadCrc {
        /// CRC carried in the header.
        got: u16,
        /// CRC computed over the first 14 bytes.
        expected: u16,
    },
    /// The announced body is larger than the caller's limit.
    #[error("body of {len} bytes exceeds the limit")]
    TooLarge {
        /// Announced body length.
        len: u32,
    },
}

/// CRC-16/CCITT-FALSE of `data` (check value 0x29B1 for `b"123456789"`).
pub fn crc16(data: &[u8]) -> u16 {
    CRC16.checksum(data)
}

/// The first 14 header bytes, the part the CRC covers.
fn header_prefix(flags: u8, command: u16, sequence: u32, len: u32) -> [u8; 14] {
    let m = MAGIC.to_be_bytes();
    let c = command.to_be_bytes();
    let s = sequence.to_be_bytes();
    let l = len.to_be_bytes();
    [
        m[0], m[1], VERSION, flags, c[0], c[1], s[0], s[1], s[2], s[3], l[0], l[1], l[2], l[3],
    ]
}

/// Appends one packet (header + `body`) to `dst`, with flags 0.
///
/// `body` must be shorter than 4 GiB; callers keep bodies far below the
/// SDK's 1 MiB limit (contract §7.5).
pub fn encode_packet(command: u16, sequence: u32, body: &[u8], dst: &mut BytesMut) {
    let len = u32::try_from(body.len()).unwrap_or(u32::MAX);
    let prefix = header_prefix(0, command, sequence, len);
    dst.reserve(HEADER_LEN + body.len());
    dst.put_slice(&prefix);
    dst.put_u16(crc16(&prefix));
    dst.put_slice(body);
}

/// Takes one packet off the front of `src`.
///
/// * `Ok(None)`: more bytes are needed (partial header, or a valid header
///   whose body has not fully arrived); `src` is untouched.
/// * `Ok(Some(p))`: exactly one packet was consumed from `src`.
/// * `Err(_)`: the header is invalid. It is checked (magic, version, CRC,
///   then `max_body`) as soon as 16 bytes are buffered, so an oversized
///   length is rejected before any of its body is waited for.
pub fn decode_packet(src: &mut BytesMut, max_body: usize) -> Result<Option<Packet>, FrameError> {
    let Some(head) = src.first_chunk::<HEADER_LEN>() else {
        return Ok(None);
    };
    let magic = u16::from_be_bytes([head[0], head[1]]);
    if magic != MAGIC {
        return Err(FrameError::BadMagic(magic));
    }
    let version = head[2];
    if version != VERSION {
        return Err(FrameError::BadVersion(version));
    }
    let flags = head[3];
    let command = u16::from_be_bytes([head[4], head[5]]);
    let sequence = u32::from_be_bytes([head[6], head[7], head[8], head[9]]);
    let len = u32::from_be_bytes([head[10], head[11], head[12], head[13]]);
    let got = u16::from_be_bytes([head[14], head[15]]);
    let expected = crc16(&header_prefix(flags, command, sequence, len));
    if got != expected {
        return Err(FrameError::BadCrc { got, expected });
    }
    let body_len = match usize::try_from(len) {
        Ok(n) if n <= max_body => n,
        _ => return Err(FrameError::TooLarge { len }),
    };
    if src.len() < HEADER_LEN + body_len {
        src.reserve(HEADER_LEN + body_len - src.len());
        return Ok(None);
    }
    src.advance(HEADER_LEN);
    let body = src.split_to(body_len).freeze();
    Ok(Some(Packet {
        command,
        sequence,
        flags,
        body,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        s.split_whitespace()
            .map(|b| u8::from_str_radix(b, 16).unwrap())
            .collect()
    }

    const AUTH_BODY: &str =
        "0A 05 61 6C 69 63 65 12 10 64 65 6D 6F 5F 74 6F 6B 65 6E 5F 61 6C 69 63 65 1A 03 69 4F 53";

    #[test]
    fn crc_check_value() {
        assert_eq!(crc16(b"123456789"), 0x29B1);
    }

    #[test]
    fn auth_req_example() {
        let prefix = hex("EF 89 01 00 00 64 00 00 00 01 00 00 00 1E");
        assert_eq!(crc16(&prefix), 0x1681);
        let body = hex(AUTH_BODY);
        let mut dst = BytesMut::new();
        encode_packet(100, 1, &body, &mut dst);
        let mut want = hex("EF 89 01 00 00 64 00 00 00 01 00 00 00 1E 16 81");
        want.extend_from_slice(&body);
        assert_eq!(&dst[..], &want[..]);

        let p = decode_packet(&mut dst, 1 << 20).unwrap().unwrap();
        assert_eq!(
            p,
            Packet {
                command: 100,
                sequence: 1,
                flags: 0,
                body: Bytes::from(body)
            }
        );
        assert!(dst.is_empty());
    }

    #[test]
    fn heartbeat_examples() {
        let mut dst = BytesMut::new();
        encode_packet(5, 1, &[], &mut dst);
        assert_eq!(
            &dst[..],
            &hex("EF 89 01 00 00 05 00 00 00 01 00 00 00 00 F6 78")[..]
        );
        dst.clear();
        encode_packet(6, 1, &[], &mut dst);
        assert_eq!(
            &dst[..],
            &hex("EF 89 01 00 00 06 00 00 00 01 00 00 00 00 DB 3C")[..]
        );
        let p = decode_packet(&mut dst, 0).unwrap().unwrap();
        assert_eq!((p.command, p.sequence, p.body.len()), (6, 1, 0));
    }

    #[test]
    fn auth_rsp_fail_example() {
        let wire = hex("EF 89 01 00 00 65 00 00 00 01 00 00 00 11 0C 4D \
             08 64 12 0D 49 6E 76 61 6C 69 64 20 74 6F 6B 65 6E");
        let mut dst = BytesMut::new();
        encode_packet(101, 1, &wire[16..], &mut dst);
        assert_eq!(&dst[..], &wire[..]);
        let mut src = BytesMut::from(&wire[..]);
        let p = decode_packet(&mut src, 1024).unwrap().unwrap();
        assert_eq!(p.command, 101);
        assert_eq!(&p.body[..], &wire[16..]);
    }

    #[test]
    fn byte_by_byte() {
        let mut wire = BytesMut::new();
        encode_packet(100, 7, &hex(AUTH_BODY), &mut wire);
        let mut src = BytesMut::new();
        for (i, b) in wire.iter().enumerate() {
            src.put_u8(*b);
            let r = decode_packet(&mut src, 1024).unwrap();
            if i + 1 < wire.len() {
                assert!(r.is_none(), "packet complete too early at byte {i}");
                assert_eq!(src.len(), i + 1, "partial input must not be consumed");
            } else {
                let p = r.unwrap();
                assert_eq!((p.command, p.sequence), (100, 7));
                assert_eq!(&p.body[..], &hex(AUTH_BODY)[..]);
            }
        }
        assert!(src.is_empty());
    }

    #[test]
    fn coalesced_packets_and_trailing_partial() {
        let mut src = BytesMut::new();
        encode_packet(5, 1, &[], &mut src);
        encode_packet(200, 2, b"abc", &mut src);
        encode_packet(6, 3, b"x", &mut src);
        src.truncate(src.len() - 1); // third packet misses its body byte
        let a = decode_packet(&mut src, 16).unwrap().unwrap();
        let b = decode_packet(&mut src, 16).unwrap().unwrap();
        assert_eq!((a.command, a.sequence, &a.body[..]), (5, 1, &b""[..]));
        assert_eq!((b.command, b.sequence, &b.body[..]), (200, 2, &b"abc"[..]));
        assert_eq!(decode_packet(&mut src, 16).unwrap(), None);
        assert_eq!(src.len(), HEADER_LEN);
        src.put_u8(b'x');
        let c = decode_packet(&mut src, 16).unwrap().unwrap();
        assert_eq!((c.command, c.sequence, &c.body[..]), (6, 3, &b"x"[..]));
        assert!(src.is_empty());
    }

    #[test]
    fn bad_magic_version_crc() {
        let mut good = BytesMut::new();
        encode_packet(5, 1, &[], &mut good);

        let mut m = good.clone();
        m[0] = 0xEE;
        assert_eq!(decode_packet(&mut m, 16), Err(FrameError::BadMagic(0xEE89)));

        let mut v = good.clone();
        v[2] = 2;
        assert_eq!(decode_packet(&mut v, 16), Err(FrameError::BadVersion(2)));

        let mut c = good.clone();
        c[15] ^= 1;
        assert!(matches!(
            decode_packet(&mut c, 16),
            Err(FrameError::BadCrc { .. })
        ));

        // Any header byte flipped (flags included) breaks the CRC.
        let mut f = good.clone();
        f[3] = 1;
        assert!(matches!(
            decode_packet(&mut f, 16),
            Err(FrameError::BadCrc { .. })
        ));
        let mut s = good.clone();
        s[9] ^= 0x80;
        assert!(matches!(
            decode_packet(&mut s, 16),
            Err(FrameError::BadCrc { .. })
        ));
    }

    #[test]
    fn flags_are_reported() {
        let prefix = header_prefix(0x5A, 202, 0, 0);
        let mut src = BytesMut::from(&prefix[..]);
        src.put_u16(crc16(&prefix));
        let p = decode_packet(&mut src, 0).unwrap().unwrap();
        assert_eq!((p.flags, p.command), (0x5A, 202));
    }

    #[test]
    fn oversized_rejected_from_header_alone() {
        let prefix = header_prefix(0, 200, 1, 4 * 1024 * 1024);
        let mut src = BytesMut::from(&prefix[..]);
        src.put_u16(crc16(&prefix));
        let cap_before = src.capacity();
        assert_eq!(
            decode_packet(&mut src, 1 << 20),
            Err(FrameError::TooLarge { len: 4 << 20 })
        );
        assert_eq!(
            src.capacity(),
            cap_before,
            "no buffering for an oversized body"
        );
    }

    #[test]
    fn limit_is_inclusive() {
        let mut src = BytesMut::new();
        encode_packet(200, 1, &[7; 10], &mut src);
        assert!(decode_packet(&mut src.clone(), 9).is_err());
        assert_eq!(decode_packet(&mut src, 10).unwrap().unwrap().body.len(), 10);
    }
}
