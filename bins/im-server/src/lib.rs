//! im-server as a library: config, telemetry, CLI and the wiring of `App`, so tests
//! and embedders can start a real server on port 0.

pub mod app;
pub mod cli;
pub mod config;
pub mod metrics;
pub mod telemetry;
