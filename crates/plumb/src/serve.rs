//! The serving roles and their wiring. `plumb serve` runs collector → queue → pipeline → store →
//! API in one process. `plumb collect` runs the collector alone, and `plumb work` the pipeline
//! with the Stats API and the dashboard, on the same data directory: taking events in then never
//! waits for processing or for dashboard queries, and a burst becomes a backlog in the queue. On
//! the embedded store the pipeline and the API share a process, because only one process may open
//! a DuckDB file.

use crate::config::Config;
use anyhow::{Context, Result, bail};
use axum::Router;
use plumb_collector::{Collector, CollectorConfig};
use plumb_core::live::{LiveVisitors, decode_hits, encode_hits};
use plumb_core::url::PageRules;
use plumb_meta::{MetaStore, PgMeta, SqliteMeta};
use plumb_pipeline::{Handover, ImportInbox, Pipeline, PipelineConfig, PipelineHandle};
use plumb_queue::{
    Consumer, LiveFeed, NatsConfig, NatsConsumer, NatsQueue, Partitions, Producer, SqliteConsumer, SqliteSpool,
};
use plumb_store::{ClickHouseReader, ClickHouseStore, DuckStore, EventReader, EventWriter};
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
    /// The API and the dashboard alone, over a shared store (`plumb web`): as many as needed.
    Web,
}

pub fn run(config: Config, roles: Roles) -> Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PLUMB_LOG").unwrap_or_else(|_| "info".into());
    // Logs go to stderr (stdout is for what commands print).
    let logs = tracing_subscriber::fmt().with_writer(std::io::stderr).with_env_filter(filter);
    if config.json_logs {
        logs.json().init();
    } else {
        logs.init();
    }
    let metrics = config.metrics_listen.map(|addr| crate::metrics::install().map(|h| (addr, h))).transpose()?;
    check_paths(&config.tracker_paths)?;
    let meta = open_meta(&config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let (producer, consumer) = open_queue(&config, roles, &runtime)?;
    let collector = producer.map(|p| collector(&config, &meta, p)).transpose()?;
    let worker = consumer.map(|c| worker(&config, &meta, c, collector.as_ref())).transpose()?;
    let (pipeline, web, _live_feed) = match worker {
        Some((pipeline, web, feed)) => (Some(pipeline), Some(web), feed),
        None if roles == Roles::Web => {
            let (web, feed) = web_alone(&config, &meta)?;
            (None, Some(web), feed)
        }
        None => (None, None, None),
    };

    let mut app = Router::new();
    if let Some(c) = &collector {
        app = app.merge(plumb_collector::router(c.clone()));
    }
    if let Some(web) = &web {
        app = app.merge(plumb_web::router(web.clone()));
    }
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        tracing::info!(
            "Plumb ({roles:?}) is listening on http://{} (data in {})",
            config.listen,
            config.data_dir.display()
        );
        if let Some((addr, handle)) = metrics {
            crate::metrics::serve(addr, handle).await?;
        }
        if let Some(c) = &collector {
            spawn_collector_chores(c.clone());
        }
        if let Some(web) = &web {
            spawn_web_chores(web.clone());
            web.notifier.spawn();
        }
        // Sharing a process, the dashboard and API may hold a quarter of the connections.
        let web = (roles == Roles::All).then_some(crate::http::WebLane {
            connections: (config.max_connections / 4).max(1),
            is_collector: {
                let paths = config.tracker_paths.clone();
                Arc::new(move |path: &str| plumb_collector::is_collector_path(&paths, path))
            },
        });
        let lanes = crate::http::Lanes { max_connections: config.max_connections, web };
        crate::http::serve(listener, app, lanes, shutdown_signal()).await;
        anyhow::Ok(())
    })?;
    // In-flight requests have had their answers; let the pipeline finish its batch.
    if let Some(pipeline) = pipeline {
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

/// Configured tracker paths must not take a route of the API or the dashboard: the event path is
/// none of theirs, and the script's directory holds none of them.
fn check_paths(paths: &plumb_core::paths::TrackerPaths) -> Result<()> {
    use plumb_core::paths::DEFAULT_EVENT;
    let collector = plumb_collector::routes(&Default::default());
    let taken = plumb_web::routes().into_iter().map(|(_, p, _)| p.to_owned()).chain(collector.into_iter().map(|r| r.1));
    let segments = |p: &str| p.trim_start_matches('/').split('/').map(str::to_owned).collect::<Vec<_>>();
    // A route's `{name}` segment stands for any one segment.
    let fits = |route: &[String], path: &[String]| route.iter().zip(path).all(|(r, p)| r == p || r.starts_with('{'));
    let (event, dir) = (segments(&paths.event), segments(paths.script_dir()));
    for route in taken {
        let r = segments(&route);
        let event_taken = paths.event != DEFAULT_EVENT && r.len() == event.len() && fits(&r, &event);
        let dir_taken = paths.script_dir() != "/js" && r.len() > dir.len() && fits(&r, &dir);
        if event_taken || dir_taken {
            bail!("--event-path / --script-path: Plumb already serves `{route}` there; choose another path");
        }
    }
    Ok(())
}

/// The metadata: on PostgreSQL when `--meta` names a server, else the file in the data directory.
pub fn open_meta(config: &Config) -> Result<Arc<dyn MetaStore>> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data directory {}", config.data_dir.display()))?;
    Ok(match &config.meta {
        Some(url) => Arc::new(PgMeta::connect(url).context("cannot open the metadata on PostgreSQL")?),
        None => Arc::new(SqliteMeta::open(&config.meta_path()).context("cannot open the metadata database")?),
    })
}

