//! Metadata look-ups on the hot path, cached in memory. A domain that is not registered is
//! remembered as such briefly, so a flood of unknown domains does not reach the metadata store.
//! While the store cannot be reached, what was looked up before keeps being used.

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
        self.lookup(domain.to_owned(), || meta.site_by_domain(domain))
    }

    /// The site an older tracker's site id (an alias, see `MetaStore::set_alias`) counts into.
    pub fn by_alias(&self, meta: &dyn MetaStore, alias: &str) -> Result<Option<Site>, MetaError> {
        // Aliases share the map under a key no domain has.
        self.lookup(format!("alias {alias}"), || meta.site_by_alias(alias))
    }

    fn lookup(
        &self,
        key: String,
        find: impl FnOnce() -> Result<Option<Site>, MetaError>,
    ) -> Result<Option<Site>, MetaError> {
        if let Some((site, at)) = self.entries.read().unwrap().get(&key)
            && at.elapsed() < SITE_TTL
        {
            return Ok(site.clone());
        }
        let site = match find() {
            Ok(site) => site,
            // The metadata store is unreachable (restarting, a network cut): a site known
            // moments ago still counts; a domain never looked up waits for the store.
            Err(e) => return self.entries.read().unwrap().get(&key).map(|(site, _)| site.clone()).ok_or(e),
        };
        let mut entries = self.entries.write().unwrap();
        if entries.len() >= MAX_CACHED_DOMAINS {
            entries.clear();
        }
        entries.insert(key, (site.clone(), Instant::now()));
        Ok(site)
    }

    /// The site as last looked up, however long ago, without asking the metadata store: for
    /// attributing a refusal that must stay cheap. Site ids are never reused, so a stale entry
    /// can only name a site that was deleted since (whose counts are then dropped).
    pub fn cached(&self, domain: &str) -> Option<Site> {
        self.entries.read().unwrap().get(domain).and_then(|(site, _)| site.clone())
    }
}

/// Salts by day, all from the metadata store so that every collector signs a visitor alike.
/// Days current somewhere have their day's salt, deleted when the day ends everywhere. Back-dated
/// events from authenticated senders get the date's back-dated salt, which the store deletes an
/// hour after its last use: a back-fill counts its visitors consistently while it runs, and
/// nothing of it outlives it. This cache holds a back-dated salt for a minute at most, so the
/// store hears of its use while the back-fill goes on.
#[derive(Default)]
pub struct SaltCache {
    live: Mutex<HashMap<i32, Salt>>,
    backdated: Mutex<HashMap<i32, (Salt, Instant)>>,
}

const BACKDATED_CACHED: Duration = Duration::from_secs(60);

impl SaltCache {
    pub fn get(&self, meta: &dyn MetaStore, day: i32, now_ms: i64) -> Result<Salt, MetaError> {
        if let Some(s) = self.live.lock().unwrap().get(&day) {
            return Ok(*s);
        }
        if let Some(salt) = meta.salt_for_day(day, now_ms)? {
            self.live.lock().unwrap().insert(day, salt);
            return Ok(salt);
        }
        if let Some((salt, at)) = self.backdated.lock().unwrap().get(&day)
            && at.elapsed() < BACKDATED_CACHED
        {
            return Ok(*salt);
        }
        let salt = meta.backdated_salt(day, now_ms)?;
        self.backdated.lock().unwrap().insert(day, (salt, Instant::now()));
        Ok(salt)
    }

    pub fn retain_live(&self, now_ms: i64) {
        self.live.lock().unwrap().retain(|day, _| day_is_live(*day, now_ms));
        self.backdated.lock().unwrap().retain(|_, (_, at)| at.elapsed() < BACKDATED_CACHED);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use plumb_meta::SqliteMeta;

    #[test]
    fn the_cache_alone_knows_only_sites_looked_up_before() {
        let dir = std::env::temp_dir().join(format!("plumb-site-cache-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let meta = SqliteMeta::open(&dir.join("meta.db")).unwrap();
        meta.add_site("shop.test", "Europe/Berlin").unwrap();
        let cache = SiteCache::default();
        assert_eq!(cache.cached("shop.test"), None, "registered, but never looked up");
        assert_eq!(cache.get(&meta, "shop.test").unwrap().map(|s| s.domain), Some("shop.test".into()));
        assert_eq!(cache.cached("shop.test").map(|s| s.domain), Some("shop.test".into()));
        assert_eq!(cache.get(&meta, "made-up.test").unwrap(), None);
        assert_eq!(cache.cached("made-up.test"), None);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
