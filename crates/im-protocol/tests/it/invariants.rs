//! The decoder invariants, in one place for two runners: the property tests
//! of `props.rs` (bounded, in `cargo test`) and the libFuzzer targets under
//! `fuzz/` (which include this file with `#[path]`). Every function panics
//! with a message when an invariant does not hold, and only when it does
//! not: any input is acceptable.
//!
//! Only `im_core`, `im_protocol` and `bytes` may be used here (the fuzz
//! crate depends on exactly those).

#![allow(dead_code)] // each runner uses a subset

use bytes::{Bytes, BytesMut};
use im_core::Generation;
use im_protocol::tcp::{FrameError, HEADER_LEN, Packet, decode_packet, encode_packet};
use im_protocol::ws::{decode_envelope, decode_envelope_shared, encode_envelope, envelope_len};
use im_protocol::{decode_request, decode_server_frame, encode_request};

pub const GENERATIONS: [Generation; 2] = [Generation::V1, Generation::V2];

// ---- WebSocket envelope -------------------------------------------------------

/// A frame that decodes re-encodes (at `envelope_len` bytes) to a frame
/// that decodes to the same envelope; the zero-copy decoder agrees with the
/// copying one. Returns the decoded envelope's command and body.
pub fn envelope(frame: &[u8]) -> Option<(i32, Bytes)> {
    let decoded = decode_envelope(frame);
    let shared = decode_envelope_shared(Bytes::copy_from_slice(frame));
    assert_eq!(
        decoded, shared,
        "copying and zero-copy envelope decoders disagree"
    );
    let env = decoded.ok()?;
    let mut buf = BytesMut::new();
    encode_envelope(
        env.command,
        env.sequence,
        &env.body,
        env.timestamp,
        &mut buf,
    );
    assert_eq!(
        buf.len(),
        envelope_len(env.command, env.sequence, env.body.len(), env.timestamp),
        "envelope_len disagrees with encode_envelope"
    );
    let again = decode_envelope(&buf);
    assert_eq!(
        again.as_ref(),
        Ok(&env),
        "re-encoded envelope decodes differently"
    );
    Some((env.command, env.body))
}

/// Encoding any envelope and decoding it gives the same values back.
pub fn envelope_roundtrip(command: i32, sequence: u32, body: &[u8], timestamp: i64) {
    let mut buf = BytesMut::new();
    encode_envelope(command, sequence, body, timestamp, &mut buf);
    assert_eq!(
        buf.len(),
        envelope_len(command, sequence, body.len(), timestamp)
    );
    let env = decode_envelope(&buf).unwrap_or_else(|e| panic!("own envelope rejected: {e}"));
    assert_eq!(
        (env.command, env.sequence, &env.body[..], env.timestamp),
        (command, sequence, body, timestamp)
    );
}

// ---- bodies of both generations ------------------------------------------------

/// A client body that decodes (server side) re-encodes with the same command
/// to a body that decodes to the same request.
pub fn request_body(generation: Generation, command: i32, body: &[u8]) {
    let Ok(req) = decode_request(generation, command, body) else {
        return;
    };
    assert_eq!(req.command(), command, "{generation:?}: {req:?}");
    let mut buf = BytesMut::new();
    let c = encode_request(generation, &req, &mut buf);
    assert_eq!(
        c, command,
        "{generation:?}: re-encoded with another command"
    );
    assert_eq!(
        decode_request(generation, c, &buf),
        Ok(req),
        "{generation:?} {command}: request does not survive a round trip"
    );
}

/// A request the client encoder produced decodes to itself. Only for
/// requests that exist in `generation` (see `convert::encode_request`).
pub fn request_roundtrip(generation: Generation, req: &im_core::command::Request) {
    let mut buf = BytesMut::new();
    let c = encode_request(generation, req, &mut buf);
    assert_eq!(c, req.command());
    assert_eq!(
        decode_request(generation, c, &buf).as_ref(),
        Ok(req),
        "{generation:?}: request does not survive a round trip"
    );
}

/// A server frame (client side decoder) never panics.
pub fn server_frame(generation: Generation, command: i32, body: &[u8]) {
    let _ = decode_server_frame(generation, command, body);
}

// ---- TCP framing -----------------------------------------------------------------

/// What a byte stream decodes to: the packets, the error that stopped the
/// decoder (if any), and the bytes not consumed (left in the buffer, plus
/// those not read yet when an error stopped the decoder).
#[derive(Debug, PartialEq, Eq)]
pub struct Decoded {
    pub packets: Vec<Packet>,
    pub error: Option<FrameError>,
    pub rest: Vec<u8>,
}

