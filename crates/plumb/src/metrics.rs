//! Prometheus metrics for operators, on a listener of their own (`--metrics-listen ADDR`, path
//! `/metrics`): nothing else is served there, and nothing of it is served on the public one.

use anyhow::{Context, Result};
use axum::Router;
use axum::routing::get;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::net::SocketAddr;
use std::time::Duration;

/// Latency buckets, in seconds, for every `_seconds` histogram.
const BUCKETS: [f64; 13] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// What each metric means (the `# HELP` lines); the roles record them where it happens.
const HELP: [(&str, &str); 11] = [
    ("plumb_events_accepted_total", "Events put in the queue (answered 202)."),
    ("plumb_events_refused_total", "Hits turned away, by reason (the security counters, for registered sites)."),
    (
        "plumb_queue_depth",
        "Queue entries the pipeline has not read yet (the embedded queue; NATS does not say cheaply).",
    ),
    ("plumb_queue_lag_seconds", "Age of the newest queue entry the pipeline read last (0 when caught up)."),
    ("plumb_pipeline_uncommitted_rows", "Rows made by the pipeline and not yet committed to the event store."),
    ("plumb_store_commit_seconds", "Time of one event-store commit (rows, rollups and queue position)."),
    ("plumb_query_seconds", "Time of one Stats API query over the event store."),
    ("plumb_http_connections", "Open HTTP connections on the public listener."),
    ("plumb_sse_streams", "Open realtime event streams."),
    ("plumb_deliveries_total", "E-mail and webhook delivery attempts, by channel and outcome (sent, retry, failed)."),
    ("plumb_alerts_fired_total", "Traffic alerts fired, by kind."),
];

/// Makes this process record metrics (before the roles start, so their handles are live).
pub fn install() -> Result<PrometheusHandle> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &BUCKETS)
        .context("metric buckets")?
        .install_recorder()
        .context("cannot record metrics")?;
    for (name, help) in HELP {
        metrics::describe_counter!(name, help);
    }
    Ok(handle)
}

/// Serves `/metrics` on `addr` until the process ends.
pub async fn serve(addr: SocketAddr, handle: PrometheusHandle) -> Result<()> {
    let listener =
        tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot listen for metrics on {addr}"))?;
    tracing::info!("Prometheus metrics at http://{addr}/metrics");
    let upkeep = handle.clone();
    tokio::spawn(async move {
        // Histograms keep their samples until the exporter folds them in.
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            upkeep.run_upkeep();
        }
    });
    let app = Router::new().route("/metrics", get(move || std::future::ready(handle.render())));
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!("the metrics listener stopped: {e}");
        }
    });
    Ok(())
}
