//! Fathom Lite's database (SQLite file, MySQL/MariaDB or PostgreSQL), read as it is after its
//! last migration:
//! - `sites` (`id`, `tracking_id`, `name`); stats rows of a site id no site has (rows from before
//!   sites existed belong to site 1) are read as that site's too.
//! - `site_stats`, `page_stats`, `referrer_stats`: sums per site and hour (`ts`, the server's
//!   clock, read as UTC; rows from before Fathom Lite 1.2 hold a whole day at midnight), with
//!   `hostname_id`/`pathname_id` into the shared `hostnames` (`scheme://host`) and `pathnames`
//!   tables. `bounce_rate` and `avg_duration` are running means, over sessions (sites), entries
//!   (pages) or pageviews (referrers), and over `known_durations`: summed here as
//!   `bounce_rate × that count` bounces and `avg_duration × known_durations` seconds.
//! - `pageviews`: raw hits not yet summed (Fathom Lite deletes them once it has), counted here
//!   by their flags as its aggregator would.
//!
//! Each Fathom Lite site becomes totals, pages, entry pages, referrers, sources and channels per
//! local day of the Plumb site it goes to. Fathom Lite keeps no sessions per page and no
//! visitors per entry page: page visitors stand for a page's visits, and entries for entry
//! pages' visitors. A referred pageview starts a session (Fathom Lite sends a referrer only from
//! another site), so what the day's sessions, visitors and pageviews have beyond the referred ones
//! is its direct source.

use crate::{DaySums, Measures, Report};
use anyhow::{Context, Result, anyhow, bail};
use chrono_tz::Tz;
use plumb_core::source::classify;
use plumb_core::url::parse_referrer;
use plumb_query::Attr;
use plumb_query::imported::Dim;
use plumb_query::imported::ImportedRow;
use std::collections::BTreeMap;

/// A value read from the database.
#[derive(Debug, Clone, PartialEq)]
enum Cell {
    Null,
    Int(i64),
    Float(f64),
    Text(String),
}

impl Cell {
    fn int(&self) -> i64 {
        match self {
            Cell::Int(i) => *i,
            Cell::Float(f) => *f as i64,
            Cell::Text(t) => t.trim().parse().unwrap_or(0),
            Cell::Null => 0,
        }
    }

    fn float(&self) -> f64 {
        match self {
            Cell::Int(i) => *i as f64,
            Cell::Float(f) => *f,
            Cell::Text(t) => t.trim().parse().unwrap_or(0.0),
            Cell::Null => 0.0,
        }
    }

    fn text(&self) -> String {
        match self {
            Cell::Text(t) => t.clone(),
            Cell::Int(i) => i.to_string(),
            Cell::Float(f) => f.to_string(),
            Cell::Null => String::new(),
        }
    }
}

/// A statement's parameter.
enum Param {
    Int(i64),
    Text(String),
}

enum Db {
    Sqlite(rusqlite::Connection),
    Postgres(Box<postgres::Client>),
    Mysql(Box<mysql::Conn>),
}

/// Rows fetched per round trip from a server.
const BATCH: i32 = 10_000;

impl Db {
    /// `expr` as an integer; flags (booleans in PostgreSQL) as 0 or 1; NULL as 0.
    fn int(&self, expr: &str) -> String {
        match self {
            Db::Sqlite(_) => format!("CAST(COALESCE({expr}, 0) AS INTEGER)"),
            Db::Postgres(_) => format!("CAST(COALESCE({expr}, 0) AS BIGINT)"),
            Db::Mysql(_) => format!("CAST(COALESCE({expr}, 0) AS SIGNED)"),
        }
    }

    fn flag(&self, expr: &str, null_as: bool) -> String {
        match self {
            Db::Postgres(_) => format!("CASE WHEN COALESCE({expr}, {null_as}) THEN 1 ELSE 0 END"),
            _ => self.int(&format!("COALESCE({expr}, {})", i32::from(null_as))),
        }
    }

