//! Metadata look-ups on the hot path, cached in memory. A domain that is not registered is
//! remembered as such briefly, so a flood of unknown domains does not reach the metadata store.

use plumb_core::signature::Salt;
use plumb_meta::{MetaError, MetaStore, Site, day_is_live};
use std::collections::HashMap;
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

const SITE_TTL: Duration = Duration::from_secs(2);
const MAX_CACHED_DOMAINS: usize = 10_000;

#[derive(Default)]
pub struct SiteCache {
    entries: RwLock<HashMap<String, (Option<Site>, Instant)>>,
}

impl SiteCache {
    pub fn get(&self, meta: &dyn MetaStore, domain: &str) -> Result<Option<Site>, MetaError> {
        if let Some((site, at)) = self.entries.read().unwrap().get(domain)
            && at.elapsed() < SITE_TTL
        {
            return Ok(site.clone());
        }
        let site = meta.site_by_domain(domain)?;
        let mut entries = self.entries.write().unwrap();
        if entries.len() >= MAX_CACHED_DOMAINS {
            entries.clear();
        }
        entries.insert(domain.to_owned(), (site.clone(), Instant::now()));
        Ok(site)
    }
}

/// Salts by day. Only days still live anywhere are kept; see [`SaltCache::retain_live`].
#[derive(Default)]
pub struct SaltCache {
    salts: Mutex<HashMap<i32, Salt>>,
}

impl SaltCache {
    pub fn get(&self, meta: &dyn MetaStore, day: i32, now_ms: i64) -> Result<Salt, MetaError> {
        if let Some(s) = self.salts.lock().unwrap().get(&day) {
            return Ok(*s);
        }
        let salt = meta.salt_for_day(day, now_ms)?;
        // Back-dated days use a salt that is not theirs to keep; fetch it each time.
        if day_is_live(day, now_ms) {
            self.salts.lock().unwrap().insert(day, salt);
        }
        Ok(salt)
    }

    pub fn retain_live(&self, now_ms: i64) {
        self.salts.lock().unwrap().retain(|day, _| day_is_live(*day, now_ms));
    }
}
