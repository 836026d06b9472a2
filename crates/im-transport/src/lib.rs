//! im-transport
