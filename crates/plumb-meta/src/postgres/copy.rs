//! Copying an embedded install's metadata (its SQLite file) into PostgreSQL, for `plumb migrate`.
//! Rows keep their ids, so sites, goals and keys mean the same on both sides, and salts come
//! along, so a visitor signed by the old server is signed alike by the new one. The copy may run
//! again: new rows come along, sites removed or renamed (or moved to another timezone) in the
//! file since are removed or changed, other rows copied before stay as they are. It reads the
//! file in one transaction, so a server writing it meanwhile is seen at one instant.

use super::{PgMeta, storage};
use crate::{MetaError, Result, SqliteMeta};
use postgres::Client;
use postgres::types::ToSql;
use rusqlite::OpenFlags;
use rusqlite::types::Value;
use std::path::Path;

/// Every metadata table, parents before the tables that reference them.
pub(super) const TABLES: &[&str] = &[
    "sites",
    "site_retention",
    "site_aliases",
    "deleted_sites",
    "api_keys",
    "goals",
    "firewall_rules",
    "annotations",
    "funnels",
    "funnel_steps",
    "security_counts",
    "salts",
    "backdated_salts",
    "users",
    "sessions",
    "recovery_codes",
    "members",
    "segments",
    "invites",
    "shared_links",
    "server_keys",
    "reports",
    "alerts",
    "webhooks",
    "outbox",
    "audit_log",
];

/// What one table's copy did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableCopy {
    pub table: &'static str,
    /// Rows the file holds.
    pub read: u64,
    /// Rows new to PostgreSQL (the others were there from an earlier copy).
    pub added: u64,
    /// Rows PostgreSQL cannot hold, and why (invites from before each was for one address).
    pub skipped: Vec<String>,
}

fn sqlite_error(path: &Path) -> impl Fn(rusqlite::Error) -> MetaError + '_ {
    move |e| MetaError::Storage(format!("{}: {e}", path.display()))
}

impl PgMeta {
    /// Copies every row of the metadata file at `path` that this database lacks. Refused if the
    /// database holds a site the file does not (another install's), since ids would then clash.
    pub fn copy_from_sqlite(&self, path: &Path) -> Result<Vec<TableCopy>> {
        // Brings the file to this Plumb's schema first (a no-op when a server has).
        drop(SqliteMeta::open(path)?);
        let path = path.to_owned();
        self.pool.run(move |client| copy(&path, client))
    }
}

fn copy(path: &Path, client: &mut Client) -> Result<Vec<TableCopy>> {
    let mut file =
        rusqlite::Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(sqlite_error(path))?;
    let read = file.transaction().map_err(sqlite_error(path))?;
    let mut tx = client.transaction().map_err(storage)?;
    reconcile_sites(&read, &mut tx, path)?;
    let mut report = Vec::new();
    for &table in TABLES {
        report.push(copy_table(&read, &mut tx, table, path)?);
    }
    update_sites(&read, &mut tx, path)?;
    // Ids are never reused: the identity sequences go on from the file's highest id ever.
    let mut ids = read.prepare("SELECT name, seq FROM sqlite_sequence").map_err(sqlite_error(path))?;
    let ids = ids
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
        .map_err(sqlite_error(path))?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(sqlite_error(path))?;
    for (table, highest) in ids.into_iter().filter(|(t, _)| TABLES.contains(&t.as_str())) {
        tx.execute(
            &format!(
                "SELECT setval(pg_get_serial_sequence('{table}', 'id'), greatest($1, (SELECT coalesce(max(id), 0) FROM {table}), 1))"
            ),
            &[&highest],
        )
        .map_err(storage)?;
    }
    tx.commit().map_err(storage)?;
    Ok(report)
}

/// A site is known by its id and creation time, which a rename keeps. PostgreSQL may hold only
/// the file's sites: one the file has removed since an earlier copy from it (PostgreSQL has the
/// file's cookie-signing key) is removed here too, its tombstone copied so that a worker deletes
/// its rows; any other is another install's.
fn reconcile_sites(read: &rusqlite::Transaction<'_>, tx: &mut postgres::Transaction<'_>, path: &Path) -> Result<()> {
    let ids = |sql: &str| -> Result<std::collections::HashSet<(i64, i64)>> {
        let mut stmt = read.prepare(sql).map_err(sqlite_error(path))?;
        let rows =
            stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))).map_err(sqlite_error(path))?;
        rows.collect::<rusqlite::Result<_>>().map_err(sqlite_error(path))
    };
    let theirs = ids("SELECT id, created_ms FROM sites")?;
    let removed: std::collections::HashSet<i64> =
        ids("SELECT site_id, 0 FROM deleted_sites")?.into_iter().map(|(id, _)| id).collect();
    // Copied from this file before: the cookie-signing key came along, and no other install has it.
    let mut keys = read.prepare("SELECT name, value FROM server_keys ORDER BY name").map_err(sqlite_error(path))?;
    let file_keys = keys
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?)))
        .map_err(sqlite_error(path))?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(sqlite_error(path))?;
    let pg_keys: Vec<(String, Vec<u8>)> = tx
        .query("SELECT name, value FROM server_keys ORDER BY name", &[])
        .map_err(storage)?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let same_install = !file_keys.is_empty() && file_keys == pg_keys;
    for row in tx.query("SELECT id, created_ms, domain FROM sites", &[]).map_err(storage)? {
        let (id, created, domain): (i64, i64, String) = (row.get(0), row.get(1), row.get(2));
        if removed.contains(&id) && same_install {
            tx.execute("DELETE FROM sites WHERE id = $1", &[&id]).map_err(storage)?;
        } else if !theirs.contains(&(id, created)) {
            return Err(MetaError::Invalid(format!(
                "PostgreSQL already holds site {domain} (id {id}), which {} does not: copy into an empty database",
                path.display()
            )));
        }
    }
    Ok(())
}

