//! HTTP ingestion. Parses and validates each hit, enriches it, signs it (the IP and User-Agent
//! stop here), and answers `202` only once the queue has it on disk. No database work beyond
//! cached metadata look-ups happens on this path.

mod body;
mod cache;
mod client_ip;
mod error;
mod firewall;
pub mod geo;
mod refusal;
pub mod spam;
mod tally;
pub mod tracker;
pub mod useragent;

pub use body::visit_info;
pub use client_ip::client_ip;
pub use error::ApiError;
pub use refusal::Refusal;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use body::{Checked, Context, EventBody, Sender};
use cache::{SaltCache, SiteCache};
use ipnet::IpNet;
use plumb_core::limit::RateLimiter;
use plumb_core::paths::{DEFAULT_EVENT, TrackerPaths};
use plumb_core::security::Reason;
use plumb_core::url::PageRules;
use plumb_meta::MetaStore;
use plumb_queue::{Message, Producer, QueueError};
use serde_json::json;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// Largest single-event body, and largest batch body.
pub const MAX_EVENT_BYTES: usize = 8 * 1024;
pub const MAX_BATCH_BYTES: usize = 1024 * 1024;
pub const MAX_BATCH_EVENTS: usize = 1000;

#[derive(Debug, Clone)]
pub struct CollectorConfig {
    /// Peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpNet>,
    /// Events per second allowed from one client network (see `plumb_core::net::limit_key`), for
    /// one site, and for the whole collector (defaults: `plumb serve --help`); API-key senders
    /// have their own limit per key instead of the first two. Each allows a burst: 5 s, 2 s, 1 s
    /// and 10 s of its rate.
    pub per_address: u32,
    pub per_site: u32,
    pub global: u32,
    pub per_key: u32,
    /// Events per minute one visitor may send (burst: a minute's worth); faster is not a person.
    /// Trusted senders (keys with `events:write`) are exempt.
    pub per_visitor: u32,
    /// An MMDB file (DB-IP Lite or MaxMind) for regions and cities; countries need none.
    pub geoip_db: Option<std::path::PathBuf>,
    /// What page URLs keep (query parameters, `www.`).
    pub pages: PageRules,
    /// Where the tracker and its events are served, besides Plausible's paths.
    pub paths: TrackerPaths,
}

/// Token buckets that turn floods away with `429` before any parsing or storage work, and the
/// per-visitor one that tells people from scripts.
struct Limits {
    /// By client network.
    address: RateLimiter<IpAddr>,
    site: RateLimiter<u32>,
    global: RateLimiter<()>,
    /// By API key id: server-side senders, apart from browsers' traffic.
    key: RateLimiter<u32>,
    /// By site and visitor signature.
    visitor: RateLimiter<(u32, u64)>,
}

impl Limits {
    fn new(c: &CollectorConfig) -> Self {
        Self {
            address: RateLimiter::new(c.per_address.saturating_mul(5), 5),
            site: RateLimiter::new(c.per_site.saturating_mul(2), 2),
            global: RateLimiter::new(c.global, 1),
            key: RateLimiter::new(c.per_key.saturating_mul(10), 10),
            visitor: RateLimiter::per_minute(c.per_visitor),
        }
    }
}

pub struct Collector {
    meta: Arc<dyn MetaStore>,
    queue: Arc<dyn Producer>,
    config: CollectorConfig,
    sites: SiteCache,
    salts: SaltCache,
    agents: useragent::UserAgents,
    tally: tally::Tally,
    /// Events put in the queue (`plumb_events_accepted_total`).
    accepted: metrics::Counter,
    limits: Limits,
    geo: geo::Geo,
    firewall: firewall::Firewall,
    spam: spam::SpamList,
    scripts: tracker::Scripts,
}

impl Collector {
    /// Fails only when a configured geolocation database cannot be read.
    pub fn new(
        meta: Arc<dyn MetaStore>,
        queue: Arc<dyn Producer>,
        config: CollectorConfig,
    ) -> Result<Arc<Self>, String> {
        let agents = useragent::UserAgents::new();
        let (sites, salts, tally) = (SiteCache::default(), SaltCache::default(), tally::Tally::default());
        let limits = Limits::new(&config);
        let geo = geo::Geo::open(config.geoip_db.as_deref())?;
        let (firewall, spam) = (firewall::Firewall::default(), spam::SpamList::new());
        let scripts = tracker::Scripts::new(&config.paths);
        let accepted = metrics::counter!("plumb_events_accepted_total");
        Ok(Arc::new(Self {
            sites,
            salts,
            agents,
            tally,
            accepted,
            limits,
            geo,
            firewall,
            spam,
            scripts,
            meta,
            queue,
            config,
        }))
    }

