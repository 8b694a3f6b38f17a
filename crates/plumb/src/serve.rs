//! `plumb serve`: wires collector → queue → pipeline → store → API in one process.

use crate::config::Config;
use anyhow::{Context, Result};
use plumb_collector::{Collector, CollectorConfig};
use plumb_core::url::PageRules;
use plumb_meta::{MetaStore, SqliteMeta};
use plumb_pipeline::{Pipeline, PipelineConfig};
use plumb_queue::SqliteSpool;
use plumb_store::DuckStore;
use plumb_web::{Web, WebConfig};
use std::sync::Arc;
use std::time::Duration;

/// How often the collector's security counters are written to metadata.
const SECURITY_FLUSH: Duration = Duration::from_secs(2);

pub fn run(config: Config) -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("PLUMB_LOG").unwrap_or_else(|_| "info".into()))
        .init();
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data directory {}", config.data_dir.display()))?;
    let meta: Arc<dyn MetaStore> =
        Arc::new(SqliteMeta::open(&config.meta_path()).context("cannot open the metadata database")?);
    let spool = SqliteSpool::open(config.queue_path()).context("cannot open the queue")?;
    let store = DuckStore::open(&config.store_path()).context("cannot open the event store")?;
    let reader = store.reader().context("cannot open an event store reader")?;
    let pipeline = Pipeline::new(
        spool.consumer().context("cannot open the queue for reading")?,
        store,
        meta.clone(),
        PipelineConfig { retention: config.queue_retention, ..Default::default() },
    )
    .spawn()
    .context("cannot start the pipeline")?;

    let collector = Collector::new(
        meta.clone(),
        Arc::new(spool),
        CollectorConfig {
            trusted_proxies: config.trusted_proxies.clone(),
            per_address: config.ip_rate_limit,
            per_site: config.site_rate_limit,
            global: config.global_rate_limit,
            per_visitor: config.visitor_rate_limit,
            geoip_db: config.geoip_db.clone(),
            pages: PageRules { keep_query_params: config.keep_query_params.clone(), keep_www: config.keep_www },
        },
    )
    .map_err(anyhow::Error::msg)?;
    let web = Web::new(
        meta,
        Arc::new(reader),
        pipeline.live.clone(),
        WebConfig {
            key_rate_limit: config.key_rate_limit,
            public_url: config.public_url.clone(),
            geo_attribution: collector.geo_attribution(),
        },
    )
    .context("cannot read the cookie-signing key")?;
    let web = Arc::new(web);
    let app = plumb_collector::router(collector.clone()).merge(plumb_web::router(web));

    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        tracing::info!("Plumb is listening on http://{} (data in {})", config.listen, config.data_dir.display());
        let counts = collector.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SECURITY_FLUSH);
            loop {
                tick.tick().await;
                let c = counts.clone();
                match tokio::task::spawn_blocking(move || c.flush_security_counts()).await {
                    Ok(Err(e)) => tracing::warn!("cannot write security counters (kept for the next try): {e}"),
                    Err(e) => tracing::warn!("security counter task failed: {e}"),
                    Ok(Ok(_)) => {}
                }
            }
        });
        let salts = collector.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tick.tick().await;
                let now = chrono::Utc::now().timestamp_millis();
                match salts.purge_salts(now) {
                    Ok(n) if n > 0 => tracing::info!("deleted {n} expired daily salt(s)"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!("cannot purge expired salts: {e}"),
                }
            }
        });
        crate::http::serve(listener, app, config.max_connections, shutdown_signal()).await;
        anyhow::Ok(())
    })?;
    // In-flight requests have had their answers; let the pipeline finish its batch.
    pipeline.shutdown();
    if let Err(e) = collector.flush_security_counts() {
        tracing::warn!("security counters of the last seconds are lost: {e}");
    }
    tracing::info!("Plumb stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("signal handler");
    tokio::select! {
        _ = ctrl_c => {},
        _ = term.recv() => {},
    }
    tracing::info!("shutting down");
}
