//! Metadata: sites, goals, API keys, accounts, the daily salts, and what Plumb sends (reports,
//! alerts, webhooks and their outbox). Small, transactional, read mostly. Two backends answer alike: SQLite ([`SqliteMeta`], one file) and PostgreSQL
//! ([`PgMeta`], shared by several processes or hosts).

pub mod accounts;
mod backend;
pub mod notices;
pub mod permission;
mod postgres;
mod sqlite;
#[cfg(feature = "testing")]
pub mod testing;

pub use accounts::{Accounts, Invite, NewUser, Role, Session, SharedLink, User};
pub use notices::Notices;
pub use postgres::{DEFAULT_POOL_SIZE, PgMeta, TableCopy};
pub use sqlite::SqliteMeta;

use chrono_tz::Tz;
use plumb_core::signature::Salt;

#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    #[error("metadata storage failed: {0}")]
    Storage(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0} not found")]
    NotFound(String),
}

pub type Result<T> = std::result::Result<T, MetaError>;

#[derive(Debug, Clone, PartialEq)]
pub struct Site {
    pub id: u32,
    pub domain: String,
    pub timezone: Tz,
}

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Stats API reads.
    StatsRead,
    /// Server-side ingestion with `timestamp`, `ip` and `user_agent`.
    EventsWrite,
    /// Managing sites and goals through the API.
    SitesAdmin,
}

impl Scope {
    pub const ALL: [(&str, Scope); 3] =
        [("stats:read", Scope::StatsRead), ("events:write", Scope::EventsWrite), ("sites:admin", Scope::SitesAdmin)];

    pub fn parse(s: &str) -> Result<Scope> {
        Self::ALL.iter().find(|(n, _)| *n == s.trim()).map(|(_, sc)| *sc).ok_or_else(|| {
            MetaError::Invalid(format!("`{s}` is not a scope (stats:read, events:write or sites:admin)"))
        })
    }

    pub fn name(self) -> &'static str {
        Self::ALL.iter().find(|(_, sc)| *sc == self).map(|(n, _)| *n).unwrap_or("?")
    }
}

/// Lower-cased, trimmed e-mail address, or a message saying what is wrong with it.
pub fn validate_email(email: &str) -> Result<String> {
    let e = email.trim().to_lowercase();
    let ok = e.len() <= 254
        && !e.chars().any(char::is_whitespace)
        && e.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && !domain.contains('@') && domain.contains('.') && !domain.starts_with('.')
        });
    if ok { Ok(e) } else { Err(MetaError::Invalid(format!("`{email}` is not an e-mail address"))) }
}

