//! ClickHouse backend, over its HTTP interface, in SQL that ClickHouse 18.16 and current versions
//! both run. The same rows as DuckDB's (one column per `plumb_core::schema` column, plus `_pos`,
//! the queue position of the batch that wrote the row), queried with the same compiler in
//! [`ClickHouseDialect`]; no rollups yet (ClickHouse scans raw rows fast).
//!
//! On a cluster (`?cluster=NAME` in the URL: its `remote_servers` entry, with ZooKeeper), the rows
//! go to `events_local`, a `ReplicatedMergeTree` per shard, and queries read `events`, a
//! `Distributed` table over every shard; DDL runs `ON CLUSTER`. A writer inserts into the shard of
//! the server it is connected to, and reads its own markers there (that server has every insert it
//! made, whatever the replication lag).
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
/// The writer whose marker holds the queue position `plumb migrate` handed an embedded install's
/// queue over at: a worker with no marker of its own starts from it (see [`ClickHouseStore::open_as`]).
pub const HANDOVER_WRITER: &str = "migrate: queue";
/// How the names of `plumb migrate`'s row-copying writers begin (see `copy.rs`).
pub(crate) const COPY_WRITER: &str = "migrate: rows";
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

/// The table rows are written to: on a cluster, each server's `events_local` (a replicated table
/// per shard), which the `events` table (Distributed) reads from all shards.
fn local_table(server: &Server) -> &'static str {
    if server.cluster.is_some() { "events_local" } else { "events" }
}

/// A table named in DDL: on a cluster with its database, as every other server runs the statement
/// in its default database.
fn ddl_name(server: &Server, table: &str) -> String {
    match server.cluster {
        None => table.to_owned(),
        Some(_) => format!("{}.{table}", server.database),
    }
}

/// ` ON CLUSTER name` for statements every server of a cluster must run.
fn on_cluster(server: &Server) -> String {
    server.cluster.as_ref().map_or_else(String::new, |c| format!(" ON CLUSTER {c}"))
}

/// The engine of a table of the store: on a cluster, replicated (its shard's replicas share it
/// through ZooKeeper), so an insert reaches every replica whole.
fn engine(server: &Server, table: &str) -> String {
    match server.cluster {
        None => "MergeTree()".to_owned(),
        Some(_) => {
            format!("ReplicatedMergeTree('/clickhouse/tables/{{shard}}/{}/{table}', '{{replica}}')", server.database)
        }
    }
}

fn has_column(server: &Server, table: &str, column: &str) -> Result<bool> {
    let n = server.run(
        &format!(
            "SELECT count() FROM system.columns WHERE database = {} AND table = {} AND name = {}",
            quote(&server.database),
            quote(table),
            quote(column)
        ),
        true,
        WRITE_TIMEOUT,
    )?;
    Ok(n.trim() != "0")
}

/// Brings the store from schema version `version - 1` to `version`: the first creates the table,
/// each later one adds the columns of that version (a column already there, from a migration cut
/// short, is left; 18.16 has no `ADD COLUMN IF NOT EXISTS`).
fn migrate_to(server: &Server, version: u32) -> Result<()> {
    let run = |sql: String| server.run(&sql, true, WRITE_TIMEOUT).map(drop);
    let (local, oc) = (local_table(server), on_cluster(server));
    let (local_ddl, events_ddl) = (ddl_name(server, local), ddl_name(server, "events"));
    let columns: Vec<StoredColumn> = schema::event_columns().into_iter().filter(|c| c.since == version).collect();
    if version == 1 {
        let defs: Vec<String> = columns.iter().map(|c| format!("{} {}", c.name, column_type(c.ty).0)).collect();
        // No PARTITION BY: one partition, so that an insert is one part (exactly-once).
        run(format!(
            "CREATE TABLE IF NOT EXISTS {local_ddl}{oc} ({}, _pos UInt64) ENGINE = {} ORDER BY (site_id, day)",
            defs.join(", "),
            engine(server, "events")
        ))?;
    }
    for c in columns.iter().filter(|_| version > 1) {
        if !has_column(server, local, c.name)? {
            let (ty, default) = column_type(c.ty);
            run(format!("ALTER TABLE {local_ddl}{oc} ADD COLUMN {} {ty} DEFAULT {default}", c.name))?;
        }
    }
    if let Some(cluster) = &server.cluster {
        // A Distributed table takes its columns from the local table when it is made.
        run(format!("DROP TABLE IF EXISTS {events_ddl}{oc}"))?;
        run(format!(
            "CREATE TABLE {events_ddl}{oc} AS {local_ddl} ENGINE = Distributed({cluster}, {}, events_local)",
            server.database
        ))?;
    }
    Ok(())
}

