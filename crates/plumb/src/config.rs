//! Configuration: flags, then `PLUMB_*` variables (clap reads both), then the TOML file, then
//! defaults.

use anyhow::{Context, Result, bail};
use clap::Args;
use ipnet::IpNet;
use plumb_core::paths::TrackerPaths;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What every serving role takes.
#[derive(Args, Debug, Default)]
pub struct ServerArgs {
    /// A proxy (address or CIDR) whose X-Forwarded-For is believed; repeatable. The client
    /// address it forwards is the one rate limits and geolocation see.
    #[arg(long = "trusted-proxy", env = "PLUMB_TRUSTED_PROXIES", value_delimiter = ',', value_parser = parse_net)]
    trusted_proxies: Vec<IpNet>,
    /// Address to listen on [default: 127.0.0.1:8000].
    #[arg(long, env = "PLUMB_LISTEN")]
    listen: Option<SocketAddr>,
    /// Open connections served at once; more wait in the kernel's backlog [default: 10000].
    #[arg(long, env = "PLUMB_MAX_CONNECTIONS", value_parser = clap::value_parser!(u32).range(1..))]
    max_connections: Option<u32>,
    /// An MMDB file (DB-IP Lite or MaxMind City/Country) for regions and cities; countries work
    /// without one. The collector looks addresses up in it; the dashboard shows its attribution.
    #[arg(long, env = "PLUMB_GEOIP_DB")]
    geoip_db: Option<PathBuf>,
    /// A path of your own for the tracker, e.g. /s/app.js (variants beside it: /s/app.hash.js),
    /// which ad blockers' lists do not name; /js/script.js is served too [default: none].
    #[arg(long, env = "PLUMB_SCRIPT_PATH")]
    script_path: Option<String>,
    /// A path of your own for the tracker's events, e.g. /e/ingest; the served tracker sends
    /// there, and /api/event is served too [default: none].
    #[arg(long, env = "PLUMB_EVENT_PATH")]
    event_path: Option<String>,
    /// Serve Prometheus metrics at http://ADDR/metrics, e.g. 127.0.0.1:9100 (a listener of its
    /// own, for operators; nothing else is served there) [default: none].
    #[arg(long, env = "PLUMB_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    /// Log lines as `text` or `json` (one object per line) [default: text].
    #[arg(long, env = "PLUMB_LOG_FORMAT", value_parser = ["text", "json"])]
    log_format: Option<String>,
}

/// The collector's options.
#[derive(Args, Debug, Default)]
pub struct CollectorArgs {
    /// Events per second accepted from one client address (burst: 5 s worth) [default: 20].
    #[arg(long, env = "PLUMB_IP_RATE_LIMIT", value_parser = clap::value_parser!(u32).range(1..))]
    ip_rate_limit: Option<u32>,
    /// Events per second accepted for one site (burst: 2 s worth) [default: 2000].
    #[arg(long, env = "PLUMB_SITE_RATE_LIMIT", value_parser = clap::value_parser!(u32).range(1..))]
    site_rate_limit: Option<u32>,
    /// Events per second accepted from one API key with `events:write` (server-side senders;
    /// burst: 10 s worth), instead of the address and site limits [default: 1000].
    #[arg(long, env = "PLUMB_KEY_EVENT_RATE_LIMIT", value_parser = clap::value_parser!(u32).range(1..))]
    key_event_rate_limit: Option<u32>,
    /// Events per second the collector accepts in all [default: 50000].
    #[arg(long, env = "PLUMB_GLOBAL_RATE_LIMIT", value_parser = clap::value_parser!(u32).range(1..))]
    global_rate_limit: Option<u32>,
    /// Events per minute one visitor may send (burst: a minute's worth); faster ones are counted
    /// as `too_fast` and not stored [default: 60].
    #[arg(long, env = "PLUMB_VISITOR_RATE_LIMIT", value_parser = clap::value_parser!(u32).range(1..))]
    visitor_rate_limit: Option<u32>,
    /// Query parameters kept in page paths, e.g. q,page (every other one is dropped) [default: none].
    #[arg(long, env = "PLUMB_KEEP_QUERY_PARAMS", value_delimiter = ',', value_parser = parse_param_name)]
    keep_query_params: Vec<String>,
    /// Keep `www.` in page hostnames (for sites where www.example.com and example.com differ).
    #[arg(long, env = "PLUMB_KEEP_WWW")]
    keep_www: bool,
}

