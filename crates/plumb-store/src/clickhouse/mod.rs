//! ClickHouse backend, over its HTTP interface, in SQL that ClickHouse 18.16 and current versions
//! both run. The same rows and rollups as DuckDB's (`schema.rs` derives the tables from
//! `plumb_core::schema` and `plumb_query::rollup`), queried with the same compiler in
//! [`ClickHouseDialect`].
//!
//! On a cluster (`?cluster=NAME` in the URL: its `remote_servers` entry, with ZooKeeper), rows go
//! to each table's `<name>_local`, replicated per shard, and queries read `<name>`, a
//! `Distributed` table over every shard; DDL runs `ON CLUSTER`. A writer inserts into the shard of
//! the server it is connected to.
//!
//! Exactly-once without transactions (`log.rs`): each insert is one part holding a marker of the
//! writer's position, in every table. A commit inserts the batch's rows into `events`, then its
//! rollup rows into each rollup table. A rollup table whose markers lag behind `events`' (a
//! crash between the inserts) is brought up to date from the writer's rows in `events`, summed
//! by the server, before the writer goes on.

pub(crate) mod http;
mod log;
mod schema;

pub use log::TsvRows;

use crate::{EventReader, EventWriter, Result, StoreError};
use http::{Server, quote, tsv, untsv};
use log::Log;
use plumb_core::Row;
use plumb_core::schema::{self as columns, ColumnType};
use plumb_query::imported::{self, ImportedQuery, ImportedRow};
use plumb_query::rollup::{self, Groups, KeyType, RollupTable};
use plumb_query::sql::{ClickHouseDialect, Param, compile_best, compile_imported};
use plumb_query::{GroupSums, MAX_GROUPS, SumsBackend, SumsQuery};
use schema::{ddl_name, event_column_names, local_name, on_cluster, rollup_columns};
use std::time::Duration;

/// The writer whose marker holds the queue position `plumb migrate` handed an embedded install's
/// queue over at: a worker with no marker of its own starts from it (see [`ClickHouseStore::open_as`]).
pub const HANDOVER_WRITER: &str = "migrate: queue";
/// How the names of `plumb migrate`'s row-copying writers begin (see `copy.rs`).
pub(crate) const COPY_WRITER: &str = "migrate: rows";
/// Statements of the writer and of migrations may take this long.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// The most rows one commit may hold.
pub const MAX_COMMIT_ROWS: usize = 1_000_000;
/// Rows of `events` summed into one insert when a rollup table is brought up to date: the
/// rollup rows of a commit or a few.
const CATCH_UP_ROWS: u64 = 100_000;
/// Imported rows per insert.
const IMPORT_CHUNK: usize = 100_000;

/// How the store's writer came to write.
#[derive(Clone, Copy, PartialEq)]
enum Role {
    /// A worker: it inserts rows and their rollups, and starts from the position `plumb migrate`
    /// handed the queue over at while it has none of its own.
    Worker,
    /// `plumb migrate`'s copy: each table's rows are copied as they are, rollups included.
    Copy,
}

