//! im-repository
