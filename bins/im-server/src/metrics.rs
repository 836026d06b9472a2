//! The Prometheus recorder: installed once per process (the `metrics`
//! facade has one global recorder), described, and rendered by the HTTP
//! router through [`im_transport::metrics::MetricsEndpoint`]. The library
//! crates only record through the facade.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use secrecy::ExposeSecret;
use tokio_util::sync::CancellationToken;

use crate::config::MetricsConfig;

/// Buckets of latency histograms (`*_seconds`): 0.5 ms to 10 s.
const SECONDS_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Buckets of the writer batch size (`message.writer.batch_size` is at most
/// 10000).
const BATCH_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0, 10000.0,
];

/// How often histogram samples are folded in when nobody scrapes (bounds
/// the recorder's memory).
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// The handle of the process's recorder, once installed.
static INSTALLED: Mutex<Option<PrometheusHandle>> = Mutex::new(None);

/// Installs the Prometheus recorder as the global `metrics` recorder, or
/// returns the one installed before (several servers in one process, as in
/// tests, share it).
pub fn install() -> anyhow::Result<PrometheusHandle> {
    let mut installed = INSTALLED
        .lock()
        .map_err(|_| anyhow::anyhow!("metrics recorder lock poisoned"))?;
    if let Some(h) = installed.as_ref() {
        return Ok(h.clone());
    }
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)?
        .set_buckets_for_metric(
            Matcher::Full(im_service::metrics::WRITER_BATCH_SIZE.into()),
            BATCH_BUCKETS,
        )?
        .build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder)
        .context("another metrics recorder is already installed in this process")?;
    describe();
    *installed = Some(handle.clone());
    Ok(handle)
}

/// The `# HELP` lines of every crate's metrics.
fn describe() {
    im_transport::metrics::describe();
    im_service::metrics::describe();
    im_repository::describe_metrics();
    im_cache::describe_metrics();
}

/// The `/metrics` route for the HTTP router, rendering `handle`.
pub fn endpoint(
    c: &MetricsConfig,
    handle: PrometheusHandle,
) -> im_transport::metrics::MetricsEndpoint {
    im_transport::metrics::MetricsEndpoint {
        path: c.path.clone(),
        token: c.token.as_ref().map(|t| Arc::from(t.expose_secret())),
        render: Arc::new(move || handle.render()),
    }
}

/// Folds histogram samples in every [`UPKEEP_INTERVAL`] until shutdown.
pub async fn upkeep(handle: PrometheusHandle, shutdown: CancellationToken) {
    let mut every = tokio::time::interval(UPKEEP_INTERVAL);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = every.tick() => handle.run_upkeep(),
        }
    }
}