/// Passwords are at least 10 characters (NIST SP 800-63B asks for 8 at least) and at most 1024,
/// so hashing cost stays bounded.
pub fn validate_password(password: &str) -> Result<()> {
    match password.chars().count() {
        10..=1024 => Ok(()),
        n => Err(MetaError::Invalid(format!("a password must be 10 to 1024 characters, this one has {n}"))),
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ApiKey {
    pub id: u32,
    pub name: String,
    /// The first characters of the secret, enough to recognise it in a list.
    pub prefix: String,
    pub created_ms: i64,
    pub scopes: Vec<Scope>,
    /// The sites the key is limited to; `None` is every site.
    pub sites: Option<Vec<u32>>,
}

impl ApiKey {
    pub fn allows(&self, scope: Scope, site_id: u32) -> bool {
        self.scopes.contains(&scope) && self.sites.as_ref().is_none_or(|s| s.contains(&site_id))
    }
}

/// What completes a goal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GoalKind {
    /// A pageview whose path matches this pattern (`*` within a segment, `**` across segments).
    Page(String),
    /// A custom event with this name.
    Event(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Goal {
    pub id: u32,
    pub site_id: u32,
    /// The name reports show: the event name, or `Visit <path>` (Plausible's convention).
    pub display_name: String,
    pub kind: GoalKind,
    /// Revenue goals (custom events only): the ISO 4217 currency their revenue is reported in.
    pub currency: Option<String>,
}

/// An ISO 4217 currency code, upper-cased, or a message saying what is wrong with it.
pub fn validate_currency(code: &str) -> Result<String> {
    let c = code.trim().to_ascii_uppercase();
    if c.len() == 3 && c.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(c)
    } else {
        Err(MetaError::Invalid(format!("`{code}` is not a currency code (three letters, e.g. EUR)")))
    }
}

impl GoalKind {
    /// Checks the definition and trims it.
    pub fn validated(self) -> Result<GoalKind> {
        match self {
            GoalKind::Page(p) => {
                let p = p.trim().to_owned();
                if !p.starts_with('/') || p.len() > 2000 {
                    return Err(MetaError::Invalid(format!(
                        "page_path `{p}` must start with `/` (at most 2000 bytes)"
                    )));
                }
                Ok(GoalKind::Page(p))
            }
            GoalKind::Event(n) => {
                let n = n.trim().to_owned();
                if n.is_empty() || n.len() > 120 || n == "pageview" || n == "engagement" {
                    return Err(MetaError::Invalid(format!(
                        "event_name `{n}` must be 1 to 120 bytes and not `pageview` or `engagement`"
                    )));
                }
                Ok(GoalKind::Event(n))
            }
        }
    }

    pub fn default_name(&self) -> String {
        match self {
            GoalKind::Page(p) => format!("Visit {p}"),
            GoalKind::Event(n) => n.clone(),
        }
    }
}

/// What a firewall rule matches. Hits matching a blocking rule get `403`; once a site has
/// allowed hostnames, hits for any other hostname do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleKind {
    /// An address or a CIDR range.
    Ip(ipnet::IpNet),
    /// An ISO 3166-1 alpha-2 country code.
    Country(String),
    /// A page path pattern: `*` within a segment, `**` across segments.
    Path(String),
    /// A hostname hits may come from: `example.com` or `*.example.com`.
    AllowHost(String),
}

impl RuleKind {
    pub const NAMES: [&str; 4] = ["ip", "country", "path", "allow_host"];

    /// A rule from its kind's name and value, checked and normalised.
    pub fn parse(kind: &str, value: &str) -> Result<RuleKind> {
        let v = value.trim();
        let bad = |what: &str| MetaError::Invalid(format!("`{v}` is not {what}"));
        match kind.trim() {
            "ip" => v
                .parse::<ipnet::IpNet>()
                .or_else(|_| v.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map(|n| RuleKind::Ip(n.trunc()))
                .map_err(|_| bad("an IP address or CIDR range (e.g. 203.0.113.0/24)")),
            "country" if v.len() == 2 && v.bytes().all(|b| b.is_ascii_alphabetic()) => {
                Ok(RuleKind::Country(v.to_ascii_uppercase()))
            }
            "country" => Err(bad("a two-letter country code (e.g. DE)")),
            "path" if v.starts_with('/') && v.len() <= 2000 => Ok(RuleKind::Path(v.to_owned())),
            "path" => Err(bad("a path pattern starting with `/`")),
            "allow_host" => {
                let host = v.strip_prefix("*.").unwrap_or(v);
                validate_domain(host).map_err(|_| bad("a hostname or `*.` and a hostname"))?;
                Ok(RuleKind::AllowHost(format!(
                    "{}{}",
                    if v.starts_with("*.") { "*." } else { "" },
                    host.to_ascii_lowercase()
                )))
            }
            other => Err(MetaError::Invalid(format!("`{other}` is not a rule kind (ip, country, path or allow_host)"))),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            RuleKind::Ip(_) => "ip",
            RuleKind::Country(_) => "country",
            RuleKind::Path(_) => "path",
            RuleKind::AllowHost(_) => "allow_host",
        }
    }

    pub fn value(&self) -> String {
        match self {
            RuleKind::Ip(n) => n.to_string(),
            RuleKind::Country(v) | RuleKind::Path(v) | RuleKind::AllowHost(v) => v.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirewallRule {
    pub id: u32,
    pub site_id: u32,
    pub kind: RuleKind,
    pub created_ms: i64,
}

/// A dated note on a site's chart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Annotation {
    pub id: u32,
    pub site_id: u32,
    /// The site's local day number.
    pub day: i32,
    pub text: String,
    pub created_ms: i64,
}

/// A saved filter set: the Stats API's `filters` as JSON text (checked by the query model before
/// it is saved), one user's own or shared with everyone who may read the site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub id: u32,
    pub site_id: u32,
    pub name: String,
    pub filters: String,
    /// The user it belongs to; `None`: shared.
    pub owner: Option<u32>,
    pub created_ms: i64,
}

/// A step of a funnel: a copy of the goal it was made from, so the funnel keeps its meaning
/// when the goal is renamed or removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunnelStep {
    /// The goal's name when the funnel was made.
    pub name: String,
    pub kind: GoalKind,
}

/// Goals a visit completes in order. Nothing stored links a visitor's hits, so the pipeline
/// counts a funnel as hits arrive, from `starts_ms` on (queue time); see `FUNNEL_START_DELAY_MS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Funnel {
    pub id: u32,
    pub site_id: u32,
    pub name: String,
    pub steps: Vec<FunnelStep>,
    pub created_ms: i64,
    /// Hits the queue received from this instant on are counted.
    pub starts_ms: i64,
}

/// How long after it is made a funnel starts counting. The pipeline counts a hit only for the
/// funnels it had loaded by then, and makes sure it has loaded the metadata at most this long
/// before the hit's queue time; the delay covers clocks that differ between hosts and the
/// moment between stamping a funnel and committing it.
pub const FUNNEL_START_DELAY_MS: i64 = 10_000;
pub const MIN_FUNNEL_STEPS: usize = 2;
pub const MAX_FUNNEL_STEPS: usize = 8;
/// Funnels per site: each costs the pipeline a match of every hit against its steps.
pub const MAX_FUNNELS: u32 = 20;
pub const MAX_FUNNEL_NAME_CHARS: usize = 100;

/// A funnel's steps from the names of a site's goals, in order.
pub fn funnel_steps(goals: &[Goal], names: &[String]) -> Result<Vec<FunnelStep>> {
    if names.len() > MAX_FUNNEL_STEPS {
        return Err(MetaError::Invalid(format!("a funnel has at most {MAX_FUNNEL_STEPS} steps")));
    }
    names
        .iter()
        .map(|n| {
            let g = goals
                .iter()
                .find(|g| g.display_name == *n)
                .ok_or_else(|| MetaError::Invalid(format!("steps: `{n}` is not a goal of this site")))?;
            Ok(FunnelStep { name: g.display_name.clone(), kind: g.kind.clone() })
        })
        .collect()
}

/// A funnel's name, trimmed, and its steps: 2 to 8 valid goal definitions.
pub fn validate_funnel<'a>(name: &'a str, steps: &[FunnelStep]) -> Result<&'a str> {
    let n = name.trim();
    if n.is_empty() || n.chars().count() > MAX_FUNNEL_NAME_CHARS || n.chars().any(char::is_control) {
        return Err(MetaError::Invalid(format!(
            "a funnel's name is 1 to {MAX_FUNNEL_NAME_CHARS} characters on one line"
        )));
    }
    if !(MIN_FUNNEL_STEPS..=MAX_FUNNEL_STEPS).contains(&steps.len()) {
        return Err(MetaError::Invalid(format!(
            "a funnel has {MIN_FUNNEL_STEPS} to {MAX_FUNNEL_STEPS} steps, not {}",
            steps.len()
        )));
    }
    for s in steps {
        if s.kind.clone().validated()? != s.kind || s.name.is_empty() || s.name.len() > 200 {
            return Err(MetaError::Invalid(format!("funnel step `{}` is not a valid goal", s.name)));
        }
    }
    Ok(n)
}

