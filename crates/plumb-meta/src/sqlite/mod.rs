mod accounts;
mod notices;

use crate::accounts::sha256_hex;
use crate::backend::{
    FunnelHead, NewKey, assemble_funnels, dims_text, goal_display_name, new_key, now_ms, stored_import, stored_key,
    stored_salt, with_currency,
};
use crate::{
    Annotation, FUNNEL_START_DELAY_MS, Funnel, FunnelStep, MAX_ANNOTATIONS, MAX_FUNNELS, MAX_OWN_SEGMENTS,
    MAX_SEGMENTS, Segment, validate_annotation, validate_funnel, validate_segment,
};
use crate::{
    ApiKey, BACKDATED_SALT_IDLE_MS, FirewallRule, Goal, GoalKind, Import, MetaError, MetaStore, Result, RuleKind,
    Scope, SecurityCount, Site, day_is_live, parse_timezone, validate_alias, validate_currency, validate_domain,
};
use plumb_core::signature::{Salt, random_salt};
use rusqlite::{Connection, OptionalExtension, params};
use std::path::Path;
use std::sync::Mutex;

fn storage(e: rusqlite::Error) -> MetaError {
    MetaError::Storage(e.to_string())
}

const KEY_COLUMNS: &str = "SELECT id, name, prefix, created_ms, scopes, sites FROM api_keys";

fn key_row(r: &rusqlite::Row) -> rusqlite::Result<Result<ApiKey>> {
    let (scopes, sites): (String, Option<String>) = (r.get(4)?, r.get(5)?);
    Ok(stored_key(r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, &scopes, sites.as_deref()))
}

/// The schema's versions, in order (see `plumb_sqlite`).
const MIGRATIONS: [&str; 8] = [
    include_str!("../../migrations/001_initial.sql"),
    include_str!("../../migrations/002_invites_for_an_address_and_site_tombstones.sql"),
    include_str!("../../migrations/003_backdated_salts.sql"),
    include_str!("../../migrations/004_site_retention.sql"),
    include_str!("../../migrations/005_imports.sql"),
    include_str!("../../migrations/006_annotations_and_segments.sql"),
    include_str!("../../migrations/007_funnels.sql"),
    include_str!("../../migrations/008_notices.sql"),
];

const IMPORT_COLUMNS: &str =
    "SELECT id, site_id, kind, source_key, label, first_day, last_day, dims, rows, state, created_ms FROM imports";

fn import_row(r: &rusqlite::Row) -> rusqlite::Result<Result<Import>> {
    let (dims, state): (String, String) = (r.get(7)?, r.get(9)?);
    Ok(stored_import(
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        (r.get(5)?, r.get(6)?),
        &dims,
        r.get(8)?,
        &state,
        r.get(10)?,
    ))
}

/// The imports `clause` selects (its parameters bound in order).
fn imports_where(conn: &Connection, clause: &str, params: impl rusqlite::Params) -> Result<Vec<Import>> {
    let mut stmt = conn.prepare_cached(&format!("{IMPORT_COLUMNS} WHERE {clause} ORDER BY id")).map_err(storage)?;
    let rows = stmt.query_map(params, import_row).map_err(storage)?;
    rows.map(|r| r.map_err(storage)?).collect()
}

pub struct SqliteMeta {
    conn: Mutex<Connection>,
}

impl SqliteMeta {
    /// The schema version this Plumb brings a metadata file to.
    pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

