//! The serving roles and their wiring. `plumb serve` runs collector → queue → pipeline → store →
//! API in one process. `plumb collect` runs the collector alone, and `plumb work` the pipeline
//! with the Stats API and the dashboard, on the same data directory: taking events in then never
//! waits for processing or for dashboard queries, and a burst becomes a backlog in the queue. On
//! the embedded store the pipeline and the API share a process, because only one process may open
//! a DuckDB file.

use crate::config::Config;
use anyhow::{Context, Result};
use axum::Router;
use plumb_collector::{Collector, CollectorConfig};
use plumb_core::url::PageRules;
use plumb_meta::{MetaStore, SqliteMeta};
use plumb_pipeline::{Pipeline, PipelineConfig, PipelineHandle};
use plumb_queue::{SqliteConsumer, SqliteSpool};
use plumb_store::DuckStore;
use plumb_web::{Web, WebConfig};
use std::sync::Arc;
use std::time::Duration;

/// How often the collector's security counters are written to metadata.
const SECURITY_FLUSH: Duration = Duration::from_secs(2);

/// Which roles this process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Roles {
    /// Collector, pipeline, API and dashboard (`plumb serve`).
    All,
    /// The collector: events in, onto the queue (`plumb collect`).
    Collect,
    /// The pipeline, the API and the dashboard: the queue off, into the store (`plumb work`).
    Work,
}

pub fn run(config: Config, roles: Roles) -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("PLUMB_LOG").unwrap_or_else(|_| "info".into()))
        .init();
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data directory {}", config.data_dir.display()))?;
    let meta: Arc<dyn MetaStore> =
        Arc::new(SqliteMeta::open(&config.meta_path()).context("cannot open the metadata database")?);

    let spool = match roles {
        Roles::Work => None,
        Roles::All | Roles::Collect => Some(SqliteSpool::open(config.queue_path()).context("cannot open the queue")?),
    };
    let consumer = match (roles, &spool) {
        (Roles::Collect, _) => None,
        // In one process the pipeline is woken by the queue's writer; apart, it looks.
        (_, Some(spool)) => Some(spool.consumer().context("cannot open the queue for reading")?),
        (_, None) => Some(SqliteConsumer::open(&config.queue_path()).context("cannot open the queue for reading")?),
    };
    let collector = spool.map(|spool| collector(&config, &meta, spool)).transpose()?;
    let worker = consumer.map(|c| worker(&config, &meta, c, collector.as_ref())).transpose()?;

    let mut app = Router::new();
    if let Some(c) = &collector {
        app = app.merge(plumb_collector::router(c.clone()));
    }
    if let Some((_, web)) = &worker {
        app = app.merge(plumb_web::router(web.clone()));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        tracing::info!(
            "Plumb ({roles:?}) is listening on http://{} (data in {})",
            config.listen,
            config.data_dir.display()
        );
        if let Some(c) = &collector {
            spawn_collector_chores(c.clone());
        }
        if let Some((_, web)) = &worker {
            spawn_web_chores(web.clone());
        }
        // Sharing a process, the dashboard and API may hold a quarter of the connections.
        let web = (roles == Roles::All).then_some(crate::http::WebLane {
            connections: (config.max_connections / 4).max(1),
            is_collector: plumb_collector::is_collector_path,
        });
        let lanes = crate::http::Lanes { max_connections: config.max_connections, web };
        crate::http::serve(listener, app, lanes, shutdown_signal()).await;
        anyhow::Ok(())
    })?;
    // In-flight requests have had their answers; let the pipeline finish its batch.
    if let Some((pipeline, _)) = worker {
        pipeline.shutdown();
    }
    if let Some(c) = &collector
        && let Err(e) = c.flush_security_counts()
    {
        tracing::warn!("security counters of the last seconds are lost: {e}");
    }
    tracing::info!("Plumb stopped");
    Ok(())
}

fn collector(config: &Config, meta: &Arc<dyn MetaStore>, spool: SqliteSpool) -> Result<Arc<Collector>> {
    let config = CollectorConfig {
        trusted_proxies: config.trusted_proxies.clone(),
        per_address: config.ip_rate_limit,
        per_site: config.site_rate_limit,
        global: config.global_rate_limit,
        per_visitor: config.visitor_rate_limit,
        per_key: config.key_event_rate_limit,
        geoip_db: config.geoip_db.clone(),
        pages: PageRules { keep_query_params: config.keep_query_params.clone(), keep_www: config.keep_www },
    };
    Collector::new(meta.clone(), Arc::new(spool), config).map_err(anyhow::Error::msg)
}

/// The pipeline over `consumer`, and the API and dashboard over the store it writes.
fn worker(
    config: &Config,
    meta: &Arc<dyn MetaStore>,
    consumer: SqliteConsumer,
    collector: Option<&Arc<Collector>>,
) -> Result<(PipelineHandle, Arc<Web>)> {
    let store = DuckStore::open(&config.store_path()).context("cannot open the event store")?;
    let reader = store.reader(config.query_timeout).context("cannot open an event store reader")?;
    let pipeline = Pipeline::new(
        consumer,
        store,
        meta.clone(),
        PipelineConfig { retention: config.queue_retention, ..Default::default() },
    )
    .spawn()
    .context("cannot start the pipeline")?;
    // The notice the geolocation data's licence asks for: from the collector in this process,
    // else from the same file.
    let geo_attribution = match collector {
        Some(c) => c.geo_attribution(),
        None => plumb_collector::geo::Geo::open(config.geoip_db.as_deref()).map_err(anyhow::Error::msg)?.attribution(),
    };
    let web = Web::new(
        meta.clone(),
        Arc::new(reader),
        pipeline.live.clone(),
        WebConfig {
            rate_limit: config.key_rate_limit,
            public_url: config.public_url.clone(),
            collector_url: config.collector_url.clone(),
            geo_attribution,
            trusted_proxies: config.trusted_proxies.clone(),
        },
    )
    .context("cannot read the cookie-signing key")?;
    Ok((pipeline, Arc::new(web)))
}

/// Writes security counters every few seconds; every minute deletes the salts of days that have
/// ended and forgets idle visitors' rate buckets.
fn spawn_collector_chores(collector: Arc<Collector>) {
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
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            let now = chrono::Utc::now().timestamp_millis();
            match collector.forget_expired(now) {
                Ok(n) if n > 0 => tracing::info!("deleted {n} expired daily salt(s)"),
                Ok(_) => {}
                Err(e) => tracing::warn!("cannot purge expired salts: {e}"),
            }
        }
    });
}

/// Every minute, forgets rate-limit entries that no longer limit anything (client addresses).
fn spawn_web_chores(web: Arc<Web>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            web.forget_idle();
        }
    });
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