/// The producer (collector) and consumer (pipeline) ends of the queue, as a process's roles need them.
type QueueEnds = (Option<Arc<dyn Producer>>, Option<Box<dyn Consumer>>);

/// The queue's two ends this process's roles need: on NATS JetStream when `--queue` names a
/// server, else the spool file in the data directory.
fn open_queue(config: &Config, roles: Roles, runtime: &tokio::runtime::Runtime) -> Result<QueueEnds> {
    let (produce, consume) = (matches!(roles, Roles::All | Roles::Collect), matches!(roles, Roles::All | Roles::Work));
    if let Some(url) = &config.queue {
        let nats = NatsConfig::new(url.clone());
        let producer: Option<Arc<dyn Producer>> = match produce {
            true => {
                Some(Arc::new(runtime.block_on(NatsQueue::connect(&nats)).context("cannot open the queue on NATS")?))
            }
            false => None,
        };
        let consumer: Option<Box<dyn Consumer>> = match consume {
            true => Some(Box::new(
                NatsConsumer::connect(&nats, config.partitions.clone().map_or(Partitions::All, Partitions::Only))
                    .context("cannot open the queue on NATS for reading")?,
            )),
            false => None,
        };
        return Ok((producer, consumer));
    }
    let spool = produce.then(|| SqliteSpool::open(config.queue_path()).context("cannot open the queue")).transpose()?;
    let consumer: Option<Box<dyn Consumer>> = match (consume, &spool) {
        (false, _) => None,
        // In one process the pipeline is woken by the queue's writer; apart, it looks.
        (true, Some(spool)) => Some(Box::new(spool.consumer().context("cannot open the queue for reading")?)),
        (true, None) => {
            Some(Box::new(SqliteConsumer::open(&config.queue_path()).context("cannot open the queue for reading")?))
        }
    };
    Ok((spool.map(|s| Arc::new(s) as Arc<dyn Producer>), consumer))
}

fn collector(config: &Config, meta: &Arc<dyn MetaStore>, queue: Arc<dyn Producer>) -> Result<Arc<Collector>> {
    let config = CollectorConfig {
        trusted_proxies: config.trusted_proxies.clone(),
        per_address: config.ip_rate_limit,
        per_site: config.site_rate_limit,
        global: config.global_rate_limit,
        per_visitor: config.visitor_rate_limit,
        per_key: config.key_event_rate_limit,
        geoip_db: config.geoip_db.clone(),
        pages: PageRules { keep_query_params: config.keep_query_params.clone(), keep_www: config.keep_www },
        paths: config.tracker_paths.clone(),
    };
    Collector::new(meta.clone(), queue, config).map_err(anyhow::Error::msg)
}

/// The event store's writer and reader: on ClickHouse when `--store` names a server, else the
/// DuckDB file in the data directory.
fn open_store(config: &Config) -> Result<(Box<dyn EventWriter>, Arc<dyn EventReader>)> {
    Ok(match &config.store {
        Some(url) => {
            // Workers side by side each keep their own position: named by their partitions.
            let writer = match &config.partitions {
                Some(p) => format!("partitions {}", p.iter().map(u16::to_string).collect::<Vec<_>>().join(",")),
                None => "all partitions".to_owned(),
            };
            let store = ClickHouseStore::open_as(url, &writer).context("cannot open the event store on ClickHouse")?;
            let reader = store.reader(config.query_timeout);
            (Box::new(store), Arc::new(reader))
        }
        None => {
            let store = DuckStore::open(&config.store_path()).context("cannot open the event store")?;
            let reader = store.reader(config.query_timeout).context("cannot open an event store reader")?;
            (Box::new(store), Arc::new(reader))
        }
    })
}

/// With the queue on NATS, current visitors travel between processes over it: a worker tells
/// what it records, a web process hears it. The feed must live as long as the process.
fn live_feed(config: &Config) -> Result<Option<LiveFeed>> {
    config.queue.as_deref().map(|url| LiveFeed::connect(url).context("cannot open the live feed on NATS")).transpose()
}