    fn float(&self, expr: &str) -> String {
        match self {
            Db::Sqlite(_) => format!("CAST(COALESCE({expr}, 0) AS REAL)"),
            Db::Postgres(_) => format!("CAST(COALESCE({expr}, 0) AS DOUBLE PRECISION)"),
            Db::Mysql(_) => format!("CAST(COALESCE({expr}, 0) AS DOUBLE)"),
        }
    }

    fn text(&self, expr: &str) -> String {
        let ty = if matches!(self, Db::Mysql(_)) { "CHAR" } else { "TEXT" };
        format!("CAST(COALESCE({expr}, '') AS {ty})")
    }

    /// A timestamp as text, `YYYY-MM-DD HH:MM:SS` and whatever SQLite's driver wrote after it.
    fn time(&self, expr: &str) -> String {
        match self {
            Db::Sqlite(_) => format!("CAST({expr} AS TEXT)"),
            Db::Postgres(_) => format!("to_char({expr}, 'YYYY-MM-DD HH24:MI:SS')"),
            Db::Mysql(_) => format!("DATE_FORMAT({expr}, '%Y-%m-%d %H:%i:%s')"),
        }
    }

    /// `?` placeholders as the driver spells them.
    fn placeholders(&self, sql: &str) -> String {
        match self {
            Db::Postgres(_) => {
                let mut n = 0;
                sql.chars()
                    .map(|c| {
                        if c == '?' {
                            n += 1;
                            format!("${n}")
                        } else {
                            c.to_string()
                        }
                    })
                    .collect()
            }
            _ => sql.to_owned(),
        }
    }

    /// Calls `f` with each row of `sql`, streamed.
    fn each(&mut self, sql: &str, params: &[Param], mut f: impl FnMut(&[Cell]) -> Result<()>) -> Result<()> {
        let sql = self.placeholders(sql);
        let failed = |e: &dyn std::fmt::Display| anyhow!("reading Fathom Lite: {e}\n  in: {sql}");
        match self {
            Db::Sqlite(conn) => {
                let mut stmt = conn.prepare(&sql).map_err(|e| failed(&e))?;
                let params: Vec<rusqlite::types::Value> = params
                    .iter()
                    .map(|p| match p {
                        Param::Int(i) => rusqlite::types::Value::Integer(*i),
                        Param::Text(t) => rusqlite::types::Value::Text(t.clone()),
                    })
                    .collect();
                let width = stmt.column_count();
                let mut rows = stmt.query(rusqlite::params_from_iter(params)).map_err(|e| failed(&e))?;
                let mut cells = Vec::with_capacity(width);
                while let Some(row) = rows.next().map_err(|e| failed(&e))? {
                    cells.clear();
                    for i in 0..width {
                        use rusqlite::types::ValueRef;
                        cells.push(match row.get_ref(i).map_err(|e| failed(&e))? {
                            ValueRef::Null => Cell::Null,
                            ValueRef::Integer(i) => Cell::Int(i),
                            ValueRef::Real(r) => Cell::Float(r),
                            ValueRef::Text(t) | ValueRef::Blob(t) => {
                                Cell::Text(String::from_utf8_lossy(t).into_owned())
                            }
                        });
                    }
                    f(&cells)?;
                }
                Ok(())
            }
            Db::Postgres(client) => {
                let params: Vec<Box<dyn postgres::types::ToSql + Sync>> = params
                    .iter()
                    .map(|p| -> Box<dyn postgres::types::ToSql + Sync> {
                        match p {
                            // Fathom Lite's ids are INTEGER (int4) columns there.
                            Param::Int(i) => match i32::try_from(*i) {
                                Ok(i) => Box::new(i),
                                Err(_) => Box::new(*i),
                            },
                            Param::Text(t) => Box::new(t.clone()),
                        }
                    })
                    .collect();
                let refs: Vec<&(dyn postgres::types::ToSql + Sync)> = params.iter().map(|b| b.as_ref()).collect();
                let mut tx = client.transaction().map_err(|e| failed(&e))?;
                let portal = tx.bind(sql.as_str(), &refs).map_err(|e| failed(&e))?;
                loop {
                    let rows = tx.query_portal(&portal, BATCH).map_err(|e| failed(&e))?;
                    for row in &rows {
                        let cells: Vec<Cell> = (0..row.len()).map(|i| pg_cell(row, i)).collect::<Result<_>>()?;
                        f(&cells)?;
                    }
                    if rows.len() < BATCH as usize {
                        return Ok(());
                    }
                }
            }
            Db::Mysql(conn) => {
                use mysql::prelude::Queryable;
                let params: Vec<mysql::Value> = params
                    .iter()
                    .map(|p| match p {
                        Param::Int(i) => mysql::Value::Int(*i),
                        Param::Text(t) => mysql::Value::Bytes(t.clone().into_bytes()),
                    })
                    .collect();
                let result = conn.exec_iter(sql.as_str(), params).map_err(|e| failed(&e))?;
                for row in result {
                    let row = row.map_err(|e| failed(&e))?;
                    let cells: Vec<Cell> = row.unwrap().into_iter().map(mysql_cell).collect();
                    f(&cells)?;
                }
                Ok(())
            }
        }
    }
}

