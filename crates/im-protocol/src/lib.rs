//! Wire formats of im-server (see `shared/design/sdk-contract.md` and
//! `protocol.md`).
//!
//! * [`pb`]: the protobuf messages of both SDK generations, generated at
//!   build time from `proto/v1` and `proto/v2`.
//! * [`tcp`]: the 16-byte header framing of v2 TCP.
//! * [`ws`]: the `WebSocketMessage` envelope of WebSocket frames.
//! * [`convert`]: bodies <-> the `im_core::command` model, per generation.
//! * [`detect`]: which generation a request on plain `/ws` reveals.
//!
//! Nothing here does I/O; every decoder returns an error instead of
//! panicking on any input.

pub mod convert;
pub mod detect;
pub mod error;
pub mod pb;
pub mod tcp;
pub mod ws;

pub use convert::size::encode_batch;
pub use convert::{
    ServerFrame, decode_request, decode_server_frame, encode_event, encode_reply, encode_request,
};
pub use error::DecodeError;
pub use tcp::{FrameError, Packet, decode_packet, encode_packet};
pub use ws::{Envelope, decode_envelope, encode_envelope};