/// Rows for one insert, as ClickHouse's TabSeparated lines, each ending with the commit's
/// position (the `_pos` column).
pub struct TsvRows {
    body: String,
    position: u64,
    rows: usize,
}

impl TsvRows {
    pub fn new(position: u64) -> TsvRows {
        TsvRows { body: String::new(), position, rows: 0 }
    }

    /// One row's values, in [`schema::event_columns`] order.
    pub fn push<'a>(&mut self, values: impl IntoIterator<Item = Value<'a>>) {
        for v in values {
            match v {
                Value::Int(i) => self.body.push_str(&i.to_string()),
                Value::Text(t) => tsv(&t, &mut self.body),
                Value::Null => self.body.push_str("\\N"),
            }
            self.body.push('\t');
        }
        self.body.push_str(&self.position.to_string());
        self.body.push('\n');
        self.rows += 1;
    }

    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }
}

/// The event store on a ClickHouse server; [`ClickHouseStore::reader`] gives the query side.
pub struct ClickHouseStore {
    server: Server,
    /// Whose markers are this writer's (see the module's notes).
    writer: String,
    /// Whose position this writer starts from while it has no marker of its own.
    inherits: Option<&'static str>,
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

    /// [`open`](Self::open) for one of several writers, each with a name of its own. A writer
    /// that has committed nothing yet starts from the position `plumb migrate` handed the queue
    /// over at, if it did.
    pub fn open_as(url: &str, writer: &str) -> Result<Self> {
        Self::open_writer(url, writer, Some(HANDOVER_WRITER))
    }

    /// A writer that starts from its own markers alone (`plumb migrate`'s).
    pub fn open_exact(url: &str, writer: &str) -> Result<Self> {
        Self::open_writer(url, writer, None)
    }

    fn open_writer(url: &str, writer: &str, inherits: Option<&'static str>) -> Result<Self> {
        let server = connect(url)?;
        let mut store = ClickHouseStore { server, writer: writer.to_owned(), inherits, committed: 0, unsure: false };
        if inherits.is_some() {
            let writers = store.writers()?;
            let new = !writers.iter().any(|w| w == writer);
            let migrating =
                writers.iter().any(|w| w.starts_with(COPY_WRITER)) && !writers.iter().any(|w| w == HANDOVER_WRITER);
            if new && migrating {
                // It would start from 0 and count entries the copied rows already hold.
                return Err(StoreError::Backend(
                    "plumb migrate is moving an install into this store and has not handed its queue over yet: \
                     start workers once it says `queue handed over`"
                        .into(),
                ));
            }
        }
        store.committed = store.stored_position()?;
        Ok(store)
    }

    pub fn reader(&self, timeout: Duration) -> ClickHouseReader {
        ClickHouseReader { server: self.server.clone(), timeout }
    }

    fn write(&self, sql: &str) -> Result<String> {
        self.server.run(sql, true, WRITE_TIMEOUT)
    }

    /// The largest of this writer's markers, read where it writes them (on a cluster, the server
    /// it is connected to has every insert it made); with none, the inherited writer's, from all.
    fn stored_position(&self) -> Result<u64> {
        let position = |table: &str, writer: &str| -> Result<(u64, u64)> {
            let answer = self.write(&format!(
                "SELECT count(), max(_pos) FROM {table} WHERE site_id = 0 AND {} = {}",
                MARKER_WRITER.column(),
                quote(writer)
            ))?;
            let mut fields = answer.split_whitespace().map(str::parse::<u64>);
            match (fields.next(), fields.next()) {
                (Some(Ok(n)), Some(Ok(max))) => Ok((n, max)),
                _ => Err(StoreError::Backend(format!("ClickHouse answered `{answer}` for a position"))),
            }
        };
        let (markers, own) = position(local_table(&self.server), &self.writer)?;
        match self.inherits {
            Some(writer) if markers == 0 => Ok(position("events", writer)?.1),
            _ => Ok(own),
        }
    }

