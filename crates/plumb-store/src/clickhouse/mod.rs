//! ClickHouse backend, over its HTTP interface, in SQL that ClickHouse 18.16 and current versions
//! both run. The same rows as DuckDB's (one column per `plumb_core::schema` column, plus `_pos`,
//! the queue position of the batch that wrote the row), queried with the same compiler in
//! [`ClickHouseDialect`]; no rollups yet (ClickHouse scans raw rows fast).
//!
//! Exactly-once without transactions: the table is one partition, so one `INSERT` of fewer than
//! `max_insert_block_size` (1,048,576) rows is one part, written whole or not at all. Each commit
//! is one such insert: the batch's rows and a marker row (site 0, every counter 0) carrying the
//! position and, as its hostname, the writer's name. A writer's committed position is the largest
//! of its markers, so workers reading different queue partitions write side by side; a commit
//! whose answer was lost is looked up before it is sent again.

pub(crate) mod http;

use crate::{EventReader, EventWriter, Result, StoreError};
use http::{Server, quote, tsv, untsv};
use plumb_core::Row;
use plumb_core::schema::{self, Attr, ColumnType, IntType, StoredColumn, Value};
use plumb_query::sql::{ClickHouseDialect, Param, compile};
use plumb_query::{GroupSums, MAX_GROUPS, SumsBackend, SumsQuery};
use std::time::Duration;

/// The column a marker row names its writer in.
const MARKER_WRITER: Attr = Attr::Hostname;
/// Statements of the writer and of migrations may take this long.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// The most rows one commit may hold: more would not be one part (see the module's notes).
pub const MAX_COMMIT_ROWS: usize = 1_000_000;

fn int_type(t: IntType) -> &'static str {
    match t {
        IntType::I8 => "Int8",
        IntType::U8 => "UInt8",
        IntType::U16 => "UInt16",
        IntType::I32 => "Int32",
        IntType::U32 => "UInt32",
        IntType::I64 => "Int64",
    }
}

/// A column's ClickHouse type and the default older rows get when it is added later.
fn column_type(t: ColumnType) -> (String, &'static str) {
    match t {
        ColumnType::Int(t) => (int_type(t).to_owned(), "0"),
        ColumnType::Text => ("String".to_owned(), "''"),
        ColumnType::OptionalInt(t) => (format!("Nullable({})", int_type(t)), "NULL"),
        ColumnType::OptionalText => ("Nullable(String)".to_owned(), "NULL"),
    }
}

/// The statements that bring the store from schema version `version - 1` to `version`.
fn migration(version: u32) -> Vec<String> {
    let columns: Vec<StoredColumn> = schema::event_columns().into_iter().filter(|c| c.since == version).collect();
    if version == 1 {
        let defs: Vec<String> = columns.iter().map(|c| format!("{} {}", c.name, column_type(c.ty).0)).collect();
        // No PARTITION BY: one partition, so that an insert is one part (exactly-once).
        return vec![format!(
            "CREATE TABLE IF NOT EXISTS events ({}, _pos UInt64) ENGINE = MergeTree() ORDER BY (site_id, day)",
            defs.join(", ")
        )];
    }
    columns
        .iter()
        .map(|c| {
            let (ty, default) = column_type(c.ty);
            format!("ALTER TABLE events ADD COLUMN IF NOT EXISTS {} {ty} DEFAULT {default}", c.name)
        })
        .collect()
}

/// The event store on a ClickHouse server; [`ClickHouseStore::reader`] gives the query side.
pub struct ClickHouseStore {
    server: Server,
    /// Whose markers are this writer's (see the module's notes).
    writer: String,
    committed: u64,
    /// A statement failed with its outcome unknown: the next commit looks first.
    unsure: bool,
}

impl ClickHouseStore {
    /// Connects to `clickhouse://HOST:HTTP_PORT/DB`, creates the database if needed and brings its
    /// schema up to date; the one writer.
    pub fn open(url: &str) -> Result<Self> {
        Self::open_as(url, "all partitions")
    }

