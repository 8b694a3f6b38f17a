//! The PostgreSQL backend: the metadata of several Plumb processes (or hosts) in one database.
//! It answers every call as [`SqliteMeta`](crate::SqliteMeta) does; what SQLite gets from its
//! single writer, this gets from statements that are atomic on their own (`INSERT … ON CONFLICT`,
//! a conditional `UPDATE`, `DELETE … RETURNING`), row locks in a transaction (`FOR UPDATE`) or an
//! advisory lock (the first owner, migrations).

mod accounts;
mod copy;
mod notices;
mod pool;
mod server;

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
pub use copy::TableCopy;
use plumb_core::signature::{Salt, random_salt};
use pool::Pool;
use postgres::error::SqlState;
use postgres::types::ToSql;
use postgres::{Client, Row};
use server::Server;
use std::sync::Arc;

/// How many connections [`PgMeta::connect`] keeps at most (each opened when first needed), so
/// how many calls run at once.
pub const DEFAULT_POOL_SIZE: usize = 4;
const MAX_POOL_SIZE: usize = 64;

/// The schema's versions, in order: `MIGRATIONS[i]` is version `i + 1`.
const MIGRATIONS: [&str; 7] = [
    include_str!("../../migrations/postgres/001_initial.sql"),
    include_str!("../../migrations/postgres/002_backdated_salts.sql"),
    include_str!("../../migrations/postgres/003_site_retention.sql"),
    include_str!("../../migrations/postgres/004_imports.sql"),
    include_str!("../../migrations/postgres/005_annotations_and_segments.sql"),
    include_str!("../../migrations/postgres/006_funnels.sql"),
    include_str!("../../migrations/postgres/007_notices.sql"),
];

const IMPORT_COLUMNS: &str =
    "SELECT id, site_id, kind, source_key, label, first_day, last_day, dims, rows, state, created_ms FROM imports";

fn import_row(r: &Row) -> Result<Import> {
    let (dims, state): (String, String) = (r.get(7), r.get(9));
    let days = (r.get(5), r.get(6));
    stored_import(id(r, 0)?, id(r, 1)?, r.get(2), r.get(3), r.get(4), days, &dims, r.get(8), &state, r.get(10))
}

/// The imports `clause` selects (parameters `$1`…).
fn imports_where(
    c: &mut impl postgres::GenericClient,
    clause: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<Import>> {
    let rows = c.query(&format!("{IMPORT_COLUMNS} WHERE {clause} ORDER BY id"), params).map_err(storage)?;
    rows.iter().map(import_row).collect()
}

/// Advisory lock keys (per database). Migrating is one at a time, so processes starting together
/// migrate once; so is adding a user who may become the owner, so there is one owner.
const MIGRATION_LOCK: i64 = 0x706c_756d_6201;
const OWNER_LOCK: i64 = 0x706c_756d_6202;

/// Metadata in a PostgreSQL database, which several Plumb processes may share.
pub struct PgMeta {
    pool: Pool,
}

impl PgMeta {
    /// The schema version this Plumb brings a database to.
    pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

    /// Connects to `postgres://USER[:PASSWORD]@HOST[:PORT]/DB` with up to [`DEFAULT_POOL_SIZE`]
    /// connections and brings the schema up to date.
    pub fn connect(url: &str) -> Result<PgMeta> {
        Self::connect_with(url, DEFAULT_POOL_SIZE)
    }

    /// [`connect`](Self::connect) with up to `pool_size` connections (1 to 64); calls beyond
    /// that many at once wait their turn.
    pub fn connect_with(url: &str, pool_size: usize) -> Result<PgMeta> {
        if !(1..=MAX_POOL_SIZE).contains(&pool_size) {
            return Err(MetaError::Invalid(format!(
                "a PostgreSQL pool has 1 to {MAX_POOL_SIZE} connections, not {pool_size}"
            )));
        }
        let server = Arc::new(Server::parse(url)?);
        let name = server.name.clone();
        let pool = Pool::start(server, pool_size)?;
        pool.run(move |c| migrate(c, &name))?;
        Ok(PgMeta { pool })
    }
}

/// Brings the schema up to `MIGRATIONS.len()` in one transaction, recording each version reached
/// in `schema_version` (as the event store does); a database from a newer Plumb is refused.
fn migrate(client: &mut Client, server: &str) -> Result<()> {
    let mut tx = client.transaction().map_err(storage)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).map_err(storage)?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)").map_err(storage)?;
    let found: i32 = tx.query_one("SELECT coalesce(max(version), 0) FROM schema_version", &[]).map_err(storage)?.get(0);
    let known = MIGRATIONS.len() as u32;
    let found = u32::try_from(found).unwrap_or(0);
    if found > known {
        // In the words the SQLite files use.
        let newer = plumb_sqlite::Error::Newer { path: format!("PostgreSQL at {server}"), found, known };
        return Err(MetaError::Storage(newer.to_string()));
    }
    for (version, sql) in (1_i32..).zip(MIGRATIONS).skip(found as usize) {
        tx.batch_execute(sql).map_err(|e| {
            MetaError::Storage(format!("PostgreSQL at {server}: migration {version} failed: {}", describe(&e)))
        })?;
        tx.execute("INSERT INTO schema_version VALUES ($1)", &[&version]).map_err(storage)?;
    }
    tx.commit().map_err(storage)
}

