//! HTTP ingestion. Parses and validates each hit, enriches it, signs it (the IP and User-Agent
//! stop here), and answers `202` only once the queue has it on disk. No database work beyond
//! cached metadata look-ups happens on this path.

mod body;
mod cache;
mod client_ip;
mod error;
mod firewall;
pub mod geo;
pub mod spam;
mod tally;
mod tracker;
pub mod useragent;

pub use client_ip::client_ip;
pub use error::ApiError;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use body::{Context, EventBody};
use cache::{SaltCache, SiteCache};
use ipnet::IpNet;
use plumb_core::limit::RateLimiter;
use plumb_core::security::Reason;
use plumb_core::url::PageRules;
use plumb_meta::MetaStore;
use plumb_queue::{Producer, QueueError};
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
    /// Events per second allowed from one client address (API-key senders are exempt), for one
    /// site, and for the whole collector (defaults: `plumb serve --help`). Each allows a burst:
    /// 5 s, 2 s and 1 s of its rate.
    pub per_address: u32,
    pub per_site: u32,
    pub global: u32,
    /// Events per minute one visitor may send (burst: a minute's worth); faster is not a person.
    /// API-key senders are exempt.
    pub per_visitor: u32,
    /// An MMDB file (DB-IP Lite or MaxMind) for regions and cities; countries need none.
    pub geoip_db: Option<std::path::PathBuf>,
    /// What page URLs keep (query parameters, `www.`).
    pub pages: PageRules,
}

/// Token buckets that turn floods away with `429` before any parsing or storage work, and the
/// per-visitor one that tells people from scripts.
struct Limits {
    address: RateLimiter<IpAddr>,
    site: RateLimiter<u32>,
    global: RateLimiter<()>,
    /// By site and visitor signature.
    visitor: RateLimiter<(u32, u64)>,
}

impl Limits {
    fn new(c: &CollectorConfig) -> Self {
        Self {
            address: RateLimiter::new(c.per_address.saturating_mul(5), 5),
            site: RateLimiter::new(c.per_site.saturating_mul(2), 2),
            global: RateLimiter::new(c.global, 1),
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
    limits: Limits,
    geo: geo::Geo,
    firewall: firewall::Firewall,
    spam: spam::SpamList,
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
        Ok(Arc::new(Self { sites, salts, agents, tally, limits, geo, firewall, spam, meta, queue, config }))
    }

    /// The notice the geolocation database's licence asks the dashboard to show, and its link.
    pub fn geo_attribution(&self) -> Option<(&'static str, &'static str)> {
        self.geo.attribution()
    }

    /// Deletes salts of days that have ended everywhere, from the store and from memory, and
    /// forgets visitors whose rate bucket has filled up again (their signatures are its keys).
    pub fn forget_expired(&self, now_ms: i64) -> Result<usize, plumb_meta::MetaError> {
        self.limits.visitor.forget_full();
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

    /// Admits `n` events from a sender, or says why not: the collector's global limit, then the
    /// client address's (senders with an API key are trusted servers and exempt; before the body
    /// is read only the header's presence is known, and the key is verified right after).
    fn admit(&self, ip: IpAddr, keyed: bool, n: u32) -> Result<(), ApiError> {
        self.limits
            .global
            .take_n(&(), n)
            .map_err(|wait| ApiError::too_many("the collector is over its event rate limit", wait))?;
        if keyed {
            return Ok(());
        }
        self.limits.address.take_n(&ip, n).map_err(|wait| ApiError::too_many("too many events from this address", wait))
    }

    /// The first admission, from the request head alone; returns the client's address.
    fn admit_head(&self, peer: SocketAddr, headers: &HeaderMap) -> Result<IpAddr, ApiError> {
        let ip = client_ip(peer.ip(), headers, &self.config.trusted_proxies);
        self.admit(ip, headers.contains_key(header::AUTHORIZATION), 1)
            .map_err(|e| self.refused_unread(headers, Reason::RateLimited, e))?;
        Ok(ip)
    }

    /// Counts a request refused before its events could be read (over a limit before the body
    /// was read, or a body that is not events) for the site its page is on, as far as the request
    /// head tells: the `Origin` browsers send with the tracker's requests, else the `Referer`.
    /// Both can be forged, which can only make a site's counters read higher.
    fn refused_unread(&self, headers: &HeaderMap, reason: Reason, e: ApiError) -> ApiError {
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
    fn queue_entries(&self, event: EventBody, ctx: &Context) -> Result<Vec<Vec<u8>>, ApiError> {
        let domains = event.claimed_domains();
        event.into_queued(self, ctx).inspect_err(|e| {
            if e.status == StatusCode::BAD_REQUEST {
                self.count(&domains, Reason::Invalid, ctx.now_ms());
            }
        })
    }

    /// One event for a site, or `429` (counted as `rate_limited` for the site).
    fn admit_site(&self, site_id: u32, now_ms: i64) -> Result<(), ApiError> {
        self.limits.site.take(&site_id).map_err(|wait| {
            self.tally.add(site_id, Reason::RateLimited, now_ms);
            ApiError::too_many("this site is over its event rate limit", wait)
        })
    }

    async fn enqueue(&self, payloads: Vec<Vec<u8>>) -> Result<(), ApiError> {
        // Every hit was turned away (a bot): nothing to store.
        if payloads.is_empty() {
            return Ok(());
        }
        self.queue.append(payloads).await.map_err(|e| match e {
            QueueError::Full => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "collector is overloaded, retry shortly")
            }
            other => {
                tracing::error!("queue append failed: {other}");
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "event could not be stored, retry shortly")
            }
        })
    }
}