    /// [`open`](Self::open) for one of several writers, each with a name of its own.
    pub fn open_as(url: &str, writer: &str) -> Result<Self> {
        let server = Server::parse(url)?;
        server.run(&format!("CREATE DATABASE IF NOT EXISTS {}", server.database), false, WRITE_TIMEOUT)?;
        migrate(&server)?;
        let mut store = ClickHouseStore { server, writer: writer.to_owned(), committed: 0, unsure: false };
        store.committed = store.stored_position()?;
        Ok(store)
    }

    pub fn reader(&self, timeout: Duration) -> ClickHouseReader {
        ClickHouseReader { server: self.server.clone(), timeout }
    }

    fn write(&self, sql: &str) -> Result<String> {
        self.server.run(sql, true, WRITE_TIMEOUT)
    }

    fn stored_position(&self) -> Result<u64> {
        let answer = self.write(&format!(
            "SELECT max(_pos) FROM events WHERE site_id = 0 AND {} = {}",
            MARKER_WRITER.column(),
            quote(&self.writer)
        ))?;
        answer.trim().parse().map_err(|_| StoreError::Backend(format!("ClickHouse answered `{answer}` for a position")))
    }

    /// One insert: the rows and the position's marker.
    fn insert(&self, rows: &[Row], position: u64) -> Result<()> {
        let columns = schema::event_columns();
        let names: Vec<&str> = columns.iter().map(|c| c.name).collect();
        let mut body = format!("INSERT INTO events ({}, _pos) FORMAT TabSeparated\n", names.join(", "));
        for row in rows {
            for c in &columns {
                match c.value(row) {
                    Value::Int(i) => body.push_str(&i.to_string()),
                    Value::Text(t) => tsv(&t, &mut body),
                    Value::Null => body.push_str("\\N"),
                }
                body.push('\t');
            }
            body.push_str(&position.to_string());
            body.push('\n');
        }
        // The marker: site 0 (no site has it), the writer as hostname, zeros and empty text.
        for c in &columns {
            match c.ty {
                _ if c.name == MARKER_WRITER.column() => tsv(&self.writer, &mut body),
                ColumnType::Int(_) => body.push('0'),
                ColumnType::Text => {}
                ColumnType::OptionalInt(_) | ColumnType::OptionalText => body.push_str("\\N"),
            }
            body.push('\t');
        }
        body.push_str(&format!("{position}\n"));
        self.write(&body).map(drop)
    }
}

fn migrate(server: &Server) -> Result<()> {
    server.run("CREATE TABLE IF NOT EXISTS plumb_schema (version UInt32) ENGINE = TinyLog", true, WRITE_TIMEOUT)?;
    let found: u32 =
        server.run("SELECT max(version) FROM plumb_schema", true, WRITE_TIMEOUT)?.trim().parse().unwrap_or(0);
    let known = schema::version();
    if found > known {
        return Err(StoreError::Backend(format!(
            "ClickHouse database {} has schema version {found}, newer than this Plumb knows ({known}): run a newer Plumb",
            server.database
        )));
    }
    for version in found + 1..=known {
        for statement in migration(version) {
            server.run(&statement, true, WRITE_TIMEOUT)?;
        }
        server.run(&format!("INSERT INTO plumb_schema VALUES ({version})"), true, WRITE_TIMEOUT)?;
    }
    Ok(())
}

impl EventWriter for ClickHouseStore {
    fn position(&mut self) -> Result<u64> {
        Ok(self.committed)
    }

    fn commit(&mut self, rows: &[Row], position: u64) -> Result<()> {
        if rows.len() >= MAX_COMMIT_ROWS {
            return Err(StoreError::Backend(format!(
                "a commit of {} rows is more than one ClickHouse insert writes whole ({MAX_COMMIT_ROWS})",
                rows.len()
            )));
        }
        if self.unsure {
            // The last insert may have been stored though its answer was lost: never twice.
            self.committed = self.stored_position()?;
            self.unsure = false;
            if self.committed >= position {
                return Ok(());
            }
        }
        match self.insert(rows, position) {
            Ok(()) => {
                self.committed = position;
                Ok(())
            }
            Err(e) => {
                self.unsure = true;
                Err(e)
            }
        }
    }

