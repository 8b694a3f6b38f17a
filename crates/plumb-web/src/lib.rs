//! The read side over HTTP: the Stats API and the Sites API (Plausible-compatible), and the
//! dashboard web app (`app`) that runs on the same API. Every reader goes through the one query
//! model in `plumb_query`. One table of endpoints builds both the router and the OpenAPI
//! document, so the document cannot drift from what is served.

mod app;
mod audit;
mod auth;
mod error;
mod funnels;
mod notes;
mod notices;
mod openapi;
mod realtime;
mod sites;
mod stats;
mod v1;

pub use app::{PrivacyFacts, plausible_zip};
pub use auth::CallerId;
pub use error::ApiError;
pub use notes::segment_filters;
pub use stats::import_refs;

use axum::routing::{MethodRouter, delete, get, post, put};
use axum::{Extension, Router};
use ipnet::IpNet;
use plumb_core::limit::RateLimiter;
use plumb_core::live::LiveVisitors;
use plumb_meta::permission::Action;
use plumb_meta::{MetaError, MetaStore};
use plumb_store::EventReader;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

pub struct Web {
    pub meta: Arc<dyn MetaStore>,
    pub reader: Arc<dyn EventReader>,
    pub live: Arc<LiveVisitors>,
    /// Reports, alerts and webhooks: what the API asks of them (sending a report now, whether
    /// mail is configured, whether a webhook's address may be called).
    pub notifier: Arc<plumb_notify::Notifier>,
    /// API requests per caller: key, user, or shared link and client network.
    pub caller_limiter: RateLimiter<CallerId>,
    /// Failed sign-ins, second factors and shared-link passwords, per account (or link)…
    pub login_limiter: RateLimiter<String>,
    /// …and per client network (`plumb_core::net::limit_key`).
    pub address_limiter: RateLimiter<IpAddr>,
    /// Password hashes computed at once: each Argon2id hash holds 19 MiB.
    pub hashing: Arc<Semaphore>,
    /// Stats queries answered at once (one per core); more wait their turn for a while, then get
    /// `503`.
    pub queries: Arc<Semaphore>,
    /// Open event streams per caller, and in all.
    pub streams: realtime::Streams,
    /// Signs the cookies the server sets (shared-link access).
    pub server_key: [u8; 32],
    /// Where browsers reach this Plumb (`https://stats.example.com`), for snippets and invite
    /// links; without it, the request's `Host`.
    pub public_url: Option<String>,
    /// Where browsers reach the collector when it runs apart (`plumb collect`); without it, the
    /// public URL.
    pub collector_url: Option<String>,
    /// Where the collector serves the tracker (a configured first-party path, or Plausible's).
    pub tracker_paths: plumb_core::paths::TrackerPaths,
    /// What the sites' privacy pages say of the configuration.
    pub privacy: PrivacyFacts,
    /// The notice the geolocation database's licence asks dashboards to show, and where it links.
    pub geo_attribution: Option<(&'static str, &'static str)>,
    /// Peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpNet>,
}

pub struct WebConfig {
    /// API requests per minute per caller.
    pub rate_limit: u32,
    pub public_url: Option<String>,
    pub collector_url: Option<String>,
    /// Where the tracker is served, for the snippet.
    pub tracker_paths: plumb_core::paths::TrackerPaths,
    pub privacy: PrivacyFacts,
    pub geo_attribution: Option<(&'static str, &'static str)>,
    pub trusted_proxies: Vec<IpNet>,
}

/// Failed sign-in attempts allowed per account (and, times four, per client network) every 15
/// minutes; tokens come back evenly over that time.
pub const LOGIN_ATTEMPTS: u32 = 5;
/// Password hashes at once (19 MiB each), and how long a sign-in waits for its turn.
pub const MAX_HASHES: usize = 4;
pub const HASH_WAIT: Duration = Duration::from_secs(5);
/// How long a Stats query waits for its turn before a `503`; one runs at once per core, so the
/// rest of the server (the collector, the health check) always has time.
pub const QUERY_WAIT: Duration = Duration::from_secs(10);

