//! The read side over HTTP: the Stats API and the Sites API (Plausible-compatible), and the
//! dashboard web app (`app`) that runs on the same API. Every reader goes through the one query
//! model in `plumb_store::query`. One table of endpoints builds both the router and the OpenAPI
//! document, so the document cannot drift from what is served.

mod app;
mod auth;
mod openapi;
mod realtime;
mod sites;
mod stats;
mod v1;

use axum::Router;
use axum::routing::{MethodRouter, delete, get, post, put};
use plumb_core::live::LiveVisitors;
use plumb_meta::{MetaError, MetaStore, Scope};
use plumb_store::EventReader;
use std::sync::Arc;

use plumb_core::limit::RateLimiter;

pub struct Web {
    pub meta: Arc<dyn MetaStore>,
    pub reader: Arc<dyn EventReader>,
    pub live: Arc<LiveVisitors>,
    /// Stats API requests per key.
    pub key_limiter: RateLimiter<u32>,
    /// Failed sign-ins, second factors and shared-link passwords, per account (or link)…
    pub login_limiter: RateLimiter<String>,
    /// …and per client address.
    pub address_limiter: RateLimiter<std::net::IpAddr>,
    /// Signs the cookies the server sets (shared-link access).
    pub server_key: [u8; 32],
    /// Where browsers reach this Plumb (`https://stats.example.com`), for snippets and invite
    /// links; without it, the request's `Host`.
    pub public_url: Option<String>,
    /// Where browsers reach the collector when it runs apart (`plumb collect`); without it, the
    /// public URL.
    pub collector_url: Option<String>,
    /// The notice the geolocation database's licence asks dashboards to show, and where it links.
    pub geo_attribution: Option<(&'static str, &'static str)>,
}

pub struct WebConfig {
    pub key_rate_limit: u32,
    pub public_url: Option<String>,
    pub collector_url: Option<String>,
    pub geo_attribution: Option<(&'static str, &'static str)>,
}

/// Failed sign-in attempts allowed per account (and, times four, per client address) every 15
/// minutes; tokens come back evenly over that time.
pub const LOGIN_ATTEMPTS: u32 = 5;

impl Web {
    pub fn new(
        meta: Arc<dyn MetaStore>,
        reader: Arc<dyn EventReader>,
        live: Arc<LiveVisitors>,
        config: WebConfig,
    ) -> Result<Self, MetaError> {
        Ok(Web {
            server_key: meta.server_key()?,
            meta,
            reader,
            live,
            key_limiter: RateLimiter::per_minute(config.key_rate_limit),
            login_limiter: RateLimiter::new(LOGIN_ATTEMPTS, 15 * 60),
            address_limiter: RateLimiter::new(4 * LOGIN_ATTEMPTS, 15 * 60),
            public_url: config.public_url.map(|u| u.trim_end_matches('/').to_owned()),
            collector_url: config.collector_url.map(|u| u.trim_end_matches('/').to_owned()),
            geo_attribution: config.geo_attribution,
        })
    }
}

/// One served endpoint and what the OpenAPI document says about it.
pub struct Endpoint {
    pub method: &'static str,
    pub path: &'static str,
    pub summary: &'static str,
    /// The key scope it needs; `None`: open.
    pub scope: Option<Scope>,
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
    use Scope::{SitesAdmin, StatsRead};
    let e = |method, path, summary, scope, query, body, handler| Endpoint {
        method,
        path,
        summary,
        scope: Some(scope),
        query,
        body,
        handler,
    };
    vec![
        e("post", "/api/v2/query", "Stats API v2 query", StatsRead, &[], &[], post(stats::query_v2)),
        e("get", "/api/v1/stats/aggregate", "Totals for a period (v1)", StatsRead, V1_PARAMS, &[], get(v1::aggregate)),
        e(
            "get",
            "/api/v1/stats/timeseries",
            "Metrics per time bucket (v1)",
            StatsRead,
            &[SITE_ID, ("period", false, "as for aggregate"), ("interval", false, "hour, date, week or month")],
            &[],
            get(v1::timeseries),
        ),
        e(
            "get",
            "/api/v1/stats/breakdown",
            "Metrics per value of a property (v1)",
            StatsRead,
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
            StatsRead,
            &[SITE_ID],
            &[],
            get(realtime::visitors),
        ),
        e(
            "get",
            "/api/v1/stats/realtime",
            "Current visitors by page and source",
            StatsRead,
            &[SITE_ID],
            &[],
            get(realtime::breakdown),
        ),
        e(
            "get",
            "/api/v1/stats/realtime/stream",
            "Server-sent events: `realtime` with the current visitors whenever they change",
            StatsRead,
            &[SITE_ID],
            &[],
            get(realtime::stream),
        ),
        e("get", "/api/v1/sites", "Sites the key can see", StatsRead, &[LIMIT, AFTER], &[], get(sites::list)),
        e(
            "post",
            "/api/v1/sites",
            "Add a site (key with sites:admin on every site)",
            SitesAdmin,
            &[],
            &[("domain", true, "the site's domain"), ("timezone", false, "IANA timezone [UTC]")],
            post(sites::create),
        ),
        e(
            "get",
            "/api/v1/sites/goals",
            "A site's goals",
            StatsRead,
            &[SITE_ID, LIMIT, AFTER],
            &[],
            get(sites::list_goals),
        ),
        e(
            "put",
            "/api/v1/sites/goals",
            "Add a goal (idempotent)",
            SitesAdmin,
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
            SitesAdmin,
            &[],
            &[SITE_ID],
            delete(sites::delete_goal),
        ),
        e("get", "/api/v1/sites/{site_id}", "A site", StatsRead, &[], &[], get(sites::show)),
        e(
            "get",
            "/api/v1/sites/{site_id}/firewall",
            "A site's firewall rules",
            SitesAdmin,
            &[],
            &[],
            get(sites::list_rules),
        ),
        e(
            "post",
            "/api/v1/sites/{site_id}/firewall",
            "Add a firewall rule (in effect within a second)",
            SitesAdmin,
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
            SitesAdmin,
            &[],
            &[],
            delete(sites::remove_rule),
        ),
        e(
            "get",
            "/api/v1/sites/{site_id}/security",
            "Hits turned away per hour and reason (bots, spam, rate limits, firewall rules, invalid events)",
            StatsRead,
            &[("hours", false, "1 to 2160 [24]")],
            &[],
            get(sites::security),
        ),
        e(
            "put",
            "/api/v1/sites/{site_id}",
            "Change a site's domain or timezone",
            SitesAdmin,
            &[],
            &[("domain", false, "new domain"), ("timezone", false, "new IANA timezone, for events from now on")],
            put(sites::update),
        ),
        e(
            "delete",
            "/api/v1/sites/{site_id}",
            "Remove a site with its goals, shared links and stored events",
            SitesAdmin,
            &[],
            &[],
            delete(sites::delete),
        ),
        Endpoint {
            method: "get",
            path: "/api/openapi.json",
            summary: "This document",
            scope: None,
            query: &[],
            body: &[],
            handler: get(openapi::serve),
        },
    ]
}

pub fn router(web: Arc<Web>) -> Router {
    let api = endpoints().into_iter().fold(Router::new(), |r, e| r.route(e.path, e.handler));
    api.merge(app::router()).with_state(web)
}
