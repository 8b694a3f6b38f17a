//! DuckDB backend: one file, opened read-write by this process only. The pipeline writes through
//! one connection with the Appender; readers share clones of it.

use crate::{EventReader, EventWriter, Result, StoreError};
use duckdb::arrow::array::{
    ArrayRef, Int8Array, Int32Array, Int64Array, StringArray, UInt8Array, UInt16Array, UInt32Array,
};
use duckdb::arrow::record_batch::RecordBatch;
use duckdb::{Connection, params};
use plumb_core::Row;
use plumb_core::schema::{self, ColumnType, IntType, StoredColumn, Value};
use plumb_query::imported::{self, ImportedQuery, ImportedRow};
use plumb_query::rollup::{self, Groups, KeyType, RollupTable};
use plumb_query::sql::{DuckDialect, Param, compile, compile_best, compile_imported};
use plumb_query::{GroupSums, MAX_GROUPS, SumsBackend, SumsQuery};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn backend(e: duckdb::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn int_type(t: IntType) -> &'static str {
    match t {
        IntType::I8 => "TINYINT",
        IntType::U8 => "UTINYINT",
        IntType::U16 => "USMALLINT",
        IntType::I32 => "INTEGER",
        IntType::U32 => "UINTEGER",
        IntType::I64 => "BIGINT",
    }
}

/// A column's DuckDB type, whether it may be NULL, and the default that older rows get when it
/// is added later.
fn column_type(t: ColumnType) -> (&'static str, bool, &'static str) {
    match t {
        ColumnType::Int(t) => (int_type(t), false, "0"),
        ColumnType::Text => ("VARCHAR", false, "''"),
        ColumnType::OptionalInt(t) => (int_type(t), true, "NULL"),
        ColumnType::OptionalText => ("VARCHAR", true, "NULL"),
    }
}

/// The SQL that brings the store from schema version `version - 1` to `version`: the first
/// creates the tables, each later one adds the columns of that version (see
/// `plumb_core::schema`).
fn migration(version: u32) -> String {
    let columns: Vec<StoredColumn> = schema::event_columns().into_iter().filter(|c| c.since == version).collect();
    if version == 1 {
        // Stores written before numbered migrations have these tables already.
        let defs = columns.iter().map(|c| {
            let (ty, nullable, _) = column_type(c.ty);
            format!("{} {ty}{}", c.name, if nullable { "" } else { " NOT NULL" })
        });
        let defs: Vec<String> = defs.collect();
        return format!(
            "CREATE TABLE IF NOT EXISTS events ({});
             CREATE TABLE IF NOT EXISTS pipeline_position (id INTEGER PRIMARY KEY, seq UBIGINT NOT NULL);",
            defs.join(", ")
        );
    }
    let adds = columns.iter().map(|c| {
        // DuckDB adds no constraint with a column: the default fills older rows, appends fill the rest.
        let (ty, _, default) = column_type(c.ty);
        format!("ALTER TABLE events ADD COLUMN {} {ty} DEFAULT {default};", c.name)
    });
    adds.collect()
}

fn rollup_ddl(t: &RollupTable) -> String {
    let keys = t.keys.iter().map(|(n, ty)| {
        let ty = match ty {
            KeyType::Code => "UTINYINT",
            KeyType::Text => "VARCHAR",
        };
        format!("{n} {ty} NOT NULL")
    });
    let measures = t.measure_names().into_iter().map(|m| format!("{m} BIGINT NOT NULL"));
    let columns: Vec<String> = keys.chain(measures).collect();
    format!("CREATE TABLE {} (site_id UINTEGER NOT NULL, day INTEGER NOT NULL, {});", t.name, columns.join(", "))
}

/// `imported`'s DDL (see `plumb_query::imported`).
fn imported_ddl() -> String {
    let columns = imported::columns().into_iter().map(|(name, ty)| format!("{name} {} NOT NULL", column_type(ty).0));
    format!("CREATE TABLE {} ({})", imported::TABLE, columns.collect::<Vec<_>>().join(", "))
}

/// Imported rows appended per Arrow batch.
const IMPORT_CHUNK: usize = 100_000;

/// Memory the database may use for queries and writes; a query that needs more fails with a
/// clear error instead of taking the machine's memory.
pub const MEMORY_LIMIT: &str = "1GB";

/// Write-ahead log written before its rows are checkpointed into the file (DuckDB's default is
/// 16 MB, a checkpoint a second under full load). A checkpoint compresses the newest row group
/// again whole and holds up the commit that triggers it: with the default, checkpoints took
/// about 15% of `plumb serve`'s CPU under load and events waited behind them. A larger log costs
/// memory for the rows not yet checkpointed and replay after a crash (a 119 MB log: the server
/// listened again 1.2 s after starting).
const CHECKPOINT_AFTER: &str = "128MB";

/// Rollup rows appended since the last compaction, before the touched days are compacted: each
/// commit adds a row per dimension value it saw, so without compaction small batches would
/// make the rollup larger than the rows it sums.
const COMPACT_AFTER: usize = 200_000;

/// The write side; [`DuckStore::reader`] hands out read connections to the same database.
pub struct DuckStore {
    writer: Connection,
    /// The `events` table's columns, in stored order.
    columns: Vec<StoredColumn>,
    /// Rollup rows appended since the last compaction, and the days they cover.
    uncompacted: usize,
    touched: Option<(i32, i32)>,
}