pub fn router(collector: Arc<Collector>) -> Router {
    Router::new()
        .route("/api/event", post(event).options(preflight))
        .route("/api/events", post(batch).options(preflight))
        .route("/collect", get(pixel))
        .route("/api/health", get(health))
        .route("/js/script.js", get(tracker::script))
        .route("/script.js", get(tracker::script))
        .with_state(collector)
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
async fn read_body(
    c: &Collector,
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<axum::body::Bytes, ApiError> {
    let refused = match tokio::time::timeout(BODY_TIMEOUT, axum::body::to_bytes(body, limit)).await {
        Ok(Ok(bytes)) => return Ok(bytes),
        Ok(Err(_)) => {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, format!("request body is larger than {limit} bytes"))
        }
        Err(_) => {
            ApiError::new(StatusCode::REQUEST_TIMEOUT, format!("request body did not arrive within {BODY_TIMEOUT:?}"))
        }
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
        let ip = c.admit_head(peer, &headers)?;
        let bytes = read_body(&c, &headers, body, MAX_EVENT_BYTES).await?;
        let ctx = Context::from_request(&c, ip, &headers)?;
        let parsed: EventBody = serde_json::from_slice(&bytes).map_err(|e| {
            let e = ApiError::bad_request(format!("request body is not a valid event: {e}"));
            c.refused_unread(&headers, Reason::Invalid, e)
        })?;
        let payloads = c.queue_entries(parsed, &ctx)?;
        c.enqueue(payloads).await
    }
    .await;
    cors(match result {
        Ok(()) => (StatusCode::ACCEPTED, axum::Json(json!({}))).into_response(),
        Err(e) => e.into_response(),
    })
}

async fn batch(
    State(c): State<Arc<Collector>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let result = async {
        // One token at the door, the rest once the batch's size is known.
        let ip = c.admit_head(peer, &headers)?;
        let bytes = read_body(&c, &headers, body, MAX_BATCH_BYTES).await?;
        let ctx = Context::from_request(&c, ip, &headers)?;
        let items: Vec<serde_json::Value> = serde_json::from_slice(&bytes).map_err(|e| {
            let e = ApiError::bad_request(format!("request body must be a JSON array of events: {e}"));
            c.refused_unread(&headers, Reason::Invalid, e)
        })?;
        if items.len() > MAX_BATCH_EVENTS {
            let e = ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("a batch holds at most {MAX_BATCH_EVENTS} events, got {}", items.len()),
            );
            return Err(c.refused_unread(&headers, Reason::Invalid, e));
        }
        if items.len() > 1 {
            c.admit(ctx.ip(), ctx.has_key(), items.len() as u32 - 1)
                .map_err(|e| c.refused_unread(&headers, Reason::RateLimited, e))?;
        }
        let mut payloads = Vec::with_capacity(items.len());
        let mut accepted = 0usize;
        let mut rejected = Vec::new();
        for (index, item) in items.into_iter().enumerate() {
            let one = serde_json::from_value::<EventBody>(item)
                .map_err(|e| ApiError::bad_request(format!("not a valid event: {e}")))
                .and_then(|ev| c.queue_entries(ev, &ctx));
            match one {
                Ok(p) => {
                    accepted += 1;
                    payloads.extend(p);
                }
                // Our fault, not the event's: the client should retry the whole batch.
                Err(e) if e.status.is_server_error() => return Err(e),
                Err(e) => rejected.push(json!({"index": index, "error": e.message})),
            }
        }
        if accepted == 0 && !rejected.is_empty() {
            let body = json!({"error": "no event in the batch is valid", "accepted": 0, "rejected": rejected});
            return Ok((StatusCode::BAD_REQUEST, axum::Json(body)).into_response());
        }
        if !payloads.is_empty() {
            c.enqueue(payloads).await?;
        }
        Ok((StatusCode::ACCEPTED, axum::Json(json!({"accepted": accepted, "rejected": rejected}))).into_response())
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
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
        let ip = c.admit_head(peer, &headers)?;
        let ctx = Context::from_request(&c, ip, &headers)?;
        let invalid = |message: String| c.refused_unread(&headers, Reason::Invalid, ApiError::bad_request(message));
        let Query(q) = params.map_err(|e| invalid(format!("invalid pixel query: {e}")))?;
        let host =
            q.h.filter(|h| !h.is_empty()).ok_or_else(|| invalid("`h` (page scheme and host) is required".into()))?;
        let path = q.p.unwrap_or_else(|| "/".into());
        if !path.starts_with('/') {
            return Err(invalid(format!("`p` must be a path starting with `/`, got `{path}`")));
        }
        // Fathom Lite's `sid` is its own site code; a registered domain is accepted there, and
        // otherwise the site is found from the page's host.
        let known = |s: &String| {
            let d = s.to_ascii_lowercase();
            plumb_meta::validate_domain(&d).is_ok() && c.sites.get(c.meta.as_ref(), &d).ok().flatten().is_some()
        };
        let sid = q.sid.filter(known);
        let body = EventBody::pageview(format!("{}{path}", host.trim_end_matches('/')), sid, q.r);
        let payloads = c.queue_entries(body, &ctx)?;
        c.enqueue(payloads).await
    }
    .await;
    match result {
        Ok(()) => tracker::gif(),
        Err(e) => e.into_response(),
    }
}

async fn health() -> Response {
    axum::Json(json!({"status": "ok", "version": env!("CARGO_PKG_VERSION")})).into_response()
}