/// The error with its causes: the client's own text is only their kind ("db error").
fn describe(e: &postgres::Error) -> String {
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        text = format!("{text}: {c}");
        cause = c.source();
    }
    text
}

fn storage(e: postgres::Error) -> MetaError {
    MetaError::Storage(describe(&e))
}

/// A reference to a row that does not exist is the caller naming a missing site (or user).
fn or_missing(missing: impl FnOnce() -> MetaError) -> impl FnOnce(postgres::Error) -> MetaError {
    move |e| if e.code() == Some(&SqlState::FOREIGN_KEY_VIOLATION) { missing() } else { storage(e) }
}

/// Ids are `BIGINT` columns and `u32` in the API.
fn id(row: &Row, column: usize) -> Result<u32> {
    let v: i64 = row.get(column);
    u32::try_from(v).map_err(|_| MetaError::Storage(format!("stored id {v} is out of range")))
}

/// A site from `id, domain, timezone` at the row's first columns.
fn site_row(row: &Row) -> Result<Site> {
    Ok(Site { id: id(row, 0)?, domain: row.get(1), timezone: parse_timezone(row.get(2))? })
}

/// A retention in months read back.
fn months(row: &Row, i: usize) -> Result<u16> {
    let m: i32 = row.get(i);
    u16::try_from(m).map_err(|_| MetaError::Storage(format!("a stored retention of {m} months")))
}

fn goal_row(site_id: u32, row: &Row) -> Result<Goal> {
    Ok(Goal {
        id: id(row, 0)?,
        site_id,
        display_name: row.get(1),
        kind: GoalKind::from_columns(row.get(2), row.get(3)),
        currency: row.get(4),
    })
}

const GOAL_COLUMNS: &str = "SELECT id, display_name, kind, value, currency FROM goals";
const KEY_COLUMNS: &str = "SELECT id, name, prefix, created_ms, scopes, sites FROM api_keys";

fn key_row(row: &Row) -> Result<ApiKey> {
    stored_key(id(row, 0)?, row.get(1), row.get(2), row.get(3), row.get(4), row.get(5))
}

impl PgMeta {
    fn site_where(&self, clause: &'static str, param: impl ToSql + Sync + Send + 'static) -> Result<Option<Site>> {
        self.pool.run(move |c| {
            let sql = format!("SELECT id, domain, timezone FROM sites WHERE {clause}");
            c.query_opt(&sql, &[&param]).map_err(storage)?.as_ref().map(site_row).transpose()
        })
    }
}

impl MetaStore for PgMeta {
    fn add_site(&self, domain: &str, timezone: &str) -> Result<Site> {
        let domain = validate_domain(domain)?;
        let tz = parse_timezone(timezone)?;
        self.pool.run(move |c| {
            let row = c
                .query_opt(
                    "INSERT INTO sites (domain, timezone, created_ms) VALUES ($1, $2, $3)
                     ON CONFLICT (domain) DO NOTHING RETURNING id",
                    &[&domain, &tz.name(), &now_ms()],
                )
                .map_err(storage)?;
            let row = row.ok_or_else(|| MetaError::site_taken(&domain))?;
            Ok(Site { id: id(&row, 0)?, domain, timezone: tz })
        })
    }

    fn list_sites(&self) -> Result<Vec<Site>> {
        self.pool.run(|c| {
            let rows = c.query("SELECT id, domain, timezone FROM sites ORDER BY domain", &[]).map_err(storage)?;
            rows.iter().map(site_row).collect()
        })
    }

