//! im-client