fn pg_cell(row: &postgres::Row, i: usize) -> Result<Cell> {
    use postgres::types::Type;
    let ty = row.columns()[i].type_().clone();
    let cell = if ty == Type::INT8 {
        row.try_get::<_, Option<i64>>(i)?.map_or(Cell::Null, Cell::Int)
    } else if ty == Type::FLOAT8 {
        row.try_get::<_, Option<f64>>(i)?.map_or(Cell::Null, Cell::Float)
    } else if ty == Type::INT4 {
        row.try_get::<_, Option<i32>>(i)?.map_or(Cell::Null, |v| Cell::Int(v.into()))
    } else {
        row.try_get::<_, Option<String>>(i)?.map_or(Cell::Null, Cell::Text)
    };
    Ok(cell)
}

fn mysql_cell(v: mysql::Value) -> Cell {
    match v {
        mysql::Value::NULL => Cell::Null,
        mysql::Value::Int(i) => Cell::Int(i),
        mysql::Value::UInt(u) => Cell::Int(u as i64),
        mysql::Value::Float(f) => Cell::Float(f.into()),
        mysql::Value::Double(d) => Cell::Float(d),
        mysql::Value::Bytes(b) => Cell::Text(String::from_utf8_lossy(&b).into_owned()),
        other => Cell::Text(format!("{other:?}")),
    }
}

/// A Fathom Lite site, and the host its pages were mostly on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FathomSite {
    pub id: i64,
    /// What its snippets send as `sid` (none for the site of rows from before sites existed).
    pub tracking_id: Option<String>,
    pub name: String,
    /// The host (no scheme, no `www.`) most of its pageviews were on, if it has any.
    pub host: Option<String>,
}

/// An open Fathom Lite database.
pub struct FathomDb {
    db: Db,
}

/// A source without its password or parameters (which may hold one), for reports and the
/// import's label.
pub fn label(source: &str) -> String {
    if url_parts(source).is_none() {
        return source.to_owned();
    }
    let source = source.split('?').next().unwrap_or_default();
    match source.find("://").zip(source.rfind('@')) {
        Some((scheme_end, at)) if at > scheme_end => {
            let user = source[scheme_end + 3..at].split(':').next().unwrap_or_default();
            format!("{}://{user}@{}", &source[..scheme_end], &source[at + 1..])
        }
        _ => source.to_owned(),
    }
}

fn url_parts(source: &str) -> Option<&str> {
    ["mysql://", "mariadb://", "postgres://", "postgresql://"].into_iter().find(|p| source.starts_with(p))
}