/// The pipeline's and the dashboard's options.
#[derive(Args, Debug, Default)]
pub struct WorkerArgs {
    /// How long processed events stay in the queue for replay, e.g. 30m, 2s [default: 30m].
    #[arg(long, env = "PLUMB_QUEUE_RETENTION", value_parser = parse_duration)]
    queue_retention: Option<Duration>,
    /// Stats and Sites API requests per minute allowed to each caller: API key, signed-in user,
    /// or shared link per client network [default: 600].
    #[arg(long, env = "PLUMB_KEY_RATE_LIMIT", value_parser = clap::value_parser!(u32).range(1..))]
    key_rate_limit: Option<u32>,
    /// How long one Stats API query may run before it is stopped with `503`, e.g. 10s [default: 10s].
    #[arg(long, env = "PLUMB_QUERY_TIMEOUT", value_parser = parse_duration)]
    query_timeout: Option<Duration>,
    /// Where browsers reach Plumb, e.g. https://stats.example.com (snippets, invite links,
    /// Secure cookies) [default: the request's Host].
    #[arg(long, env = "PLUMB_PUBLIC_URL", value_parser = parse_public_url)]
    public_url: Option<String>,
    /// Where browsers reach the collector, when it runs apart (`plumb collect`), e.g.
    /// https://collect.example.com: the snippet loads the tracker from there [default: the public URL].
    #[arg(long, env = "PLUMB_COLLECTOR_URL", value_parser = parse_public_url)]
    collector_url: Option<String>,
    /// The SMTP server reports and alerts are mailed through: smtp://HOST:PORT (plain),
    /// smtp://USER:PASSWORD@HOST:587?tls=required (STARTTLS) or smtps://USER:PASSWORD@HOST:465;
    /// needs --mail-from and --public-url [default: no mail].
    #[arg(long, env = "PLUMB_SMTP_URL", value_parser = parse_smtp_url, hide_env_values = true)]
    smtp_url: Option<SmtpUrl>,
    /// The sender of every mail, e.g. "Plumb <stats@example.com>".
    #[arg(long, env = "PLUMB_MAIL_FROM")]
    mail_from: Option<String>,
    /// Let webhooks call loopback and private addresses (a receiver on this host or network);
    /// without it a site's admin cannot make Plumb call inside its network.
    #[arg(long, env = "PLUMB_WEBHOOK_ALLOW_PRIVATE")]
    webhook_allow_private: bool,
}

/// `plumb serve`: every role in one process.
#[derive(Args, Debug, Default)]
pub struct ServeArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    #[command(flatten)]
    pub collector: CollectorArgs,
    #[command(flatten)]
    pub worker: WorkerArgs,
}