impl DuckStore {
    pub fn open(path: &Path) -> Result<Self> {
        let mut writer = Connection::open(path).map_err(backend)?;
        writer
            .execute_batch(&format!(
                "SET memory_limit = '{MEMORY_LIMIT}'; SET checkpoint_threshold = '{CHECKPOINT_AFTER}'"
            ))
            .map_err(backend)?;
        migrate(&mut writer, path)?;
        let mut store = Self { writer, columns: schema::event_columns(), uncompacted: 0, touched: None };
        store.rebuild_rollups_if_changed()?;
        store.ensure_imported()?;
        store.compact(None)?;
        Ok(store)
    }

    /// Makes the `imported` table if it is missing. Its rows come from elsewhere and cannot be
    /// made again, so a table of another layout is refused rather than replaced.
    fn ensure_imported(&mut self) -> Result<()> {
        let ddl = imported_ddl();
        self.writer.execute_batch(&ddl.replacen("CREATE TABLE", "CREATE TABLE IF NOT EXISTS", 1)).map_err(backend)?;
        let mut stmt = self
            .writer
            .prepare(
                "SELECT column_name FROM information_schema.columns WHERE table_name = ? ORDER BY ordinal_position",
            )
            .map_err(backend)?;
        let have: Vec<String> =
            stmt.query_map([imported::TABLE], |r| r.get(0)).and_then(|rows| rows.collect()).map_err(backend)?;
        let want: Vec<&str> = imported::columns().into_iter().map(|(n, _)| n).collect();
        if have != want {
            return Err(StoreError::Backend(format!(
                "the event store's `imported` table has the columns [{}], not this Plumb's [{}]",
                have.join(", "),
                want.join(", ")
            )));
        }
        Ok(())
    }

    /// Rollups are derived from rows, so a change of their layout (a counter or attribute added
    /// to the schema, say) needs no migration of its own: they are made again from the rows.
    fn rebuild_rollups_if_changed(&mut self) -> Result<()> {
        let layout: String = rollup::tables().map(rollup_ddl).concat();
        let tx = self.writer.transaction().map_err(backend)?;
        tx.execute_batch("CREATE TABLE IF NOT EXISTS rollup_layout (ddl VARCHAR NOT NULL)").map_err(backend)?;
        let stored: Option<String> =
            tx.query_row("SELECT max(ddl) FROM rollup_layout", [], |r| r.get(0)).map_err(backend)?;
        let names: Vec<String> = rollup::tables().iter().map(|t| format!("'{}'", t.name)).collect();
        let present: i64 = tx
            .query_row(
                &format!("SELECT count(*) FROM information_schema.tables WHERE table_name IN ({})", names.join(", ")),
                [],
                |r| r.get(0),
            )
            .map_err(backend)?;
        if stored.as_deref() == Some(layout.as_str()) && present == names.len() as i64 {
            return Ok(());
        }
        for table in rollup::tables() {
            tx.execute_batch(&format!("DROP TABLE IF EXISTS {}; {}", table.name, rollup_ddl(table)))
                .map_err(backend)?;
            for select in table.select_sql(&DuckDialect, "events", "1 = 1") {
                tx.execute_batch(&format!("INSERT INTO {} {select}", table.name)).map_err(backend)?;
            }
        }
        tx.execute("DELETE FROM rollup_layout", []).map_err(backend)?;
        tx.execute("INSERT INTO rollup_layout VALUES (?)", [&layout]).map_err(backend)?;
        tx.commit().map_err(backend)
    }

    /// Writes what the write-ahead log holds into the file now (DuckDB does so by itself once
    /// the log reaches [`CHECKPOINT_AFTER`], and on close).
    pub fn checkpoint(&mut self) -> Result<()> {
        self.writer.execute_batch("CHECKPOINT").map_err(backend)
    }

    /// A read connection whose queries are stopped after `timeout`.
    pub fn reader(&self, timeout: Duration) -> Result<ReaderHandle> {
        Ok(ReaderHandle { conn: Mutex::new(self.writer.try_clone().map_err(backend)?), rollups: true, timeout })
    }

    /// Deletes the rows and rollup rows that meet `condition` in one transaction; returns the
    /// events deleted.
    fn delete_where(&mut self, condition: &str, params: &[&dyn duckdb::ToSql]) -> Result<u64> {
        let tx = self.writer.transaction().map_err(backend)?;
        let n = tx.execute(&format!("DELETE FROM events WHERE {condition}"), params).map_err(backend)?;
        for table in rollup::tables().map(|t| t.name).into_iter().chain([imported::TABLE]) {
            tx.execute(&format!("DELETE FROM {table} WHERE {condition}"), params).map_err(backend)?;
        }
        tx.commit().map_err(backend)?;
        Ok(n as u64)
    }

    /// Merges rollup rows with the same key, for the days given (all days if `None`).
    fn compact(&mut self, days: Option<(i32, i32)>) -> Result<()> {
        let (from, to) = days.unwrap_or((i32::MIN, i32::MAX));
        let tx = self.writer.transaction().map_err(backend)?;
        for table in rollup::tables() {
            let (name, keys) = (table.name, table.key_names().join(", "));
            let sums: Vec<String> = table.measure_names().iter().map(|m| format!("sum({m})")).collect();
            tx.execute_batch(&format!(
                "CREATE TEMP TABLE rollup_merged AS SELECT site_id, day, {keys}, {sums} FROM {name}
                     WHERE day BETWEEN {from} AND {to} GROUP BY site_id, day, {keys};
                 DELETE FROM {name} WHERE day BETWEEN {from} AND {to};
                 INSERT INTO {name} SELECT * FROM rollup_merged;
                 DROP TABLE rollup_merged;",
                sums = sums.join(", ")
            ))
            .map_err(backend)?;
        }
        tx.commit().map_err(backend)?;
        self.uncompacted = 0;
        self.touched = None;
        Ok(())
    }
}