    fn update_site(&self, id: u32, domain: Option<&str>, timezone: Option<&str>) -> Result<Site> {
        let (domain, timezone) = (domain.map(str::to_owned), timezone.map(str::to_owned));
        self.pool.run(move |c| {
            let mut tx = c.transaction().map_err(storage)?;
            let old = tx
                .query_opt("SELECT id, domain, timezone FROM sites WHERE id = $1 FOR UPDATE", &[&i64::from(id)])
                .map_err(storage)?;
            let old = site_row(&old.ok_or_else(|| MetaError::no_site(id))?)?;
            let domain = domain.as_deref().map(validate_domain).transpose()?.unwrap_or(old.domain);
            let tz = timezone.as_deref().map(parse_timezone).transpose()?.unwrap_or(old.timezone);
            tx.execute(
                "UPDATE sites SET domain = $1, timezone = $2 WHERE id = $3",
                &[&domain, &tz.name(), &i64::from(id)],
            )
            .map_err(|e| {
                if e.code() == Some(&SqlState::UNIQUE_VIOLATION) { MetaError::site_taken(&domain) } else { storage(e) }
            })?;
            tx.commit().map_err(storage)?;
            Ok(Site { id, domain, timezone: tz })
        })
    }

    fn remove_site(&self, domain: &str) -> Result<Site> {
        let domain = validate_domain(domain)?;
        self.pool.run(move |c| {
            let mut tx = c.transaction().map_err(storage)?;
            let row = tx
                .query_opt("DELETE FROM sites WHERE domain = $1 RETURNING id, domain, timezone", &[&domain])
                .map_err(storage)?;
            let site = site_row(&row.ok_or_else(|| MetaError::no_site_named(&domain))?)?;
            tx.execute(
                "INSERT INTO deleted_sites (site_id, purged) VALUES ($1, FALSE) ON CONFLICT DO NOTHING",
                &[&i64::from(site.id)],
            )
            .map_err(storage)?;
            tx.commit().map_err(storage)?;
            Ok(site)
        })
    }

    fn deleted_sites(&self) -> Result<Vec<(u32, bool)>> {
        self.pool.run(|c| {
            let rows = c.query("SELECT site_id, purged FROM deleted_sites ORDER BY site_id", &[]).map_err(storage)?;
            rows.iter().map(|r| Ok((id(r, 0)?, r.get(1)))).collect()
        })
    }

    fn mark_purged(&self, site_id: u32) -> Result<()> {
        self.pool.run(move |c| {
            c.execute("UPDATE deleted_sites SET purged = TRUE WHERE site_id = $1", &[&i64::from(site_id)])
                .map_err(storage)?;
            Ok(())
        })
    }

    fn site_by_domain(&self, domain: &str) -> Result<Option<Site>> {
        self.site_where("domain = $1", domain.to_owned())
    }

    fn site_by_id(&self, id: u32) -> Result<Option<Site>> {
        self.site_where("id = $1", i64::from(id))
    }

    fn retention(&self, site_id: u32) -> Result<Option<u16>> {
        self.pool.run(move |c| {
            let row = c
                .query_opt("SELECT months FROM site_retention WHERE site_id = $1", &[&i64::from(site_id)])
                .map_err(storage)?;
            row.map(|r| months(&r, 0)).transpose()
        })
    }

    fn set_retention(&self, site_id: u32, months: Option<u16>) -> Result<()> {
        let months = crate::validate_retention(months)?;
        self.pool.run(move |c| {
            let site = i64::from(site_id);
            if c.query_opt("SELECT 1 FROM sites WHERE id = $1", &[&site]).map_err(storage)?.is_none() {
                return Err(MetaError::NotFound(format!("no site with id {site_id}")));
            }
            match months {
                Some(m) => c.execute(
                    "INSERT INTO site_retention (site_id, months) VALUES ($1, $2) \
                     ON CONFLICT (site_id) DO UPDATE SET months = excluded.months",
                    &[&site, &i32::from(m)],
                ),
                None => c.execute("DELETE FROM site_retention WHERE site_id = $1", &[&site]),
            }
            .map_err(storage)?;
            Ok(())
        })
    }

    fn retentions(&self) -> Result<Vec<(u32, u16)>> {
        self.pool.run(|c| {
            let rows = c.query("SELECT site_id, months FROM site_retention ORDER BY site_id", &[]).map_err(storage)?;
            rows.iter().map(|r| Ok((id(r, 0)?, months(r, 1)?))).collect()
        })
    }

