//! A bare protobuf body (what a TCP packet or an envelope carries) with a
//! command, decoded by the server (requests, which must survive a round
//! trip) and by the client (server frames), in one generation.
//!
//! Input: byte 0 picks the generation (bit 7) and the command (the other
//! bits index the contract's commands; 127 = bytes 1..5 as a raw i32), the
//! rest is the body.

#![no_main]

mod common;

use common::invariants;
use im_core::Generation;
use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOC: common::Recording = common::Recording;

const COMMANDS: [i32; 28] = [
    0, 1, 5, 6, 100, 101, 104, 200, 201, 202, 203, 204, 205, 206, 207, 300, 301, 302, 303, 304,
    400, 401, 402, 500, 501, 502, 600, 601,
];

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let generation = if first & 0x80 == 0 {
        Generation::V1
    } else {
        Generation::V2
    };
    let (command, body) = match usize::from(first & 0x7F) {
        127 => match rest.split_first_chunk::<4>() {
            Some((c, body)) => (i32::from_be_bytes(*c), body),
            None => return,
        },
        i => (COMMANDS[i % COMMANDS.len()], rest),
    };
    common::allocating_at_most(common::proto_limit(body.len()), || {
        invariants::request_body(generation, command, body);
        invariants::server_frame(generation, command, body);
    });
});