/// Settings of sites changed in the file since an earlier copy.
fn update_sites(read: &rusqlite::Transaction<'_>, tx: &mut postgres::Transaction<'_>, path: &Path) -> Result<()> {
    let mut stmt = read.prepare("SELECT id, domain, timezone FROM sites").map_err(sqlite_error(path))?;
    let sites = stmt
        .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?)))
        .map_err(sqlite_error(path))?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(sqlite_error(path))?;
    for (id, domain, timezone) in sites {
        tx.execute(
            "UPDATE sites SET domain = $2, timezone = $3 WHERE id = $1 AND (domain, timezone) <> ($2, $3)",
            &[&id, &domain, &timezone],
        )
        .map_err(storage)?;
    }
    Ok(())
}

/// A value read from SQLite, as the PostgreSQL column's type wants it.
fn pg_value(value: Value, pg_type: &str, column: &str) -> Result<Box<dyn ToSql + Sync>> {
    let mismatch = || MetaError::Storage(format!("column {column} ({pg_type}) cannot hold {value:?}"));
    Ok(match (pg_type, &value) {
        (_, Value::Null) => match pg_type {
            "bigint" => Box::new(None::<i64>),
            "integer" => Box::new(None::<i32>),
            "boolean" => Box::new(None::<bool>),
            "bytea" => Box::new(None::<Vec<u8>>),
            _ => Box::new(None::<String>),
        },
        ("bigint", Value::Integer(i)) => Box::new(*i),
        ("integer", Value::Integer(i)) => Box::new(i32::try_from(*i).map_err(|_| mismatch())?),
        ("boolean", Value::Integer(i)) => Box::new(*i != 0),
        ("bytea", Value::Blob(b)) => Box::new(b.clone()),
        ("text", Value::Text(t)) => Box::new(t.clone()),
        _ => return Err(mismatch()),
    })
}

fn copy_table(
    read: &rusqlite::Transaction<'_>,
    tx: &mut postgres::Transaction<'_>,
    table: &'static str,
    path: &Path,
) -> Result<TableCopy> {
    // PostgreSQL's columns name what to copy; the file has them all (its schema is the same).
    let columns: Vec<(String, String, bool)> = tx
        .query(
            "SELECT column_name, data_type, is_nullable = 'YES' FROM information_schema.columns
             WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
            &[&table],
        )
        .map_err(storage)?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let names: Vec<&str> = columns.iter().map(|(n, _, _)| n.as_str()).collect();
    let placeholders: Vec<String> = (1..=names.len()).map(|i| format!("${i}")).collect();
    let identity = if names.first() == Some(&"id") { "OVERRIDING SYSTEM VALUE" } else { "" };
    let insert = tx
        .prepare(&format!(
            "INSERT INTO {table} ({}) {identity} VALUES ({}) ON CONFLICT DO NOTHING",
            names.join(", "),
            placeholders.join(", ")
        ))
        .map_err(storage)?;
    let mut select = read.prepare(&format!("SELECT {} FROM {table}", names.join(", "))).map_err(sqlite_error(path))?;
    let mut rows = select.query([]).map_err(sqlite_error(path))?;
    let mut done = TableCopy { table, read: 0, added: 0, skipped: Vec::new() };
    while let Some(row) = rows.next().map_err(sqlite_error(path))? {
        done.read += 1;
        let mut values = Vec::with_capacity(columns.len());
        let mut missing = None;
        for (i, (name, pg_type, nullable)) in columns.iter().enumerate() {
            let value: Value = row.get(i).map_err(sqlite_error(path))?;
            if value == Value::Null && !nullable {
                missing = Some(name);
            }
            values.push(pg_value(value, pg_type, &format!("{table}.{name}"))?);
        }
        if let Some(name) = missing {
            done.skipped.push(format!("a row of {table} without {name}, which PostgreSQL requires"));
            continue;
        }
        let params: Vec<&(dyn ToSql + Sync)> = values.iter().map(|v| v.as_ref()).collect();
        done.added += tx.execute(&insert, &params).map_err(storage)?;
    }
    Ok(done)
}