impl FathomDb {
    /// Opens `source`: a SQLite file's path, or a `mysql://` / `postgres://` URL.
    pub fn open(source: &str) -> Result<FathomDb> {
        let db = match url_parts(source) {
            Some("mysql://" | "mariadb://") => {
                let url = source.replacen("mariadb://", "mysql://", 1);
                let opts = mysql::Opts::from_url(&url).with_context(|| format!("{} is no MySQL URL", label(source)))?;
                let conn = mysql::Conn::new(opts).with_context(|| format!("cannot connect to {}", label(source)))?;
                Db::Mysql(Box::new(conn))
            }
            Some(_) => {
                let client = postgres::Client::connect(source, postgres::NoTls)
                    .with_context(|| format!("cannot connect to {}", label(source)))?;
                Db::Postgres(Box::new(client))
            }
            None => {
                let path = std::path::Path::new(source);
                if !path.is_file() {
                    bail!(
                        "{source} is no file (a Fathom Lite database is a SQLite file, or a mysql:// or postgres:// URL)"
                    );
                }
                let conn = rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
                    .with_context(|| format!("cannot open {source}"))?;
                Db::Sqlite(conn)
            }
        };
        let mut fathom = FathomDb { db };
        fathom.check().with_context(|| format!("{} is no Fathom Lite database", label(source)))?;
        Ok(fathom)
    }

    /// Refuses a database without Fathom Lite's tables (or from before its hourly stats).
    fn check(&mut self) -> Result<()> {
        for (table, column) in [
            ("sites", "tracking_id"),
            ("site_stats", "known_durations"),
            ("page_stats", "entries"),
            ("referrer_stats", "groupname"),
            ("hostnames", "name"),
            ("pathnames", "name"),
            ("pageviews", "is_finished"),
        ] {
            self.db
                .each(&format!("SELECT {column} FROM {table} WHERE 1 = 0"), &[], |_| Ok(()))
                .with_context(|| format!("it has no table {table} with a column {column}"))?;
        }
        Ok(())
    }

    /// Every site, with the sites of stats rows no site row has.
    pub fn sites(&mut self) -> Result<Vec<FathomSite>> {
        let mut sites: BTreeMap<i64, FathomSite> = BTreeMap::new();
        let (id, tracking, name) = (self.db.int("id"), self.db.text("tracking_id"), self.db.text("name"));
        self.db.each(&format!("SELECT {id}, {tracking}, {name} FROM sites"), &[], |r| {
            let tracking_id = Some(r[1].text()).filter(|t| !t.is_empty());
            sites.insert(r[0].int(), FathomSite { id: r[0].int(), tracking_id, name: r[2].text(), host: None });
            Ok(())
        })?;
        let site_id = self.db.int("site_id");
        for table in ["site_stats", "page_stats", "referrer_stats"] {
            self.db.each(&format!("SELECT DISTINCT {site_id} FROM {table}"), &[], |r| {
                let id = r[0].int();
                sites.entry(id).or_insert_with(|| FathomSite {
                    id,
                    tracking_id: None,
                    name: format!("site {id}"),
                    host: None,
                });
                Ok(())
            })?;
        }
        for site in sites.values_mut() {
            site.host = self.main_host(site.id)?;
        }
        Ok(sites.into_values().collect())
    }

    fn main_host(&mut self, site_id: i64) -> Result<Option<String>> {
        let (name, views) = (self.db.text("h.name"), self.db.int("sum(p.pageviews)"));
        let mut host = None;
        self.db.each(
            &format!(
                "SELECT {name}, {views} FROM page_stats p JOIN hostnames h ON h.id = p.hostname_id \
                 WHERE p.site_id = ? GROUP BY h.name ORDER BY 2 DESC, 1 LIMIT 1"
            ),
            &[Param::Int(site_id)],
            |r| {
                host = Some(bare_host(&r[0].text()));
                Ok(())
            },
        )?;
        Ok(host.filter(|h: &String| !h.is_empty()))
    }

    /// How many rows of the site's the import reads (for its progress).
    fn count(&mut self, site: &FathomSite) -> Result<u64> {
        let mut total = 0;
        let n = self.db.int("count(*)");
        for table in ["site_stats", "page_stats", "referrer_stats"] {
            self.db.each(&format!("SELECT {n} FROM {table} WHERE site_id = ?"), &[Param::Int(site.id)], |r| {
                total += r[0].int().max(0) as u64;
                Ok(())
            })?;
        }
        self.db.each(
            &format!("SELECT {n} FROM pageviews WHERE site_tracking_id = ?"),
            &[Param::Text(site.tracking_id.clone().unwrap_or_default())],
            |r| {
                total += r[0].int().max(0) as u64;
                Ok(())
            },
        )?;
        Ok(total)
    }

