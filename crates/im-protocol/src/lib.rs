//! im-protocol