    fn begin_import(&self, site_id: u32, kind: &str, key: &str, label: &str) -> Result<Import> {
        let (kind, key, label) = (kind.to_owned(), key.to_owned(), label.to_owned());
        self.pool.run(move |c| {
            let row = c
                .query_opt(
                    "INSERT INTO imports (site_id, kind, source_key, label, state, created_ms) \
                     SELECT id, $2, $3, $4, 'loading', $5 FROM sites WHERE id = $1 RETURNING id",
                    &[&i64::from(site_id), &kind, &key, &label, &now_ms()],
                )
                .map_err(storage)?;
            let Some(row) = row else { return Err(MetaError::NotFound(format!("no site with id {site_id}"))) };
            let id: i64 = row.get(0);
            imports_where(c, "id = $1", &[&id])?.pop().ok_or_else(|| MetaError::Storage("an import vanished".into()))
        })
    }

    fn finish_import(&self, id: u32, first_day: i32, last_day: i32, dims: &[u8], rows: u64) -> Result<Vec<Import>> {
        let dims = dims_text(dims);
        self.pool.run(move |c| {
            let mut tx = c.transaction().map_err(storage)?;
            let id = i64::from(id);
            let done = tx
                .execute(
                    "UPDATE imports SET state = 'done', first_day = $2, last_day = $3, dims = $4, rows = $5 \
                     WHERE id = $1 AND state = 'loading'",
                    &[&id, &first_day, &last_day, &dims, &(rows as i64)],
                )
                .map_err(storage)?;
            if done == 0 {
                return Err(MetaError::NotFound(format!("no import {id} under way")));
            }
            let same = "id <> $1 AND (site_id, kind, source_key) = (SELECT site_id, kind, source_key FROM imports WHERE id = $1)";
            tx.execute(&format!("UPDATE imports SET state = 'removing' WHERE {same}"), &[&id]).map_err(storage)?;
            let replaced = imports_where(&mut tx, same, &[&id])?;
            tx.commit().map_err(storage)?;
            Ok(replaced)
        })
    }

    fn imports(&self, site_id: Option<u32>) -> Result<Vec<Import>> {
        self.pool.run(move |c| match site_id {
            Some(site) => imports_where(c, "site_id = $1", &[&i64::from(site)]),
            None => imports_where(c, "TRUE", &[]),
        })
    }

    fn mark_import_removing(&self, id: u32) -> Result<Import> {
        self.pool.run(move |c| {
            let id = i64::from(id);
            c.execute("UPDATE imports SET state = 'removing' WHERE id = $1", &[&id]).map_err(storage)?;
            imports_where(c, "id = $1", &[&id])?.pop().ok_or_else(|| MetaError::NotFound(format!("import {id}")))
        })
    }

    fn delete_import(&self, id: u32) -> Result<()> {
        self.pool.run(move |c| {
            c.execute("DELETE FROM imports WHERE id = $1", &[&i64::from(id)]).map_err(storage)?;
            Ok(())
        })
    }

    fn set_alias(&self, alias: &str, site_id: u32) -> Result<()> {
        let alias = validate_alias(alias)?.to_owned();
        self.pool.run(move |c| {
            c.execute(
                "INSERT INTO site_aliases (alias, site_id) VALUES ($1, $2) \
                 ON CONFLICT (alias) DO UPDATE SET site_id = excluded.site_id",
                &[&alias, &i64::from(site_id)],
            )
            .map_err(or_missing(|| MetaError::NotFound(format!("no site with id {site_id}"))))?;
            Ok(())
        })
    }

    fn site_by_alias(&self, alias: &str) -> Result<Option<Site>> {
        self.site_where("id = (SELECT site_id FROM site_aliases WHERE alias = $1)", alias.to_owned())
    }

    fn add_goal(&self, site_id: u32, kind: GoalKind, display_name: Option<&str>) -> Result<Goal> {
        let kind = kind.validated()?;
        let display_name = goal_display_name(&kind, display_name)?;
        self.pool.run(move |c| {
            let (kind_text, value) = kind.columns();
            let site = i64::from(site_id);
            // Inserting first and looking second holds when another process adds the same goal.
            let inserted = c
                .query_opt(
                    "INSERT INTO goals (site_id, display_name, kind, value) VALUES ($1, $2, $3, $4)
                     ON CONFLICT DO NOTHING RETURNING id",
                    &[&site, &display_name, &kind_text, &value],
                )
                .map_err(or_missing(|| MetaError::no_site(site_id)))?;
            if let Some(row) = inserted {
                return Ok(Goal { id: id(&row, 0)?, site_id, display_name, kind, currency: None });
            }
            // The same definition is there already (it is the answer), or another one has the name.
            let existing = c
                .query_opt(
                    &format!("{GOAL_COLUMNS} WHERE site_id = $1 AND kind = $2 AND value = $3"),
                    &[&site, &kind_text, &value],
                )
                .map_err(storage)?;
            match existing {
                Some(row) => goal_row(site_id, &row),
                None => Err(MetaError::goal_name_taken(&display_name)),
            }
        })
    }