    /// The notice the geolocation database's licence asks the dashboard to show, and its link.
    pub fn geo_attribution(&self) -> Option<(&'static str, &'static str)> {
        self.geo.attribution()
    }

    /// Deletes salts of days that have ended everywhere, from the store and from memory, and
    /// forgets what identifies idle clients: rate buckets that have filled up again (keyed by
    /// visitor signature or client address) and User-Agents not seen for minutes.
    pub fn forget_expired(&self, now_ms: i64) -> Result<usize, plumb_meta::MetaError> {
        self.limits.visitor.forget_full();
        self.limits.address.forget_full();
        self.agents.age();
        self.salts.retain_live(now_ms);
        self.meta.purge_salts(now_ms)
    }

    /// Writes the security counters gathered since the last call; on failure they are kept for
    /// the next one. Returns how many (site, hour, reason) counts were written.
    pub fn flush_security_counts(&self) -> Result<usize, plumb_meta::MetaError> {
        let counts = self.tally.take();
        if counts.is_empty() {
            return Ok(0);
        }
        match self.meta.add_security_counts(&counts) {
            Ok(()) => Ok(counts.len()),
            Err(e) => {
                self.tally.restore(counts);
                Err(e)
            }
        }
    }

    /// The first look at a request, from its head alone: `429` when the collector, the client's
    /// network or the presented key has no budget left. A browser's request costs its network
    /// one token at once, valid or not (a flood of junk pays for itself); a key that is not valid
    /// costs its network one too (`401`), so guessing keys is rate-limited like anything else.
    /// The collector's and the sites' budgets are spent only on events found valid.
    fn admit_head(&self, peer: SocketAddr, headers: &HeaderMap) -> Result<Sender, Refusal> {
        let ip = client_ip(peer.ip(), headers, &self.config.trusted_proxies);
        let network = plumb_core::net::limit_key(ip);
        let refuse = |e| self.refused_unread(headers, Reason::RateLimited, e);
        let over = |what: &str, wait| Refusal::RateLimited {
            message: format!("{what} is over its event rate limit"),
            retry_after_secs: wait,
        };
        self.limits.global.check(&()).map_err(|w| refuse(over("the collector", w)))?;
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            self.limits.address.take(&network).map_err(|w| refuse(over("this address", w)))?;
            return Ok(Sender { ip, key: None });
        };
        // A key that is not valid costs its network a token: guessing keys is rate-limited like
        // any other traffic, while a valid key's sender is counted apart from its network.
        let unauthorized = |m: &str| match self.limits.address.take(&network) {
            Ok(()) => Refusal::Unauthorized(m.into()),
            Err(w) => refuse(over("this address", w)),
        };
        let secret = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| unauthorized("Authorization must be `Bearer <API key>`"))?;
        let key = self
            .meta
            .verify_key(secret.trim())
            .map_err(body::internal)?
            .ok_or_else(|| unauthorized("API key is invalid or revoked"))?;
        self.limits.key.check(&key.id).map_err(|w| refuse(over(&format!("API key `{}`", key.name), w)))?;
        Ok(Sender { ip, key: Some(key) })
    }

    /// Spends the rate budget of valid events all at once, or none of it: the collector's, then
    /// the key's (server-side senders) or the client network's and each site's (browsers). A
    /// batch over any limit is refused whole with `429` and `Retry-After`, so a sender retries
    /// it whole and events of one visitor are never split across retries.
    fn admit(&self, ctx: &Context, events: &[Checked]) -> Result<(), Refusal> {
        let n = events.len() as u32;
        let mut per_site: Vec<(u32, u32)> = Vec::new();
        for site in events.iter().flat_map(|e| &e.sites) {
            match per_site.iter_mut().find(|(id, _)| *id == site.id) {
                Some((_, count)) => *count += 1,
                None => per_site.push((site.id, 1)),
            }
        }
        let refused = |what: String, wait| {
            for (site, _) in &per_site {
                self.tally.add(*site, Reason::RateLimited, ctx.now_ms());
            }
            Refusal::RateLimited { message: format!("{what} is over its event rate limit"), retry_after_secs: wait }
        };
        if n == 0 {
            return Ok(());
        }
        // A batch larger than a burst can never pass: say so instead of asking for a retry.
        let sender_burst = if ctx.key().is_some() { self.limits.key.capacity } else { self.limits.address.capacity };
        let burst = [self.limits.global.capacity, sender_burst].into_iter().min().unwrap_or(0);
        let site_burst = self.limits.site.capacity;
        if n > burst || (ctx.key().is_none() && per_site.iter().any(|(_, c)| *c > site_burst)) {
            return Err(Refusal::TooLarge(format!(
                "{n} events at once are more than this sender may send in one burst; send smaller batches"
            )));
        }
        self.limits.global.take_n(&(), n).map_err(|w| refused("the collector".into(), w))?;
        let refund_global = || self.limits.global.give_back(&(), n);
        if let Some(key) = ctx.key() {
            return self.limits.key.take_n(&key.id, n).map_err(|w| {
                refund_global();
                refused(format!("API key `{}`", key.name), w)
            });
        }
        // The request's first event was paid for at the door.
        let network = plumb_core::net::limit_key(ctx.ip());
        self.limits.address.take_n(&network, n - 1).map_err(|w| {
            refund_global();
            refused("this address".into(), w)
        })?;
        for (i, (site, count)) in per_site.iter().enumerate() {
            if let Err(wait) = self.limits.site.take_n(site, *count) {
                for (taken, count) in &per_site[..i] {
                    self.limits.site.give_back(taken, *count);
                }
                self.limits.address.give_back(&network, n - 1);
                refund_global();
                return Err(refused("this site".into(), wait));
            }
        }
        Ok(())
    }

    /// Counts a request refused before its events could be read (over a limit before the body
    /// was read, or a body that is not events) for the site its page is on, as far as the request
    /// head tells: the `Origin` browsers send with the tracker's requests, else the `Referer`.
    /// Both can be forged, which can only make a site's counters read higher.
    fn refused_unread(&self, headers: &HeaderMap, reason: Reason, e: Refusal) -> Refusal {
        let page = headers.get(header::ORIGIN).or_else(|| headers.get(header::REFERER));
        let host = page.and_then(|v| v.to_str().ok()).and_then(|v| url::Url::parse(v).ok());
        let Some(domain) = host.as_ref().and_then(|u| u.host_str()).map(plumb_core::url::normalize_hostname) else {
            return e;
        };
        let now_ms = chrono::Utc::now().timestamp_millis();
        if reason == Reason::RateLimited {
            // Over a limit, the request may be one of a flood, which must stay cheap however many
            // made-up sites it names: only a site already in the cache is counted.
            if let Some(site) = self.sites.cached(&domain) {
                self.tally.add(site.id, reason, now_ms);
            }
        } else {
            self.count(&[domain], reason, now_ms);
        }
        e
    }

    /// Counts a hit under `reason` for the registered sites among `domains`.
    fn count(&self, domains: &[String], reason: Reason, now_ms: i64) {
        for d in domains.iter().take(body::MAX_DOMAINS) {
            if let Ok(Some(site)) = self.sites.get(self.meta.as_ref(), d) {
                self.tally.add(site.id, reason, now_ms);
            }
        }
    }

    /// Validates one event; a `400` is counted as `invalid` for the sites it names.
    fn validate(&self, event: EventBody, ctx: &Context) -> Result<Checked, Refusal> {
        let domains = event.claimed_domains();
        event.validate(self, ctx).inspect_err(|e| {
            if matches!(e, Refusal::Invalid(_)) {
                self.count(&domains, Reason::Invalid, ctx.now_ms());
            }
        })
    }

    /// Admits the valid events of a request and turns them into queue entries.
    fn entries(&self, ctx: &Context, events: Vec<Checked>) -> Result<Vec<Message>, Refusal> {
        self.admit(ctx, &events)?;
        let mut out = Vec::with_capacity(events.len());
        for e in events {
            out.extend(e.into_entries(self, ctx)?);
        }
        Ok(out)
    }

    async fn enqueue(&self, messages: Vec<Message>) -> Result<(), Refusal> {
        // Every hit was turned away (a bot): nothing to store.
        if messages.is_empty() {
            return Ok(());
        }
        let n = messages.len() as u64;
        self.queue.append(messages).await.map(|()| self.accepted.increment(n)).map_err(|e| match e {
            QueueError::Full => Refusal::Unavailable("collector is overloaded, retry shortly".into()),
            other => {
                tracing::error!("queue append failed: {other}");
                Refusal::Unavailable("event could not be stored, retry shortly".into())
            }
        })
    }
}