    pub fn open(path: &Path) -> Result<Self> {
        let conn = plumb_sqlite::open(path, &MIGRATIONS).map_err(|e| MetaError::Storage(e.to_string()))?;
        conn.execute_batch("PRAGMA foreign_keys=ON;").map_err(storage)?;
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

/// A foreign key refused: the site (or the owner) is not there.
fn or_no_site(site_id: u32) -> impl Fn(rusqlite::Error) -> MetaError {
    move |e| match e {
        rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ConstraintViolation => {
            MetaError::no_site(site_id)
        }
        e => storage(e),
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
            return Err(MetaError::site_taken(&domain));
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

    fn update_site(&self, id: u32, domain: Option<&str>, timezone: Option<&str>) -> Result<Site> {
        let old = self.site_by_id(id)?.ok_or_else(|| MetaError::no_site(id))?;
        let domain = domain.map(validate_domain).transpose()?.unwrap_or(old.domain);
        let tz = timezone.map(parse_timezone).transpose()?.unwrap_or(old.timezone);
        let conn = self.conn.lock().unwrap();
        let taken: bool = conn
            .query_row("SELECT EXISTS (SELECT 1 FROM sites WHERE domain = ?1 AND id != ?2)", params![domain, id], |r| {
                r.get(0)
            })
            .map_err(storage)?;
        if taken {
            return Err(MetaError::site_taken(&domain));
        }
        conn.execute("UPDATE sites SET domain = ?1, timezone = ?2 WHERE id = ?3", params![domain, tz.name(), id])
            .map_err(storage)?;
        Ok(Site { id, domain, timezone: tz })
    }

    fn remove_site(&self, domain: &str) -> Result<Site> {
        let domain = validate_domain(domain)?;
        let mut conn = self.conn.lock().unwrap();
        let tx = conn.transaction().map_err(storage)?;
        let site: Option<(u32, String, String)> = tx
            .query_row("SELECT id, domain, timezone FROM sites WHERE domain = ?1", [&domain], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .optional()
            .map_err(storage)?;
        let Some((id, domain, tz)) = site else { return Err(MetaError::no_site_named(&domain)) };
        tx.execute("DELETE FROM sites WHERE id = ?1", [id]).map_err(storage)?;
        tx.execute("INSERT OR IGNORE INTO deleted_sites (site_id, purged) VALUES (?1, 0)", [id]).map_err(storage)?;
        tx.commit().map_err(storage)?;
        Ok(Site { id, domain, timezone: parse_timezone(&tz)? })
    }

    fn deleted_sites(&self) -> Result<Vec<(u32, bool)>> {
        let conn = self.conn.lock().unwrap();
        let mut stmt = conn.prepare_cached("SELECT site_id, purged FROM deleted_sites").map_err(storage)?;
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(storage)?
            .collect::<rusqlite::Result<_>>()
            .map_err(storage)
    }

    fn mark_purged(&self, site_id: u32) -> Result<()> {
        let conn = self.conn.lock().unwrap();
        conn.execute("UPDATE deleted_sites SET purged = 1 WHERE site_id = ?1", [site_id]).map_err(storage)?;
        Ok(())
    }

    fn site_by_domain(&self, domain: &str) -> Result<Option<Site>> {
        self.site_where("domain = ?1", &domain)
    }

    fn site_by_id(&self, id: u32) -> Result<Option<Site>> {
        self.site_where("id = ?1", &id)
    }

    fn retention(&self, site_id: u32) -> Result<Option<u16>> {
        let conn = self.conn.lock().unwrap();
        conn.query_row("SELECT months FROM site_retention WHERE site_id = ?1", [site_id], |r| r.get(0))
            .optional()
            .map_err(storage)
    }

    fn set_retention(&self, site_id: u32, months: Option<u16>) -> Result<()> {
        let months = crate::validate_retention(months)?;
        let conn = self.conn.lock().unwrap();
        let sites: u32 =
            conn.query_row("SELECT count(*) FROM sites WHERE id = ?1", [site_id], |r| r.get(0)).map_err(storage)?;
        if sites == 0 {
            return Err(MetaError::NotFound(format!("no site with id {site_id}")));
        }
        match months {
            Some(m) => conn.execute(
                "INSERT INTO site_retention (site_id, months) VALUES (?1, ?2) \
                 ON CONFLICT (site_id) DO UPDATE SET months = excluded.months",
                [site_id, u32::from(m)],
            ),
            None => conn.execute("DELETE FROM site_retention WHERE site_id = ?1", [site_id]),
        }
        .map_err(storage)?;
        Ok(())
    }

    fn retentions(&self) -> Result<Vec<(u32, u16)>> {
        let conn = self.conn.lock().unwrap();
        let mut stmt =
            conn.prepare_cached("SELECT site_id, months FROM site_retention ORDER BY site_id").map_err(storage)?;
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(storage)?
            .collect::<rusqlite::Result<_>>()
            .map_err(storage)
    }

    fn begin_import(&self, site_id: u32, kind: &str, key: &str, label: &str) -> Result<Import> {
        let conn = self.conn.lock().unwrap();
        let inserted = conn.execute(
            "INSERT INTO imports (site_id, kind, source_key, label, state, created_ms) \
             SELECT id, ?2, ?3, ?4, 'loading', ?5 FROM sites WHERE id = ?1",
            params![site_id, kind, key, label, now_ms()],
        );
        if inserted.map_err(storage)? == 0 {
            return Err(MetaError::NotFound(format!("no site with id {site_id}")));
        }
        let id = conn.last_insert_rowid();
        imports_where(&conn, "id = ?1", [id])?.pop().ok_or_else(|| MetaError::Storage("an import vanished".into()))
    }

    fn finish_import(&self, id: u32, first_day: i32, last_day: i32, dims: &[u8], rows: u64) -> Result<Vec<Import>> {
        let mut conn = self.conn.lock().unwrap();
        let tx = conn.transaction().map_err(storage)?;
        let done = tx
            .execute(
                "UPDATE imports SET state = 'done', first_day = ?2, last_day = ?3, dims = ?4, rows = ?5 \
                 WHERE id = ?1 AND state = 'loading'",
                params![id, first_day, last_day, dims_text(dims), rows as i64],
            )
            .map_err(storage)?;
        if done == 0 {
            return Err(MetaError::NotFound(format!("no import {id} under way")));
        }
        let same =
            "id <> ?1 AND (site_id, kind, source_key) = (SELECT site_id, kind, source_key FROM imports WHERE id = ?1)";
        tx.execute(&format!("UPDATE imports SET state = 'removing' WHERE {same}"), [id]).map_err(storage)?;
        let replaced = imports_where(&tx, same, [id])?;
        tx.commit().map_err(storage)?;
        Ok(replaced)
    }

    fn imports(&self, site_id: Option<u32>) -> Result<Vec<Import>> {
        let conn = self.conn.lock().unwrap();
        match site_id {
            Some(site) => imports_where(&conn, "site_id = ?1", [site]),
            None => imports_where(&conn, "1 = 1", []),
        }
    }

    fn mark_import_removing(&self, id: u32) -> Result<Import> {
        let conn = self.conn.lock().unwrap();
        conn.execute("UPDATE imports SET state = 'removing' WHERE id = ?1", [id]).map_err(storage)?;
        imports_where(&conn, "id = ?1", [id])?.pop().ok_or_else(|| MetaError::NotFound(format!("import {id}")))
    }

    fn delete_import(&self, id: u32) -> Result<()> {
        let conn = self.conn.lock().unwrap();
        conn.execute("DELETE FROM imports WHERE id = ?1", [id]).map_err(storage)?;
        Ok(())
    }

    fn set_alias(&self, alias: &str, site_id: u32) -> Result<()> {
        let alias = validate_alias(alias)?;
        let conn = self.conn.lock().unwrap();
        conn.execute(
            "INSERT INTO site_aliases (alias, site_id) VALUES (?1, ?2) \
             ON CONFLICT (alias) DO UPDATE SET site_id = excluded.site_id",
            params![alias, site_id],
        )
        .map_err(|e| match e {
            rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ConstraintViolation => {
                MetaError::NotFound(format!("no site with id {site_id}"))
            }
            e => storage(e),
        })?;
        Ok(())
    }

    fn site_by_alias(&self, alias: &str) -> Result<Option<Site>> {
        self.site_where("id = (SELECT site_id FROM site_aliases WHERE alias = ?1)", &alias)
    }

    fn add_goal(&self, site_id: u32, kind: GoalKind, display_name: Option<&str>) -> Result<Goal> {
        let kind = kind.validated()?;
        let display_name = goal_display_name(&kind, display_name)?;
        let (kind_text, value) = kind.columns();
        let conn = self.conn.lock().unwrap();
        let existing: Option<(u32, String, Option<String>)> = conn
            .query_row(
                "SELECT id, display_name, currency FROM goals WHERE site_id = ?1 AND kind = ?2 AND value = ?3",
                params![site_id, kind_text, value],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .map_err(storage)?;
        if let Some((id, display_name, currency)) = existing {
            return Ok(Goal { id, site_id, display_name, kind, currency });
        }
        let inserted = conn
            .execute(
                "INSERT OR IGNORE INTO goals (site_id, display_name, kind, value) VALUES (?1, ?2, ?3, ?4)",
                params![site_id, display_name, kind_text, value],
            )
            .map_err(or_no_site(site_id))?;
        if inserted == 0 {
            return Err(MetaError::goal_name_taken(&display_name));
        }
        Ok(Goal { id: conn.last_insert_rowid() as u32, site_id, display_name, kind, currency: None })
    }

    fn list_goals(&self, site_id: u32) -> Result<Vec<Goal>> {
        let conn = self.conn.lock().unwrap();
        let mut stmt = conn
            .prepare(
                "SELECT id, display_name, kind, value, currency FROM goals WHERE site_id = ?1 ORDER BY display_name",
            )
            .map_err(storage)?;
        let rows = stmt
            .query_map([site_id], |r| {
                let (id, display_name, kind, value): (u32, String, String, String) =
                    (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?);
                Ok(Goal { id, site_id, display_name, kind: GoalKind::from_columns(&kind, value), currency: r.get(4)? })
            })
            .map_err(storage)?;
        rows.collect::<rusqlite::Result<_>>().map_err(storage)
    }

    fn set_goal_currency(&self, site_id: u32, goal_id: u32, currency: Option<&str>) -> Result<Goal> {
        let currency = currency.map(validate_currency).transpose()?;
        let goal = self
            .list_goals(site_id)?
            .into_iter()
            .find(|g| g.id == goal_id)
            .ok_or_else(|| MetaError::no_goal(site_id, goal_id))?;
        let goal = with_currency(goal, currency)?;
        let conn = self.conn.lock().unwrap();
        conn.execute("UPDATE goals SET currency = ?1 WHERE id = ?2", params![goal.currency, goal_id])
            .map_err(storage)?;
        Ok(goal)
    }

    fn remove_goal(&self, site_id: u32, goal_id: u32) -> Result<()> {
        let n = self
            .conn
            .lock()
            .unwrap()
            .execute("DELETE FROM goals WHERE site_id = ?1 AND id = ?2", params![site_id, goal_id])
            .map_err(storage)?;
        if n == 0 { Err(MetaError::no_goal(site_id, goal_id)) } else { Ok(()) }
    }

    fn create_key(&self, name: &str, scopes: &[Scope], sites: Option<&[u32]>) -> Result<(ApiKey, String)> {
        let NewKey { key, secret, secret_sha256, scopes, sites } = new_key(name, scopes, sites)?;
        let conn = self.conn.lock().unwrap();
        let inserted = conn
            .execute(
                "INSERT OR IGNORE INTO api_keys (name, prefix, secret_sha256, created_ms, scopes, sites)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![key.name, key.prefix, secret_sha256, key.created_ms, scopes, sites],
            )
            .map_err(storage)?;
        if inserted == 0 {
            return Err(MetaError::key_taken(&key.name));
        }
        Ok((ApiKey { id: conn.last_insert_rowid() as u32, ..key }, secret))
    }

    fn list_keys(&self) -> Result<Vec<ApiKey>> {
        let conn = self.conn.lock().unwrap();
        let mut stmt = conn.prepare(&format!("{KEY_COLUMNS} ORDER BY name")).map_err(storage)?;
        let rows = stmt.query_map([], key_row).map_err(storage)?;
        rows.map(|r| r.map_err(storage)?).collect()
    }

    fn revoke_key(&self, name: &str) -> Result<()> {
        let n = self.conn.lock().unwrap().execute("DELETE FROM api_keys WHERE name = ?1", [name]).map_err(storage)?;
        if n == 0 { Err(MetaError::no_key(name)) } else { Ok(()) }
    }

    fn verify_key(&self, secret: &str) -> Result<Option<ApiKey>> {
        let conn = self.conn.lock().unwrap();
        conn.query_row(&format!("{KEY_COLUMNS} WHERE secret_sha256 = ?1"), [sha256_hex(secret)], key_row)
            .optional()
            .map_err(storage)?
            .transpose()
    }

    fn add_rule(&self, site_id: u32, kind: RuleKind) -> Result<FirewallRule> {
        let conn = self.conn.lock().unwrap();
        conn.execute(
            "INSERT INTO firewall_rules (site_id, kind, value, created_ms) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (site_id, kind, value) DO NOTHING",
            params![site_id, kind.name(), kind.value(), now_ms()],
        )
        .map_err(or_no_site(site_id))?;
        let (id, created_ms) = conn
            .query_row(
                "SELECT id, created_ms FROM firewall_rules WHERE site_id = ?1 AND kind = ?2 AND value = ?3",
                params![site_id, kind.name(), kind.value()],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(storage)?;
        Ok(FirewallRule { id, site_id, kind, created_ms })
    }

    fn rules(&self, site_id: u32) -> Result<Vec<FirewallRule>> {
        let conn = self.conn.lock().unwrap();
        let mut stmt = conn
            .prepare("SELECT id, kind, value, created_ms FROM firewall_rules WHERE site_id = ?1 ORDER BY id")
            .map_err(storage)?;
        let rows = stmt
            .query_map([site_id], |r| {
                Ok((r.get::<_, u32>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?, r.get::<_, i64>(3)?))
            })
            .map_err(storage)?;
        rows.map(|r| {
            let (id, kind, value, created_ms) = r.map_err(storage)?;
            Ok(FirewallRule { id, site_id, kind: RuleKind::parse(&kind, &value)?, created_ms })
        })
        .collect()
    }

    fn remove_rule(&self, site_id: u32, rule_id: u32) -> Result<()> {
        let conn = self.conn.lock().unwrap();
        let n = conn
            .execute("DELETE FROM firewall_rules WHERE site_id = ?1 AND id = ?2", params![site_id, rule_id])
            .map_err(storage)?;
        if n == 0 { Err(MetaError::no_rule(site_id, rule_id)) } else { Ok(()) }
    }

    fn add_annotation(&self, site_id: u32, day: i32, text: &str) -> Result<Annotation> {
        let text = validate_annotation(text)?;
        let conn = self.conn.lock().unwrap();
        let created_ms = now_ms();
        // The bound and the insert in one statement: concurrent adds cannot pass it together.
        let added = conn
            .execute(
                "INSERT INTO annotations (site_id, day, text, created_ms) SELECT ?1, ?2, ?3, ?4
                 WHERE (SELECT count(*) FROM annotations WHERE site_id = ?1) < ?5",
                params![site_id, day, text, created_ms, MAX_ANNOTATIONS],
            )
            .map_err(or_no_site(site_id))?;
        if added == 0 {
            return Err(MetaError::too_many("annotations", MAX_ANNOTATIONS));
        }
        let id = conn.last_insert_rowid() as u32;
        Ok(Annotation { id, site_id, day, text: text.to_owned(), created_ms })
    }

    fn annotations(&self, site_id: u32, from: i32, to: i32) -> Result<Vec<Annotation>> {
        let conn = self.conn.lock().unwrap();
        let mut stmt = conn
            .prepare(
                "SELECT id, day, text, created_ms FROM annotations
                 WHERE site_id = ?1 AND day BETWEEN ?2 AND ?3 ORDER BY day, id",
            )
            .map_err(storage)?;
        let rows = stmt
            .query_map(params![site_id, from, to], |r| {
                Ok(Annotation { id: r.get(0)?, site_id, day: r.get(1)?, text: r.get(2)?, created_ms: r.get(3)? })
            })
            .map_err(storage)?;
        rows.map(|r| r.map_err(storage)).collect()
    }

    fn remove_annotation(&self, site_id: u32, id: u32) -> Result<()> {
        let conn = self.conn.lock().unwrap();
        let n = conn
            .execute("DELETE FROM annotations WHERE site_id = ?1 AND id = ?2", params![site_id, id])
            .map_err(storage)?;
        if n == 0 { Err(MetaError::no_annotation(site_id, id)) } else { Ok(()) }
    }

    fn add_segment(&self, site_id: u32, name: &str, filters: &str, owner: Option<u32>) -> Result<Segment> {
        let name = validate_segment(name, filters)?;
        let conn = self.conn.lock().unwrap();
        let created_ms = now_ms();
        let max = if owner.is_some() { MAX_OWN_SEGMENTS } else { MAX_SEGMENTS };
        let added = conn
            .execute(
                "INSERT INTO segments (site_id, name, filters, owner_id, created_ms) SELECT ?1, ?2, ?3, ?4, ?5
                 WHERE (SELECT count(*) FROM segments WHERE site_id = ?1 AND owner_id IS ?4) < ?6",
                params![site_id, name, filters, owner, created_ms, max],
            )
            .map_err(or_no_site(site_id))?;
        if added == 0 {
            return Err(MetaError::too_many(
                if owner.is_some() { "own segments per user" } else { "shared segments" },
                max,
            ));
        }
        let id = conn.last_insert_rowid() as u32;
        Ok(Segment { id, site_id, name: name.to_owned(), filters: filters.to_owned(), owner, created_ms })
    }

    fn segments(&self, site_id: u32) -> Result<Vec<Segment>> {
        let conn = self.conn.lock().unwrap();
        let mut stmt = conn
            .prepare(
                "SELECT id, name, filters, owner_id, created_ms FROM segments WHERE site_id = ?1 ORDER BY name, id",
            )
            .map_err(storage)?;
        let rows = stmt
            .query_map([site_id], |r| {
                Ok(Segment {
                    id: r.get(0)?,
                    site_id,
                    name: r.get(1)?,
                    filters: r.get(2)?,
                    owner: r.get(3)?,
                    created_ms: r.get(4)?,
                })
            })
            .map_err(storage)?;
        rows.map(|r| r.map_err(storage)).collect()
    }

    fn remove_segment(&self, site_id: u32, id: u32) -> Result<()> {
        let conn = self.conn.lock().unwrap();
        let n = conn
            .execute("DELETE FROM segments WHERE site_id = ?1 AND id = ?2", params![site_id, id])
            .map_err(storage)?;
        if n == 0 { Err(MetaError::no_segment(site_id, id)) } else { Ok(()) }
    }

    fn add_funnel(&self, site_id: u32, name: &str, steps: &[FunnelStep]) -> Result<Funnel> {
        let name = validate_funnel(name, steps)?;
        let mut conn = self.conn.lock().unwrap();
        let tx = conn.transaction().map_err(storage)?;
        let created_ms = now_ms();
        let starts_ms = created_ms + FUNNEL_START_DELAY_MS;
        let added = tx
            .execute(
                "INSERT INTO funnels (site_id, name, created_ms, starts_ms) SELECT ?1, ?2, ?3, ?4
                 WHERE (SELECT count(*) FROM funnels WHERE site_id = ?1) < ?5",
                params![site_id, name, created_ms, starts_ms, MAX_FUNNELS],
            )
            .map_err(or_no_site(site_id))?;
        if added == 0 {
            return Err(MetaError::too_many("funnels", MAX_FUNNELS));
        }
        let id = tx.last_insert_rowid() as u32;
        for (position, step) in steps.iter().enumerate() {
            let (kind, value) = step.kind.columns();
            tx.execute(
                "INSERT INTO funnel_steps (funnel_id, position, name, kind, value) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![id, position as i64, step.name, kind, value],
            )
            .map_err(storage)?;
        }
        tx.commit().map_err(storage)?;
        Ok(Funnel { id, site_id, name: name.to_owned(), steps: steps.to_vec(), created_ms, starts_ms })
    }

    fn funnels(&self, site_id: Option<u32>) -> Result<Vec<Funnel>> {
        let conn = self.conn.lock().unwrap();
        let heads = conn
            .prepare(
                "SELECT id, site_id, name, created_ms, starts_ms FROM funnels WHERE ?1 IS NULL OR site_id = ?1 ORDER BY id",
            )
            .and_then(|mut stmt| {
                stmt.query_map([site_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))?
                    .collect::<rusqlite::Result<Vec<FunnelHead>>>()
            })
            .map_err(storage)?;
        let steps = conn
            .prepare(
                "SELECT s.funnel_id, s.name, s.kind, s.value FROM funnel_steps s JOIN funnels f ON f.id = s.funnel_id
                 WHERE ?1 IS NULL OR f.site_id = ?1 ORDER BY s.funnel_id, s.position",
            )
            .and_then(|mut stmt| {
                stmt.query_map([site_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
                    .collect::<rusqlite::Result<Vec<_>>>()
            })
            .map_err(storage)?;
        Ok(assemble_funnels(heads, steps))
    }

    fn remove_funnel(&self, site_id: u32, id: u32) -> Result<()> {
        let conn = self.conn.lock().unwrap();
        let n = conn
            .execute("DELETE FROM funnels WHERE site_id = ?1 AND id = ?2", params![site_id, id])
            .map_err(storage)?;
        if n == 0 { Err(MetaError::no_funnel(site_id, id)) } else { Ok(()) }
    }

    fn add_security_counts(&self, counts: &[SecurityCount]) -> Result<()> {
        let mut conn = self.conn.lock().unwrap();
        let tx = conn.transaction().map_err(storage)?;
        for c in counts {
            // A site deleted since the hit was counted: its counts go with it.
            tx.execute(
                "INSERT INTO security_counts (site_id, hour, reason, count)
                 SELECT ?1, ?2, ?3, ?4 WHERE EXISTS (SELECT 1 FROM sites WHERE id = ?1)
                 ON CONFLICT (site_id, hour, reason) DO UPDATE SET count = count + excluded.count",
                params![c.site_id, c.hour, c.reason, c.count as i64],
            )
            .map_err(storage)?;
        }
        tx.commit().map_err(storage)
    }

    fn security_counts(&self, site_id: u32, since_hour: i64) -> Result<Vec<SecurityCount>> {
        let conn = self.conn.lock().unwrap();
        let mut stmt = conn
            .prepare(
                "SELECT hour, reason, count FROM security_counts WHERE site_id = ?1 AND hour >= ?2
                 ORDER BY hour, reason",
            )
            .map_err(storage)?;
        let rows = stmt
            .query_map(params![site_id, since_hour], |r| {
                Ok(SecurityCount { site_id, hour: r.get(0)?, reason: r.get(1)?, count: r.get::<_, i64>(2)? as u64 })
            })
            .map_err(storage)?;
        rows.collect::<rusqlite::Result<_>>().map_err(storage)
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
        stored_salt(bytes).map(Some)
    }

    fn backdated_salt(&self, day: i32, now_ms: i64) -> Result<Salt> {
        let conn = self.conn.lock().unwrap();
        let bytes: Vec<u8> = conn
            .query_row(
                "INSERT INTO backdated_salts (day, salt, used_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT (day) DO UPDATE SET used_ms = MAX(used_ms, excluded.used_ms) RETURNING salt",
                params![day, random_salt().as_slice(), now_ms],
                |r| r.get(0),
            )
            .map_err(storage)?;
        stored_salt(bytes)
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
        n += conn
            .execute("DELETE FROM backdated_salts WHERE used_ms <= ?1", [now_ms - BACKDATED_SALT_IDLE_MS])
            .map_err(storage)?;
        if n > 0 {
            // Push the deletion out of the WAL too, so the old salt's bytes leave the disk.
            let _ = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
        }
        Ok(n)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn meta(name: &str) -> SqliteMeta {
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
        assert_eq!(m.site_by_id(s.id).unwrap(), Some(s.clone()));
        assert!(matches!(m.add_site("example.com", "UTC"), Err(MetaError::Invalid(_))));
        assert!(matches!(m.add_site("b.com", "Nowhere/Land"), Err(MetaError::Invalid(_))));
        assert!(m.deleted_sites().unwrap().is_empty());
        assert_eq!(m.remove_site("example.com").unwrap(), s);
        assert!(m.list_sites().unwrap().is_empty());
        assert!(matches!(m.remove_site("example.com"), Err(MetaError::NotFound(_))));
        // Its stored rows are due for deletion until the pipeline says they are gone.
        assert_eq!(m.deleted_sites().unwrap(), vec![(s.id, false)]);
        m.mark_purged(s.id).unwrap();
        assert_eq!(m.deleted_sites().unwrap(), vec![(s.id, true)]);
    }

    #[test]
    fn goals_are_validated_idempotent_and_go_with_their_site() {
        let m = meta("goals");
        let s = m.add_site("goals.example", "UTC").unwrap();
        let signup = m.add_goal(s.id, GoalKind::Event(" Signup ".into()), None).unwrap();
        assert_eq!(signup.display_name, "Signup");
        let blog = m.add_goal(s.id, GoalKind::Page("/blog/**".into()), None).unwrap();
        assert_eq!(blog.display_name, "Visit /blog/**");
        // The same definition again is the same goal; another definition under a taken name is not.
        assert_eq!(m.add_goal(s.id, GoalKind::Event("Signup".into()), Some("Other")).unwrap(), signup);
        assert!(matches!(m.add_goal(s.id, GoalKind::Event("Buy".into()), Some("Signup")), Err(MetaError::Invalid(_))));
        assert!(matches!(m.add_goal(s.id, GoalKind::Page("blog".into()), None), Err(MetaError::Invalid(_))));
        assert!(matches!(m.add_goal(s.id, GoalKind::Event("pageview".into()), None), Err(MetaError::Invalid(_))));
        assert!(matches!(m.add_goal(999, GoalKind::Event("x".into()), None), Err(MetaError::NotFound(_))));
        assert_eq!(m.list_goals(s.id).unwrap(), vec![signup.clone(), blog.clone()]);
        let paid = m.set_goal_currency(s.id, signup.id, Some("eur")).unwrap();
        assert_eq!(paid.currency.as_deref(), Some("EUR"));
        assert_eq!(m.list_goals(s.id).unwrap()[0].currency.as_deref(), Some("EUR"));
        assert!(matches!(m.set_goal_currency(s.id, blog.id, Some("EUR")), Err(MetaError::Invalid(_))));
        assert!(matches!(m.set_goal_currency(s.id, signup.id, Some("euro")), Err(MetaError::Invalid(_))));
        assert_eq!(m.set_goal_currency(s.id, signup.id, None).unwrap(), signup, "a plain goal again");
        m.remove_goal(s.id, blog.id).unwrap();
        assert!(matches!(m.remove_goal(s.id, blog.id), Err(MetaError::NotFound(_))));
        m.remove_site("goals.example").unwrap();
        let again = m.add_site("goals.example", "UTC").unwrap();
        assert!(m.list_goals(again.id).unwrap().is_empty(), "goals went with the old site");
    }

    #[test]
    fn sites_can_be_renamed_and_moved_to_another_timezone() {
        let m = meta("update");
        let a = m.add_site("a.example", "UTC").unwrap();
        m.add_site("b.example", "UTC").unwrap();
        let moved = m.update_site(a.id, Some("c.example"), Some("Asia/Tokyo")).unwrap();
        assert_eq!((moved.domain.as_str(), moved.timezone.name()), ("c.example", "Asia/Tokyo"));
        assert_eq!(m.site_by_domain("c.example").unwrap(), Some(moved));
        assert!(matches!(m.update_site(a.id, Some("b.example"), None), Err(MetaError::Invalid(_))));
        assert!(matches!(m.update_site(a.id, None, Some("Mars/Base")), Err(MetaError::Invalid(_))));
        assert!(matches!(m.update_site(77, None, None), Err(MetaError::NotFound(_))));
    }

    #[test]
    fn firewall_rules_are_checked_kept_once_and_removed() {
        let m = meta("rules");
        let s = m.add_site("fw.example", "UTC").unwrap();
        let ip = m.add_rule(s.id, RuleKind::parse("ip", "203.0.113.7/24").unwrap()).unwrap();
        assert_eq!(ip.kind.value(), "203.0.113.0/24", "ranges are stored by their network");
        assert_eq!(m.add_rule(s.id, RuleKind::parse("ip", "203.0.113.0/24").unwrap()).unwrap().id, ip.id);
        m.add_rule(s.id, RuleKind::parse("country", "de").unwrap()).unwrap();
        m.add_rule(s.id, RuleKind::parse("allow_host", "*.Example.com").unwrap()).unwrap();
        let kinds: Vec<String> =
            m.rules(s.id).unwrap().iter().map(|r| format!("{} {}", r.kind.name(), r.kind.value())).collect();
        assert_eq!(kinds, ["ip 203.0.113.0/24", "country DE", "allow_host *.example.com"]);
        for (kind, value) in
            [("ip", "300.1.1.1"), ("country", "DEU"), ("path", "admin"), ("allow_host", "*."), ("port", "80")]
        {
            assert!(matches!(RuleKind::parse(kind, value), Err(MetaError::Invalid(_))), "{kind} {value}");
        }
        m.remove_rule(s.id, ip.id).unwrap();
        assert!(matches!(m.remove_rule(s.id, ip.id), Err(MetaError::NotFound(_))));
        assert_eq!(m.rules(s.id).unwrap().len(), 2);
    }

    #[test]
    fn security_counts_add_up_and_go_with_their_site() {
        let m = meta("security");
        let s = m.add_site("sec.example", "UTC").unwrap();
        let c = |hour, reason: &str, count| SecurityCount { site_id: s.id, hour, reason: reason.into(), count };
        m.add_security_counts(&[c(10, "crawler", 2), c(11, "crawler", 1)]).unwrap();
        m.add_security_counts(&[
            c(10, "crawler", 3),
            c(10, "headless", 1),
            SecurityCount { site_id: 99, ..c(10, "x", 1) },
        ])
        .unwrap();
        assert_eq!(
            m.security_counts(s.id, 10).unwrap(),
            [c(10, "crawler", 5), c(10, "headless", 1), c(11, "crawler", 1)]
        );
        assert_eq!(m.security_counts(s.id, 11).unwrap(), [c(11, "crawler", 1)]);
        m.remove_site("sec.example").unwrap();
        assert!(m.security_counts(s.id, 0).unwrap().is_empty());
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
    fn a_backdated_salt_stays_while_used_and_goes_an_hour_after_its_last_use() {
        let m = meta("backdated-salts");
        let (day, t) = (20_000, 20_100 * 86_400_000);
        let salt = m.backdated_salt(day, t).unwrap();
        assert_eq!(m.backdated_salt(day, t + 30 * 60_000).unwrap(), salt);
        assert_eq!(m.purge_salts(t + BACKDATED_SALT_IDLE_MS).unwrap(), 0, "used half an hour later");
        assert_eq!(m.purge_salts(t + 30 * 60_000 + BACKDATED_SALT_IDLE_MS).unwrap(), 1);
        assert_ne!(m.backdated_salt(day, t + 3 * BACKDATED_SALT_IDLE_MS).unwrap(), salt);
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