impl Web {
    pub fn new(
        meta: Arc<dyn MetaStore>,
        reader: Arc<dyn EventReader>,
        live: Arc<LiveVisitors>,
        notifier: Arc<plumb_notify::Notifier>,
        config: WebConfig,
    ) -> Result<Self, MetaError> {
        Ok(Web {
            server_key: meta.server_key()?,
            meta,
            reader,
            live,
            notifier,
            caller_limiter: RateLimiter::per_minute(config.rate_limit),
            login_limiter: RateLimiter::new(LOGIN_ATTEMPTS, 15 * 60),
            address_limiter: RateLimiter::new(4 * LOGIN_ATTEMPTS, 15 * 60),
            hashing: Arc::new(Semaphore::new(MAX_HASHES)),
            queries: Arc::new(Semaphore::new(std::thread::available_parallelism().map_or(2, |n| n.get()))),
            streams: realtime::Streams::default(),
            public_url: config.public_url.map(|u| u.trim_end_matches('/').to_owned()),
            collector_url: config.collector_url.map(|u| u.trim_end_matches('/').to_owned()),
            tracker_paths: config.tracker_paths,
            privacy: config.privacy,
            geo_attribution: config.geo_attribution,
            trusted_proxies: config.trusted_proxies,
        })
    }

    /// The client's address: the peer's, or behind a trusted proxy the one it forwards.
    pub fn client_ip(&self, peer: Option<IpAddr>, headers: &axum::http::HeaderMap) -> IpAddr {
        let peer = peer.unwrap_or(IpAddr::from([0, 0, 0, 0]));
        let forwarded = headers.get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok());
        plumb_core::net::client_ip(peer, forwarded, &self.trusted_proxies)
    }

    /// Forgets limiter entries that carry no information any more (full buckets), so client
    /// addresses do not stay in memory, and visitors gone from the live half hour, so their
    /// signatures do not either (whether or not anyone looks at their site); run every minute.
    pub fn forget_idle(&self) {
        self.caller_limiter.forget_full();
        self.login_limiter.forget_full();
        self.address_limiter.forget_full();
        let now = chrono::Utc::now().timestamp_millis();
        self.live.forget_older_than(now - plumb_core::live::LIVE_MEMORY_MS);
    }
}

/// One served endpoint and what the OpenAPI document says about it.
pub struct Endpoint {
    pub method: &'static str,
    pub path: &'static str,
    pub summary: &'static str,
    /// What the caller must be allowed to do (`plumb_meta::permission`).
    pub action: Action,
    /// Query-string parameters (name, required, description).
    pub query: &'static [(&'static str, bool, &'static str)],
    /// Body fields (name, required, description); the v2 query has its own schema.
    pub body: &'static [(&'static str, bool, &'static str)],
    handler: MethodRouter<Arc<Web>>,
}

const SITE_ID: (&str, bool, &str) = ("site_id", true, "the site's domain");
const LIMIT: (&str, bool, &str) = ("limit", false, "1 to 1000 [100]");
const AFTER: (&str, bool, &str) = ("after", false, "cursor from meta.after");
const V1_PARAMS: &[(&str, bool, &str)] = &[
    SITE_ID,
    ("period", false, "day, 7d, 30d, month, 6mo, 12mo, year, all or custom [default 30d]"),
    ("date", false, "YYYY-MM-DD that `period` ends on, or `from,to` for custom"),
    ("metrics", false, "comma-separated metrics [default visitors]"),
    ("filters", false, "`dimension==a|b;dimension!=c`, `~` contains, `*` wildcards"),
    ("compare", false, "previous_period or year_over_year"),
];