/// The collector's fixed paths: events in (the event path also at `TrackerPaths::event`), the
/// Fathom pixel, the health check, the tracker at its short name (variants: `/js/FILE`).
const PATHS: [&str; 5] = [DEFAULT_EVENT, "/api/events", "/collect", "/api/health", "/script.js"];
/// Plausible's directory of tracker variants: `/js/script.hash.js`, `/js/plausible.js`, ….
const SCRIPTS: &str = "/js/{file}";
const STEMS: [&str; 2] = ["script", "plausible"];

/// The route of a directory's scripts, e.g. `/js/{file}`.
fn script_route(dir: &str) -> String {
    format!("{dir}/{{file}}")
}

/// Method, path and permission of every collector route: anyone may send browser events; a key
/// is checked per event (`Action::SendAsServer`). Configured paths add an event route and a
/// directory of scripts.
pub fn routes(paths: &TrackerPaths) -> Vec<(&'static str, String, plumb_meta::permission::Action)> {
    use plumb_meta::permission::Action::Public;
    let mut r = vec![
        ("post", PATHS[0].to_owned(), Public),
        ("post", PATHS[1].to_owned(), Public),
        ("get", PATHS[2].to_owned(), Public),
        ("get", PATHS[3].to_owned(), Public),
        ("get", PATHS[4].to_owned(), Public),
        ("get", SCRIPTS.to_owned(), Public),
    ];
    if paths.event != DEFAULT_EVENT {
        r.push(("post", paths.event.clone(), Public));
    }
    if script_route(paths.script_dir()) != SCRIPTS {
        r.push(("get", script_route(paths.script_dir()), Public));
    }
    r
}

