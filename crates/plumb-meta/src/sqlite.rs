use crate::{ApiKey, MetaError, MetaStore, Result, Scope, Site, day_is_live, parse_timezone, validate_domain};
use plumb_core::signature::{Salt, random_salt};
use rusqlite::{Connection, OptionalExtension, params};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

fn storage(e: rusqlite::Error) -> MetaError {
    MetaError::Storage(e.to_string())
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

const KEY_COLUMNS: &str = "SELECT id, name, prefix, created_ms, scopes, sites FROM api_keys";

/// A key row; scopes and sites are comma-separated lists.
fn key_row(r: &rusqlite::Row) -> rusqlite::Result<Result<ApiKey>> {
    let (scopes, sites): (String, Option<String>) = (r.get(4)?, r.get(5)?);
    let key = || -> Result<ApiKey> {
        Ok(ApiKey {
            id: r.get(0).map_err(storage)?,
            name: r.get(1).map_err(storage)?,
            prefix: r.get(2).map_err(storage)?,
            created_ms: r.get(3).map_err(storage)?,
            scopes: scopes.split(',').filter(|s| !s.is_empty()).map(Scope::parse).collect::<Result<_>>()?,
            sites: sites
                .map(|s| {
                    s.split(',').map(|id| id.parse().map_err(|_| MetaError::Storage("bad site list".into()))).collect()
                })
                .transpose()?,
        })
    };
    Ok(key())
}

fn hash_secret(secret: &str) -> String {
    Sha256::digest(secret.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

pub struct SqliteMeta {
    conn: Mutex<Connection>,
}

impl SqliteMeta {
    pub fn open(path: &Path) -> Result<Self> {
        let conn = Connection::open(path).map_err(storage)?;
        conn.busy_timeout(Duration::from_secs(10)).map_err(storage)?;
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA secure_delete=ON;
             PRAGMA foreign_keys=ON;
             CREATE TABLE IF NOT EXISTS sites (
                 id INTEGER PRIMARY KEY AUTOINCREMENT,
                 domain TEXT NOT NULL UNIQUE,
                 timezone TEXT NOT NULL,
                 created_ms INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS api_keys (
                 id INTEGER PRIMARY KEY AUTOINCREMENT,
                 name TEXT NOT NULL UNIQUE,
                 prefix TEXT NOT NULL,
                 secret_sha256 TEXT NOT NULL UNIQUE,
                 created_ms INTEGER NOT NULL,
                 scopes TEXT NOT NULL,
                 sites TEXT);
             CREATE TABLE IF NOT EXISTS salts (
                 day INTEGER PRIMARY KEY,
                 salt BLOB NOT NULL);",
        )
        .map_err(storage)?;
        Ok(Self { conn: Mutex::new(conn) })
    }

    fn site_where(&self, clause: &str, param: &dyn rusqlite::ToSql) -> Result<Option<Site>> {
        let conn = self.conn.lock().unwrap();
        let row = conn
            .query_row(&format!("SELECT id, domain, timezone FROM sites WHERE {clause}"), [param], |r| {
                Ok((r.get::<_, u32>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?))
            })
            .optional()
            .map_err(storage)?;
        row.map(|(id, domain, tz)| Ok(Site { id, domain, timezone: parse_timezone(&tz)? })).transpose()
    }
}

impl MetaStore for SqliteMeta {
    fn add_site(&self, domain: &str, timezone: &str) -> Result<Site> {
        let domain = validate_domain(domain)?;
        let tz = parse_timezone(timezone)?;
        let conn = self.conn.lock().unwrap();
        let inserted = conn
            .execute(
                "INSERT OR IGNORE INTO sites (domain, timezone, created_ms) VALUES (?1, ?2, ?3)",
                params![domain, tz.name(), now_ms()],
            )
            .map_err(storage)?;
        if inserted == 0 {
            return Err(MetaError::Invalid(format!("site `{domain}` already exists")));
        }
        Ok(Site { id: conn.last_insert_rowid() as u32, domain, timezone: tz })
    }

    fn list_sites(&self) -> Result<Vec<Site>> {
        let conn = self.conn.lock().unwrap();
        let mut stmt = conn.prepare("SELECT id, domain, timezone FROM sites ORDER BY domain").map_err(storage)?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, u32>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?)))
            .map_err(storage)?;
        rows.map(|r| {
            let (id, domain, tz) = r.map_err(storage)?;
            Ok(Site { id, domain, timezone: parse_timezone(&tz)? })
        })
        .collect()
    }

    fn remove_site(&self, domain: &str) -> Result<()> {
        let domain = validate_domain(domain)?;
        let n = self.conn.lock().unwrap().execute("DELETE FROM sites WHERE domain = ?1", [&domain]).map_err(storage)?;
        if n == 0 { Err(MetaError::NotFound(format!("site `{domain}`"))) } else { Ok(()) }
    }

    fn site_by_domain(&self, domain: &str) -> Result<Option<Site>> {
        self.site_where("domain = ?1", &domain)
    }

    fn site_by_id(&self, id: u32) -> Result<Option<Site>> {
        self.site_where("id = ?1", &id)
    }

    fn create_key(&self, name: &str, scopes: &[Scope], sites: Option<&[u32]>) -> Result<(ApiKey, String)> {
        let name = name.trim();
        if name.is_empty() || name.len() > 100 {
            return Err(MetaError::Invalid("key name must be 1 to 100 characters".into()));
        }
        if scopes.is_empty() {
            return Err(MetaError::Invalid("a key needs at least one scope".into()));
        }
        let mut raw = [0u8; 24];
        getrandom::fill(&mut raw).map_err(|e| MetaError::Storage(e.to_string()))?;
        let secret: String = format!("plumb_{}", raw.iter().map(|b| format!("{b:02x}")).collect::<String>());
        let prefix = secret[..12].to_owned();
        let created_ms = now_ms();
        let scope_text = scopes.iter().map(|s| s.name()).collect::<Vec<_>>().join(",");
        let site_text = sites.map(|s| s.iter().map(u32::to_string).collect::<Vec<_>>().join(","));
        let conn = self.conn.lock().unwrap();
        let inserted = conn
            .execute(
                "INSERT OR IGNORE INTO api_keys (name, prefix, secret_sha256, created_ms, scopes, sites)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![name, prefix, hash_secret(&secret), created_ms, scope_text, site_text],
            )
            .map_err(storage)?;
        if inserted == 0 {
            return Err(MetaError::Invalid(format!("a key named `{name}` already exists")));
        }
        let key = ApiKey {
            id: conn.last_insert_rowid() as u32,
            name: name.to_owned(),
            prefix,
            created_ms,
            scopes: scopes.to_vec(),
            sites: sites.map(<[u32]>::to_vec),
        };
        Ok((key, secret))
    }

    fn list_keys(&self) -> Result<Vec<ApiKey>> {
        let conn = self.conn.lock().unwrap();
        let mut stmt = conn.prepare(&format!("{KEY_COLUMNS} ORDER BY name")).map_err(storage)?;
        let rows = stmt.query_map([], key_row).map_err(storage)?;
        rows.map(|r| r.map_err(storage)?).collect()
    }

    fn revoke_key(&self, name: &str) -> Result<()> {
        let n = self.conn.lock().unwrap().execute("DELETE FROM api_keys WHERE name = ?1", [name]).map_err(storage)?;
        if n == 0 { Err(MetaError::NotFound(format!("key `{name}`"))) } else { Ok(()) }
    }

    fn verify_key(&self, secret: &str) -> Result<Option<ApiKey>> {
        let conn = self.conn.lock().unwrap();
        conn.query_row(&format!("{KEY_COLUMNS} WHERE secret_sha256 = ?1"), [hash_secret(secret)], key_row)
            .optional()
            .map_err(storage)?
            .transpose()
    }

    fn salt_for_day(&self, day: i32, now_ms: i64) -> Result<Option<Salt>> {
        if !day_is_live(day, now_ms) {
            return Ok(None);
        }
        let conn = self.conn.lock().unwrap();
        conn.execute("INSERT OR IGNORE INTO salts (day, salt) VALUES (?1, ?2)", params![day, random_salt().as_slice()])
            .map_err(storage)?;
        let bytes: Vec<u8> =
            conn.query_row("SELECT salt FROM salts WHERE day = ?1", [day], |r| r.get(0)).map_err(storage)?;
        let salt = bytes.try_into().map_err(|_| MetaError::Storage("stored salt is not 16 bytes".into()))?;
        Ok(Some(salt))
    }

    fn purge_salts(&self, now_ms: i64) -> Result<usize> {
        let conn = self.conn.lock().unwrap();
        let days: Vec<i32> = {
            let mut stmt = conn.prepare("SELECT day FROM salts").map_err(storage)?;
            stmt.query_map([], |r| r.get(0))
                .map_err(storage)?
                .collect::<std::result::Result<_, _>>()
                .map_err(storage)?
        };
        let mut n = 0;
        for day in days.into_iter().filter(|d| !day_is_live(*d, now_ms)) {
            n += conn.execute("DELETE FROM salts WHERE day = ?1", [day]).map_err(storage)?;
        }
        if n > 0 {
            // Push the deletion out of the WAL too, so the old salt's bytes leave the disk.
            let _ = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(name: &str) -> SqliteMeta {
        let dir = std::env::temp_dir().join(format!("plumb-meta-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        SqliteMeta::open(&dir.join("meta.db")).unwrap()
    }

    #[test]
    fn sites_round_trip_and_reject_duplicates() {
        let m = meta("sites");
        let s = m.add_site("Example.com", "Europe/Berlin").unwrap();
        assert_eq!(m.site_by_domain("example.com").unwrap(), Some(s.clone()));
        assert_eq!(m.site_by_id(s.id).unwrap(), Some(s));
        assert!(matches!(m.add_site("example.com", "UTC"), Err(MetaError::Invalid(_))));
        assert!(matches!(m.add_site("b.com", "Nowhere/Land"), Err(MetaError::Invalid(_))));
        m.remove_site("example.com").unwrap();
        assert!(m.list_sites().unwrap().is_empty());
        assert!(matches!(m.remove_site("example.com"), Err(MetaError::NotFound(_))));
    }

    #[test]
    fn keys_verify_only_their_secret_until_revoked() {
        let m = meta("keys");
        let (key, secret) = m.create_key("ci", &[Scope::StatsRead], Some(&[7])).unwrap();
        assert!(secret.starts_with(&key.prefix));
        assert_eq!(m.verify_key(&secret).unwrap(), Some(key.clone()));
        assert!(key.allows(Scope::StatsRead, 7));
        assert!(!key.allows(Scope::StatsRead, 8), "limited to site 7");
        assert!(!key.allows(Scope::EventsWrite, 7), "no events:write scope");
        assert!(m.create_key("none", &[], None).is_err());
        assert!(Scope::parse("stats:write").is_err());
        assert_eq!(m.verify_key("plumb_wrong").unwrap(), None);
        m.revoke_key("ci").unwrap();
        assert_eq!(m.verify_key(&secret).unwrap(), None);
    }

    #[test]
    fn salts_are_stable_per_day_and_purged_when_the_day_ends_everywhere() {
        let m = meta("salts");
        let day = 20_000;
        let noon = day as i64 * 86_400_000 + 43_200_000;
        let a = m.salt_for_day(day, noon).unwrap();
        assert!(a.is_some());
        assert_eq!(a, m.salt_for_day(day, noon).unwrap());
        assert_ne!(a, m.salt_for_day(day + 1, noon).unwrap());
        assert_eq!(m.purge_salts(noon).unwrap(), 0);
        let later = noon + 2 * 86_400_000;
        assert_eq!(m.purge_salts(later).unwrap(), 2);
        // A date that has ended everywhere has no salt any more, and gets none.
        assert_eq!(m.salt_for_day(day, later).unwrap(), None);
        assert_eq!(m.purge_salts(later).unwrap(), 0);
    }
}