/// Feeds `stream` to `decode_packet` the way a read loop does: chunk after
/// chunk (lengths taken from `chunks`, cycled; a 0 is an empty read, and the
/// last chunk takes whatever is left once `chunks` is exhausted twice),
/// draining every complete packet after each chunk, stopping at the first
/// error. Checks every call: `Ok(Some)` consumed exactly one header and its
/// body (never more than was buffered, never a body above `max_body`);
/// `Ok(None)` and `Err` leave the buffer as it was.
pub fn decode_stream(stream: &[u8], chunks: &[usize], max_body: usize) -> Decoded {
    let mut src = BytesMut::new();
    let mut packets = Vec::new();
    let mut pos = 0;
    let mut reads = 0;
    loop {
        let want = match chunks.get(reads % chunks.len().max(1)) {
            Some(&n) if reads < 2 * chunks.len() => n,
            _ => stream.len() - pos,
        };
        reads += 1;
        let end = pos + want.min(stream.len() - pos);
        src.extend_from_slice(&stream[pos..end]);
        pos = end;
        loop {
            let before = src.clone();
            match decode_packet(&mut src, max_body) {
                Ok(Some(p)) => {
                    assert!(
                        src.len() < before.len(),
                        "a packet was produced from nothing"
                    );
                    let consumed = before.len() - src.len();
                    assert_eq!(
                        consumed,
                        HEADER_LEN + p.body.len(),
                        "consumed != header + body"
                    );
                    assert!(
                        p.body.len() <= max_body,
                        "body above the limit was returned"
                    );
                    assert_eq!(&before[HEADER_LEN..consumed], &p.body[..]);
                    assert_eq!(
                        &before[consumed..],
                        &src[..],
                        "bytes after the packet changed"
                    );
                    packets.push(p);
                }
                Ok(None) => {
                    assert_eq!(src, before, "Ok(None) changed the buffer");
                    break;
                }
                Err(e) => {
                    assert_eq!(src, before, "Err changed the buffer");
                    let mut rest = src.to_vec();
                    rest.extend_from_slice(&stream[pos..]);
                    return Decoded {
                        packets,
                        error: Some(e),
                        rest,
                    };
                }
            }
        }
        if pos == stream.len() {
            return Decoded {
                packets,
                error: None,
                rest: src.to_vec(),
            };
        }
    }
}

/// The packets of a stream do not depend on how it is cut into reads.
pub fn chunking_invariance(stream: &[u8], chunks: &[usize], max_body: usize) -> Decoded {
    let whole = decode_stream(stream, &[], max_body);
    let cut = decode_stream(stream, chunks, max_body);
    assert_eq!(whole, cut, "chunking {chunks:?} changed the decoded stream");
    if stream.len() <= 1024 {
        // Quadratic (every call checks the whole buffer): small streams only.
        let byte_by_byte = decode_stream(stream, &vec![1; stream.len()], max_body);
        assert_eq!(
            whole, byte_by_byte,
            "byte-by-byte feeding changed the decoded stream"
        );
    }
    whole
}

/// Packets the encoder produced, coalesced into one stream and cut into
/// arbitrary reads, decode to themselves (flags 0), up to the first one
/// whose body exceeds `max_body`, which is refused as `TooLarge` from its
/// header alone.
pub fn packets_roundtrip(packets: &[(u16, u32, Vec<u8>)], chunks: &[usize], max_body: usize) {
    let mut stream = BytesMut::new();
    for (command, sequence, body) in packets {
        encode_packet(*command, *sequence, body, &mut stream);
    }
    let got = chunking_invariance(&stream, chunks, max_body);
    let fitting = packets
        .iter()
        .take_while(|(_, _, b)| b.len() <= max_body)
        .count();
    let want: Vec<Packet> = packets[..fitting]
        .iter()
        .map(|(command, sequence, body)| Packet {
            command: *command,
            sequence: *sequence,
            flags: 0,
            body: Bytes::copy_from_slice(body),
        })
        .collect();
    assert_eq!(got.packets, want);
    match packets.get(fitting) {
        None => {
            assert_eq!(got.error, None);
            assert!(got.rest.is_empty(), "bytes left after the last packet");
        }
        Some((_, _, body)) => {
            let len = u32::try_from(body.len()).unwrap_or(u32::MAX);
            assert_eq!(got.error, Some(FrameError::TooLarge { len }));
        }
    }
}

/// One `decode_packet` call on a freshly allocated buffer holding `input`
/// never grows it beyond what a header within `max_body` can justify
/// (`Vec`'s amortized doubling included): a declared length above the
/// limit allocates nothing.
pub fn bounded_allocation(input: &[u8], max_body: usize) {
    let mut src = BytesMut::with_capacity(input.len());
    src.extend_from_slice(input);
    let cap_before = src.capacity();
    let r = decode_packet(&mut src, max_body);
    let bound = (2 * cap_before).max(HEADER_LEN + max_body).max(8);
    assert!(
        src.capacity() <= bound,
        "capacity {} > {bound} after {r:?} (max_body {max_body})",
        src.capacity()
    );
    if matches!(r, Err(FrameError::TooLarge { .. })) {
        assert_eq!(src.capacity(), cap_before, "reserved for an oversized body");
    }
}
