//! A WebSocket frame: the `WebSocketMessage` envelope (both decoders), its
//! re-encoding, then its body as a request and as a server frame in both
//! generations. Invariants: `common::invariants::envelope`, `request_body`.

#![no_main]

mod common;

use common::invariants;
use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOC: common::Recording = common::Recording;

fuzz_target!(|frame: &[u8]| {
    let limit = common::proto_limit(frame.len());
    common::allocating_at_most(limit, || {
        if let Some((command, body)) = invariants::envelope(frame) {
            for generation in invariants::GENERATIONS {
                invariants::request_body(generation, command, &body);
                invariants::server_frame(generation, command, &body);
            }
        }
    });
});