/// Bounds on what callers store per site.
pub const MAX_ANNOTATIONS: u32 = 2_000;
pub const MAX_ANNOTATION_CHARS: usize = 300;
/// Shared segments per site, and each user's own per site.
pub const MAX_SEGMENTS: u32 = 200;
pub const MAX_OWN_SEGMENTS: u32 = 50;
pub const MAX_SEGMENT_NAME_CHARS: usize = 100;
pub const MAX_SEGMENT_FILTER_BYTES: usize = 8 * 1024;

/// An annotation's text, trimmed: 1 to [`MAX_ANNOTATION_CHARS`] characters, no control characters.
pub fn validate_annotation(text: &str) -> Result<&str> {
    let t = text.trim();
    if t.is_empty() || t.chars().count() > MAX_ANNOTATION_CHARS || t.chars().any(char::is_control) {
        return Err(MetaError::Invalid(format!("an annotation is 1 to {MAX_ANNOTATION_CHARS} characters on one line")));
    }
    Ok(t)
}

/// A segment's name, trimmed, and the size of its filters.
pub fn validate_segment<'a>(name: &'a str, filters: &str) -> Result<&'a str> {
    let n = name.trim();
    if n.is_empty() || n.chars().count() > MAX_SEGMENT_NAME_CHARS || n.chars().any(char::is_control) {
        return Err(MetaError::Invalid(format!(
            "a segment's name is 1 to {MAX_SEGMENT_NAME_CHARS} characters on one line"
        )));
    }
    if filters.len() > MAX_SEGMENT_FILTER_BYTES {
        return Err(MetaError::Invalid(format!("a segment's filters take at most {MAX_SEGMENT_FILTER_BYTES} bytes")));
    }
    Ok(n)
}

