//! im-service