/// Brings the store's schema up to `schema::version()`, all in one transaction; a store written
/// by a newer Plumb is refused.
fn migrate(conn: &mut Connection, path: &Path) -> Result<()> {
    let tx = conn.transaction().map_err(backend)?;
    tx.execute_batch("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)").map_err(backend)?;
    let found: Option<u32> =
        tx.query_row("SELECT max(version) FROM schema_version", [], |r| r.get(0)).map_err(backend)?;
    let (found, known) = (found.unwrap_or(0), schema::version());
    if found > known {
        return Err(StoreError::Backend(format!(
            "{} has schema version {found}, newer than this Plumb knows ({known}): run a newer Plumb",
            path.display()
        )));
    }
    for version in found + 1..=known {
        tx.execute_batch(&migration(version))
            .map_err(|e| StoreError::Backend(format!("{}: migration {version} failed: {e}", path.display())))?;
        tx.execute("INSERT INTO schema_version VALUES (?)", [version]).map_err(backend)?;
    }
    tx.commit().map_err(backend)
}

/// An Arrow array of one integer type, from values that fit it (the schema says they do).
fn int_array(t: IntType, values: impl Iterator<Item = Option<i64>>) -> ArrayRef {
    match t {
        IntType::I8 => Arc::new(values.map(|v| v.map(|v| v as i8)).collect::<Int8Array>()),
        IntType::U8 => Arc::new(values.map(|v| v.map(|v| v as u8)).collect::<UInt8Array>()),
        IntType::U16 => Arc::new(values.map(|v| v.map(|v| v as u16)).collect::<UInt16Array>()),
        IntType::I32 => Arc::new(values.map(|v| v.map(|v| v as i32)).collect::<Int32Array>()),
        IntType::U32 => Arc::new(values.map(|v| v.map(|v| v as u32)).collect::<UInt32Array>()),
        IntType::I64 => Arc::new(values.collect::<Int64Array>()),
    }
}

fn text_array<'a>(values: impl Iterator<Item = Option<&'a str>>) -> ArrayRef {
    Arc::new(values.collect::<StringArray>())
}

/// Appends columns (in the table's order) through Arrow: one copy per column instead of a call
/// per value.
fn append(tx: &duckdb::Transaction<'_>, table: &str, columns: Vec<ArrayRef>) -> Result<()> {
    if columns.first().is_none_or(|c| c.is_empty()) {
        return Ok(());
    }
    let named = columns.into_iter().enumerate().map(|(i, c)| (format!("c{i}"), c));
    let batch = RecordBatch::try_from_iter(named).map_err(|e| StoreError::Backend(e.to_string()))?;
    let mut app = tx.appender(table).map_err(backend)?;
    app.append_record_batch(batch).map_err(backend)?;
    app.flush().map_err(backend)
}

/// The `events` columns of `rows`.
fn event_arrays(columns: &[StoredColumn], rows: &[Row]) -> Vec<ArrayRef> {
    let int = |v: Value<'_>| match v {
        Value::Int(i) => Some(i),
        _ => None,
    };
    columns
        .iter()
        .map(|c| match c.ty {
            ColumnType::Int(t) | ColumnType::OptionalInt(t) => int_array(t, rows.iter().map(|r| int(c.value(r)))),
            ColumnType::Text | ColumnType::OptionalText => Arc::new(
                rows.iter()
                    .map(|r| match c.value(r) {
                        Value::Text(t) => Some(t),
                        _ => None,
                    })
                    .collect::<StringArray>(),
            ),
        })
        .collect()
}

/// Imported rows as columns, in `imported`'s order.
fn imported_arrays(import_id: u32, rows: &[ImportedRow]) -> Vec<ArrayRef> {
    let mut columns = vec![
        int_array(IntType::U32, rows.iter().map(|_| Some(import_id.into()))),
        int_array(IntType::U32, rows.iter().map(|r| Some(r.site_id.into()))),
        int_array(IntType::I32, rows.iter().map(|r| Some(r.day.into()))),
        int_array(IntType::U8, rows.iter().map(|r| Some(r.dim.into()))),
        text_array(rows.iter().map(|r| Some(r.value.as_str()))),
    ];
    columns.extend(
        (0..imported::MEASURES.len()).map(|i| int_array(IntType::I64, rows.iter().map(|r| Some(r.measures[i])))),
    );
    columns
}

/// Rollup rows as columns: site and day, the other keys, then the measures.
fn rollup_arrays<K>(groups: &Groups<K>, site_day: impl Fn(&K) -> (u32, i32), keys: Vec<ArrayRef>) -> Vec<ArrayRef> {
    let site_days: Vec<(u32, i32)> = groups.keys().iter().map(site_day).collect();
    let mut columns = vec![
        int_array(IntType::U32, site_days.iter().map(|(s, _)| Some((*s).into()))),
        int_array(IntType::I32, site_days.iter().map(|(_, d)| Some((*d).into()))),
    ];
    columns.extend(keys);
    columns.extend((0..groups.width()).map(|i| int_array(IntType::I64, groups.measure(i).map(Some))));
    columns
}