/// Where an import is: under way (or cut short), read by queries, or being deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportState {
    Loading,
    Done,
    Removing,
}

impl ImportState {
    pub fn name(self) -> &'static str {
        match self {
            ImportState::Loading => "loading",
            ImportState::Done => "done",
            ImportState::Removing => "removing",
        }
    }

    pub(crate) fn parse(s: &str) -> Result<ImportState> {
        match s {
            "loading" => Ok(ImportState::Loading),
            "done" => Ok(ImportState::Done),
            "removing" => Ok(ImportState::Removing),
            other => Err(MetaError::Storage(format!("a stored import state `{other}`"))),
        }
    }
}

/// One run of an import of another tool's history into a site; its rows are in the event
/// store's `imported` table under its id (see `plumb_query::imported`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Import {
    pub id: u32,
    pub site_id: u32,
    /// `fathom-lite`, `plausible` or `logs`.
    pub kind: String,
    /// What makes another run the same import, which then replaces this one.
    pub key: String,
    /// What it was imported from, for people.
    pub label: String,
    pub first_day: i32,
    pub last_day: i32,
    /// The breakdowns it holds (`plumb_query::imported::Dim` codes).
    pub dims: Vec<u8>,
    pub rows: u64,
    pub state: ImportState,
    pub created_ms: i64,
}

/// The longest site alias (an older tracker's site id).
pub const MAX_ALIAS_LEN: usize = 32;

/// `alias` if a site may be known by it: 1 to [`MAX_ALIAS_LEN`] ASCII letters, digits, `-` or `_`.
pub fn validate_alias(alias: &str) -> Result<&str> {
    let ok = (1..=MAX_ALIAS_LEN).contains(&alias.len())
        && alias.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(alias)
    } else {
        Err(MetaError::Invalid(format!(
            "a site alias is 1 to {MAX_ALIAS_LEN} letters, digits, - or _; not `{}`",
            alias.escape_debug()
        )))
    }
}

/// Hits turned away for one site, hour (unix hours) and reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityCount {
    pub site_id: u32,
    pub hour: i64,
    pub reason: String,
    pub count: u64,
}