/// The TOML file's shape; every key is optional.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    listen: Option<SocketAddr>,
    trusted_proxies: Option<Vec<String>>,
    queue_retention: Option<String>,
    query_timeout: Option<String>,
    key_rate_limit: Option<u32>,
    ip_rate_limit: Option<u32>,
    site_rate_limit: Option<u32>,
    global_rate_limit: Option<u32>,
    visitor_rate_limit: Option<u32>,
    key_event_rate_limit: Option<u32>,
    max_connections: Option<u32>,
    geoip_db: Option<PathBuf>,
    keep_query_params: Option<Vec<String>>,
    keep_www: Option<bool>,
    script_path: Option<String>,
    event_path: Option<String>,
    public_url: Option<String>,
    collector_url: Option<String>,
    smtp_url: Option<SmtpUrl>,
    mail_from: Option<String>,
    webhook_allow_private: Option<bool>,
    metrics_listen: Option<SocketAddr>,
    log_format: Option<String>,
    meta: Option<String>,
    queue: Option<String>,
    store: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub trusted_proxies: Vec<IpNet>,
    pub queue_retention: Duration,
    pub query_timeout: Duration,
    pub key_rate_limit: u32,
    pub ip_rate_limit: u32,
    pub site_rate_limit: u32,
    pub global_rate_limit: u32,
    pub visitor_rate_limit: u32,
    pub key_event_rate_limit: u32,
    pub max_connections: usize,
    pub geoip_db: Option<PathBuf>,
    pub keep_query_params: Vec<String>,
    pub keep_www: bool,
    /// Where the tracker and its events are served (first-party paths, if configured).
    pub tracker_paths: TrackerPaths,
    pub public_url: Option<String>,
    pub collector_url: Option<String>,
    /// Mail and webhooks.
    pub smtp_url: Option<SmtpUrl>,
    pub mail_from: Option<String>,
    pub webhook_allow_private: bool,
    /// Where Prometheus metrics are served, if anywhere.
    pub metrics_listen: Option<SocketAddr>,
    pub json_logs: bool,
    /// PostgreSQL for the metadata, instead of the data directory's file.
    pub meta: Option<String>,
    /// NATS JetStream for the queue, instead of the data directory's spool.
    pub queue: Option<String>,
    /// ClickHouse for the event store, instead of the data directory's DuckDB file.
    pub store: Option<String>,
    /// The queue partitions this worker reads (`plumb work --partitions`); all when `None`.
    pub partitions: Option<Vec<u16>>,
}

/// A query parameter name: 1 to 50 letters, digits, `_`, `-` or `.`.
pub fn parse_param_name(s: &str) -> std::result::Result<String, String> {
    let s = s.trim();
    let ok = (1..=50).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b));
    if ok { Ok(s.to_owned()) } else { Err(format!("`{s}` is not a query parameter name (letters, digits, _ - .)")) }
}

/// An absolute http(s) address without a trailing slash.
pub fn parse_public_url(s: &str) -> std::result::Result<String, String> {
    let s = s.trim().trim_end_matches('/');
    match url::Url::parse(s) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() && u.query().is_none() => {
            Ok(s.to_owned())
        }
        _ => Err(format!("`{s}` is not an http(s) address like https://stats.example.com")),
    }
}

/// An SMTP URL, which may hold a password: shown redacted.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct SmtpUrl(pub String);

impl std::fmt::Debug for SmtpUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SmtpUrl(redacted)")
    }
}

impl TryFrom<String> for SmtpUrl {
    type Error = String;
    fn try_from(s: String) -> std::result::Result<SmtpUrl, String> {
        parse_smtp_url(&s)
    }
}

/// An SMTP URL (checked in full when the mailer is made); credentials only over TLS.
pub fn parse_smtp_url(s: &str) -> std::result::Result<SmtpUrl, String> {
    let s = s.trim();
    let forms = "smtp://HOST:PORT, smtp://USER:PASSWORD@HOST:587?tls=required or smtps://USER:PASSWORD@HOST:465";
    let url = url::Url::parse(s).map_err(|_| format!("mail goes through an SMTP server: {forms}"))?;
    if !matches!(url.scheme(), "smtp" | "smtps") || url.host_str().is_none() {
        return Err(format!("mail goes through an SMTP server: {forms}"));
    }
    let credentials = !url.username().is_empty() || url.password().is_some();
    let tls = url.scheme() == "smtps" || url.query_pairs().any(|(k, v)| k == "tls" && v == "required");
    if credentials && !tls {
        return Err("an SMTP password goes only over TLS: smtps://… or smtp://…?tls=required".to_owned());
    }
    Ok(SmtpUrl(s.to_owned()))
}