impl EventWriter for DuckStore {
    /// One transaction's view, copied while the writer waits (commits resume after it).
    fn snapshot(&mut self, dest: &Path) -> Result<u64> {
        let position = self.position()?;
        // What a snapshot cut short left behind.
        let _ = std::fs::remove_file(dest);
        let _ = std::fs::remove_file(format!("{}.wal", dest.display()));
        let dest_sql = dest.to_str().ok_or_else(|| StoreError::Backend(format!("{} is not UTF-8", dest.display())))?;
        // Every table, made with its own DDL (keys included), so the snapshot is a store that
        // opens and takes commits (`plumb restore`). Nothing commits meanwhile: the pipeline takes
        // the snapshot between its commits.
        let mut stmt = self
            .writer
            .prepare("SELECT table_name, sql FROM duckdb_tables() WHERE database_name = current_database() AND schema_name = 'main'")
            .map_err(backend)?;
        let tables: Vec<(String, String)> =
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).and_then(|rows| rows.collect()).map_err(backend)?;
        drop(stmt);
        let mut copies = String::new();
        for (name, ddl) in &tables {
            let Some(columns) = ddl.strip_prefix(&format!("CREATE TABLE {name}")) else {
                return Err(StoreError::Backend(format!("DuckDB describes table {name} as `{ddl}`")));
            };
            copies.push_str(&format!(
                "CREATE TABLE migration_snapshot.{name}{columns} INSERT INTO migration_snapshot.{name} SELECT * FROM {name};"
            ));
        }
        let copied = self.writer.execute_batch(&format!(
            "ATTACH '{}' AS migration_snapshot; {copies} CHECKPOINT migration_snapshot;",
            dest_sql.replace('\'', "''")
        ));
        let detached = self.writer.execute_batch("DETACH DATABASE IF EXISTS migration_snapshot");
        copied
            .and(detached)
            .map_err(|e| StoreError::Backend(format!("cannot write the snapshot {}: {e}", dest.display())))?;
        Ok(position)
    }

    fn delete_site(&mut self, site_id: u32) -> Result<u64> {
        self.delete_where("site_id = ?", params![site_id])
    }

    fn delete_before(&mut self, site_id: u32, day: i32) -> Result<u64> {
        self.delete_where("site_id = ? AND day < ?", params![site_id, day])
    }

    fn position(&mut self) -> Result<u64> {
        committed_position(&self.writer)
    }

    fn put_import(&mut self, import_id: u32, rows: &mut dyn Iterator<Item = Result<ImportedRow>>) -> Result<u64> {
        let tx = self.writer.transaction().map_err(backend)?;
        tx.execute(&format!("DELETE FROM {} WHERE import_id = ?", imported::TABLE), params![import_id])
            .map_err(backend)?;
        let mut stored = 0;
        let mut chunk = Vec::with_capacity(IMPORT_CHUNK);
        loop {
            chunk.clear();
            for row in (&mut *rows).take(IMPORT_CHUNK) {
                // An error drops the transaction: nothing of the import is stored.
                chunk.push(row?);
            }
            if chunk.is_empty() {
                break;
            }
            append(&tx, imported::TABLE, imported_arrays(import_id, &chunk))?;
            stored += chunk.len() as u64;
        }
        // Days a site has live rows for are counted live: their imported rows go.
        let clipped = tx
            .execute(
                &format!(
                    "DELETE FROM {t} WHERE import_id = ? AND day >= \
                     (SELECT coalesce(min(day), 2147483647) FROM events e WHERE e.site_id = {t}.site_id)",
                    t = imported::TABLE
                ),
                params![import_id],
            )
            .map_err(backend)?;
        tx.commit().map_err(backend)?;
        Ok(stored - clipped as u64)
    }

    fn remove_import(&mut self, import_id: u32) -> Result<()> {
        self.writer
            .execute(&format!("DELETE FROM {} WHERE import_id = ?", imported::TABLE), params![import_id])
            .map_err(backend)?;
        Ok(())
    }

    fn commit(&mut self, rows: &[Row], position: u64) -> Result<()> {
        let tx = self.writer.transaction().map_err(backend)?;
        append(&tx, "events", event_arrays(&self.columns, rows))?;
        // The batch's rollup rows go in the same transaction, so rollups never disagree with rows.
        let groups = rollup::aggregate(rows);
        let keys = vec![
            int_array(IntType::U8, groups.keys().iter().map(|k| Some(k.2.into()))),
            text_array(groups.keys().iter().map(|k| Some(k.3))),
        ];
        append(&tx, rollup::DAYS.name, rollup_arrays(&groups, |k| (k.0, k.1), keys))?;
        let cube = rollup::cube_aggregate(rows);
        let keys =
            (0..rollup::VISITS.keys.len()).map(|i| text_array(cube.keys().iter().map(|k| Some(k.2[i])))).collect();
        append(&tx, rollup::VISITS.name, rollup_arrays(&cube, |k| (k.0, k.1), keys))?;
        tx.execute("INSERT OR REPLACE INTO pipeline_position VALUES (1, ?)", params![position]).map_err(backend)?;
        tx.commit().map_err(backend)?;
        for (_, day, _, _) in groups.keys() {
            self.touched = Some(self.touched.map_or((*day, *day), |(a, b)| (a.min(*day), b.max(*day))));
        }
        self.uncompacted += groups.len() + cube.len();
        if self.uncompacted >= COMPACT_AFTER {
            self.compact(self.touched)?;
        }
        Ok(())
    }
}

/// A copy of a store's rows and committed position at one instant, in a DuckDB file of its own
/// (see [`EventWriter::snapshot`]): what `plumb migrate` moves, while the server goes on.
pub struct DuckSnapshot {
    conn: Connection,
}

impl DuckSnapshot {
    pub fn open(path: &Path) -> Result<Self> {
        let config = duckdb::Config::default().access_mode(duckdb::AccessMode::ReadOnly).map_err(backend)?;
        let conn = Connection::open_with_flags(path, config)
            .map_err(|e| StoreError::Backend(format!("cannot open the snapshot {}: {e}", path.display())))?;
        Ok(Self { conn })
    }

    /// The queue position the rows were committed up to.
    pub fn position(&self) -> Result<u64> {
        committed_position(&self.conn)
    }