pub fn endpoints() -> Vec<Endpoint> {
    use Action::{CreateSite, Manage, Own, Personal, Read};
    let e = |method, path, summary, action, query, body, handler| Endpoint {
        method,
        path,
        summary,
        action,
        query,
        body,
        handler,
    };
    vec![
        e("post", "/api/v2/query", "Stats API v2 query", Read, &[], &[], post(stats::query_v2)),
        e(
            "post",
            "/api/v2/funnel",
            "Visitors at each step of a funnel: body {site_id, funnel_id, date_range, filters (visit:… and segments)}",
            Read,
            &[],
            &[],
            post(funnels::query),
        ),
        e("get", "/api/v1/stats/aggregate", "Totals for a period (v1)", Read, V1_PARAMS, &[], get(v1::aggregate)),
        e(
            "get",
            "/api/v1/stats/timeseries",
            "Metrics per time bucket (v1)",
            Read,
            &[SITE_ID, ("period", false, "as for aggregate"), ("interval", false, "hour, date, week or month")],
            &[],
            get(v1::timeseries),
        ),
        e(
            "get",
            "/api/v1/stats/breakdown",
            "Metrics per value of a property (v1)",
            Read,
            &[
                SITE_ID,
                ("property", true, "a dimension, e.g. visit:source"),
                ("limit", false, "rows per page"),
                ("page", false, "1-based page"),
            ],
            &[],
            get(v1::breakdown),
        ),
        e(
            "get",
            "/api/v1/stats/realtime/visitors",
            "Visitors in the last 5 minutes",
            Read,
            &[SITE_ID],
            &[],
            get(realtime::visitors),
        ),
        e(
            "get",
            "/api/v1/stats/realtime",
            "Current visitors by page and source",
            Read,
            &[SITE_ID],
            &[],
            get(realtime::breakdown),
        ),
        e(
            "get",
            "/api/v1/stats/realtime/stream",
            "Server-sent events: `realtime` with the current visitors whenever they change",
            Read,
            &[SITE_ID],
            &[],
            get(realtime::stream),
        ),
        e("get", "/api/v1/sites", "Sites the key can see", Read, &[LIMIT, AFTER], &[], get(sites::list)),
        e(
            "post",
            "/api/v1/sites",
            "Add a site (instance owner, or a key with sites:admin limited to no sites)",
            CreateSite,
            &[],
            &[("domain", true, "the site's domain"), ("timezone", false, "IANA timezone [UTC]")],
            post(sites::create),
        ),
        e("get", "/api/v1/sites/goals", "A site's goals", Read, &[SITE_ID, LIMIT, AFTER], &[], get(sites::list_goals)),
        e(
            "put",
            "/api/v1/sites/goals",
            "Add a goal (idempotent)",
            Manage,
            &[],
            &[
                SITE_ID,
                ("goal_type", true, "event or page"),
                ("event_name", false, "for event goals"),
                ("page_path", false, "for page goals; `*` within a segment, `**` across"),
                ("display_name", false, "the name reports show"),
                ("currency", false, "event goals: ISO 4217 code; makes it a revenue goal"),
            ],
            put(sites::put_goal),
        ),
        e(
            "delete",
            "/api/v1/sites/goals/{goal_id}",
            "Remove a goal",
            Manage,
            &[],
            &[SITE_ID],
            delete(sites::delete_goal),
        ),
        e("get", "/api/v1/sites/{site_id}", "A site", Read, &[], &[], get(sites::show)),
        e(
            "get",
            "/api/v1/sites/{site_id}/firewall",
            "A site's firewall rules",
            Manage,
            &[],
            &[],
            get(sites::list_rules),
        ),
        e(
            "post",
            "/api/v1/sites/{site_id}/firewall",
            "Add a firewall rule (in effect within a second)",
            Manage,
            &[],
            &[
                ("kind", true, "ip (address or CIDR), country (ISO code), path (wildcards) or allow_host"),
                ("value", true, "what the rule matches"),
            ],
            post(sites::add_rule),
        ),
        e(
            "delete",
            "/api/v1/sites/{site_id}/firewall/{rule_id}",
            "Remove a firewall rule",
            Manage,
            &[],
            &[],
            delete(sites::remove_rule),
        ),
        e(
            "get",
            "/api/v1/sites/{site_id}/annotations",
            "A site's annotations (dated notes on the chart), by date",
            Read,
            &[("from", false, "first date, YYYY-MM-DD"), ("to", false, "last date, YYYY-MM-DD")],
            &[],
            get(notes::list_annotations),
        ),
        e(
            "post",
            "/api/v1/sites/{site_id}/annotations",
            "Add an annotation",
            Manage,
            &[],
            &[("date", true, "the site's local date, YYYY-MM-DD"), ("text", true, "1 to 300 characters, one line")],
            post(notes::add_annotation),
        ),
        e(
            "delete",
            "/api/v1/sites/{site_id}/annotations/{annotation_id}",
            "Remove an annotation",
            Manage,
            &[],
            &[],
            delete(notes::remove_annotation),
        ),
        e(
            "get",
            "/api/v1/sites/{site_id}/funnels",
            "A site's funnels, with when each began counting",
            Read,
            &[],
            &[],
            get(funnels::list),
        ),
        e(
            "post",
            "/api/v1/sites/{site_id}/funnels",
            "Add a funnel; it counts visits from 10 seconds after it is made",
            Manage,
            &[],
            &[
                ("name", true, "1 to 100 characters"),
                ("steps", true, "2 to 8 of the site's goal names, in order (a list, or one per line)"),
            ],
            post(funnels::add),
        ),
        e(
            "delete",
            "/api/v1/sites/{site_id}/funnels/{funnel_id}",
            "Remove a funnel",
            Manage,
            &[],
            &[],
            delete(funnels::remove),
        ),
        e(
            "get",
            "/api/v1/sites/{site_id}/reports",
            "A site's e-mail reports (who gets which)",
            Manage,
            &[],
            &[],
            get(notices::list),
        ),
        e(
            "post",
            "/api/v1/sites/{site_id}/reports",
            "Send an address the site's report every week or month (needs SMTP)",
            Manage,
            &[],
            &[("email", true, "the address"), ("period", true, "week or month")],
            post(notices::add_report),
        ),
        e(
            "delete",
            "/api/v1/sites/{site_id}/reports/{report_id}",
            "Stop a report",
            Manage,
            &[],
            &[],
            delete(notices::remove),
        ),
        e(
            "post",
            "/api/v1/sites/{site_id}/reports/{report_id}/send",
            "Send the last whole period's report now (once per period)",
            Manage,
            &[],
            &[],
            post(notices::send_report),
        ),
        e("get", "/api/v1/sites/{site_id}/alerts", "A site's traffic alerts", Manage, &[], &[], get(notices::list)),
        e(
            "post",
            "/api/v1/sites/{site_id}/alerts",
            "Add a traffic alert, sent by e-mail and to the site's alert webhooks",
            Manage,
            &[],
            &[
                (
                    "kind",
                    true,
                    "spike (current visitors at or above the threshold) or drop (no pageviews for threshold minutes)",
                ),
                ("threshold", true, "visitors (spike) or minutes (drop)"),
                ("cooldown_minutes", true, "1 to 10080: quiet time after it fires"),
                ("email", false, "where to mail it (needs SMTP)"),
            ],
            post(notices::add_alert),
        ),
        e(
            "delete",
            "/api/v1/sites/{site_id}/alerts/{alert_id}",
            "Remove an alert",
            Manage,
            &[],
            &[],
            delete(notices::remove),
        ),
        e("get", "/api/v1/sites/{site_id}/webhooks", "A site's webhooks", Manage, &[], &[], get(notices::list)),
        e(
            "post",
            "/api/v1/sites/{site_id}/webhooks",
            "Add a webhook; the answer shows its signing secret once",
            Manage,
            &[],
            &[
                ("url", true, "http(s) URL of a public address"),
                ("events", true, "alert, daily, goal (a list, or comma-separated)"),
            ],
            post(notices::add_webhook),
        ),
        e(
            "delete",
            "/api/v1/sites/{site_id}/webhooks/{webhook_id}",
            "Remove a webhook",
            Manage,
            &[],
            &[],
            delete(notices::remove),
        ),
        e(
            "get",
            "/api/v1/sites/{site_id}/webhooks/{webhook_id}/deliveries",
            "A webhook's latest deliveries, newest first",
            Manage,
            &[],
            &[],
            get(notices::deliveries),
        ),
        e(
            "get",
            "/api/v1/sites/{site_id}/segments",
            "Saved segments: the shared ones and the caller's own",
            Personal,
            &[],
            &[],
            get(notes::list_segments),
        ),
        e(
            "post",
            "/api/v1/sites/{site_id}/segments",
            "Save a segment; v2 queries name it as [\"is\", \"segment\", [id]]",
            Personal,
            &[],
            &[
                ("name", true, "1 to 100 characters"),
                ("filters", true, "a list of filters, as in a v2 query"),
                ("shared", false, "seen by every reader of the site (needs manage) [false for users]"),
            ],
            post(notes::add_segment),
        ),
        e(
            "delete",
            "/api/v1/sites/{site_id}/segments/{segment_id}",
            "Remove one's own segment, or (manage) a shared one",
            Personal,
            &[],
            &[],
            delete(notes::remove_segment),
        ),
        e(
            "get",
            "/api/v1/sites/{site_id}/security",
            "Hits turned away per hour and reason (bots, spam, rate limits, firewall rules, invalid events)",
            Read,
            &[("hours", false, "1 to 2160 [24]")],
            &[],
            get(sites::security),
        ),
        e(
            "get",
            "/api/v1/sites/{site_id}/audit",
            "Who changed what in the site's settings (dashboard and API), newest first",
            Own,
            &[("limit", false, "1 to 5000 [100]")],
            &[],
            get(sites::audit),
        ),
        e(
            "put",
            "/api/v1/sites/{site_id}",
            "Change a site's timezone (admin) or domain (owner)",
            Manage,
            &[],
            &[("domain", false, "new domain"), ("timezone", false, "new IANA timezone, for events from now on")],
            put(sites::update),
        ),
        e(
            "delete",
            "/api/v1/sites/{site_id}",
            "Remove a site with its goals, shared links and stored events",
            Own,
            &[],
            &[],
            delete(sites::delete),
        ),
        Endpoint {
            method: "get",
            path: "/api/openapi.json",
            summary: "This document",
            action: Action::Public,
            query: &[],
            body: &[],
            handler: get(openapi::serve),
        },
    ]
}

