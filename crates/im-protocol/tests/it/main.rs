//! Integration tests of im-protocol (one binary, several modules).
//!
//! The modules are marked `#[cfg(test)]` so clippy treats their helper
//! functions as test code (clippy.toml allows unwrap/indexing there).

#[cfg(test)]
mod convert_events;
#[cfg(test)]
mod convert_replies;
#[cfg(test)]
mod convert_requests;
#[cfg(test)]
mod detect;
#[cfg(test)]
mod doc_bytes;
#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod golden;
#[cfg(test)]
mod invariants;
#[cfg(test)]
mod props;
#[cfg(test)]
mod robustness;
#[cfg(test)]
mod sizes;