pub trait MetaStore: Accounts + Notices + Send + Sync + 'static {
    fn add_site(&self, domain: &str, timezone: &str) -> Result<Site>;
    fn list_sites(&self) -> Result<Vec<Site>>;
    /// Changes a site's domain and/or timezone. A new timezone applies to events from then on;
    /// stored rows keep the local days they were counted in.
    fn update_site(&self, id: u32, domain: Option<&str>, timezone: Option<&str>) -> Result<Site>;
    /// Removes the site with its goals, links and roles, and leaves a tombstone for its stored
    /// rows, which the pipeline deletes (see [`deleted_sites`](Self::deleted_sites)). Site ids
    /// are never reused, so keys limited to it lose it.
    fn remove_site(&self, domain: &str) -> Result<Site>;
    /// Every removed site's id, and whether its stored rows are deleted yet.
    fn deleted_sites(&self) -> Result<Vec<(u32, bool)>>;
    /// Records that a removed site's stored rows are deleted.
    fn mark_purged(&self, site_id: u32) -> Result<()>;
    fn site_by_domain(&self, domain: &str) -> Result<Option<Site>>;
    fn site_by_id(&self, id: u32) -> Result<Option<Site>>;

    /// How many months of the site's stored rows are kept; `None`: forever.
    fn retention(&self, site_id: u32) -> Result<Option<u16>>;
    /// Sets how many months are kept (1 to [`MAX_RETENTION_MONTHS`]), or `None` for forever.
    fn set_retention(&self, site_id: u32, months: Option<u16>) -> Result<()>;
    /// Every site that keeps its rows for a limited time, with its months.
    fn retentions(&self) -> Result<Vec<(u32, u16)>>;

    /// Starts a run of an import into a site: a new id, in state loading (read by no query).
    fn begin_import(&self, site_id: u32, kind: &str, key: &str, label: &str) -> Result<Import>;
    /// Marks a run finished with what it holds, and in the same transaction every other run of
    /// the same site, kind and key for removal; returns those (their stored rows are to be
    /// deleted, then the runs with [`delete_import`](Self::delete_import)).
    fn finish_import(&self, id: u32, first_day: i32, last_day: i32, dims: &[u8], rows: u64) -> Result<Vec<Import>>;
    /// Imports of one site (or of all), oldest first.
    fn imports(&self, site_id: Option<u32>) -> Result<Vec<Import>>;
    /// Marks an import for removal (queries stop reading it) and returns it.
    fn mark_import_removing(&self, id: u32) -> Result<Import>;
    /// Forgets an import whose stored rows are deleted.
    fn delete_import(&self, id: u32) -> Result<()>;
    /// Makes `alias` (see [`validate_alias`]) count into the site, whichever it counted into.
    fn set_alias(&self, alias: &str, site_id: u32) -> Result<()>;
    fn site_by_alias(&self, alias: &str) -> Result<Option<Site>>;

    /// Adds a goal, or returns the site's existing goal with the same definition.
    fn add_goal(&self, site_id: u32, kind: GoalKind, display_name: Option<&str>) -> Result<Goal>;
    fn list_goals(&self, site_id: u32) -> Result<Vec<Goal>>;
    /// Makes an event goal a revenue goal in `currency` (or a plain goal again with `None`).
    fn set_goal_currency(&self, site_id: u32, goal_id: u32, currency: Option<&str>) -> Result<Goal>;

    /// [`add_goal`](Self::add_goal), then its currency for a revenue goal. The currency is
    /// checked first, so a bad one leaves no goal behind.
    fn add_goal_with_currency(
        &self,
        site_id: u32,
        kind: GoalKind,
        display_name: Option<&str>,
        currency: Option<&str>,
    ) -> Result<Goal> {
        let currency = currency.map(validate_currency).transpose()?;
        if currency.is_some() && matches!(kind, GoalKind::Page(_)) {
            return Err(MetaError::Invalid("currency: only custom-event goals carry revenue".into()));
        }
        let goal = self.add_goal(site_id, kind, display_name)?;
        match currency {
            Some(c) => self.set_goal_currency(site_id, goal.id, Some(&c)),
            None => Ok(goal),
        }
    }
    fn remove_goal(&self, site_id: u32, goal_id: u32) -> Result<()>;

    /// Creates a key and returns it with its secret, which is shown once and stored only hashed.
    /// `sites` limits it to those sites (`None`: every site).
    fn create_key(&self, name: &str, scopes: &[Scope], sites: Option<&[u32]>) -> Result<(ApiKey, String)>;
    fn list_keys(&self) -> Result<Vec<ApiKey>>;
    fn revoke_key(&self, name: &str) -> Result<()>;
    fn verify_key(&self, secret: &str) -> Result<Option<ApiKey>>;

    /// Adds a firewall rule (the same rule twice is one rule).
    fn add_rule(&self, site_id: u32, kind: RuleKind) -> Result<FirewallRule>;
    fn rules(&self, site_id: u32) -> Result<Vec<FirewallRule>>;
    fn remove_rule(&self, site_id: u32, rule_id: u32) -> Result<()>;

    /// Adds a note on a local day (at most [`MAX_ANNOTATIONS`] per site).
    fn add_annotation(&self, site_id: u32, day: i32, text: &str) -> Result<Annotation>;
    /// A site's annotations on days `from..=to`, by day.
    fn annotations(&self, site_id: u32, from: i32, to: i32) -> Result<Vec<Annotation>>;
    fn remove_annotation(&self, site_id: u32, id: u32) -> Result<()>;

    /// Saves a filter set, `owner`'s own (at most [`MAX_OWN_SEGMENTS`] each per site) or shared
    /// (`None`, at most [`MAX_SEGMENTS`] per site).
    fn add_segment(&self, site_id: u32, name: &str, filters: &str, owner: Option<u32>) -> Result<Segment>;
    /// Every segment of a site, personal ones included (callers show each only to whom it may).
    fn segments(&self, site_id: u32) -> Result<Vec<Segment>>;
    fn remove_segment(&self, site_id: u32, id: u32) -> Result<()>;

    /// Adds a funnel (at most [`MAX_FUNNELS`] per site), counting from [`FUNNEL_START_DELAY_MS`]
    /// after now.
    fn add_funnel(&self, site_id: u32, name: &str, steps: &[FunnelStep]) -> Result<Funnel>;
    /// A site's funnels, or every site's (`None`, for the pipeline), by id.
    fn funnels(&self, site_id: Option<u32>) -> Result<Vec<Funnel>>;
    fn remove_funnel(&self, site_id: u32, id: u32) -> Result<()>;

    /// Adds counts to the stored ones (counts of deleted sites are dropped).
    fn add_security_counts(&self, counts: &[SecurityCount]) -> Result<()>;
    /// A site's counts from `since_hour` on, oldest first.
    fn security_counts(&self, site_id: u32, since_hour: i64) -> Result<Vec<SecurityCount>>;

    /// The salt for a calendar date (day number) that is current somewhere on Earth, created on
    /// first use; `None` for any other date (its salt, if it had one, is gone).
    fn salt_for_day(&self, day: i32, now_ms: i64) -> Result<Option<Salt>>;
    /// The salt for back-filling a date that is no longer current anywhere, shared by every
    /// collector: created on first use, and kept until an hour after its last use
    /// ([`BACKDATED_SALT_IDLE_MS`]).
    fn backdated_salt(&self, day: i32, now_ms: i64) -> Result<Salt>;
    /// Deletes salts of dates that have ended in every timezone, and back-dated salts unused for
    /// an hour. Returns how many were deleted.
    fn purge_salts(&self, now_ms: i64) -> Result<usize>;
}