    /// Reads one Fathom Lite site into rows of Plumb site `site_id` (days in `tz`).
    pub fn read_site(
        &mut self,
        site: &FathomSite,
        site_id: u32,
        tz: Tz,
        sink: &mut dyn FnMut(ImportedRow) -> Result<()>,
    ) -> Result<Report> {
        let total = self.count(site)?;
        let mut sums = DaySums::new(site_id, sink);
        sums.progress = crate::Progress::new(&format!("{total} rows"), total);
        let db = &mut self.db;
        // Per day: all sessions, and those a referrer brought (the rest are direct).
        let mut totals: BTreeMap<i32, Measures> = BTreeMap::new();
        let mut referred: BTreeMap<i32, Measures> = BTreeMap::new();
        let add_to = |map: &mut BTreeMap<i32, Measures>, day: i32, m: Measures| {
            map.entry(day).or_default().iter_mut().zip(m).for_each(|(s, v)| *s += v);
        };
        let (int, float, time) = (|e: &str| db.int(e), |e: &str| db.float(e), |e: &str| db.time(e));
        let site_sql = format!(
            "SELECT {}, {}, {}, {}, {}, {}, {} FROM site_stats WHERE site_id = ? ORDER BY ts",
            time("ts"),
            int("visitors"),
            int("sessions"),
            int("pageviews"),
            float("bounce_rate"),
            float("avg_duration"),
            int("known_durations")
        );
        let page_sql = format!(
            "SELECT {}, {}, {}, {}, {}, {}, {}, {} FROM page_stats p LEFT JOIN pathnames pa ON pa.id = p.pathname_id \
             WHERE p.site_id = ? ORDER BY p.ts",
            time("p.ts"),
            db.text("pa.name"),
            int("p.visitors"),
            int("p.pageviews"),
            int("p.entries"),
            float("p.bounce_rate"),
            float("p.avg_duration"),
            int("p.known_durations")
        );
        let referrer_sql = format!(
            "SELECT {}, {}, {}, {}, {}, {}, {}, {} FROM referrer_stats r \
             LEFT JOIN hostnames h ON h.id = r.hostname_id LEFT JOIN pathnames pa ON pa.id = r.pathname_id \
             WHERE r.site_id = ? ORDER BY r.ts",
            time("r.ts"),
            db.text("h.name"),
            db.text("pa.name"),
            int("r.visitors"),
            int("r.pageviews"),
            float("r.bounce_rate"),
            float("r.avg_duration"),
            int("r.known_durations")
        );
        // Raw hits of the site's tracking id (and, for site 1, of snippets that sent none).
        let mut raw_where = "site_tracking_id = ?".to_owned();
        let tracking = site.tracking_id.clone().unwrap_or_default();
        if site.id == 1 {
            raw_where = format!("({raw_where} OR site_tracking_id = '' OR site_tracking_id IS NULL)");
        } else if site.tracking_id.is_none() {
            // A site no site row names has no tracking id: raw hits without one are site 1's.
            raw_where = format!("{raw_where} AND 1 = 0");
        }
        let raw_sql = format!(
            "SELECT {}, {}, {}, {}, {}, {}, {}, {}, {} FROM pageviews WHERE {raw_where} ORDER BY timestamp",
            time("timestamp"),
            db.text("hostname"),
            db.text("pathname"),
            db.flag("is_new_visitor", false),
            db.flag("is_new_session", false),
            db.flag("is_unique", false),
            db.flag("is_bounce", true),
            db.text("referrer"),
            int("duration")
        );
        let day_of = |text: &str, report: &mut Report, table: &str| -> Option<i32> {
            match utc_ms(text) {
                Some(ms) => Some(plumb_core::time::local_day(tz, ms)),
                None => {
                    report.skip(format!("{table} rows with an unreadable time"));
                    None
                }
            }
        };
        db.each(&site_sql, &[Param::Int(site.id)], |r| {
            sums.record(1);
            let Some(day) = day_of(&r[0].text(), &mut sums.report, "site_stats") else { return Ok(()) };
            let (visitors, sessions, pageviews) = (r[1].int(), r[2].int(), r[3].int());
            let m =
                [visitors, sessions, pageviews, times(r[4].float(), sessions), ms(r[5].float(), r[6].int()), pageviews];
            add_to(&mut totals, day, m);
            sums.add(day, Dim::Total, "", m)
        })?;
        db.each(&page_sql, &[Param::Int(site.id)], |r| {
            sums.record(1);
            let Some(day) = day_of(&r[0].text(), &mut sums.report, "page_stats") else { return Ok(()) };
            let path = r[1].text();
            let (visitors, pageviews, entries) = (r[2].int(), r[3].int(), r[4].int());
            sums.add(
                day,
                Dim::Attr(Attr::Pathname),
                &path,
                [visitors, visitors, pageviews, 0, ms(r[6].float(), r[7].int()), pageviews],
            )?;
            if entries > 0 {
                sums.add(
                    day,
                    Dim::Attr(Attr::EntryPage),
                    &path,
                    [entries, entries, 0, times(r[5].float(), entries), 0, 0],
                )?;
            }
            Ok(())
        })?;
        db.each(&referrer_sql, &[Param::Int(site.id)], |r| {
            sums.record(1);
            let Some(day) = day_of(&r[0].text(), &mut sums.report, "referrer_stats") else { return Ok(()) };
            let Some((referrer, host)) = parse_referrer(&format!("{}{}", r[1].text(), r[2].text())) else {
                sums.report.skip("referrer_stats rows whose referrer is no http(s) URL");
                return Ok(());
            };
            let (visitors, pageviews) = (r[3].int(), r[4].int());
            let m = [
                visitors,
                pageviews,
                pageviews,
                times(r[5].float(), pageviews),
                ms(r[6].float(), r[7].int()),
                pageviews,
            ];
            add_to(&mut referred, day, m);
            referral(&mut sums, day, &referrer, &host, m)
        })?;
        db.each(&raw_sql, &[Param::Text(tracking)], |r| {
            sums.record(1);
            let Some(day) = day_of(&r[0].text(), &mut sums.report, "pageviews") else { return Ok(()) };
            let (path, new_visitor, new_session, unique) = (r[2].text(), r[3].int(), r[4].int(), r[5].int());
            let bounce = r[6].int();
            let duration = r[8].int().max(0) * 1000;
            let m = [new_visitor, new_session, 1, new_session * bounce, duration, 1];
            add_to(&mut totals, day, m);
            sums.add(day, Dim::Total, "", m)?;
            sums.add(day, Dim::Attr(Attr::Pathname), &path, [unique, unique, 1, 0, duration, 1])?;
            if new_session == 1 {
                sums.add(day, Dim::Attr(Attr::EntryPage), &path, [1, 1, 0, bounce, 0, 0])?;
            }
            let raw_referrer = r[7].text();
            if !raw_referrer.is_empty() {
                match parse_referrer(&raw_referrer) {
                    Some((referrer, host)) => {
                        let m = [new_visitor, 1, 1, bounce, duration, 1];
                        add_to(&mut referred, day, m);
                        referral(&mut sums, day, &referrer, &host, m)?;
                    }
                    None => sums.report.skip("pageviews whose referrer is no http(s) URL (counted as direct)"),
                }
            }
            Ok(())
        })?;
        // What no referrer brought came directly.
        let direct = classify(None, "", "", "");
        for (day, total) in &totals {
            let by_referrer = referred.get(day).copied().unwrap_or_default();
            let m: Measures = std::array::from_fn(|i| (total[i] - by_referrer[i]).max(0));
            if m.iter().any(|v| *v > 0) {
                sums.add(*day, Dim::Attr(Attr::Referrer), "", m)?;
                sums.add(*day, Dim::Attr(Attr::Source), &direct.source, m)?;
                sums.add(*day, Dim::Attr(Attr::Channel), &direct.channel, m)?;
            }
        }
        sums.finish()
    }
}

