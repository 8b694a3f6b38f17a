//! DuckDB backend: one file, opened read-write by this process only. The pipeline writes through
//! one connection with the Appender; readers share clones of it.

use crate::query::{GroupSums, SumsBackend, SumsQuery};
use crate::sql::{DuckDialect, Param, compile};
use crate::{EventWriter, Result, StoreError};
use duckdb::{Connection, params};
use plumb_core::Row;
use plumb_core::row::RowProp;
use std::path::Path;
use std::sync::Mutex;

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

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS events (
    site_id UINTEGER NOT NULL,
    day INTEGER NOT NULL,
    hour UTINYINT NOT NULL,
    kind UTINYINT NOT NULL,
    name VARCHAR NOT NULL,
    hostname VARCHAR NOT NULL,
    pathname VARCHAR NOT NULL,
    entry_page VARCHAR NOT NULL,
    source VARCHAR NOT NULL,
    referrer VARCHAR NOT NULL,
    channel VARCHAR NOT NULL,
    utm_medium VARCHAR NOT NULL,
    utm_source VARCHAR NOT NULL,
    utm_campaign VARCHAR NOT NULL,
    utm_content VARCHAR NOT NULL,
    utm_term VARCHAR NOT NULL,
    country VARCHAR NOT NULL,
    region VARCHAR NOT NULL,
    city VARCHAR NOT NULL,
    device VARCHAR NOT NULL,
    browser VARCHAR NOT NULL,
    browser_version VARCHAR NOT NULL,
    os VARCHAR NOT NULL,
    os_version VARCHAR NOT NULL,
    props VARCHAR NOT NULL,
    revenue_micros BIGINT,
    revenue_currency VARCHAR,
    pageviews TINYINT NOT NULL,
    events TINYINT NOT NULL,
    visitors TINYINT NOT NULL,
    visits TINYINT NOT NULL,
    bounces TINYINT NOT NULL,
    exits TINYINT NOT NULL,
    page_visitors TINYINT NOT NULL,
    page_visits TINYINT NOT NULL,
    hour_visitors TINYINT NOT NULL,
    name_visitors TINYINT NOT NULL,
    attr_first USMALLINT NOT NULL,
    duration_ms BIGINT NOT NULL,
    engaged_ms UINTEGER NOT NULL,
    scroll_gain UTINYINT NOT NULL,
    scroll_pages TINYINT NOT NULL,
    exit_visitors TINYINT DEFAULT 0
);
-- Stores created before `exit_visitors` existed get it (as the last column, like new ones;
-- DuckDB cannot add a NOT NULL column this way, and every writer sets it).
ALTER TABLE events ADD COLUMN IF NOT EXISTS exit_visitors TINYINT DEFAULT 0;
CREATE TABLE IF NOT EXISTS pipeline_position (id INTEGER PRIMARY KEY, seq UBIGINT NOT NULL);
";

/// The write side; [`DuckStore::reader`] hands out read connections to the same database.
pub struct DuckStore {
    writer: Connection,
}

impl DuckStore {
    pub fn open(path: &Path) -> Result<Self> {
        let writer = Connection::open(path).map_err(backend)?;
        writer.execute_batch(SCHEMA).map_err(backend)?;
        Ok(Self { writer })
    }

    pub fn reader(&self) -> Result<ReaderHandle> {
        Ok(ReaderHandle { conn: Mutex::new(self.writer.try_clone().map_err(backend)?) })
    }
}

impl EventWriter for DuckStore {
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
        tx.execute("INSERT OR REPLACE INTO pipeline_position VALUES (1, ?)", params![position]).map_err(backend)?;
        tx.commit().map_err(backend)
    }
}

pub struct ReaderHandle {
    conn: Mutex<Connection>,
}

impl SumsBackend for ReaderHandle {
    fn sums(&self, q: &SumsQuery) -> Result<Vec<GroupSums>> {
        let (sql, params) = compile(&DuckDialect, q);
        let conn = self.conn.lock().unwrap();
        let mut stmt = conn.prepare_cached(&sql).map_err(backend)?;
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