    /// One insert: the rows and the position's marker.
    fn insert(&self, rows: &TsvRows) -> Result<()> {
        // The marker: site 0 (no site has it), the writer as hostname, zeros and empty text.
        let mut marker = TsvRows { body: String::new(), position: rows.position, rows: 0 };
        marker.push(schema::event_columns().into_iter().map(|c| match c.ty {
            _ if c.name == MARKER_WRITER.column() => Value::Text(self.writer.as_str().into()),
            ColumnType::Int(_) => Value::Int(0),
            ColumnType::Text => Value::Text("".into()),
            ColumnType::OptionalInt(_) | ColumnType::OptionalText => Value::Null,
        }));
        let names: Vec<&str> = schema::event_columns().iter().map(|c| c.name).collect();
        let table = local_table(&self.server);
        let head = format!("INSERT INTO {table} ({}, _pos) FORMAT TabSeparated\n", names.join(", "));
        self.write(&format!("{head}{}{}", rows.body, marker.body)).map(drop)
    }

    /// The name of every writer with a marker.
    pub fn writers(&self) -> Result<Vec<String>> {
        let answer =
            self.write(&format!("SELECT DISTINCT {} FROM events WHERE site_id = 0", MARKER_WRITER.column()))?;
        Ok(answer.lines().filter(|l| !l.is_empty()).map(untsv).collect())
    }

    /// Stores `rows` and moves the position to theirs in one insert, exactly once (see the
    /// module's notes): [`EventWriter::commit`] for rows read from elsewhere.
    pub fn commit_tsv(&mut self, rows: &TsvRows) -> Result<()> {
        let position = rows.position;
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
        match self.insert(rows) {
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
}

/// Brings the schema up to `schema::version()`, recording each version reached in `plumb_schema`
/// (on a cluster: written to the shard's replicated `plumb_schema_local`, read from all shards).
fn migrate(server: &Server) -> Result<()> {
    let oc = on_cluster(server);
    let versions = match &server.cluster {
        None => {
            server.run(
                "CREATE TABLE IF NOT EXISTS plumb_schema (version UInt32) ENGINE = TinyLog",
                true,
                WRITE_TIMEOUT,
            )?;
            "plumb_schema"
        }
        Some(cluster) => {
            let db = &server.database;
            let local = format!(
                "CREATE TABLE IF NOT EXISTS {db}.plumb_schema_local{oc} (version UInt32) ENGINE = {} ORDER BY version",
                engine(server, "plumb_schema")
            );
            server.run(&local, true, WRITE_TIMEOUT)?;
            let all = format!(
                "CREATE TABLE IF NOT EXISTS {db}.plumb_schema{oc} AS {db}.plumb_schema_local \
                 ENGINE = Distributed({cluster}, {db}, plumb_schema_local)"
            );
            server.run(&all, true, WRITE_TIMEOUT)?;
            "plumb_schema_local"
        }
    };
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
        migrate_to(server, version)?;
        server.run(&format!("INSERT INTO {versions} VALUES ({version})"), true, WRITE_TIMEOUT)?;
    }
    Ok(())
}

impl EventWriter for ClickHouseStore {
    fn position(&mut self) -> Result<u64> {
        Ok(self.committed)
    }

    fn commit(&mut self, rows: &[Row], position: u64) -> Result<()> {
        let columns = schema::event_columns();
        let mut tsv = TsvRows::new(position);
        for row in rows {
            tsv.push(columns.iter().map(|c| c.value(row)));
        }
        self.commit_tsv(&tsv)
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
            // A mutation: ClickHouse rewrites the parts in the background (on every shard).
            let (local, oc) = (ddl_name(&self.server, local_table(&self.server)), on_cluster(&self.server));
            self.write(&format!("ALTER TABLE {local}{oc} DELETE WHERE site_id = {site_id}"))?;
        }
        Ok(n)
    }
}

/// The server at `url`, with the database made if missing and its schema brought up to date.
fn connect(url: &str) -> Result<Server> {
    let server = Server::parse(url)?;
    let create = format!("CREATE DATABASE IF NOT EXISTS {}{}", server.database, on_cluster(&server));
    server.run(&create, false, WRITE_TIMEOUT)?;
    migrate(&server)?;
    Ok(server)
}

/// The query side: each call is one HTTP request, so readers need no shared state.
pub struct ClickHouseReader {
    server: Server,
    timeout: Duration,
}

impl ClickHouseReader {
    /// A reader alone (`plumb web`), for `clickhouse://HOST:HTTP_PORT/DB`.
    pub fn open(url: &str, timeout: Duration) -> Result<ClickHouseReader> {
        Ok(ClickHouseReader { server: connect(url)?, timeout })
    }
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