/// Whether a request path is the collector's (the server keeps connections apart by it).
pub fn is_collector_path(paths: &TrackerPaths, path: &str) -> bool {
    let in_dir = |dir: &str| path.strip_prefix(dir).and_then(|f| f.strip_prefix('/')).is_some_and(|f| !f.contains('/'));
    PATHS.contains(&path) || path == paths.event || in_dir("/js") || in_dir(paths.script_dir())
}

pub fn router(collector: Arc<Collector>) -> Router {
    let [event_path, batch_path, pixel_path, health_path, short_script] = PATHS;
    let paths = &collector.config.paths;
    let mut r = Router::new()
        .route(event_path, post(event).options(preflight))
        .route(batch_path, post(batch).options(preflight))
        .route(pixel_path, get(pixel))
        .route(health_path, get(health))
        .route(short_script, get(script_at_root))
        .route(SCRIPTS, get(script_in_js));
    if paths.event != DEFAULT_EVENT {
        r = r.route(&paths.event, post(event).options(preflight));
    }
    if paths.script_dir() != "/js" {
        r = r.route(&script_route(paths.script_dir()), get(script_in_own_dir));
    }
    r.with_state(collector)
}

async fn script_at_root(State(c): State<Arc<Collector>>, headers: HeaderMap) -> Response {
    c.scripts.serve("script.js", &STEMS, &headers)
}

/// Plausible's names, and the configured one when its directory is `/js` too.
async fn script_in_js(State(c): State<Arc<Collector>>, Path(file): Path<String>, headers: HeaderMap) -> Response {
    let own = c.config.paths.script_stem();
    let stems = [STEMS[0], STEMS[1], if c.config.paths.script_dir() == "/js" { own } else { STEMS[0] }];
    c.scripts.serve(&file, &stems, &headers)
}

async fn script_in_own_dir(State(c): State<Arc<Collector>>, Path(file): Path<String>, headers: HeaderMap) -> Response {
    c.scripts.serve(&file, &[c.config.paths.script_stem()], &headers)
}

fn cors(mut r: Response) -> Response {
    r.headers_mut().insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    r
}

async fn preflight() -> Response {
    let mut r = cors(StatusCode::NO_CONTENT.into_response());
    let h = r.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("POST, OPTIONS"));
    h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("Content-Type, Authorization"));
    h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("86400"));
    r
}