/// A PostgreSQL URL for the metadata (checked in full when connecting).
pub fn parse_meta_url(s: &str) -> std::result::Result<String, String> {
    let s = s.trim();
    if s.starts_with("postgres://") || s.starts_with("postgresql://") {
        Ok(s.to_owned())
    } else {
        Err("the metadata can live on PostgreSQL, as postgres://USER[:PASSWORD]@HOST[:PORT]/DB".to_owned())
    }
}

/// Queue partitions: numbers and ranges, `0-7` or `0,2,4-6` (checked against the queue's count
/// when connecting).
pub fn parse_partitions(s: &str) -> std::result::Result<PartitionList, String> {
    let bad = || format!("`{s}` is not a list of partitions, such as 0-7 or 0,2,4-6");
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim) {
        let (from, to) = part.split_once('-').unwrap_or((part, part));
        let (from, to): (u16, u16) = (from.trim().parse().map_err(|_| bad())?, to.trim().parse().map_err(|_| bad())?);
        if from > to || to >= plumb_queue::MAX_PARTITIONS {
            return Err(bad());
        }
        out.extend(from..=to);
    }
    out.sort_unstable();
    out.dedup();
    Ok(PartitionList(out))
}

/// Partition numbers as one flag value (clap reads a bare `Vec` as many values).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionList(pub Vec<u16>);

/// A ClickHouse URL for the event store (checked in full when connecting).
pub fn parse_store_url(s: &str) -> std::result::Result<String, String> {
    let s = s.trim();
    if s.starts_with("clickhouse://") {
        Ok(s.to_owned())
    } else {
        Err("the event store can live on ClickHouse, as clickhouse://HOST:HTTP_PORT/DB[?cluster=NAME]".to_owned())
    }
}

/// A NATS URL for the queue (checked in full when connecting).
pub fn parse_queue_url(s: &str) -> std::result::Result<String, String> {
    let s = s.trim();
    if s.starts_with("nats://") {
        Ok(s.to_owned())
    } else {
        Err("the queue can live on NATS JetStream, as nats://HOST:PORT".to_owned())
    }
}

pub fn parse_net(s: &str) -> std::result::Result<IpNet, String> {
    let s = s.trim();
    s.parse::<IpNet>()
        .or_else(|_| s.parse::<std::net::IpAddr>().map(IpNet::from))
        .map_err(|_| format!("`{s}` is not an IP address or CIDR range (e.g. 10.0.0.0/8)"))
}

/// `500ms`, `2s`, `30m`, `24h`.
pub fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("`{s}` is not a duration (e.g. 500ms, 2s, 30m, 24h)"))?;
    let ms = match unit {
        "ms" => n,
        "s" => n * 1000,
        "m" => n * 60_000,
        "h" => n * 3_600_000,
        _ => return Err(format!("`{s}`: duration unit must be ms, s, m or h")),
    };
    Ok(Duration::from_millis(ms))
}

/// A URL from the config file, checked like the flag's.
fn file_url(value: Option<String>, key: &str) -> Result<Option<String>> {
    value.map(|u| parse_public_url(&u)).transpose().map_err(|e| anyhow::anyhow!("config file: {key}: {e}"))
}