/// How long a back-dated salt outlives its last use.
pub const BACKDATED_SALT_IDLE_MS: i64 = HOUR_MS;

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;

/// A date is current somewhere on Earth from its midnight at UTC+14 until its end at UTC−12.
/// The dates current somewhere on Earth at `now_ms` (those [`day_is_live`] holds for).
pub fn live_days(now_ms: i64) -> impl Iterator<Item = i32> {
    let today = now_ms.div_euclid(DAY_MS) as i32;
    (today - 1..=today + 1).filter(move |d| day_is_live(*d, now_ms))
}

pub fn day_is_live(day: i32, now_ms: i64) -> bool {
    let start = day as i64 * DAY_MS - 14 * HOUR_MS;
    let end = (day as i64 + 1) * DAY_MS + 12 * HOUR_MS;
    (start..end).contains(&now_ms)
}

/// The longest retention a site may have short of forever: a hundred years.
pub const MAX_RETENTION_MONTHS: u16 = 1200;

/// `months` if it is a retention a site may have.
pub fn validate_retention(months: Option<u16>) -> Result<Option<u16>> {
    match months {
        Some(m) if m == 0 || m > MAX_RETENTION_MONTHS => Err(MetaError::Invalid(format!(
            "a site keeps its data for 1 to {MAX_RETENTION_MONTHS} months, or forever; not {m}"
        ))),
        _ => Ok(months),
    }
}