/// A body must arrive within this long: slow senders do not get to hold a connection.
pub const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Reads a body of at most `limit` bytes; a refusal (too slow, too large) is counted as
/// `invalid` for the request's site.
async fn read_body(c: &Collector, headers: &HeaderMap, body: Body, limit: usize) -> Result<axum::body::Bytes, Refusal> {
    let refused = match tokio::time::timeout(BODY_TIMEOUT, axum::body::to_bytes(body, limit)).await {
        Ok(Ok(bytes)) => return Ok(bytes),
        Ok(Err(_)) => Refusal::TooLarge(format!("request body is larger than {limit} bytes")),
        Err(_) => Refusal::TooSlow(format!("request body did not arrive within {BODY_TIMEOUT:?}")),
    };
    Err(c.refused_unread(headers, Reason::Invalid, refused))
}

async fn event(
    State(c): State<Arc<Collector>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let result = async {
        let sender = c.admit_head(peer, &headers)?;
        let bytes = read_body(&c, &headers, body, MAX_EVENT_BYTES).await?;
        let ctx = Context::from_request(sender, &headers);
        let parsed: EventBody = serde_json::from_slice(&bytes).map_err(|e| {
            let e = Refusal::invalid(format!("request body is not a valid event: {e}"));
            c.refused_unread(&headers, Reason::Invalid, e)
        })?;
        let checked = c.validate(parsed, &ctx)?;
        let messages = c.entries(&ctx, vec![checked])?;
        c.enqueue(messages).await
    }
    .await;
    cors(match result {
        Ok(()) => (StatusCode::ACCEPTED, axum::Json(json!({}))).into_response(),
        Err(e) => ApiError::from(e).into_response(),
    })
}

async fn batch(
    State(c): State<Arc<Collector>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let result = async {
        let sender = c.admit_head(peer, &headers)?;
        let bytes = read_body(&c, &headers, body, MAX_BATCH_BYTES).await?;
        let ctx = Context::from_request(sender, &headers);
        let items: Vec<serde_json::Value> = serde_json::from_slice(&bytes).map_err(|e| {
            let e = Refusal::invalid(format!("request body must be a JSON array of events: {e}"));
            c.refused_unread(&headers, Reason::Invalid, e)
        })?;
        if items.len() > MAX_BATCH_EVENTS {
            let e = Refusal::TooLarge(format!("a batch holds at most {MAX_BATCH_EVENTS} events, got {}", items.len()));
            return Err(c.refused_unread(&headers, Reason::Invalid, e));
        }
        let mut valid = Vec::with_capacity(items.len());
        let mut rejected = Vec::new();
        let mut refusals = Vec::new();
        for (index, item) in items.into_iter().enumerate() {
            let one = serde_json::from_value::<EventBody>(item)
                .map_err(|e| Refusal::invalid(format!("not a valid event: {e}")))
                .and_then(|ev| c.validate(ev, &ctx));
            match one {
                Ok(checked) => valid.push(checked),
                // Our fault, not the event's: the client should retry the whole batch.
                Err(e @ Refusal::Unavailable(_)) => return Err(e),
                Err(e) => {
                    refusals.push(e.status());
                    rejected.push(json!({"index": index, "error": e.message()}));
                }
            }
        }
        let accepted = valid.len();
        if accepted == 0 && !rejected.is_empty() {
            // Every event refused for one reason (a key that may not send for the site): that
            // reason's status; for several, `400`.
            let status = if refusals.iter().all(|s| *s == refusals[0]) { refusals[0] } else { StatusCode::BAD_REQUEST };
            let body = json!({"error": "no event in the batch is valid", "accepted": 0, "rejected": rejected});
            return Ok((status, axum::Json(body)).into_response());
        }
        let messages = c.entries(&ctx, valid)?;
        c.enqueue(messages).await?;
        Ok((StatusCode::ACCEPTED, axum::Json(json!({"accepted": accepted, "rejected": rejected}))).into_response())
    }
    .await;
    result.unwrap_or_else(|e| ApiError::from(e).into_response())
}

#[derive(serde::Deserialize)]
struct PixelParams {
    p: Option<String>,
    h: Option<String>,
    r: Option<String>,
    sid: Option<String>,
}

