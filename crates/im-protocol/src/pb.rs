//! Generated protobuf types, one module per SDK generation.

/// Generation v1 (`proto/v1/im_protocol.proto`).
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/v1/im.protocol.rs"));
}

/// Generation v2 (`proto/v2/im_protocol.proto`).
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod v2 {
    include!(concat!(env!("OUT_DIR"), "/v2/im.protocol.rs"));
}
