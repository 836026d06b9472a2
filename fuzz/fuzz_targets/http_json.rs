//! The HTTP API's JSON request bodies and query strings, through the
//! extractors the handlers use (`im_transport::http::fuzzing`): decoded, or
//! refused with a 400/413/415 JSON error envelope; never a panic, a 5xx or
//! a non-JSON reply.
//!
//! Input: byte 0 picks the body/query type; byte 1 the mode (0-1: JSON body
//! with `application/json`; 2: JSON body with another or no content type;
//! 3: a query string, then a 0 byte, then an optional JSON body); the rest
//! is the payload.

#![no_main]

use im_transport::http::fuzzing::{Outcome, json_body, query};
use libfuzzer_sys::fuzz_target;

const CONTENT_TYPES: [Option<&str>; 5] = [
    None,
    Some("text/plain"),
    Some("application/json; charset=utf-8"),
    Some("application/vnd.api+json"),
    Some("application/jsonx"),
];

fuzz_target!(|data: &[u8]| {
    let Some((&[which, mode], payload)) = data.split_first_chunk::<2>() else {
        return;
    };
    let which = usize::from(which);
    let outcome: Outcome = match mode % 4 {
        0 | 1 => json_body(which, Some("application/json"), payload),
        2 => {
            let ct = CONTENT_TYPES[usize::from(mode / 4) % CONTENT_TYPES.len()];
            json_body(which, ct, payload)
        }
        _ => {
            let (q, body) = match payload.iter().position(|&b| b == 0) {
                Some(i) => (&payload[..i], &payload[i + 1..]),
                None => (payload, &[][..]),
            };
            let Ok(q) = std::str::from_utf8(q) else {
                return;
            };
            query(which, q, body)
        }
    };
    if let Err(e) = outcome.check() {
        panic!("{e}: {outcome:?}");
    }
});