/// Every route this crate serves: method, path and the action it needs (the API's, then the
/// dashboard's).
pub fn routes() -> Vec<(&'static str, &'static str, Action)> {
    let api = endpoints().into_iter().map(|e| (e.method, e.path, e.action));
    api.chain(app::routes().into_iter().map(|r| (r.0, r.1, r.2))).collect()
}

pub fn router(web: Arc<Web>) -> Router {
    // Each route carries its action to the handler, so the table is the only place it is said.
    let api = endpoints().into_iter().fold(Router::new(), |r, e| {
        let audited: MethodRouter<Arc<Web>> =
            e.handler.layer(axum::middleware::from_fn_with_state(web.clone(), audit::layer));
        let tagged: MethodRouter<Arc<Web>> = audited.layer(Extension(e.action));
        r.route(e.path, tagged.layer(Extension(audit::Summary(e.summary))))
    });
    api.merge(app::router(web.clone())).layer(axum::middleware::from_fn(bounded_body)).with_state(web)
}

/// The largest body an API or dashboard request may have, and how long it may take to arrive.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// Reads the whole body first, within the size and time limits: a slow or bloated client is
/// answered `408`/`413` and its connection closed, and no handler ever waits on a client.
async fn bounded_body(req: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    use axum::response::IntoResponse;
    let (parts, body) = req.into_parts();
    match tokio::time::timeout(BODY_TIMEOUT, axum::body::to_bytes(body, MAX_BODY_BYTES)).await {
        Ok(Ok(bytes)) => next.run(axum::extract::Request::from_parts(parts, axum::body::Body::from(bytes))).await,
        Ok(Err(_)) => ApiError::new(
            axum::http::StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body is larger than {MAX_BODY_BYTES} bytes"),
        )
        .into_response(),
        Err(_) => ApiError::new(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            format!("request body did not arrive within {BODY_TIMEOUT:?}"),
        )
        .into_response(),
    }
}