/// The event store on a ClickHouse server; [`ClickHouseStore::reader`] gives the query side.
pub struct ClickHouseStore {
    server: Server,
    events: Log,
    /// One per table of `rollup::tables()`, in that order.
    rollups: Vec<Log>,
    role: Role,
    /// The position of the last commit tried: tried again, it may have been stored already.
    tried: Option<u64>,
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
        Self::open_writer(url, writer, Role::Worker)
    }

    /// A writer that copies rows as they are and starts from its own markers alone (`plumb
    /// migrate`'s).
    pub fn open_exact(url: &str, writer: &str) -> Result<Self> {
        Self::open_writer(url, writer, Role::Copy)
    }

    fn open_writer(url: &str, writer: &str, role: Role) -> Result<Self> {
        let server = connect(url)?;
        let mut events =
            Log::open(&server, local_name(&server, "events"), &event_column_names(), events_marker(), writer)?;
        let fresh = role == Role::Worker && !events.has_markers;
        if fresh {
            let writers = writers(&server)?;
            if writers.iter().any(|w| w.starts_with(COPY_WRITER)) && !writers.iter().any(|w| w == HANDOVER_WRITER) {
                // It would start from 0 and count entries the copied rows already hold.
                return Err(StoreError::Backend(
                    "plumb migrate is moving an install into this store and has not handed its queue over yet: \
                     start workers once it says `queue handed over`"
                        .into(),
                ));
            }
            events.committed = log::markers(&server, "events", HANDOVER_WRITER)?.unwrap_or(0);
            events.start = events.committed;
        }
        let mut rollups = Vec::new();
        for t in rollup::tables() {
            let columns: Vec<String> = rollup_columns(t).into_iter().map(|(n, _)| n).collect();
            let mut log = Log::open(&server, local_name(&server, t.name), &columns, rollup_marker(t), writer)?;
            if fresh {
                // Its rollups start where its rows do.
                (log.committed, log.start) = (events.committed, events.committed);
            }
            rollups.push(log);
        }
        let mut store = ClickHouseStore { server, events, rollups, role, tried: None };
        if role == Role::Worker {
            for i in 0..store.rollups.len() {
                store.catch_up(i, store.events.committed)?;
            }
        }
        Ok(store)
    }

    pub fn reader(&self, timeout: Duration) -> ClickHouseReader {
        ClickHouseReader { server: self.server.clone(), timeout }
    }

    fn write(&self, sql: &str) -> Result<String> {
        self.server.run(sql, true, WRITE_TIMEOUT)
    }

    /// The name of every writer with a marker.
    pub fn writers(&self) -> Result<Vec<String>> {
        writers(&self.server)
    }

    /// Empty rows for `table` (`events` or a rollup table) at `position`, to fill and commit with
    /// [`commit_tsv`](Self::commit_tsv).
    pub fn rows(&self, table: &str, position: u64) -> TsvRows {
        if table == "events" { TsvRows::marked(&self.events.writer, position) } else { TsvRows::plain(position) }
    }

    /// The position this writer reached in `table`.
    pub fn table_position(&mut self, table: &str) -> Result<u64> {
        let server = self.server.clone();
        let log = self.log(table)?;
        log.settle(&server)?;
        Ok(log.committed)
    }

    fn log(&mut self, table: &str) -> Result<&mut Log> {
        if table == "events" {
            return Ok(&mut self.events);
        }
        let i = rollup::tables().iter().position(|t| t.name == table);
        i.map(|i| &mut self.rollups[i]).ok_or_else(|| StoreError::Backend(format!("the store has no table {table}")))
    }

    /// Stores `rows` into `table` and moves this writer's position there to theirs, exactly once
    /// (see `log.rs`): what `plumb migrate` copies tables with.
    pub fn commit_tsv(&mut self, table: &str, rows: &TsvRows) -> Result<()> {
        let server = self.server.clone();
        self.log(table)?.append(&server, rows)
    }

    /// Brings rollup table `i` up to `to` from this writer's rows in `events` (summed by the
    /// server), a few commits per insert.
    fn catch_up(&mut self, i: usize, to: u64) -> Result<()> {
        self.rollups[i].settle(&self.server)?;
        let from = self.rollups[i].committed;
        if from >= to {
            return Ok(());
        }
        let (events, writer) = (local_name(&self.server, "events"), quote(&self.rollups[i].writer));
        let mine = format!("_writer = {writer} AND _pos > {from} AND _pos <= {to}");
        // The commits in between and their rows, to sum a bounded number of rows at a time.
        let commits =
            self.write(&format!("SELECT _pos, count() FROM {events} WHERE {mine} GROUP BY _pos ORDER BY _pos"))?;
        let mut steps: Vec<u64> = Vec::new();
        let mut rows = 0;
        for line in commits.lines().filter(|l| !l.is_empty()) {
            let parsed =
                line.split_once('\t').and_then(|(p, n)| Some((p.parse::<u64>().ok()?, n.parse::<u64>().ok()?)));
            let Some((position, n)) = parsed else {
                return Err(StoreError::Backend(format!("ClickHouse answered `{line}` for a commit's rows")));
            };
            // A step ends at a commit's position; the next commit starts a new one when full.
            if rows > 0 && rows + n > CATCH_UP_ROWS {
                rows = 0;
            } else {
                steps.pop();
            }
            steps.push(position);
            rows += n;
        }
        if steps.last() != Some(&to) {
            steps.push(to);
        }
        let table = rollup::tables()[i];
        let mut after = from;
        for step in steps {
            let condition = format!("site_id <> 0 AND _writer = {writer} AND _pos > {after} AND _pos <= {step}");
            let mut rows = TsvRows::plain(step);
            for select in table.select_sql(&ClickHouseDialect, &events, &condition) {
                let answer = self.write(&format!("{select} FORMAT TabSeparated"))?;
                answer.lines().filter(|l| !l.is_empty()).for_each(|l| rows.push_line(l));
            }
            self.rollups[i].append(&self.server, &rows)?;
            after = step;
        }
        Ok(())
    }
}