impl Config {
    pub fn load(path: Option<&Path>) -> Result<Self> {
        let file: FileConfig = match path {
            Some(p) => {
                let text =
                    std::fs::read_to_string(p).with_context(|| format!("cannot read config file {}", p.display()))?;
                toml::from_str(&text).with_context(|| format!("invalid config file {}", p.display()))?
            }
            None => FileConfig::default(),
        };
        let trusted_proxies = file
            .trusted_proxies
            .unwrap_or_default()
            .iter()
            .map(|s| parse_net(s))
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| anyhow::anyhow!("config file: trusted_proxies: {e}"))?;
        let queue_retention = match file.queue_retention {
            Some(s) => parse_duration(&s).map_err(|e| anyhow::anyhow!("config file: queue_retention: {e}"))?,
            None => Duration::from_secs(30 * 60),
        };
        let query_timeout = match file.query_timeout {
            Some(s) => parse_duration(&s).map_err(|e| anyhow::anyhow!("config file: query_timeout: {e}"))?,
            None => Duration::from_secs(10),
        };
        Ok(Self {
            query_timeout,
            data_dir: file.data_dir.unwrap_or_else(|| PathBuf::from("plumb-data")),
            listen: file.listen.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8000))),
            trusted_proxies,
            queue_retention,
            key_rate_limit: file.key_rate_limit.unwrap_or(600),
            ip_rate_limit: file.ip_rate_limit.unwrap_or(20),
            site_rate_limit: file.site_rate_limit.unwrap_or(2_000),
            global_rate_limit: file.global_rate_limit.unwrap_or(50_000),
            visitor_rate_limit: file.visitor_rate_limit.unwrap_or(60),
            key_event_rate_limit: file.key_event_rate_limit.unwrap_or(1_000),
            max_connections: file.max_connections.unwrap_or(10_000) as usize,
            geoip_db: file.geoip_db,
            keep_query_params: file
                .keep_query_params
                .unwrap_or_default()
                .iter()
                .map(|p| parse_param_name(p))
                .collect::<std::result::Result<_, _>>()
                .map_err(|e| anyhow::anyhow!("config file: keep_query_params: {e}"))?,
            keep_www: file.keep_www.unwrap_or(false),
            tracker_paths: TrackerPaths::new(file.script_path.as_deref(), file.event_path.as_deref())
                .map_err(|e| anyhow::anyhow!("config file: {e}"))?,
            public_url: file_url(file.public_url, "public_url")?,
            collector_url: file_url(file.collector_url, "collector_url")?,
            smtp_url: file.smtp_url,
            mail_from: file.mail_from,
            webhook_allow_private: file.webhook_allow_private.unwrap_or(false),
            metrics_listen: file.metrics_listen,
            json_logs: match file.log_format.as_deref() {
                None | Some("text") => false,
                Some("json") => true,
                Some(other) => bail!("config file: log_format: `{other}` is not `text` or `json`"),
            },
            meta: file
                .meta
                .map(|u| parse_meta_url(&u))
                .transpose()
                .map_err(|e| anyhow::anyhow!("config file: meta: {e}"))?,
            queue: file
                .queue
                .map(|u| parse_queue_url(&u))
                .transpose()
                .map_err(|e| anyhow::anyhow!("config file: queue: {e}"))?,
            partitions: None,
            store: file
                .store
                .map(|u| parse_store_url(&u))
                .transpose()
                .map_err(|e| anyhow::anyhow!("config file: store: {e}"))?,
        })
    }

    /// Every role's options (`plumb serve`).
    pub fn with_serve_args(self, args: ServeArgs) -> Result<Self> {
        self.with_server_args(args.server)?.with_collector_args(args.collector)?.with_worker_args(args.worker)
    }

    pub fn with_server_args(mut self, args: ServerArgs) -> Result<Self> {
        if !args.trusted_proxies.is_empty() {
            self.trusted_proxies = args.trusted_proxies;
        }
        if let Some(l) = args.listen {
            self.listen = l;
        }
        if let Some(n) = args.max_connections {
            self.max_connections = n as usize;
        }
        if self.max_connections == 0 {
            bail!("max connections must be at least 1");
        }
        if let Some(p) = args.geoip_db {
            self.geoip_db = Some(p);
        }
        if let Some(a) = args.metrics_listen {
            self.metrics_listen = Some(a);
        }
        if let Some(f) = args.log_format {
            self.json_logs = f == "json";
        }
        if args.script_path.is_some() || args.event_path.is_some() {
            let script = args.script_path.as_deref().unwrap_or(&self.tracker_paths.script);
            let event = args.event_path.as_deref().unwrap_or(&self.tracker_paths.event);
            self.tracker_paths = TrackerPaths::new(Some(script), Some(event)).map_err(anyhow::Error::msg)?;
        }
        Ok(self)
    }

    pub fn with_collector_args(mut self, args: CollectorArgs) -> Result<Self> {
        for (arg, value) in [
            (args.ip_rate_limit, &mut self.ip_rate_limit),
            (args.site_rate_limit, &mut self.site_rate_limit),
            (args.global_rate_limit, &mut self.global_rate_limit),
            (args.visitor_rate_limit, &mut self.visitor_rate_limit),
            (args.key_event_rate_limit, &mut self.key_event_rate_limit),
        ] {
            if let Some(n) = arg {
                *value = n;
            }
        }
        if [self.ip_rate_limit, self.site_rate_limit, self.global_rate_limit, self.key_event_rate_limit].contains(&0) {
            bail!("event rate limits must be at least 1 event per second");
        }
        if self.visitor_rate_limit == 0 {
            bail!("the visitor rate limit must be at least 1 event per minute");
        }
        if !args.keep_query_params.is_empty() {
            self.keep_query_params = args.keep_query_params;
        }
        self.keep_www |= args.keep_www;
        Ok(self)
    }

    pub fn with_worker_args(mut self, args: WorkerArgs) -> Result<Self> {
        if let Some(r) = args.queue_retention {
            self.queue_retention = r;
        }
        if let Some(n) = args.key_rate_limit {
            self.key_rate_limit = n;
        }
        if let Some(t) = args.query_timeout {
            self.query_timeout = t;
        }
        if self.query_timeout.is_zero() || self.query_timeout > Duration::from_secs(600) {
            bail!("the query timeout must be more than zero and at most 10m");
        }
        if let Some(u) = args.public_url {
            self.public_url = Some(u);
        }
        if let Some(u) = args.collector_url {
            self.collector_url = Some(u);
        }
        if let Some(u) = args.smtp_url {
            self.smtp_url = Some(u);
        }
        if let Some(f) = args.mail_from {
            self.mail_from = Some(f);
        }
        self.webhook_allow_private |= args.webhook_allow_private;
        if self.smtp_url.is_some() && (self.mail_from.is_none() || self.public_url.is_none()) {
            bail!("mail (--smtp-url) needs a sender (--mail-from) and --public-url, for the links mail carries");
        }
        if self.key_rate_limit == 0 {
            bail!("key rate limit must be at least 1 request per minute");
        }
        if self.queue_retention.is_zero() {
            bail!("queue retention must be greater than zero");
        }
        Ok(self)
    }

    pub fn meta_path(&self) -> PathBuf {
        self.data_dir.join("meta.db")
    }

    pub fn queue_path(&self) -> PathBuf {
        self.data_dir.join("queue.db")
    }

    pub fn store_path(&self) -> PathBuf {
        self.data_dir.join("events.duckdb")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_lists_parse_with_clear_errors() {
        assert_eq!(parse_partitions("0-3, 7,2").unwrap().0, [0, 1, 2, 3, 7]);
        assert_eq!(parse_partitions("5").unwrap().0, [5]);
        for bad in ["", "3-1", "a-b", "0-1024", "1,,2", "-1"] {
            let e = parse_partitions(bad).unwrap_err();
            assert!(e.contains("is not a list of partitions"), "{bad}: {e}");
        }
    }

    #[test]
    fn durations_and_networks_parse_with_clear_errors() {
        assert_eq!(parse_duration("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("30m").unwrap(), Duration::from_secs(1800));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert!(parse_duration("2 days").unwrap_err().contains("unit"));
        assert!(parse_duration("soon").is_err());
        assert_eq!(parse_net("10.0.0.1").unwrap().to_string(), "10.0.0.1/32");
        assert!(parse_net("10.0.0.0/33").is_err());
        assert_eq!(parse_public_url("https://stats.example.com/").unwrap(), "https://stats.example.com");
        assert!(parse_public_url("stats.example.com").is_err());
        assert!(parse_public_url("ftp://stats.example.com").is_err());
        assert_eq!(parse_param_name(" q ").unwrap(), "q");
        assert!(parse_param_name("a b").is_err() && parse_param_name("").is_err());
    }

    #[test]
    fn file_values_apply_unless_overridden() {
        let dir = std::env::temp_dir().join(format!("plumb-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("plumb.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:9000\"\nqueue_retention = \"5m\"\ntrusted_proxies = [\"10.0.0.0/8\"]\n",
        )
        .unwrap();
        let c = Config::load(Some(&path)).unwrap();
        assert_eq!(c.listen.port(), 9000);
        assert_eq!(c.queue_retention, Duration::from_secs(300));
        let server = ServerArgs { listen: Some("127.0.0.1:9100".parse().unwrap()), ..Default::default() };
        let c = c.with_serve_args(ServeArgs { server, ..Default::default() }).unwrap();
        assert_eq!(c.listen.port(), 9100);
        assert_eq!(c.trusted_proxies.len(), 1);
        for (text, msg) in [
            ("keep_query_params = [\"a b\"]", "is not a query parameter name"),
            ("public_url = \"stats.example.com\"", "is not an http(s) address"),
            ("collector_url = \"collect.example.com\"", "collector_url"),
            ("meta = \"mysql://plumb:s3cret@db/plumb\"", "meta: the metadata can live on PostgreSQL"),
            ("queue = \"http://nats:4222\"", "queue: the queue can live on NATS JetStream, as nats://HOST:PORT"),
            (
                "store = \"http://u:s3cret@ch:8123/plumb\"",
                "store: the event store can live on ClickHouse, as clickhouse://HOST:HTTP_PORT/DB",
            ),
        ] {
            std::fs::write(&path, text).unwrap();
            let e = format!("{:#}", Config::load(Some(&path)).unwrap_err());
            assert!(e.contains(msg), "{text}: {e}");
            assert!(!e.contains("s3cret"), "a refused URL is not repeated (it may hold a password): {e}");
        }
        std::fs::write(
            &path,
            "meta = \" postgres://p@db/plumb \"\nqueue = \"nats://q:4222\"\nstore = \"clickhouse://ch:8123/plumb\"",
        )
        .unwrap();
        let c = Config::load(Some(&path)).unwrap();
        assert_eq!((c.meta.as_deref(), c.queue.as_deref()), (Some("postgres://p@db/plumb"), Some("nats://q:4222")));
        assert_eq!(c.store.as_deref(), Some("clickhouse://ch:8123/plumb"));
        for (text, msg) in [
            ("max_connections = 0\n", "max connections must be at least 1"),
            ("visitor_rate_limit = 0\n", "visitor rate limit must be at least 1"),
        ] {
            std::fs::write(&path, text).unwrap();
            let e = Config::load(Some(&path)).unwrap().with_serve_args(ServeArgs::default()).unwrap_err();
            assert!(e.to_string().contains(msg), "{text}: {e}");
        }
        std::fs::write(&path, "keep_www = true\nvisitor_rate_limit = 30\n").unwrap();
        let c = Config::load(Some(&path)).unwrap().with_serve_args(ServeArgs::default()).unwrap();
        assert!(c.keep_www && c.visitor_rate_limit == 30);
        std::fs::write(&path, "keep_www = \"yes\"\n").unwrap();
        assert!(format!("{:#}", Config::load(Some(&path)).unwrap_err()).contains("keep_www"));
        std::fs::write(&path, "listen = \"127.0.0.1:9000\"\ncolour = \"blue\"\n").unwrap();
        assert!(format!("{:#}", Config::load(Some(&path)).unwrap_err()).contains("colour"));
    }
}