    fn list_goals(&self, site_id: u32) -> Result<Vec<Goal>> {
        self.pool.run(move |c| {
            let rows = c
                .query(&format!("{GOAL_COLUMNS} WHERE site_id = $1 ORDER BY display_name"), &[&i64::from(site_id)])
                .map_err(storage)?;
            rows.iter().map(|r| goal_row(site_id, r)).collect()
        })
    }

    fn set_goal_currency(&self, site_id: u32, goal_id: u32, currency: Option<&str>) -> Result<Goal> {
        let currency = currency.map(validate_currency).transpose()?;
        self.pool.run(move |c| {
            let mut tx = c.transaction().map_err(storage)?;
            let row = tx
                .query_opt(
                    &format!("{GOAL_COLUMNS} WHERE site_id = $1 AND id = $2 FOR UPDATE"),
                    &[&i64::from(site_id), &i64::from(goal_id)],
                )
                .map_err(storage)?;
            let goal = goal_row(site_id, &row.ok_or_else(|| MetaError::no_goal(site_id, goal_id))?)?;
            let goal = with_currency(goal, currency)?;
            tx.execute("UPDATE goals SET currency = $1 WHERE id = $2", &[&goal.currency, &i64::from(goal_id)])
                .map_err(storage)?;
            tx.commit().map_err(storage)?;
            Ok(goal)
        })
    }

    fn remove_goal(&self, site_id: u32, goal_id: u32) -> Result<()> {
        let n = self.pool.run(move |c| {
            c.execute("DELETE FROM goals WHERE site_id = $1 AND id = $2", &[&i64::from(site_id), &i64::from(goal_id)])
                .map_err(storage)
        })?;
        if n == 0 { Err(MetaError::no_goal(site_id, goal_id)) } else { Ok(()) }
    }

    fn create_key(&self, name: &str, scopes: &[Scope], sites: Option<&[u32]>) -> Result<(ApiKey, String)> {
        let NewKey { key, secret, secret_sha256, scopes, sites } = new_key(name, scopes, sites)?;
        self.pool.run(move |c| {
            let row = c
                .query_opt(
                    "INSERT INTO api_keys (name, prefix, secret_sha256, created_ms, scopes, sites)
                     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING RETURNING id",
                    &[&key.name, &key.prefix, &secret_sha256, &key.created_ms, &scopes, &sites],
                )
                .map_err(storage)?;
            let row = row.ok_or_else(|| MetaError::key_taken(&key.name))?;
            Ok((ApiKey { id: id(&row, 0)?, ..key }, secret))
        })
    }

    fn list_keys(&self) -> Result<Vec<ApiKey>> {
        self.pool.run(|c| {
            let rows = c.query(&format!("{KEY_COLUMNS} ORDER BY name"), &[]).map_err(storage)?;
            rows.iter().map(key_row).collect()
        })
    }

    fn revoke_key(&self, name: &str) -> Result<()> {
        let owned = name.to_owned();
        let n =
            self.pool.run(move |c| c.execute("DELETE FROM api_keys WHERE name = $1", &[&owned]).map_err(storage))?;
        if n == 0 { Err(MetaError::no_key(name)) } else { Ok(()) }
    }

    fn verify_key(&self, secret: &str) -> Result<Option<ApiKey>> {
        // Looked up by hash: the secret itself is never compared or stored.
        let hash = sha256_hex(secret);
        self.pool.run(move |c| {
            let row = c.query_opt(&format!("{KEY_COLUMNS} WHERE secret_sha256 = $1"), &[&hash]).map_err(storage)?;
            row.as_ref().map(key_row).transpose()
        })
    }

    fn add_rule(&self, site_id: u32, kind: RuleKind) -> Result<FirewallRule> {
        self.pool.run(move |c| {
            // The no-op update makes an existing rule come back too, in the same statement.
            let row = c
                .query_one(
                    "INSERT INTO firewall_rules (site_id, kind, value, created_ms) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (site_id, kind, value) DO UPDATE SET kind = excluded.kind
                     RETURNING id, created_ms",
                    &[&i64::from(site_id), &kind.name(), &kind.value(), &now_ms()],
                )
                .map_err(or_missing(|| MetaError::no_site(site_id)))?;
            Ok(FirewallRule { id: id(&row, 0)?, site_id, kind, created_ms: row.get(1) })
        })
    }