impl ClickHouseStore {
    /// Deletes the rows and rollup rows that meet `condition` (of a site other than 0, whose
    /// rows are markers); returns the events deleted. `condition` is written as ClickHouse
    /// writes it back in `system.mutations` (each comparison in parentheses), so that a deletion
    /// asked for again while its mutation still runs is not queued twice.
    fn delete_where(&mut self, condition: &str) -> Result<u64> {
        let condition = format!("(site_id != 0) AND {condition}");
        let oc = on_cluster(&self.server);
        let mut events = 0;
        // Table by table, so that a deletion cut short and called again finishes the rest.
        let tables = std::iter::once("events").chain(rollup::tables().map(|t| t.name)).chain([imported::TABLE]);
        for table in tables {
            let count = |sql: String| -> Result<u64> {
                let answer = self.write(&sql)?;
                answer
                    .trim()
                    .parse()
                    .map_err(|e| StoreError::Backend(format!("ClickHouse answered `{answer}` for a count: {e}")))
            };
            let n = count(format!("SELECT count() FROM {table} WHERE {condition}"))?;
            if table == "events" {
                events = n;
            }
            if n == 0 {
                continue;
            }
            let local = local_name(&self.server, table);
            let under_way = count(format!(
                "SELECT count() FROM system.mutations WHERE database = {} AND table = {} AND is_done = 0 AND command = {}",
                quote(&self.server.database),
                quote(&local),
                quote(&format!("DELETE WHERE {condition}"))
            ))?;
            if under_way == 0 {
                // A mutation: ClickHouse rewrites the parts in the background (on every shard).
                let local = ddl_name(&self.server, &local);
                self.write(&format!("ALTER TABLE {local}{oc} DELETE WHERE {condition}"))?;
            }
        }
        Ok(events)
    }
}

/// The marker row of `events` up to its `_writer`: site 0, zeros, empty text and NULLs.
fn events_marker() -> String {
    let values = columns::event_columns().into_iter().map(|c| match c.ty {
        ColumnType::Int(_) => "0",
        ColumnType::Text => "",
        ColumnType::OptionalInt(_) | ColumnType::OptionalText => "\\N",
    });
    values.collect::<Vec<_>>().join("\t")
}

/// The marker row of a rollup table up to its `_writer`: site 0, day 0, keys empty, and a measure
/// of 1, as a row whose measures are all 0 is removed when parts merge.
fn rollup_marker(t: &RollupTable) -> String {
    let keys = t.keys.iter().map(|(_, ty)| match ty {
        KeyType::Code => "0",
        KeyType::Text => "",
    });
    let measures = (0..t.measures.len()).map(|i| if i == 0 { "1" } else { "0" });
    ["0", "0"].into_iter().chain(keys).chain(measures).collect::<Vec<_>>().join("\t")
}

/// A batch's rows of a rollup table, each group's key written by `key`.
fn rollup_rows<K>(groups: &Groups<K>, position: u64, key: impl Fn(&K, &mut String)) -> TsvRows {
    let mut rows = TsvRows::plain(position);
    for (i, k) in groups.keys().iter().enumerate() {
        key(k, rows.body());
        for sum in groups.sums(i) {
            rows.body().push('\t');
            rows.body().push_str(&sum.to_string());
        }
        rows.end_row();
    }
    rows
}

/// The name of every writer with a marker in `events`.
fn writers(server: &Server) -> Result<Vec<String>> {
    let answer = server.run("SELECT DISTINCT _writer FROM events WHERE site_id = 0", true, WRITE_TIMEOUT)?;
    Ok(answer.lines().filter(|l| !l.is_empty()).map(untsv).collect())
}

impl EventWriter for ClickHouseStore {
    fn position(&mut self) -> Result<u64> {
        self.events.settle(&self.server)?;
        Ok(self.events.committed)
    }

    fn commit(&mut self, rows: &[Row], position: u64) -> Result<()> {
        if rows.len() >= MAX_COMMIT_ROWS {
            return Err(StoreError::Backend(format!("a commit of {} rows is more than {MAX_COMMIT_ROWS}", rows.len())));
        }
        if self.role != Role::Worker {
            return Err(StoreError::Backend("plumb migrate's writer copies rows; it commits none".into()));
        }
        // Known for sure: rows of an insert that got through unanswered are not taken for missing.
        self.events.settle(&self.server)?;
        let before = self.events.committed;
        if position <= before && self.tried != Some(position) {
            return Err(StoreError::Backend(format!(
                "a commit at queue position {position} is not after this writer's position {before}: positions increase \
                 from commit to commit"
            )));
        }
        self.tried = Some(position);
        let columns = columns::event_columns();
        let mut stored = TsvRows::marked(&self.events.writer, position);
        for row in rows {
            stored.push(columns.iter().map(|c| c.value(row)));
        }
        self.events.append(&self.server, &stored)?;
        for (i, table) in rollup::tables().into_iter().enumerate() {
            self.rollups[i].settle(&self.server)?;
            if self.rollups[i].committed >= position {
                continue;
            }
            // Rollup rows of earlier commits are missing (an insert failed): first those.
            self.catch_up(i, before.min(position))?;
            let summed = if table.name == rollup::DAYS.name {
                rollup_rows(&rollup::aggregate(rows), position, |(site, day, dim, value), out| {
                    out.push_str(&format!("{site}\t{day}\t{dim}\t"));
                    tsv(value, out);
                })
            } else {
                rollup_rows(&rollup::cube_aggregate(rows), position, |(site, day, values), out| {
                    out.push_str(&format!("{site}\t{day}"));
                    for v in values {
                        out.push('\t');
                        tsv(v, out);
                    }
                })
            };
            self.rollups[i].append(&self.server, &summed)?;
        }
        Ok(())
    }

