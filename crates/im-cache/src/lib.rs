//! im-cache