    /// About one insert a second under load: each insert is a part ClickHouse must merge, and
    /// many small ones make it refuse inserts ("too many parts").
    fn commit_interval(&self) -> Duration {
        Duration::from_secs(1)
    }

    fn delete_site(&mut self, site_id: u32) -> Result<u64> {
        if site_id == 0 {
            return Ok(0);
        }
        let n: u64 =
            self.write(&format!("SELECT count() FROM events WHERE site_id = {site_id}"))?.trim().parse().unwrap_or(0);
        if n > 0 {
            // A mutation: ClickHouse rewrites the parts in the background.
            self.write(&format!("ALTER TABLE events DELETE WHERE site_id = {site_id}"))?;
        }
        Ok(n)
    }
}

/// The query side: each call is one HTTP request, so readers need no shared state.
pub struct ClickHouseReader {
    server: Server,
    timeout: Duration,
}

impl EventReader for ClickHouseReader {}

impl SumsBackend for ClickHouseReader {
    fn sums(&self, q: &SumsQuery) -> Result<Vec<GroupSums>> {
        let (sql, params) = compile(&ClickHouseDialect, q);
        // At most one group more than an answer may hold, to tell that it would be too many.
        let sql = if q.group_by.is_empty() { sql } else { format!("{sql} LIMIT {}", MAX_GROUPS + 1) };
        let answer = self.server.run(&format!("{} FORMAT TabSeparated", inline(&sql, &params)), true, self.timeout)?;
        let (keys, sums) = (q.group_by.len(), q.sums.len());
        let mut groups = Vec::new();
        for line in answer.lines().filter(|l| !l.is_empty()) {
            let fields: Vec<&str> = line.split('\t').collect();
            if fields.len() != keys + sums {
                return Err(StoreError::Backend(format!(
                    "ClickHouse answered a row of {} fields: {line}",
                    fields.len()
                )));
            }
            let sums = fields[keys..].iter().map(|f| f.parse::<i64>());
            groups.push(GroupSums {
                keys: fields[..keys].iter().map(|f| untsv(f)).collect(),
                sums: sums.collect::<std::result::Result<_, _>>().map_err(|e| StoreError::Backend(e.to_string()))?,
            });
        }
        if groups.len() > MAX_GROUPS {
            return Err(StoreError::TooLarge(format!(
                "the answer has more than {MAX_GROUPS} groups; narrow the range or add a filter"
            )));
        }
        Ok(groups)
    }
}

/// The SQL with each `?` placeholder (outside string literals) replaced by its parameter as a
/// literal: ClickHouse 18.16 has no server-side parameters, so values are escaped, never spliced.
fn inline(sql: &str, params: &[Param]) -> String {
    let mut out = String::with_capacity(sql.len() + 64);
    let mut params = params.iter();
    let mut in_literal = false;
    let mut chars = sql.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_literal = !in_literal;
                out.push(c);
            }
            '\\' if in_literal => {
                out.push(c);
                out.extend(chars.next());
            }
            '?' if !in_literal => match params.next() {
                Some(Param::Int(i)) => out.push_str(&i.to_string()),
                Some(Param::Text(t)) => out.push_str(&quote(t)),
                None => out.push(c),
            },
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_become_escaped_literals_and_literals_stay() {
        let sql = "SELECT 'a?b', x FROM t WHERE s = ? AND n = ? AND y = '\\'?'";
        let params = [Param::Text("it's ?".into()), Param::Int(-3)];
        assert_eq!(inline(sql, &params), "SELECT 'a?b', x FROM t WHERE s = 'it\\'s ?' AND n = -3 AND y = '\\'?'");
    }
}
