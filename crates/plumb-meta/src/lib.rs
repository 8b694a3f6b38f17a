//! Metadata: sites, API keys and the daily salts. Small, transactional, read mostly.

mod sqlite;

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

pub trait MetaStore: Send + Sync + 'static {
    fn add_site(&self, domain: &str, timezone: &str) -> Result<Site>;
    fn list_sites(&self) -> Result<Vec<Site>>;
    fn remove_site(&self, domain: &str) -> Result<()>;
    fn site_by_domain(&self, domain: &str) -> Result<Option<Site>>;
    fn site_by_id(&self, id: u32) -> Result<Option<Site>>;

    /// Creates a key and returns it with its secret, which is shown once and stored only hashed.
    /// `sites` limits it to those sites (`None`: every site).
    fn create_key(&self, name: &str, scopes: &[Scope], sites: Option<&[u32]>) -> Result<(ApiKey, String)>;
    fn list_keys(&self) -> Result<Vec<ApiKey>>;
    fn revoke_key(&self, name: &str) -> Result<()>;
    fn verify_key(&self, secret: &str) -> Result<Option<ApiKey>>;

    /// The salt for a calendar date (day number) that is current somewhere on Earth, created on
    /// first use; `None` for any other date (its salt, if it had one, is gone).
    fn salt_for_day(&self, day: i32, now_ms: i64) -> Result<Option<Salt>>;
    /// Deletes salts of dates that have ended in every timezone. Returns how many were deleted.
    fn purge_salts(&self, now_ms: i64) -> Result<usize>;
}

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;

/// A date is current somewhere on Earth from its midnight at UTC+14 until its end at UTC−12.
pub fn day_is_live(day: i32, now_ms: i64) -> bool {
    let start = day as i64 * DAY_MS - 14 * HOUR_MS;
    let end = (day as i64 + 1) * DAY_MS + 12 * HOUR_MS;
    (start..end).contains(&now_ms)
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