    fn rules(&self, site_id: u32) -> Result<Vec<FirewallRule>> {
        self.pool.run(move |c| {
            let rows = c
                .query(
                    "SELECT id, kind, value, created_ms FROM firewall_rules WHERE site_id = $1 ORDER BY id",
                    &[&i64::from(site_id)],
                )
                .map_err(storage)?;
            rows.iter()
                .map(|r| {
                    Ok(FirewallRule {
                        id: id(r, 0)?,
                        site_id,
                        kind: RuleKind::parse(r.get(1), r.get(2))?,
                        created_ms: r.get(3),
                    })
                })
                .collect()
        })
    }

    fn remove_rule(&self, site_id: u32, rule_id: u32) -> Result<()> {
        let n = self.pool.run(move |c| {
            c.execute(
                "DELETE FROM firewall_rules WHERE site_id = $1 AND id = $2",
                &[&i64::from(site_id), &i64::from(rule_id)],
            )
            .map_err(storage)
        })?;
        if n == 0 { Err(MetaError::no_rule(site_id, rule_id)) } else { Ok(()) }
    }

    fn add_annotation(&self, site_id: u32, day: i32, text: &str) -> Result<Annotation> {
        let text = validate_annotation(text)?.to_owned();
        self.pool.run(move |c| {
            let created_ms = now_ms();
            // A transaction-level lock per site: the count and the insert are one step.
            let mut tx = c.transaction().map_err(storage)?;
            tx.execute("SELECT pg_advisory_xact_lock(7, $1)", &[&(site_id as i32)]).map_err(storage)?;
            let row = tx
                .query_opt(
                    "INSERT INTO annotations (site_id, day, text, created_ms) SELECT $1, $2, $3, $4
                     WHERE (SELECT count(*) FROM annotations WHERE site_id = $1) < $5 RETURNING id",
                    &[&i64::from(site_id), &day, &text, &created_ms, &i64::from(MAX_ANNOTATIONS)],
                )
                .map_err(or_missing(|| MetaError::no_site(site_id)))?;
            tx.commit().map_err(storage)?;
            let row = row.ok_or_else(|| MetaError::too_many("annotations", MAX_ANNOTATIONS))?;
            Ok(Annotation { id: id(&row, 0)?, site_id, day, text, created_ms })
        })
    }

    fn annotations(&self, site_id: u32, from: i32, to: i32) -> Result<Vec<Annotation>> {
        self.pool.run(move |c| {
            let rows = c
                .query(
                    "SELECT id, day, text, created_ms FROM annotations
                     WHERE site_id = $1 AND day BETWEEN $2 AND $3 ORDER BY day, id",
                    &[&i64::from(site_id), &from, &to],
                )
                .map_err(storage)?;
            rows.iter()
                .map(|r| Ok(Annotation { id: id(r, 0)?, site_id, day: r.get(1), text: r.get(2), created_ms: r.get(3) }))
                .collect()
        })
    }

    fn remove_annotation(&self, site_id: u32, annotation: u32) -> Result<()> {
        let n = self.pool.run(move |c| {
            c.execute(
                "DELETE FROM annotations WHERE site_id = $1 AND id = $2",
                &[&i64::from(site_id), &i64::from(annotation)],
            )
            .map_err(storage)
        })?;
        if n == 0 { Err(MetaError::no_annotation(site_id, annotation)) } else { Ok(()) }
    }

    fn add_segment(&self, site_id: u32, name: &str, filters: &str, owner: Option<u32>) -> Result<Segment> {
        let name = validate_segment(name, filters)?.to_owned();
        let filters = filters.to_owned();
        self.pool.run(move |c| {
            let created_ms = now_ms();
            let mut tx = c.transaction().map_err(storage)?;
            tx.execute("SELECT pg_advisory_xact_lock(8, $1)", &[&(site_id as i32)]).map_err(storage)?;
            let max = if owner.is_some() { MAX_OWN_SEGMENTS } else { MAX_SEGMENTS };
            let row = tx
                .query_opt(
                    "INSERT INTO segments (site_id, name, filters, owner_id, created_ms) SELECT $1, $2, $3, $4, $5
                     WHERE (SELECT count(*) FROM segments WHERE site_id = $1 AND owner_id IS NOT DISTINCT FROM $4) < $6
                     RETURNING id",
                    &[&i64::from(site_id), &name, &filters, &owner.map(i64::from), &created_ms, &i64::from(max)],
                )
                .map_err(or_missing(|| MetaError::no_site(site_id)))?;
            tx.commit().map_err(storage)?;
            let what = if owner.is_some() { "own segments per user" } else { "shared segments" };
            let row = row.ok_or_else(|| MetaError::too_many(what, max))?;
            Ok(Segment { id: id(&row, 0)?, site_id, name, filters, owner, created_ms })
        })
    }

