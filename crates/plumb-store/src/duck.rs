//! DuckDB backend: one file, opened read-write by this process only. The pipeline writes through
//! one connection with the Appender; readers share clones of it.

use crate::{EventReader, EventWriter, Result, StoreError};
use duckdb::{Connection, params};
use plumb_core::Row;
use plumb_core::row::RowProp;
use plumb_query::rollup;
use plumb_query::sql::{DuckDialect, Param, compile, compile_on};
use plumb_query::{GroupSums, MAX_GROUPS, SumsBackend, SumsQuery};
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

fn backend(e: duckdb::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// Props are stored in one column as `<mark>key\x1evalue` pairs, where the mark is `\x1d` when
/// the visitor-day sends that key and value for the first time and `\x1f` otherwise: plain
/// string functions in every SQL dialect find a key and its first-of-day mark, and the collector
/// strips control characters from props.
pub fn encode_props(props: &[RowProp]) -> String {
    props
        .iter()
        .map(|p| format!("{}{}\u{1e}{}", if p.first_of_day { '\u{1d}' } else { '\u{1f}' }, p.key, p.value))
        .collect()
}

/// The store's schema versions, in order; the version reached is recorded in `schema_version`.
const MIGRATIONS: [&str; 1] = [include_str!("../migrations/001_initial.sql")];

const ROLLUPS: [&rollup::RollupTable; 2] = [&rollup::DAYS, &rollup::VISITS];

/// Memory the database may use for queries and writes; a query that needs more fails with a
/// clear error instead of taking the machine's memory.
pub const MEMORY_LIMIT: &str = "1GB";

/// Rollup rows appended since the last compaction, before the touched days are compacted: each
/// commit adds a row per dimension value it saw, so without compaction small batches would
/// make the rollup larger than the rows it sums.
const COMPACT_AFTER: usize = 200_000;

/// The write side; [`DuckStore::reader`] hands out read connections to the same database.
pub struct DuckStore {
    writer: Connection,
    /// Rollup rows appended since the last compaction, and the days they cover.
    uncompacted: usize,
    touched: Option<(i32, i32)>,
}

impl DuckStore {
    pub fn open(path: &Path) -> Result<Self> {
        let mut writer = Connection::open(path).map_err(backend)?;
        writer.execute_batch(&format!("SET memory_limit = '{MEMORY_LIMIT}'")).map_err(backend)?;
        migrate(&mut writer, path)?;
        let tables: Vec<String> = ROLLUPS.iter().map(|t| format!("'{}'", t.name)).collect();
        let had_rollups: bool = writer
            .query_row(
                &format!(
                    "SELECT count(*) = {} FROM information_schema.tables WHERE table_name IN ({})",
                    ROLLUPS.len(),
                    tables.join(", ")
                ),
                [],
                |r| r.get(0),
            )
            .map_err(backend)?;
        for table in ROLLUPS {
            writer.execute_batch(&table.ddl()).map_err(backend)?;
        }
        let mut store = Self { writer, uncompacted: 0, touched: None };
        if !had_rollups {
            // Rows stored before rollups existed: sum them once.
            let tx = store.writer.transaction().map_err(backend)?;
            for table in ROLLUPS {
                tx.execute_batch(&format!("DELETE FROM {}", table.name)).map_err(backend)?;
            }
            for sql in rollup::backfill_sql() {
                tx.execute_batch(&sql).map_err(backend)?;
            }
            tx.commit().map_err(backend)?;
        }
        store.compact(None)?;
        Ok(store)
    }

    /// A read connection whose queries are stopped after `timeout`.
    pub fn reader(&self, timeout: Duration) -> Result<ReaderHandle> {
        Ok(ReaderHandle { conn: Mutex::new(self.writer.try_clone().map_err(backend)?), rollups: true, timeout })
    }

    /// Merges rollup rows with the same key, for the days given (all days if `None`).
    fn compact(&mut self, days: Option<(i32, i32)>) -> Result<()> {
        let (from, to) = days.unwrap_or((i32::MIN, i32::MAX));
        let tx = self.writer.transaction().map_err(backend)?;
        for table in ROLLUPS {
            let (name, keys) = (table.name, table.key_names());
            let sums: Vec<String> = table.measures().map(|m| format!("sum({m})")).collect();
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

/// Brings the store's schema up to the last of `MIGRATIONS`, all in one transaction; a store
/// written by a newer Plumb is refused.
fn migrate(conn: &mut Connection, path: &Path) -> Result<()> {
    let tx = conn.transaction().map_err(backend)?;
    tx.execute_batch("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)").map_err(backend)?;
    let found: Option<u32> =
        tx.query_row("SELECT max(version) FROM schema_version", [], |r| r.get(0)).map_err(backend)?;
    let (found, known) = (found.unwrap_or(0), MIGRATIONS.len() as u32);
    if found > known {
        return Err(StoreError::Backend(format!(
            "{} has schema version {found}, newer than this Plumb knows ({known}): run a newer Plumb",
            path.display()
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        tx.execute_batch(sql)
            .map_err(|e| StoreError::Backend(format!("{}: migration {} failed: {e}", path.display(), i + 1)))?;
        tx.execute("INSERT INTO schema_version VALUES (?)", [i as u32 + 1]).map_err(backend)?;
    }
    tx.commit().map_err(backend)
}

impl EventWriter for DuckStore {
    fn delete_site(&mut self, site_id: u32) -> Result<u64> {
        let tx = self.writer.transaction().map_err(backend)?;
        let n = tx.execute("DELETE FROM events WHERE site_id = ?", [site_id]).map_err(backend)?;
        for table in ROLLUPS {
            tx.execute(&format!("DELETE FROM {} WHERE site_id = ?", table.name), [site_id]).map_err(backend)?;
        }
        tx.commit().map_err(backend)?;
        Ok(n as u64)
    }

    fn position(&mut self) -> Result<u64> {
        let seq: Option<u64> =
            self.writer.query_row("SELECT max(seq) FROM pipeline_position", [], |r| r.get(0)).map_err(backend)?;
        Ok(seq.unwrap_or(0))
    }

    fn commit(&mut self, rows: &[Row], position: u64) -> Result<()> {
        let tx = self.writer.transaction().map_err(backend)?;
        {
            let mut app = tx.appender("events").map_err(backend)?;
            for r in rows {
                let v = &r.visit;
                app.append_row(params![
                    r.site_id,
                    r.day,
                    r.hour,
                    r.kind as u8,
                    r.name,
                    r.hostname,
                    r.pathname,
                    r.entry_page,
                    v.source,
                    v.referrer,
                    v.channel,
                    v.utm_medium,
                    v.utm_source,
                    v.utm_campaign,
                    v.utm_content,
                    v.utm_term,
                    v.country,
                    v.region,
                    v.city,
                    v.device,
                    v.browser,
                    v.browser_version,
                    v.os,
                    v.os_version,
                    encode_props(&r.props),
                    r.revenue.as_ref().map(|x| x.amount_micros),
                    r.revenue.as_ref().map(|x| x.currency.clone()),
                    r.pageviews,
                    r.events,
                    r.visitors,
                    r.visits,
                    r.bounces,
                    r.exits,
                    r.page_visitors,
                    r.page_visits,
                    r.hour_visitors,
                    r.name_visitors,
                    r.attr_first,
                    r.duration_ms,
                    r.engaged_ms,
                    r.scroll_gain,
                    r.scroll_pages,
                    r.exit_visitors,
                ])
                .map_err(backend)?;
            }
            app.flush().map_err(backend)?;
        }
        // The batch's rollup rows go in the same transaction, so rollups never disagree with rows.
        let groups = rollup::aggregate(rows);
        {
            let mut app = tx.appender(rollup::DAYS.name).map_err(backend)?;
            for ((site, day, dim, value), m) in &groups {
                app.append_row(params![
                    site, day, dim, value, m[0], m[1], m[2], m[3], m[4], m[5], m[6], m[7], m[8], m[9], m[10], m[11]
                ])
                .map_err(backend)?;
            }
            app.flush().map_err(backend)?;
        }
        let cube = rollup::cube_aggregate(rows);
        {
            let mut app = tx.appender(rollup::VISITS.name).map_err(backend)?;
            for ((site, day, k), m) in &cube {
                app.append_row(params![
                    site, day, k[0], k[1], k[2], k[3], k[4], k[5], m[0], m[1], m[2], m[3], m[4], m[5], m[6], m[7],
                    m[8], m[9], m[10]
                ])
                .map_err(backend)?;
            }
            app.flush().map_err(backend)?;
        }
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
        let (sql, params) = if !self.rollups {
            compile(&DuckDialect, q)
        } else if let Some(plan) = rollup::plan(q) {
            let params =
                vec![Param::Int(q.site_id.into()), Param::Int(q.range.from.into()), Param::Int(q.range.to.into())];
            (plan.sql(), params)
        } else if let Some(measures) = rollup::cube_plan(q) {
            compile_on(&DuckDialect, q, rollup::VISITS.name, Some(&measures))
        } else {
            compile(&DuckDialect, q)
        };
        // At most one group more than an answer may hold, to tell that it would be too many.
        let sql = if q.group_by.is_empty() { sql } else { format!("{sql} LIMIT {}", MAX_GROUPS + 1) };
        let conn = self.conn.lock().unwrap();
        let watchdog = Watchdog::arm(&conn, self.timeout);
        let result = self.run(&conn, &sql, &params, q);
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
}

impl ReaderHandle {
    fn run(&self, conn: &Connection, sql: &str, params: &[Param], q: &SumsQuery) -> Result<Vec<GroupSums>> {
        let mut stmt = conn.prepare_cached(sql).map_err(backend)?;
        let bound: Vec<&dyn duckdb::ToSql> = params
            .iter()
            .map(|p| match p {
                Param::Int(i) => i as &dyn duckdb::ToSql,
                Param::Text(t) => t as &dyn duckdb::ToSql,
            })
            .collect();
        let (keys, sums) = (q.group_by.len(), q.sums.len());
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
    use plumb_core::VisitInfo;
    use plumb_core::row::RowKind;
    use plumb_query::{Column, DayRange, Filter, Op, Sum};
    use std::sync::Arc;

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
            name_visitors: 0,
            attr_first: if n == 1 { 0x1ff } else { 0 },
            duration_ms: 1000 * day as i64,
            engaged_ms: 7,
            scroll_gain: 3,
            scroll_pages: 1,
        }
    }

    fn sorted(mut g: Vec<GroupSums>) -> Vec<GroupSums> {
        g.sort_by(|a, b| a.keys.cmp(&b.keys));
        g
    }

    #[test]
    fn deleting_a_site_removes_its_rows_and_rollups_only() {
        let dir = std::env::temp_dir().join(format!("plumb-delete-site-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut store = DuckStore::open(&dir.join("events.duckdb")).unwrap();
        let rows: Vec<Row> = (0..40).map(|i| Row { site_id: 1 + i % 2, ..row(100, "/", "Google", 1) }).collect();
        store.commit(&rows, 1).unwrap();
        let reader = store.reader(Duration::from_secs(10)).unwrap();
        let count = |table: &str, site: u32| -> i64 {
            let sql = format!("SELECT count(*) FROM {table} WHERE site_id = ?");
            reader.conn.lock().unwrap().query_row(&sql, [site], |r| r.get(0)).unwrap()
        };
        assert!(count("rollup_days", 1) > 0 && count("rollup_visits", 1) > 0);
        assert_eq!(store.delete_site(1).unwrap(), 20);
        for table in ["events", "rollup_days", "rollup_visits"] {
            assert_eq!(count(table, 1), 0, "{table} still holds site 1");
            assert!(count(table, 2) > 0, "{table} lost site 2");
        }
    }

    #[test]
    fn the_in_memory_backend_answers_what_duckdb_answers() {
        let dir = std::env::temp_dir().join(format!("plumb-memory-vs-duck-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut store = DuckStore::open(&dir.join("events.duckdb")).unwrap();
        let sources = ["", "Google", "Twitter"];
        let rows: Vec<Row> = (0..120)
            .map(|i| row(100 + i % 3, &format!("/p{}", i % 5), sources[i as usize % 3], (i % 2) as i8))
            .collect();
        store.commit(&rows, 1).unwrap();
        let duck = ReaderHandle { rollups: false, ..store.reader(Duration::from_secs(10)).unwrap() };
        let memory = plumb_query::memory::MemoryBackend { rows };
        let bit = Column::Source.first_session_bit().unwrap();
        let filters = [
            None,
            Some(Filter::Condition {
                op: Op::Contains,
                column: Column::Source,
                values: vec!["OOG".into()],
                case_sensitive: false,
            }),
            Some(Filter::Not(Box::new(Filter::Condition {
                op: Op::Matches,
                column: Column::Pathname,
                values: vec!["^/p[12]$".into()],
                case_sensitive: true,
            }))),
        ];
        for filter in filters {
            for group_by in [vec![], vec![Column::Source], vec![Column::Pathname, Column::Day]] {
                let q = SumsQuery {
                    site_id: 1,
                    range: DayRange { from: 100, to: 101 },
                    group_by: group_by.clone(),
                    filter: filter.clone(),
                    kinds: vec![],
                    prop_key: None,
                    sums: vec![Sum::Visitors, Sum::Pageviews, Sum::PageVisitors, Sum::FirstSessionVisitors(bit)],
                };
                assert_eq!(sorted(memory.sums(&q).unwrap()), sorted(duck.sums(&q).unwrap()), "{group_by:?} {filter:?}");
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn queries_over_their_time_or_size_are_stopped_and_the_next_one_runs() {
        let dir = std::env::temp_dir().join(format!("plumb-budget-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut store = DuckStore::open(&dir.join("events.duckdb")).unwrap();
        let rows: Vec<Row> = (0..MAX_GROUPS + 10).map(|i| row(100, &format!("/page/{i}"), "Google", 1)).collect();
        store.commit(&rows, 1).unwrap();
        let by_page = |filter: Option<Filter>| SumsQuery {
            site_id: 1,
            range: DayRange { from: 100, to: 100 },
            group_by: vec![Column::Pathname],
            filter,
            kinds: vec![],
            prop_key: None,
            sums: vec![Sum::Pageviews],
        };
        let mut reader = store.reader(Duration::from_secs(60)).unwrap();
        match reader.sums(&by_page(None)) {
            Err(StoreError::TooLarge(m)) => assert!(m.contains("more than 200000 groups"), "{m}"),
            other => panic!("too many groups must be refused, got {:?}", other.map(|g| g.len())),
        }
        // A regular expression over every row takes longer than a millisecond.
        let slow = Filter::Condition {
            op: Op::Matches,
            column: Column::Pathname,
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
        let dir = std::env::temp_dir().join(format!("plumb-rollup-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut store = DuckStore::open(&dir.join("events.duckdb")).unwrap();
        let sources = ["", "Google", "Twitter"];
        for batch in 0..6 {
            let rows: Vec<Row> = (0..50)
                .map(|i| row(100 + i % 4, &format!("/p{}", i % 7), sources[(i + batch) as usize % 3], (i % 2) as i8))
                .collect();
            store.commit(&rows, batch as u64 + 1).unwrap();
        }
        let rolled = store.reader(Duration::from_secs(10)).unwrap();
        let raw = ReaderHandle { rollups: false, ..store.reader(Duration::from_secs(10)).unwrap() };
        let source_bit = Column::Source.first_session_bit().unwrap();
        let all = vec![
            Sum::Visitors,
            Sum::Visits,
            Sum::Pageviews,
            Sum::Bounces,
            Sum::DurationMs,
            Sum::EngagedMs,
            Sum::ScrollGain,
        ];
        let queries = [
            (vec![], all.clone()),
            (vec![Column::Day], all.clone()),
            (vec![Column::Source], vec![Sum::FirstSessionVisitors(source_bit), Sum::Visits, Sum::DurationMs]),
            (vec![Column::Pathname, Column::Day], vec![Sum::PageVisitors, Sum::PageVisits, Sum::Pageviews]),
            (vec![Column::Device], vec![Sum::Visitors]),
            (vec![Column::Day], vec![Sum::FirstSessionVisitors(source_bit), Sum::Bounces]),
        ];
        let mobile_google = Filter::And(vec![
            Filter::Condition {
                op: Op::Is,
                column: Column::Device,
                values: vec!["Mobile".into()],
                case_sensitive: true,
            },
            Filter::Condition {
                op: Op::Contains,
                column: Column::Source,
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
                assert!(
                    rollup::plan(&q).is_some() || rollup::cube_plan(&q).is_some(),
                    "{group_by:?} is served by a rollup"
                );
                let want = sorted(raw.sums(&q).unwrap());
                assert!(!want.is_empty());
                assert_eq!(sorted(rolled.sums(&q).unwrap()), want, "{group_by:?}");
                // Filtered by visit attributes, the visit cube serves what it can.
                let q = SumsQuery { filter: Some(mobile_google.clone()), ..q };
                if rollup::cube_plan(&q).is_some() {
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
        // A store from before rollups: they are built from its rows on open.
        store.writer.execute_batch("DROP TABLE rollup_days; DROP TABLE rollup_visits").unwrap();
        drop((raw, store));
        let store = DuckStore::open(&dir.join("events.duckdb")).unwrap();
        let raw = ReaderHandle { rollups: false, ..store.reader(Duration::from_secs(10)).unwrap() };
        check(&store.reader(Duration::from_secs(10)).unwrap(), &raw);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