    /// About one commit a second under load: each insert is a part ClickHouse must merge, and
    /// many small ones make it refuse inserts ("too many parts").
    fn commit_interval(&self) -> Duration {
        Duration::from_secs(1)
    }

    fn delete_site(&mut self, site_id: u32) -> Result<u64> {
        self.delete_where(&format!("(site_id = {site_id})"))
    }

    /// In inserts of up to [`IMPORT_CHUNK`] rows, as they come: no transaction spans them, so an
    /// import cut short leaves rows that metadata never marks finished (and queries never read);
    /// a new run gets a new id.
    fn put_import(&mut self, import_id: u32, rows: &mut dyn Iterator<Item = Result<ImportedRow>>) -> Result<u64> {
        let columns: Vec<&str> = imported::columns().into_iter().map(|(n, _)| n).collect();
        let head = format!(
            "INSERT INTO {} ({}) FORMAT TabSeparated\n",
            local_name(&self.server, imported::TABLE),
            columns.join(", ")
        );
        // Days a site has live rows for are counted live: their imported rows are left out.
        let mut first_live: std::collections::HashMap<u32, i32> = std::collections::HashMap::new();
        let answer =
            self.write("SELECT site_id, min(day) FROM events WHERE site_id != 0 GROUP BY site_id FORMAT TabSeparated")?;
        for line in answer.lines() {
            if let Some((site, day)) = line.split_once('\t')
                && let (Ok(site), Ok(day)) = (site.parse(), day.parse())
            {
                first_live.insert(site, day);
            }
        }
        let mut stored = 0;
        loop {
            let mut body = head.clone();
            let (mut taken, mut n) = (0, 0);
            for row in (&mut *rows).take(IMPORT_CHUNK) {
                let r = row?;
                taken += 1;
                if first_live.get(&r.site_id).is_some_and(|d| r.day >= *d) {
                    continue;
                }
                body.push_str(&format!("{import_id}\t{}\t{}\t{}\t", r.site_id, r.day, r.dim));
                tsv(&r.value, &mut body);
                r.measures.iter().for_each(|m| body.push_str(&format!("\t{m}")));
                body.push('\n');
                n += 1;
            }
            if taken == 0 {
                return Ok(stored);
            }
            if n > 0 {
                self.write(&body)?;
                stored += n;
            }
        }
    }

    fn remove_import(&mut self, import_id: u32) -> Result<()> {
        let (local, oc) =
            (ddl_name(&self.server, &local_name(&self.server, imported::TABLE)), on_cluster(&self.server));
        self.write(&format!("ALTER TABLE {local}{oc} DELETE WHERE import_id = {import_id}")).map(drop)
    }

    fn delete_before(&mut self, site_id: u32, day: i32) -> Result<u64> {
        self.delete_where(&format!("(site_id = {site_id}) AND (day < {day})"))
    }
}

/// The server at `url`, with the database made if missing and its schema brought up to date.
fn connect(url: &str) -> Result<Server> {
    let server = Server::parse(url)?;
    let create = format!("CREATE DATABASE IF NOT EXISTS {}{}", server.database, on_cluster(&server));
    server.run(&create, false, WRITE_TIMEOUT)?;
    schema::migrate(&server)?;
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
        let (sql, params) = compile_best(&ClickHouseDialect, q);
        self.answer(&sql, &params, q.group_by.len(), q.sums.len())
    }

    fn imported(&self, q: &ImportedQuery) -> Result<Vec<GroupSums>> {
        let (sql, params) = compile_imported(&ClickHouseDialect, q);
        self.answer(&sql, &params, q.group_by.len(), q.measures.len())
    }
}

impl ClickHouseReader {
    /// Runs a compiled sums query of `keys` group columns and `sums` sums, and refuses answers of
    /// more groups than one may hold.
    fn answer(&self, sql: &str, params: &[Param], keys: usize, sums: usize) -> Result<Vec<GroupSums>> {
        // At most one group more than an answer may hold, to tell that it would be too many.
        let sql = if keys == 0 { sql.to_owned() } else { format!("{sql} LIMIT {}", MAX_GROUPS + 1) };
        let answer = self.server.run(&format!("{} FORMAT TabSeparated", inline(&sql, params)), true, self.timeout)?;
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