/// A retention as people write it (in the CLI and the settings form): a number of months, or
/// `forever`.
pub fn parse_retention(text: &str) -> Result<Option<u16>> {
    let months = match text.trim() {
        "forever" => None,
        m => Some(m.parse::<u16>().map_err(|_| {
            MetaError::Invalid(format!("`{m}` is neither a number of months (1 to {MAX_RETENTION_MONTHS}) nor forever"))
        })?),
    };
    validate_retention(months)
}

/// Normalised site domain, or a message saying what is wrong with it.
pub fn validate_domain(domain: &str) -> Result<String> {
    let d = domain.trim().trim_end_matches('.').to_ascii_lowercase();
    let ok = !d.is_empty()
        && d.len() <= 253
        && d.split('.')
            .all(|l| !l.is_empty() && l.len() <= 63 && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
    if ok {
        Ok(d)
    } else {
        Err(MetaError::Invalid(format!("`{domain}` is not a valid domain (letters, digits, `-` and `.` only)")))
    }
}

pub fn parse_timezone(tz: &str) -> Result<Tz> {
    tz.parse::<Tz>().map_err(|_| MetaError::Invalid(format!("`{tz}` is not an IANA timezone (e.g. Europe/Berlin)")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_day_is_live_while_some_timezone_is_in_it() {
        let d = 20_000;
        let midnight_utc = d as i64 * DAY_MS;
        assert!(!day_is_live(d, midnight_utc - 14 * HOUR_MS - 1));
        assert!(day_is_live(d, midnight_utc - 14 * HOUR_MS));
        assert!(day_is_live(d, midnight_utc + DAY_MS + 12 * HOUR_MS - 1));
        assert!(!day_is_live(d, midnight_utc + DAY_MS + 12 * HOUR_MS));
        // From UTC−12 to UTC+14: two dates at midnight UTC, three at 11:00, two again at noon.
        assert_eq!(live_days(midnight_utc).collect::<Vec<_>>(), [d - 1, d]);
        assert_eq!(live_days(midnight_utc + 11 * HOUR_MS).collect::<Vec<_>>(), [d - 1, d, d + 1]);
        assert_eq!(live_days(midnight_utc + 12 * HOUR_MS).collect::<Vec<_>>(), [d, d + 1]);
    }

    #[test]
    fn domains_and_timezones_are_validated() {
        assert_eq!(validate_domain(" Example.COM. ").unwrap(), "example.com");
        assert!(validate_domain("exa mple.com").is_err());
        assert!(validate_domain("").is_err());
        assert!(validate_domain("a..b").is_err());
        assert!(parse_timezone("Europe/Berlin").is_ok());
        assert!(parse_timezone("Mars/Olympus").is_err());
    }
}