/// Fathom Lite's tracking pixel: `p` path, `h` scheme and host, `r` referrer, `sid` site.
async fn pixel(
    State(c): State<Arc<Collector>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    params: Result<Query<PixelParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let result = async {
        let sender = c.admit_head(peer, &headers)?;
        let ctx = Context::from_request(sender, &headers);
        let invalid = |message: String| c.refused_unread(&headers, Reason::Invalid, Refusal::Invalid(message));
        let Query(q) = params.map_err(|e| invalid(format!("invalid pixel query: {e}")))?;
        let host =
            q.h.filter(|h| !h.is_empty()).ok_or_else(|| invalid("`h` (page scheme and host) is required".into()))?;
        let path = q.p.unwrap_or_else(|| "/".into());
        if !path.starts_with('/') {
            return Err(invalid(format!("`p` must be a path starting with `/`, got `{path}`")));
        }
        // Fathom Lite's `sid` is its own site code: one an import kept as a site's alias counts
        // into that site; a registered domain is accepted there too; otherwise the site is found
        // from the page's host.
        let site_of = |s: String| -> Option<String> {
            let d = s.to_ascii_lowercase();
            if plumb_meta::validate_domain(&d).is_ok() && c.sites.get(c.meta.as_ref(), &d).ok().flatten().is_some() {
                return Some(d);
            }
            plumb_meta::validate_alias(&s).ok()?;
            c.sites.by_alias(c.meta.as_ref(), &s).ok().flatten().map(|site| site.domain)
        };
        let sid = q.sid.and_then(site_of);
        let body = EventBody::pageview(format!("{}{path}", host.trim_end_matches('/')), sid, q.r);
        let checked = c.validate(body, &ctx)?;
        let messages = c.entries(&ctx, vec![checked])?;
        c.enqueue(messages).await
    }
    .await;
    match result {
        Ok(()) => tracker::gif(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

async fn health() -> Response {
    axum::Json(json!({"status": "ok", "version": env!("CARGO_PKG_VERSION")})).into_response()
}

/// The steps of one event on real metadata and a real queue file: validation, admission, judging
/// and signing, each with the refusal it answers.
#[cfg(test)]
mod tests {
    use super::*;
    use plumb_meta::{Scope, SqliteMeta};

    fn collector(name: &str, per_site: u32) -> (Arc<Collector>, Arc<SqliteMeta>) {
        let dir = std::env::temp_dir().join(format!("plumb-collector-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let meta = Arc::new(SqliteMeta::open(&dir.join("meta.db")).unwrap());
        meta.add_site("shop.test", "UTC").unwrap();
        let spool = plumb_queue::SqliteSpool::open(dir.join("queue.db")).unwrap();
        let config = CollectorConfig {
            trusted_proxies: vec![],
            per_address: 1_000,
            per_site,
            global: 1_000,
            per_key: 1_000,
            per_visitor: 1_000,
            geoip_db: None,
            pages: PageRules::default(),
            paths: TrackerPaths::default(),
        };
        let c = Collector::new(meta.clone(), Arc::new(spool), config).unwrap();
        (c, meta)
    }

    fn context(key: Option<plumb_meta::ApiKey>, user_agent: &str) -> Context {
        let mut h = HeaderMap::new();
        h.insert(header::USER_AGENT, user_agent.parse().unwrap());
        h.insert(header::ACCEPT_LANGUAGE, "en".parse().unwrap());
        Context::from_request(Sender { ip: "203.0.113.9".parse().unwrap(), key }, &h)
    }

    const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0";

    fn event(v: serde_json::Value) -> EventBody {
        serde_json::from_value(v).unwrap()
    }

    fn key(meta: &SqliteMeta, scopes: &[Scope]) -> plumb_meta::ApiKey {
        let name = format!("k{}", meta.list_keys().unwrap().len());
        meta.create_key(&name, scopes, None).unwrap().0
    }

    #[test]
    fn validation_refuses_what_is_malformed_or_not_allowed() {
        let (c, meta) = collector("validate", 1_000);
        meta.add_rule(1, plumb_meta::RuleKind::parse("path", "/admin/**").unwrap()).unwrap();
        let browser = context(None, FIREFOX);
        let refusal = |v: serde_json::Value, ctx: &Context| c.validate(event(v), ctx).err();
        let page = |extra: serde_json::Value| {
            let mut v = json!({"n": "pageview", "u": "https://shop.test/", "d": "shop.test"});
            v.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            v
        };
        assert_eq!(refusal(json!({"u": "https://shop.test/"}), &browser), Some(Refusal::invalid("`name` is required")));
        let unknown = refusal(json!({"n": "pageview", "u": "https://nope.test/"}), &browser).unwrap();
        assert!(matches!(&unknown, Refusal::Invalid(m) if m.contains("not registered")), "{unknown:?}");
        let stamped = refusal(page(json!({"timestamp": 1_700_000_000})), &browser).unwrap();
        assert!(matches!(&stamped, Refusal::Invalid(m) if m.contains("may only be set by server-side senders")));
        // A key without events:write is refused for the site, not taken for a browser.
        let reader = context(Some(key(&meta, &[Scope::StatsRead])), FIREFOX);
        let refused = refusal(page(json!({})), &reader).unwrap();
        assert!(matches!(&refused, Refusal::Forbidden(m) if m.contains("needs events:write")), "{refused:?}");
        let writer = context(Some(key(&meta, &[Scope::EventsWrite])), FIREFOX);
        assert!(c.validate(event(page(json!({"ip": "198.51.100.1"}))), &writer).is_ok());
        // A firewall rule (added before the first look, as rules are cached for a second): 403,
        // counted as blocked.
        let blocked = refusal(json!({"n": "pageview", "u": "https://shop.test/admin/x", "d": "shop.test"}), &browser);
        assert!(matches!(blocked, Some(Refusal::Forbidden(_))));
        assert_eq!(c.tally.take().iter().filter(|s| s.reason == Reason::Blocked.name()).count(), 1);
        let checked = c.validate(event(page(json!({}))), &browser).unwrap();
        assert_eq!(checked.sites.iter().map(|s| s.domain.as_str()).collect::<Vec<_>>(), ["shop.test"]);
        // Every refusal has one status.
        assert_eq!(ApiError::from(refused).status, StatusCode::FORBIDDEN);
        assert_eq!(ApiError::from(unknown).status, StatusCode::BAD_REQUEST);
    }

    #[test]
    fn admission_takes_a_request_whole_or_not_at_all() {
        // One event a second per site: a burst of two.
        let (c, _) = collector("admit", 1);
        let ctx = context(None, FIREFOX);
        let valid = |n: usize| -> Vec<Checked> {
            (0..n)
                .map(|_| c.validate(event(json!({"n": "pageview", "u": "https://shop.test/"})), &ctx).unwrap())
                .collect()
        };
        assert_eq!(c.admit(&ctx, &valid(3)).unwrap_err().status(), StatusCode::PAYLOAD_TOO_LARGE, "over the burst");
        assert!(c.admit(&ctx, &valid(2)).is_ok());
        let refused = c.admit(&ctx, &valid(2)).unwrap_err();
        assert!(matches!(refused, Refusal::RateLimited { retry_after_secs: 1..=2, .. }), "{refused:?}");
        // The refused request's collector budget came back: it is not spent on events never taken.
        assert_eq!(c.limits.global.check(&()), Ok(()));
        let global_left = |c: &Collector| (0..=1_000).take_while(|_| c.limits.global.take(&()).is_ok()).count();
        assert!(global_left(&c) >= 997, "only the two admitted events were spent");
    }

    #[test]
    fn judging_keeps_bots_out_and_signs_the_rest_without_the_address() {
        let (c, _) = collector("judge", 1_000);
        let hit = json!({"n": "pageview", "u": "https://shop.test/pricing", "d": "shop.test", "r": "https://www.google.com/"});
        let bot = context(None, "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)");
        let checked = c.validate(event(hit.clone()), &bot).unwrap();
        assert!(checked.into_entries(&c, &bot).unwrap().is_empty(), "a crawler is answered, not queued");
        let browser = context(None, FIREFOX);
        let entries = c.validate(event(hit), &browser).unwrap().into_entries(&c, &browser).unwrap();
        assert_eq!(entries.len(), 1);
        let queued = plumb_core::QueuedEvent::decode(&entries[0].payload).unwrap();
        assert_eq!(entries[0].key, queued.partition_key());
        assert_eq!((queued.site_id, queued.pathname.as_str(), queued.visit.source.as_str()), (1, "/pricing", "Google"));
        assert_eq!(queued.visit.browser, "Firefox");
        for secret in ["203.0.113.9", "Gecko/20100101"] {
            let payload = &entries[0].payload;
            assert!(!payload.windows(secret.len()).any(|w| w == secret.as_bytes()), "{secret} left in the entry");
        }
    }
}