    fn segments(&self, site_id: u32) -> Result<Vec<Segment>> {
        self.pool.run(move |c| {
            let rows = c
                .query(
                    "SELECT id, name, filters, owner_id, created_ms FROM segments WHERE site_id = $1 ORDER BY name, id",
                    &[&i64::from(site_id)],
                )
                .map_err(storage)?;
            rows.iter()
                .map(|r| {
                    let owner: Option<i64> = r.get(3);
                    Ok(Segment {
                        id: id(r, 0)?,
                        site_id,
                        name: r.get(1),
                        filters: r.get(2),
                        owner: owner.map(|o| o as u32),
                        created_ms: r.get(4),
                    })
                })
                .collect()
        })
    }

    fn remove_segment(&self, site_id: u32, segment: u32) -> Result<()> {
        let n = self.pool.run(move |c| {
            c.execute(
                "DELETE FROM segments WHERE site_id = $1 AND id = $2",
                &[&i64::from(site_id), &i64::from(segment)],
            )
            .map_err(storage)
        })?;
        if n == 0 { Err(MetaError::no_segment(site_id, segment)) } else { Ok(()) }
    }

    fn add_funnel(&self, site_id: u32, name: &str, steps: &[FunnelStep]) -> Result<Funnel> {
        let name = validate_funnel(name, steps)?.to_owned();
        let steps = steps.to_vec();
        self.pool.run(move |c| {
            let created_ms = now_ms();
            let starts_ms = created_ms + FUNNEL_START_DELAY_MS;
            let mut tx = c.transaction().map_err(storage)?;
            tx.execute("SELECT pg_advisory_xact_lock(9, $1)", &[&(site_id as i32)]).map_err(storage)?;
            let row = tx
                .query_opt(
                    "INSERT INTO funnels (site_id, name, created_ms, starts_ms) SELECT $1, $2, $3, $4
                     WHERE (SELECT count(*) FROM funnels WHERE site_id = $1) < $5
                     RETURNING id",
                    &[&i64::from(site_id), &name, &created_ms, &starts_ms, &i64::from(MAX_FUNNELS)],
                )
                .map_err(or_missing(|| MetaError::no_site(site_id)))?
                .ok_or_else(|| MetaError::too_many("funnels", MAX_FUNNELS))?;
            let id = id(&row, 0)?;
            for (position, step) in steps.iter().enumerate() {
                let (kind, value) = step.kind.columns();
                tx.execute(
                    "INSERT INTO funnel_steps (funnel_id, position, name, kind, value) VALUES ($1, $2, $3, $4, $5)",
                    &[&i64::from(id), &(position as i32), &step.name, &kind, &value],
                )
                .map_err(storage)?;
            }
            tx.commit().map_err(storage)?;
            Ok(Funnel { id, site_id, name, steps, created_ms, starts_ms })
        })
    }

    fn funnels(&self, site_id: Option<u32>) -> Result<Vec<Funnel>> {
        self.pool.run(move |c| {
            let site = site_id.map(i64::from);
            let heads = c
                .query(
                    "SELECT id, site_id, name, created_ms, starts_ms FROM funnels
                     WHERE $1::BIGINT IS NULL OR site_id = $1 ORDER BY id",
                    &[&site],
                )
                .map_err(storage)?
                .iter()
                .map(|r| Ok((id(r, 0)?, id(r, 1)?, r.get(2), r.get(3), r.get(4))))
                .collect::<Result<Vec<FunnelHead>>>()?;
            let steps = c
                .query(
                    "SELECT s.funnel_id, s.name, s.kind, s.value FROM funnel_steps s JOIN funnels f ON f.id = s.funnel_id
                     WHERE $1::BIGINT IS NULL OR f.site_id = $1 ORDER BY s.funnel_id, s.position",
                    &[&site],
                )
                .map_err(storage)?
                .iter()
                .map(|r| Ok((id(r, 0)?, r.get(1), r.get(2), r.get(3))))
                .collect::<Result<Vec<_>>>()?;
            Ok(assemble_funnels(heads, steps))
        })
    }

