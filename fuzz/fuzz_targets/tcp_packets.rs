//! Packets made by `encode_packet`, coalesced into one stream and cut into
//! arbitrary reads, decode to themselves; the first body above the limit
//! stops the stream with `TooLarge` from its header alone
//! (`common::invariants::packets_roundtrip`).

#![no_main]

mod common;

use arbitrary::Arbitrary;
use common::invariants;
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Input {
    max_body: u8,
    chunks: Vec<u8>,
    packets: Vec<(u16, u32, Vec<u8>)>,
}

fuzz_target!(|input: Input| {
    let chunks: Vec<usize> = input.chunks.iter().map(|&c| usize::from(c)).collect();
    invariants::packets_roundtrip(&input.packets, &chunks, usize::from(input.max_body));
});
