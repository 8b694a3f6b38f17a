//! The store's tables, in DDL that ClickHouse 18.16 and current versions both run, and their
//! versioned migrations.
//!
//! Every table the store inserts into ends with `_writer` and `_pos`: a marker row (site 0) holds
//! the name of the writer that made an insert and the queue position it reached (see
//! [`super::log`]); other rows of `events` carry them too, so a writer's rows can be found again.
//! The rollups are `SummingMergeTree`s keyed by everything but their measures: rows of the same
//! key from different inserts are summed as parts merge, so their rows keep `_writer` empty and
//! `_pos` 0, and only markers, each with a key of its own, stay apart.

use super::WRITE_TIMEOUT;
use super::http::{Server, quote};
use crate::{Result, StoreError};
use plumb_core::schema::{self, ColumnType, IntType, StoredColumn};
use plumb_query::imported;
use plumb_query::rollup::{self, KeyType, RollupTable};

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

/// The columns every inserted table ends with (see the module's notes).
const MARKER_COLUMNS: [(&str, &str); 2] = [("_writer", "String"), ("_pos", "UInt64")];

/// The names of `events`' columns, in table order.
pub fn event_column_names() -> Vec<String> {
    let names = schema::event_columns().into_iter().map(|c| c.name.to_owned());
    names.chain(MARKER_COLUMNS.iter().map(|(n, _)| (*n).to_owned())).collect()
}

/// A rollup table's columns and their types, in table order.
pub fn rollup_columns(t: &RollupTable) -> Vec<(String, &'static str)> {
    let keys = t.keys.iter().map(|(name, ty)| {
        let ty = match ty {
            KeyType::Code => "UInt8",
            KeyType::Text => "String",
        };
        (name.clone(), ty)
    });
    let measures = t.measure_names().into_iter().map(|m| (m, "Int64"));
    let fixed = [("site_id", "UInt32"), ("day", "Int32")].into_iter().map(|(n, ty)| (n.to_owned(), ty));
    let marker = MARKER_COLUMNS.into_iter().map(|(n, ty)| (n.to_owned(), ty));
    fixed.chain(keys).chain(measures).chain(marker).collect()
}

/// The table a writer inserts into: on a cluster, the server's `<name>_local` (a replicated table
/// per shard), which the Distributed table `<name>` reads from all shards.
pub fn local_name(server: &Server, table: &str) -> String {
    match server.cluster {
        None => table.to_owned(),
        Some(_) => format!("{table}_local"),
    }
}

/// A table named in DDL: on a cluster with its database, as every other server runs the statement
/// in its default database.
pub fn ddl_name(server: &Server, table: &str) -> String {
    match server.cluster {
        None => table.to_owned(),
        Some(_) => format!("{}.{table}", server.database),
    }
}

/// ` ON CLUSTER name` for statements every server of a cluster must run.
pub fn on_cluster(server: &Server) -> String {
    server.cluster.as_ref().map_or_else(String::new, |c| format!(" ON CLUSTER {c}"))
}

/// The engine of a table: `family` is `""` or `"Summing"`, `args` what that family takes. On a
/// cluster, replicated (a shard's replicas share it through ZooKeeper), so an insert reaches every
/// replica whole.
fn engine(server: &Server, table: &str, family: &str, args: &str) -> String {
    match server.cluster {
        None => format!("{family}MergeTree({args})"),
        Some(_) => {
            let path = format!("'/clickhouse/tables/{{shard}}/{}/{table}', '{{replica}}'", server.database);
            let args = if args.is_empty() { path } else { format!("{path}, {args}") };
            format!("Replicated{family}MergeTree({args})")
        }
    }
}

/// `CREATE TABLE` for `table` (its local table on a cluster, and the Distributed one over them).
fn create(server: &Server, table: &str, columns: &str, engine_and_order: &str) -> Result<()> {
    let (local, oc) = (ddl_name(server, &local_name(server, table)), on_cluster(server));
    run(server, format!("CREATE TABLE IF NOT EXISTS {local}{oc} ({columns}) ENGINE = {engine_and_order}"))?;
    distribute(server, table, false)
}

/// On a cluster, the Distributed table `table` over every shard's local table; `again` makes it
/// anew, as it takes its columns from the local table when it is made.
fn distribute(server: &Server, table: &str, again: bool) -> Result<()> {
    let Some(cluster) = &server.cluster else { return Ok(()) };
    let (all, local, oc) = (ddl_name(server, table), ddl_name(server, &local_name(server, table)), on_cluster(server));
    if again {
        run(server, format!("DROP TABLE IF EXISTS {all}{oc}"))?;
    }
    let engine = format!("Distributed({cluster}, {}, {})", server.database, local_name(server, table));
    run(server, format!("CREATE TABLE IF NOT EXISTS {all}{oc} AS {local} ENGINE = {engine}"))
}

/// How long one DDL statement may take: on a cluster it waits for every server through
/// ZooKeeper's queue (ClickHouse's own `distributed_ddl_task_timeout` is 180 s), and a busy
/// cluster takes far longer than a write does.
const DDL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(180);

fn run(server: &Server, sql: String) -> Result<()> {
    server.run(&sql, true, DDL_TIMEOUT).map(drop)
}

/// The names of a table's columns on the server the store is connected to.
fn columns_of(server: &Server, table: &str) -> Result<Vec<String>> {
    let answer = server.run(
        &format!(
            "SELECT name FROM system.columns WHERE database = {} AND table = {}",
            quote(&server.database),
            quote(&local_name(server, table))
        ),
        true,
        WRITE_TIMEOUT,
    )?;
    Ok(answer.lines().filter(|l| !l.is_empty()).map(str::to_owned).collect())
}