    fn remove_funnel(&self, site_id: u32, funnel: u32) -> Result<()> {
        let n = self.pool.run(move |c| {
            c.execute("DELETE FROM funnels WHERE site_id = $1 AND id = $2", &[&i64::from(site_id), &i64::from(funnel)])
                .map_err(storage)
        })?;
        if n == 0 { Err(MetaError::no_funnel(site_id, funnel)) } else { Ok(()) }
    }

    fn add_security_counts(&self, counts: &[SecurityCount]) -> Result<()> {
        let mut counts = counts.to_vec();
        // Rows are locked in one order, so two collectors flushing at once cannot deadlock.
        counts.sort_by(|a, b| (a.site_id, a.hour, &a.reason).cmp(&(b.site_id, b.hour, &b.reason)));
        self.pool.run(move |c| {
            let mut tx = c.transaction().map_err(storage)?;
            // The site's row is share-locked: one deleted meanwhile takes its counts with it, one
            // being deleted drops them (never a failed batch).
            let add = tx
                .prepare(
                    "INSERT INTO security_counts (site_id, hour, reason, count)
                     SELECT id, $2::BIGINT, $3::TEXT, $4::BIGINT FROM sites WHERE id = $1 FOR KEY SHARE
                     ON CONFLICT (site_id, hour, reason) DO UPDATE SET count = security_counts.count + excluded.count",
                )
                .map_err(storage)?;
            for n in &counts {
                tx.execute(&add, &[&i64::from(n.site_id), &n.hour, &n.reason, &(n.count as i64)]).map_err(storage)?;
            }
            tx.commit().map_err(storage)
        })
    }

    fn security_counts(&self, site_id: u32, since_hour: i64) -> Result<Vec<SecurityCount>> {
        self.pool.run(move |c| {
            let rows = c
                .query(
                    "SELECT hour, reason, count FROM security_counts WHERE site_id = $1 AND hour >= $2
                     ORDER BY hour, reason",
                    &[&i64::from(site_id), &since_hour],
                )
                .map_err(storage)?;
            Ok(rows
                .iter()
                .map(|r| SecurityCount { site_id, hour: r.get(0), reason: r.get(1), count: r.get::<_, i64>(2) as u64 })
                .collect())
        })
    }

    fn salt_for_day(&self, day: i32, now_ms: i64) -> Result<Option<Salt>> {
        if !day_is_live(day, now_ms) {
            return Ok(None);
        }
        let fresh = random_salt();
        self.pool.run(move |c| {
            // The first insert sets the day's salt; an insert racing it waits for it to commit and
            // does nothing, and the read after sees the winner's salt.
            c.execute(
                "INSERT INTO salts (day, salt) VALUES ($1, $2) ON CONFLICT (day) DO NOTHING",
                &[&day, &fresh.as_slice()],
            )
            .map_err(storage)?;
            let row = c.query_one("SELECT salt FROM salts WHERE day = $1", &[&day]).map_err(storage)?;
            stored_salt(row.get(0)).map(Some)
        })
    }

    fn backdated_salt(&self, day: i32, now_ms: i64) -> Result<Salt> {
        let fresh = random_salt();
        self.pool.run(move |c| {
            // One statement: the first insert sets the salt, a racing one waits for it and then
            // only marks the use, and both return the stored salt.
            let row = c
                .query_one(
                    "INSERT INTO backdated_salts (day, salt, used_ms) VALUES ($1, $2, $3)
                     ON CONFLICT (day) DO UPDATE SET used_ms = GREATEST(backdated_salts.used_ms, EXCLUDED.used_ms)
                     RETURNING salt",
                    &[&day, &fresh.as_slice(), &now_ms],
                )
                .map_err(storage)?;
            stored_salt(row.get(0))
        })
    }

    fn purge_salts(&self, now_ms: i64) -> Result<usize> {
        self.pool.run(move |c| {
            let days: Vec<i32> =
                c.query("SELECT day FROM salts", &[]).map_err(storage)?.iter().map(|r| r.get(0)).collect();
            let ended: Vec<i32> = days.into_iter().filter(|d| !day_is_live(*d, now_ms)).collect();
            let mut n = 0;
            if !ended.is_empty() {
                n += c.execute("DELETE FROM salts WHERE day = ANY($1)", &[&ended]).map_err(storage)?;
            }
            n += c
                .execute("DELETE FROM backdated_salts WHERE used_ms <= $1", &[&(now_ms - BACKDATED_SALT_IDLE_MS)])
                .map_err(storage)?;
            Ok(n as usize)
        })
    }
}