/// The pipeline over `consumer`, and the API and dashboard over the store it writes.
fn worker(
    config: &Config,
    meta: &Arc<dyn MetaStore>,
    consumer: Box<dyn Consumer>,
    collector: Option<&Arc<Collector>>,
) -> Result<(PipelineHandle, Arc<Web>, Option<Arc<LiveFeed>>)> {
    let (store, reader) = open_store(config)?;
    let feed = live_feed(config)?.map(Arc::new);
    let live = match &feed {
        Some(feed) => {
            let feed = feed.clone();
            LiveVisitors::tapped(move |hits| feed.publish(encode_hits(hits)))
        }
        None => LiveVisitors::default(),
    };
    let pipeline = Pipeline::new(
        consumer,
        store,
        meta.clone(),
        PipelineConfig {
            retention: config.queue_retention,
            // Only an embedded store is moved by `plumb migrate`.
            handovers: match config.store {
                None => vec![
                    Handover::for_migrate(&config.data_dir),
                    Handover::for_backup(&config.data_dir),
                    Handover::for_export(&config.data_dir),
                ],
                Some(_) => Vec::new(),
            },
            // `plumb import` writes ClickHouse itself.
            imports: config.store.is_none().then(|| ImportInbox::new(&config.data_dir)),
            ..Default::default()
        },
    )
    .with_live(Arc::new(live))
    .spawn()
    .context("cannot start the pipeline")?;
    // The notice the geolocation data's licence asks for: from the collector in this process,
    // else from the same file.
    let geo_attribution = match collector {
        Some(c) => c.geo_attribution(),
        None => plumb_collector::geo::Geo::open(config.geoip_db.as_deref()).map_err(anyhow::Error::msg)?.attribution(),
    };
    // A worker of some partitions sees some visitors only; the web processes hearing every
    // worker judge alerts then.
    let whole_view = config.partitions.is_none();
    let web = web(config, meta, reader, pipeline.live.clone(), geo_attribution, whole_view)?;
    Ok((pipeline, web, feed))
}

/// The API and dashboard alone (`plumb web`), over the shared store; current visitors come from
/// the workers over NATS.
fn web_alone(config: &Config, meta: &Arc<dyn MetaStore>) -> Result<(Arc<Web>, Option<Arc<LiveFeed>>)> {
    let Some(url) = &config.store else {
        anyhow::bail!(
            "plumb web needs the event store on a server (--store clickhouse://HOST:HTTP_PORT/DB): the embedded \
             DuckDB file is opened by plumb work alone"
        );
    };
    // Only read: a web process keeps no position and writes nothing.
    let reader: Arc<dyn EventReader> = Arc::new(
        ClickHouseReader::open(url, config.query_timeout).context("cannot open the event store on ClickHouse")?,
    );
    let live = Arc::new(LiveVisitors::default());
    let feed = live_feed(config)?.map(Arc::new);
    if let Some(feed) = &feed {
        let heard = live.clone();
        feed.subscribe(move |bytes| match decode_hits(bytes) {
            Some(hits) => heard.record(hits),
            None => tracing::warn!("ignoring a malformed message on the live feed"),
        })
        .context("cannot listen to the live feed on NATS")?;
    }
    let geo_attribution =
        plumb_collector::geo::Geo::open(config.geoip_db.as_deref()).map_err(anyhow::Error::msg)?.attribution();
    let whole_view = feed.is_some();
    Ok((web(config, meta, reader, live, geo_attribution, whole_view)?, feed))
}

fn web(
    config: &Config,
    meta: &Arc<dyn MetaStore>,
    reader: Arc<dyn EventReader>,
    live: Arc<LiveVisitors>,
    geo_attribution: Option<(&'static str, &'static str)>,
    whole_view: bool,
) -> Result<Arc<Web>> {
    let notify = plumb_notify::NotifyConfig {
        watch_alerts: whole_view,
        smtp_url: config.smtp_url.as_ref().map(|u| u.0.clone()),
        mail_from: config.mail_from.clone(),
        public_url: config.public_url.clone(),
        allow_private_webhooks: config.webhook_allow_private,
    };
    let notifier =
        plumb_notify::Notifier::new(&notify, meta.clone(), reader.clone(), live.clone()).map_err(anyhow::Error::msg)?;
    let web = Web::new(
        meta.clone(),
        reader,
        live,
        Arc::new(notifier),
        WebConfig {
            rate_limit: config.key_rate_limit,
            public_url: config.public_url.clone(),
            collector_url: config.collector_url.clone(),
            tracker_paths: config.tracker_paths.clone(),
            privacy: plumb_web::PrivacyFacts {
                queue_retention: config.queue_retention,
                kept_query_params: config.keep_query_params.clone(),
                location_db: config.geoip_db.is_some(),
            },
            geo_attribution,
            trusted_proxies: config.trusted_proxies.clone(),
        },
    )
    .context("cannot read the cookie-signing key")?;
    Ok(Arc::new(web))
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