    /// How many rows `table` holds; they are numbered `0..rows()` in a fixed order.
    pub fn rows(&self, table: &str) -> Result<u64> {
        self.conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0)).map_err(|e| {
            StoreError::Backend(format!("cannot count the snapshot's {table} (a snapshot from an older Plumb?): {e}"))
        })
    }

    /// The earliest day any site has rows for.
    pub fn first_day(&self) -> Result<Option<i32>> {
        self.conn.query_row("SELECT min(day) FROM events WHERE site_id > 0", [], |r| r.get(0)).map_err(backend)
    }

    /// Calls `f` with the values of `columns` (name, whether it holds text) of rows `from..to`
    /// of `table`, a row at a time.
    pub fn read(
        &self,
        table: &str,
        columns: &[(String, bool)],
        from: u64,
        to: u64,
        mut f: impl FnMut(&[Value<'_>]),
    ) -> Result<()> {
        let names: Vec<&str> = columns.iter().map(|(n, _)| n.as_str()).collect();
        let mut stmt = self
            .conn
            .prepare(&format!("SELECT {} FROM {table} WHERE rowid >= ? AND rowid < ? ORDER BY rowid", names.join(", ")))
            .map_err(backend)?;
        let mut rows = stmt.query(params![from, to]).map_err(backend)?;
        let mut values = Vec::with_capacity(columns.len());
        while let Some(r) = rows.next().map_err(backend)? {
            values.clear();
            for (i, (_, text)) in columns.iter().enumerate() {
                values.push(if *text {
                    r.get::<_, Option<String>>(i).map_err(backend)?.map_or(Value::Null, |t| Value::Text(t.into()))
                } else {
                    r.get::<_, Option<i64>>(i).map_err(backend)?.map_or(Value::Null, Value::Int)
                });
            }
            f(&values);
        }
        Ok(())
    }

    /// Sums over the snapshot's raw rows (its rollups are copied, not read).
    pub fn reader(&self, timeout: Duration) -> Result<ReaderHandle> {
        Ok(ReaderHandle { conn: Mutex::new(self.conn.try_clone().map_err(backend)?), rollups: false, timeout })
    }
}

/// The queue position a store file's rows were committed up to (0 if none).
fn committed_position(conn: &Connection) -> Result<u64> {
    let seq: Option<u64> =
        conn.query_row("SELECT max(seq) FROM pipeline_position", [], |r| r.get(0)).map_err(backend)?;
    Ok(seq.unwrap_or(0))
}

/// Whether another process may hold the DuckDB file at `path` (a running server): only a file
/// that opens, or none at all, is known to be free.
pub fn in_use(path: &Path) -> bool {
    if !path.exists() {
        return false;
    }
    let Ok(config) = duckdb::Config::default().access_mode(duckdb::AccessMode::ReadOnly) else { return true };
    Connection::open_with_flags(path, config).is_err()
}

pub struct ReaderHandle {
    conn: Mutex<Connection>,
    /// Answer what the rollups can serve from them (off only to compare with raw rows in tests).
    rollups: bool,
    /// How long one query may run before it is stopped.
    timeout: Duration,
}

impl EventReader for ReaderHandle {}

impl SumsBackend for ReaderHandle {
    fn sums(&self, q: &SumsQuery) -> Result<Vec<GroupSums>> {
        let (sql, params) = if self.rollups { compile_best(&DuckDialect, q) } else { compile(&DuckDialect, q) };
        self.answer(&sql, &params, q.group_by.len(), q.sums.len())
    }

    fn imported(&self, q: &ImportedQuery) -> Result<Vec<GroupSums>> {
        let (sql, params) = compile_imported(&DuckDialect, q);
        self.answer(&sql, &params, q.group_by.len(), q.measures.len())
    }
}

impl ReaderHandle {
    /// Writes a site's stored rows for a range of days to a Parquet file at `dest`
    /// (Snappy-compressed), an Arrow batch at a time: of `events`, or with `imports` the
    /// `imported` rows of those (finished) imports. Returns the rows written.
    pub fn write_parquet(
        &self,
        site_id: u32,
        range: plumb_query::DayRange,
        imports: Option<&[u32]>,
        dest: &Path,
    ) -> Result<u64> {
        let sql = match imports {
            None => "SELECT * FROM events WHERE site_id = ? AND day BETWEEN ? AND ? ORDER BY day".to_owned(),
            Some(ids) => {
                // Ids are integers of ours; none matches nothing.
                let ids: Vec<String> = ids.iter().map(u32::to_string).chain(["NULL".to_owned()]).collect();
                format!(
                    "SELECT * FROM {} WHERE site_id = ? AND day BETWEEN ? AND ? AND import_id IN ({}) ORDER BY day",
                    imported::TABLE,
                    ids.join(", ")
                )
            }
        };
        let conn = self.conn.lock().unwrap();
        let mut stmt = conn.prepare(&sql).map_err(backend)?;
        let batches = stmt.query_arrow(params![site_id, range.from, range.to]).map_err(backend)?;
        let fail = |e: parquet::errors::ParquetError| StoreError::Backend(format!("{}: {e}", dest.display()));
        let file = std::fs::File::create(dest).map_err(|e| StoreError::Backend(format!("{}: {e}", dest.display())))?;
        let props = parquet::file::properties::WriterProperties::builder()
            .set_compression(parquet::basic::Compression::SNAPPY)
            .build();
        let mut writer = parquet::arrow::ArrowWriter::try_new(file, batches.get_schema(), Some(props)).map_err(fail)?;
        let mut rows = 0;
        for batch in batches {
            rows += batch.num_rows() as u64;
            writer.write(&batch).map_err(fail)?;
        }
        writer.close().map_err(fail)?;
        Ok(rows)
    }

    /// Runs a compiled sums query of `keys` group columns and `sums` sums under the time budget,
    /// and refuses answers of more groups than one may hold.
    fn answer(&self, sql: &str, params: &[Param], keys: usize, sums: usize) -> Result<Vec<GroupSums>> {
        // At most one group more than an answer may hold, to tell that it would be too many.
        let sql = if keys == 0 { sql.to_owned() } else { format!("{sql} LIMIT {}", MAX_GROUPS + 1) };
        let conn = self.conn.lock().unwrap();
        let watchdog = Watchdog::arm(&conn, self.timeout);
        let result = Self::run(&conn, &sql, params, keys, sums);
        if watchdog.fired() {
            return Err(StoreError::Timeout(self.timeout));
        }
        let groups = result.map_err(|e| match e {
            StoreError::Backend(m) if m.contains("Out of Memory") => StoreError::TooLarge(format!(
                "the query needs more memory than the event store may use ({MEMORY_LIMIT}); narrow the range or add a filter"
            )),
            other => other,
        })?;
        if groups.len() > MAX_GROUPS {
            return Err(StoreError::TooLarge(format!(
                "the answer has more than {MAX_GROUPS} groups; narrow the range or add a filter"
            )));
        }
        Ok(groups)
    }

    fn run(conn: &Connection, sql: &str, params: &[Param], keys: usize, sums: usize) -> Result<Vec<GroupSums>> {
        let mut stmt = conn.prepare_cached(sql).map_err(backend)?;
        let bound: Vec<&dyn duckdb::ToSql> = params
            .iter()
            .map(|p| match p {
                Param::Int(i) => i as &dyn duckdb::ToSql,
                Param::Text(t) => t as &dyn duckdb::ToSql,
            })
            .collect();
        let rows = stmt
            .query_map(bound.as_slice(), |r| {
                Ok(GroupSums {
                    keys: (0..keys)
                        .map(|i| r.get::<_, Option<String>>(i).map(Option::unwrap_or_default))
                        .collect::<std::result::Result<_, _>>()?,
                    sums: (keys..keys + sums).map(|i| r.get::<_, i64>(i)).collect::<std::result::Result<_, _>>()?,
                })
            })
            .map_err(backend)?;
        rows.collect::<std::result::Result<_, _>>().map_err(backend)
    }
}

/// Stops a query on a connection once its time is up: a thread that waits for the query to end
/// or the deadline to pass, whichever comes first.
struct Watchdog {
    done: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<bool>>,
}

impl Watchdog {
    fn arm(conn: &Connection, timeout: Duration) -> Watchdog {
        let handle = conn.interrupt_handle();
        let (done, wait) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new().name("query-watchdog".into()).spawn(move || {
            let timed_out = wait.recv_timeout(timeout) == Err(std::sync::mpsc::RecvTimeoutError::Timeout);
            if timed_out {
                handle.interrupt();
            }
            timed_out
        });
        Watchdog { done: Some(done), thread: thread.ok() }
    }

    /// Ends the watch; whether it stopped the query.
    fn fired(mut self) -> bool {
        drop(self.done.take());
        self.thread.take().and_then(|t| t.join().ok()).unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use plumb_core::row::RowKind;
    use plumb_core::{Counters, VisitInfo};
    use plumb_query::{Attr, Column, Counter, DayRange, Filter, Op, Sum};

    fn row(day: i32, page: &str, source: &str, n: i8) -> Row {
        Row {
            site_id: 1,
            day,
            hour: 3,
            kind: RowKind::Pageview,
            name: String::new(),
            hostname: "r.test".into(),
            pathname: page.into(),
            entry_page: "/".into(),
            visit: Arc::new(VisitInfo { source: source.into(), device: "Mobile".into(), ..Default::default() }),
            props: vec![],
            revenue: None,
            counters: Counters {
                pageviews: 1,
                events: 1,
                visitors: n,
                visits: n,
                bounces: n,
                exits: 1,
                exit_visitors: 1,
                page_visitors: 1,
                page_visits: 1,
                hour_visitors: n,
                attr_first: if n == 1 { 0x1ff } else { 0 },
                duration_ms: 1000 * day as i64,
                engaged_ms: 7,
                scroll_gain: 3,
                scroll_pages: 1,
                ..Default::default()
            },
        }
    }

    fn sorted(mut g: Vec<GroupSums>) -> Vec<GroupSums> {
        g.sort_by(|a, b| a.keys.cmp(&b.keys));
        g
    }

    /// A store in a new folder of its own, and the folder.
    fn fresh_store(name: &str) -> (DuckStore, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        (DuckStore::open(&dir.join("events.duckdb")).unwrap(), dir)
    }

    #[test]
    fn deleting_a_site_or_its_older_days_removes_those_rows_and_rollups_only() {
        let (mut store, dir) = fresh_store("plumb-delete-site");
        let rows: Vec<Row> =
            (0..60).map(|i| Row { site_id: 1 + i % 2, ..row(100 + (i % 3) as i32, "/", "Google", 1) }).collect();
        store.commit(&rows, 1).unwrap();
        let reader = store.reader(Duration::from_secs(10)).unwrap();
        let count = |table: &str, site: u32, day: i32| -> i64 {
            let sql = format!("SELECT count(*) FROM {table} WHERE site_id = ? AND day = ?");
            reader.conn.lock().unwrap().query_row(&sql, params![site, day], |r| r.get(0)).unwrap()
        };
        assert!(count("rollup_days", 1, 100) > 0 && count("rollup_visits", 1, 100) > 0);
        // Site 2's days before 102 (its retention), then all of site 1.
        assert_eq!(store.delete_before(2, 102).unwrap(), 20);
        assert_eq!(store.delete_site(1).unwrap(), 30);
        for table in ["events", "rollup_days", "rollup_visits"] {
            for day in 100..=102 {
                assert_eq!(count(table, 1, day), 0, "{table} still holds site 1");
                assert_eq!(count(table, 2, day) > 0, day == 102, "{table}, site 2, day {day}");
            }
        }
        drop((reader, store));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn imported_rows_are_stored_whole_or_not_at_all_answered_and_removed() {
        use plumb_query::imported::{ImportedQuery, Key, MEASURES};
        let (mut store, dir) = fresh_store("plumb-imported");
        let row = |site, day, value: &str, n| ImportedRow {
            site_id: site,
            day,
            dim: 1,
            value: value.into(),
            measures: [n; 6],
        };
        let rows = vec![row(1, 100, "/a", 1), row(1, 101, "/a", 2), row(1, 101, "/b", 4), row(2, 100, "/a", 8)];
        assert_eq!(store.put_import(7, &mut rows.clone().into_iter().map(Ok)).unwrap(), 4);
        // A run that fails half-way stores nothing of itself and leaves the earlier rows.
        let failing = rows.clone().into_iter().map(Ok).chain([Err(StoreError::Backend("line 5: bad".into()))]);
        assert!(store.put_import(8, &mut failing.into_iter()).is_err());
        let reader = store.reader(Duration::from_secs(10)).unwrap();
        let ask = |ids: Vec<u32>, group_by: Vec<Key>| {
            let q = ImportedQuery {
                site_id: 1,
                range: plumb_query::DayRange { from: 100, to: 101 },
                import_ids: ids,
                dim: 1,
                group_by,
                measures: MEASURES.to_vec(),
            };
            sorted(reader.imported(&q).unwrap()).into_iter().map(|g| (g.keys, g.sums[0])).collect::<Vec<_>>()
        };
        assert_eq!(ask(vec![7], vec![Key::Value]), [(vec!["/a".to_owned()], 3), (vec!["/b".to_owned()], 4)]);
        assert_eq!(ask(vec![7], vec![Key::Day]), [(vec!["100".to_owned()], 1), (vec!["101".to_owned()], 6)]);
        assert_eq!(ask(vec![7], vec![]), [(vec![], 7)]);
        assert_eq!(ask(vec![8], vec![Key::Value]), [], "the failed run stored nothing");
        // Again under the same id: replaced, not added. Then retention, then removal.
        store.put_import(7, &mut rows.clone().into_iter().map(Ok)).unwrap();
        assert_eq!(ask(vec![7], vec![]), [(vec![], 7)]);
        store.delete_before(1, 101).unwrap();
        assert_eq!(ask(vec![7], vec![]), [(vec![], 6)]);
        store.remove_import(7).unwrap();
        assert_eq!(ask(vec![7], vec![]), [(vec![], 0)]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_in_memory_backend_answers_what_duckdb_answers() {
        let (mut store, dir) = fresh_store("plumb-memory-vs-duck");
        let sources = ["", "Google", "Twitter"];
        let rows: Vec<Row> = (0..120)
            .map(|i| row(100 + i % 3, &format!("/p{}", i % 5), sources[i as usize % 3], (i % 2) as i8))
            .collect();
        store.commit(&rows, 1).unwrap();
        let duck = ReaderHandle { rollups: false, ..store.reader(Duration::from_secs(10)).unwrap() };
        let memory = plumb_query::memory::MemoryBackend { rows, imported: vec![] };
        let bit = Column::Attr(Attr::Source).first_session_bit().unwrap();
        let filters = [
            None,
            Some(Filter::Condition {
                op: Op::Contains,
                column: Column::Attr(Attr::Source),
                values: vec!["OOG".into()],
                case_sensitive: false,
            }),
            Some(Filter::Not(Box::new(Filter::Condition {
                op: Op::Matches,
                column: Column::Attr(Attr::Pathname),
                values: vec!["^/p[12]$".into()],
                case_sensitive: true,
            }))),
        ];
        for filter in filters {
            for group_by in [vec![], vec![Column::Attr(Attr::Source)], vec![Column::Attr(Attr::Pathname), Column::Day]]
            {
                let q = SumsQuery {
                    site_id: 1,
                    range: DayRange { from: 100, to: 101 },
                    group_by: group_by.clone(),
                    filter: filter.clone(),
                    kinds: vec![],
                    prop_key: None,
                    sums: vec![
                        Sum::Counter(Counter::Visitors),
                        Sum::Counter(Counter::Pageviews),
                        Sum::Counter(Counter::PageVisitors),
                        Sum::FirstSessionVisitors(bit),
                    ],
                };
                assert_eq!(sorted(memory.sums(&q).unwrap()), sorted(duck.sums(&q).unwrap()), "{group_by:?} {filter:?}");
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn queries_over_their_time_or_size_are_stopped_and_the_next_one_runs() {
        let (mut store, dir) = fresh_store("plumb-budget");
        let rows: Vec<Row> = (0..MAX_GROUPS + 10).map(|i| row(100, &format!("/page/{i}"), "Google", 1)).collect();
        store.commit(&rows, 1).unwrap();
        let by_page = |filter: Option<Filter>| SumsQuery {
            site_id: 1,
            range: DayRange { from: 100, to: 100 },
            group_by: vec![Column::Attr(Attr::Pathname)],
            filter,
            kinds: vec![],
            prop_key: None,
            sums: vec![Sum::Counter(Counter::Pageviews)],
        };
        let mut reader = store.reader(Duration::from_secs(60)).unwrap();
        match reader.sums(&by_page(None)) {
            Err(StoreError::TooLarge(m)) => assert!(m.contains("more than 200000 groups"), "{m}"),
            other => panic!("too many groups must be refused, got {:?}", other.map(|g| g.len())),
        }
        // A regular expression over every row takes longer than a millisecond.
        let slow = Filter::Condition {
            op: Op::Matches,
            column: Column::Attr(Attr::Pathname),
            values: vec!["^/page/(1|2|3)+[0-9]*9$".into()],
            case_sensitive: false,
        };
        reader.timeout = Duration::from_millis(1);
        assert!(matches!(reader.sums(&by_page(Some(slow.clone()))), Err(StoreError::Timeout(_))));
        // The same connection answers the next query.
        reader.timeout = Duration::from_secs(60);
        let groups = reader.sums(&by_page(Some(slow))).unwrap();
        assert!(!groups.is_empty() && groups.len() < MAX_GROUPS);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn rollups_answer_what_raw_rows_answer_before_and_after_compaction() {
        let (mut store, dir) = fresh_store("plumb-rollup");
        let sources = ["", "Google", "Twitter"];
        for batch in 0..6 {
            let rows: Vec<Row> = (0..50)
                .map(|i| row(100 + i % 4, &format!("/p{}", i % 7), sources[(i + batch) as usize % 3], (i % 2) as i8))
                .collect();
            store.commit(&rows, batch as u64 + 1).unwrap();
        }
        let rolled = store.reader(Duration::from_secs(10)).unwrap();
        let raw = ReaderHandle { rollups: false, ..store.reader(Duration::from_secs(10)).unwrap() };
        let source_bit = Column::Attr(Attr::Source).first_session_bit().unwrap();
        let all = vec![
            Sum::Counter(Counter::Visitors),
            Sum::Counter(Counter::Visits),
            Sum::Counter(Counter::Pageviews),
            Sum::Counter(Counter::Bounces),
            Sum::Counter(Counter::DurationMs),
            Sum::Counter(Counter::EngagedMs),
            Sum::Counter(Counter::ScrollGain),
        ];
        let queries = [
            (vec![], all.clone()),
            (vec![Column::Day], all.clone()),
            (
                vec![Column::Attr(Attr::Source)],
                vec![
                    Sum::FirstSessionVisitors(source_bit),
                    Sum::Counter(Counter::Visits),
                    Sum::Counter(Counter::DurationMs),
                ],
            ),
            (
                vec![Column::Attr(Attr::Pathname), Column::Day],
                vec![
                    Sum::Counter(Counter::PageVisitors),
                    Sum::Counter(Counter::PageVisits),
                    Sum::Counter(Counter::Pageviews),
                ],
            ),
            (vec![Column::Attr(Attr::Device)], vec![Sum::Counter(Counter::Visitors)]),
            (vec![Column::Day], vec![Sum::FirstSessionVisitors(source_bit), Sum::Counter(Counter::Bounces)]),
        ];
        let mobile_google = Filter::And(vec![
            Filter::Condition {
                op: Op::Is,
                column: Column::Attr(Attr::Device),
                values: vec!["Mobile".into()],
                case_sensitive: true,
            },
            Filter::Condition {
                op: Op::Contains,
                column: Column::Attr(Attr::Source),
                values: vec!["oog".into()],
                case_sensitive: true,
            },
        ]);
        let check = |rolled: &ReaderHandle, raw: &ReaderHandle| {
            let mut cube_checked = 0;
            for (group_by, sums) in &queries {
                let q = SumsQuery {
                    site_id: 1,
                    range: DayRange { from: 101, to: 103 },
                    group_by: group_by.clone(),
                    filter: None,
                    kinds: vec![],
                    prop_key: None,
                    sums: sums.clone(),
                };
                assert!(rollup::route(&q).is_some(), "{group_by:?} is served by a rollup");
                let want = sorted(raw.sums(&q).unwrap());
                assert!(!want.is_empty());
                assert_eq!(sorted(rolled.sums(&q).unwrap()), want, "{group_by:?}");
                // Filtered by visit attributes, the visit cube serves what it can.
                let q = SumsQuery { filter: Some(mobile_google.clone()), ..q };
                if rollup::route(&q).is_some() {
                    let want = sorted(raw.sums(&q).unwrap());
                    assert!(!want.is_empty());
                    assert_eq!(sorted(rolled.sums(&q).unwrap()), want, "{group_by:?} filtered");
                    cube_checked += 1;
                }
            }
            assert_eq!(cube_checked, 5, "the cube serves every query here but the one by page");
        };
        check(&rolled, &raw);
        let before: i64 =
            raw.conn.lock().unwrap().query_row("SELECT count(*) FROM rollup_days", [], |r| r.get(0)).unwrap();
        store.compact(None).unwrap();
        let after: i64 =
            raw.conn.lock().unwrap().query_row("SELECT count(*) FROM rollup_days", [], |r| r.get(0)).unwrap();
        assert!(after < before, "compaction merged {before} rollup rows into {after}");
        check(&rolled, &raw);
        // A store opened again keeps its rollups (and compacts them).
        drop((rolled, raw, store));
        let store = DuckStore::open(&dir.join("events.duckdb")).unwrap();
        let raw = ReaderHandle { rollups: false, ..store.reader(Duration::from_secs(10)).unwrap() };
        check(&store.reader(Duration::from_secs(10)).unwrap(), &raw);
        // A store from before rollups (or whose rollups went missing): they are built from its rows on open.
        store.writer.execute_batch("DROP TABLE rollup_days; DROP TABLE rollup_visits").unwrap();
        drop((raw, store));
        let store = DuckStore::open(&dir.join("events.duckdb")).unwrap();
        let raw = ReaderHandle { rollups: false, ..store.reader(Duration::from_secs(10)).unwrap() };
        check(&store.reader(Duration::from_secs(10)).unwrap(), &raw);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
