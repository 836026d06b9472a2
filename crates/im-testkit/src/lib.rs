//! im-testkit