/// Brings the store from schema version `version - 1` to `version`: the first creates the tables,
/// each later one adds the columns of that version (a column already there, from a migration cut
/// short, is left; 18.16 has no `ADD COLUMN IF NOT EXISTS`).
fn migrate_to(server: &Server, version: u32) -> Result<()> {
    let columns: Vec<StoredColumn> = schema::event_columns().into_iter().filter(|c| c.since == version).collect();
    if version == 1 {
        let defs = columns.iter().map(|c| format!("{} {}", c.name, column_type(c.ty).0));
        let defs: Vec<String> = defs.chain(MARKER_COLUMNS.iter().map(|(n, ty)| format!("{n} {ty}"))).collect();
        // No PARTITION BY: one partition, so that an insert is one part (exactly-once).
        create(
            server,
            "events",
            &defs.join(", "),
            &format!("{} ORDER BY (site_id, day)", engine(server, "events", "", "")),
        )?;
        for t in rollup::tables() {
            let defs: Vec<String> = rollup_columns(t).iter().map(|(n, ty)| format!("{n} {ty}")).collect();
            let measures = t.measure_names().join(", ");
            let key: Vec<String> = ["site_id", "day"]
                .into_iter()
                .map(str::to_owned)
                .chain(t.key_names())
                .chain(MARKER_COLUMNS.iter().map(|(n, _)| (*n).to_owned()))
                .collect();
            let engine = engine(server, t.name, "Summing", &format!("({measures})"));
            create(server, t.name, &defs.join(", "), &format!("{engine} ORDER BY ({})", key.join(", ")))?;
        }
        return Ok(());
    }
    let (local, oc) = (ddl_name(server, &local_name(server, "events")), on_cluster(server));
    let present = columns_of(server, "events")?;
    for c in columns.iter().filter(|c| !present.iter().any(|p| p == c.name)) {
        let (ty, default) = column_type(c.ty);
        run(server, format!("ALTER TABLE {local}{oc} ADD COLUMN {} {ty} DEFAULT {default}", c.name))?;
    }
    distribute(server, "events", true)
}

/// Brings the schema up to `schema::version()`, recording each version reached in `plumb_schema`
/// (on a cluster: written to the shard's replicated `plumb_schema_local`, read from all shards),
/// and checks that the rollup tables have this Plumb's layout.
pub fn migrate(server: &Server) -> Result<()> {
    let version_table = "plumb_schema";
    let version_engine = match server.cluster {
        None => "TinyLog".to_owned(),
        Some(_) => format!("{} ORDER BY version", engine(server, version_table, "", "")),
    };
    create(server, version_table, "version UInt32", &version_engine)?;
    let found: u32 =
        server.run("SELECT max(version) FROM plumb_schema", true, WRITE_TIMEOUT)?.trim().parse().unwrap_or(0);
    let known = schema::version();
    if found > known {
        return Err(StoreError::Backend(format!(
            "ClickHouse database {} has schema version {found}, newer than this Plumb knows ({known}): run a newer Plumb",
            server.database
        )));
    }
    if found > 0 && !columns_of(server, "events")?.iter().any(|c| c == "_writer") {
        return Err(StoreError::Backend(format!(
            "ClickHouse database {} was made by a development build of Plumb from before rollups (its rows carry \
             no _writer): make a new database and fill it again (plumb migrate, or the workers from an empty queue)",
            server.database
        )));
    }
    for version in found + 1..=known {
        migrate_to(server, version)?;
        let versions = local_name(server, version_table);
        run(server, format!("INSERT INTO {versions} VALUES ({version})"))?;
    }
    // Imported rows come from elsewhere and are never made again: a table of another layout is
    // refused, not replaced. Inserted as they are (no markers; see `ClickHouseStore::put_import`).
    // Made when missing only: DDL on a cluster goes through ZooKeeper's queue, too slow for every open.
    if columns_of(server, imported::TABLE)?.is_empty() {
        let defs: Vec<String> =
            imported::columns().into_iter().map(|(n, ty)| format!("{n} {}", column_type(ty).0)).collect();
        let engine = engine(server, imported::TABLE, "", "");
        create(
            server,
            imported::TABLE,
            &defs.join(", "),
            &format!("{engine} ORDER BY (site_id, dim, day, import_id)"),
        )?;
    }
    let want: Vec<String> = imported::columns().into_iter().map(|(n, _)| n.to_owned()).collect();
    check_columns(server, imported::TABLE, want, "imported-data layout")?;
    // Rollups are derived from the schema; a change to them needs a migration of its own here
    // (adding a measure with 0 for older rows would answer wrongly), and this catches its absence.
    for t in rollup::tables() {
        check_columns(server, t.name, rollup_columns(t).into_iter().map(|(n, _)| n).collect(), "rollup layout")?;
    }
    Ok(())
}

/// Refuses a table whose columns are not `want` (in any order).
fn check_columns(server: &Server, table: &str, mut want: Vec<String>, layout: &str) -> Result<()> {
    let mut have = columns_of(server, table)?;
    want.sort();
    have.sort();
    if want != have {
        return Err(StoreError::Backend(format!(
            "ClickHouse table {}.{} has the columns [{}], not this Plumb's {layout} [{}]",
            server.database,
            local_name(server, table),
            have.join(", "),
            want.join(", ")
        )));
    }
    Ok(())
}