/// A referral's rows: by referrer, source and channel.
fn referral<S: FnMut(ImportedRow) -> Result<()>>(
    sums: &mut DaySums<S>,
    day: i32,
    referrer: &str,
    host: &str,
    m: Measures,
) -> Result<()> {
    let source = classify(Some(host), "", "", "");
    sums.add(day, Dim::Attr(Attr::Referrer), referrer, m)?;
    sums.add(day, Dim::Attr(Attr::Source), &source.source, m)?;
    sums.add(day, Dim::Attr(Attr::Channel), &source.channel, m)
}

/// A running mean times its count, rounded: the sum it was the mean of.
fn times(mean: f64, count: i64) -> i64 {
    (mean * count as f64).round() as i64
}

/// Milliseconds of `known` durations averaging `mean_s` seconds.
fn ms(mean_s: f64, known: i64) -> i64 {
    (mean_s * known as f64 * 1000.0).round() as i64
}

/// `https://www.Example.com:8080` → `example.com:8080`.
fn bare_host(name: &str) -> String {
    let host = name.split_once("://").map_or(name, |(_, h)| h);
    let host = host.split('/').next().unwrap_or_default();
    plumb_core::url::normalize_hostname(host)
}

/// A stored time (`YYYY-MM-DD HH:MM:SS`, `T` for the space, fractions and an offset or `Z`
/// after it allowed) in milliseconds since the epoch; without an offset it is UTC.
fn utc_ms(text: &str) -> Option<i64> {
    let text = text.trim();
    let head = text.get(..19)?.replacen('T', " ", 1);
    let naive = chrono::NaiveDateTime::parse_from_str(&head, "%Y-%m-%d %H:%M:%S").ok()?;
    let mut rest = &text[19..];
    if let Some(fraction) = rest.strip_prefix('.') {
        rest = fraction.trim_start_matches(|c: char| c.is_ascii_digit());
    }
    let rest = rest.trim_start();
    let offset_s = match rest {
        "" | "Z" | "UTC" | "+0000 UTC" => 0,
        _ => {
            let (sign, hm) = match rest.as_bytes()[0] {
                b'+' => (1, &rest[1..]),
                b'-' => (-1, &rest[1..]),
                _ => return None,
            };
            let hm: String = hm.chars().filter(char::is_ascii_digit).take(4).collect();
            if hm.len() != 4 {
                return None;
            }
            let (h, m): (i64, i64) = (hm[..2].parse().ok()?, hm[2..].parse().ok()?);
            sign * (h * 3600 + m * 60)
        }
    };
    Some((naive.and_utc().timestamp() - offset_s) * 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_as_fathom_lite_and_its_drivers_store_them() {
        let hour = utc_ms("2019-03-04 13:00:00").unwrap();
        assert_eq!(utc_ms("2019-03-04T13:00:00Z"), Some(hour));
        assert_eq!(utc_ms("2019-03-04 15:00:00.123456789+02:00"), Some(hour));
        assert_eq!(utc_ms("2019-03-04 08:30:00 -04:30"), Some(hour));
        assert_eq!(utc_ms("2019-03-04"), None);
        assert_eq!(utc_ms("yesterday at noon"), None);
    }

    #[test]
    fn hosts_and_labels() {
        assert_eq!(bare_host("https://www.Example.com"), "example.com");
        assert_eq!(label("mysql://fathom:secret@db:3306/fathom"), "mysql://fathom@db:3306/fathom");
        assert_eq!(label("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(label("postgres://h/db?user=u&password=secret"), "postgres://h/db");
        assert_eq!(label("/var/lib/fathom.db"), "/var/lib/fathom.db");
        assert_eq!(times(0.25, 8), 2);
        assert_eq!(ms(1.5, 4), 6000);
    }
}
