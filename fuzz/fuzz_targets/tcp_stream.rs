//! An arbitrary TCP byte stream, cut into arbitrary reads: the packets, the
//! error and the unconsumed bytes do not depend on the cuts; every
//! `decode_packet` call consumes exactly one header + body or nothing; no
//! body above the limit; no allocation sized by a declared length above the
//! limit (`common::invariants::chunking_invariance`, `bounded_allocation`).
//!
//! Input: bytes 0..2 = the body limit (big-endian; 0xFFFF = the server's
//! 1 MiB), bytes 2..4 seed the read sizes, the rest is the stream.

#![no_main]

mod common;

use common::invariants;
use im_protocol::tcp::HEADER_LEN;
use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOC: common::Recording = common::Recording;

fuzz_target!(|data: &[u8]| {
    let Some((head, stream)) = data.split_first_chunk::<4>() else {
        return;
    };
    let max_body = match u16::from_be_bytes([head[0], head[1]]) {
        0xFFFF => 1 << 20,
        n => usize::from(n),
    };
    // Read sizes from a xorshift seeded by bytes 2..4: 0..=63 bytes each.
    let mut state = u32::from(u16::from_be_bytes([head[2], head[3]])) | 0x1_0000;
    let chunks: Vec<usize> = (0..stream.len().min(64))
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            (state % 64) as usize
        })
        .collect();
    // Buffers of the stream (doubling included) plus one reservation of a
    // header and a body within the limit; nothing from a larger length.
    let limit = 4 * (stream.len() + HEADER_LEN + max_body) + 4096;
    common::allocating_at_most(limit, || {
        invariants::chunking_invariance(stream, &chunks, max_body);
        invariants::bounded_allocation(stream, max_body);
    });
});
