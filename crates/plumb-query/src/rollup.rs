//! Daily rollups. Every row counter is additive, so sums over a rollup are exactly the sums over
//! the rows it summarises, for the queries it can serve:
//! - `rollup_days`: per site, day and one dimension's value. Serves unfiltered queries by at most
//!   one column (plus days): the dashboard's panels without filters.
//! - `rollup_visits`: per site, day and combination of the low-cardinality visit attributes
//!   (source, channel, device, country, browser, OS). Serves queries that only group and filter
//!   by those: top stats, timeseries and those panels under filters.
//!
//! Over 100M rows they read thousands of rollup rows instead of millions of rows.

use crate::{Column, Sum, SumsQuery};
use plumb_core::Row;
use std::collections::HashMap;

/// The plain sums both rollups keep, by the measure column holding each (named as in `events`).
const PLAIN: [(&str, Sum); 9] = [
    ("visitors", Sum::Visitors),
    ("visits", Sum::Visits),
    ("pageviews", Sum::Pageviews),
    ("events", Sum::Events),
    ("bounces", Sum::Bounces),
    ("duration_ms", Sum::DurationMs),
    ("engaged_ms", Sum::EngagedMs),
    ("scroll_gain", Sum::ScrollGain),
    ("scroll_pages", Sum::ScrollPages),
];

/// A row's plain sums, in `PLAIN` order.
fn plain_sums(r: &Row) -> [i64; 9] {
    [
        r.visitors.into(),
        r.visits.into(),
        r.pageviews.into(),
        r.events.into(),
        r.bounces.into(),
        r.duration_ms,
        r.engaged_ms.into(),
        r.scroll_gain.into(),
        r.scroll_pages.into(),
    ]
}

/// 1 on a session's first row when the visitor-day had not had its value of the attribute.
fn first_session(r: &Row, bit: u16) -> i64 {
    (r.visits == 1 && r.attr_first & bit != 0).into()
}

/// The PLAIN measure holding `s`, if it is one.
fn plain_measure(s: &Sum) -> Option<&'static str> {
    PLAIN.iter().find(|(_, p)| p == s).map(|(n, _)| *n)
}

/// A rollup table: its key columns after site and day (with types), and its measures in table
/// order (PLAIN's, then its own).
pub struct RollupTable {
    pub name: &'static str,
    pub keys: &'static [(&'static str, &'static str)],
    pub extra: &'static [&'static str],
}

impl RollupTable {
    pub fn measures(&self) -> impl Iterator<Item = &'static str> {
        PLAIN.iter().map(|(n, _)| *n).chain(self.extra.iter().copied())
    }

    pub fn key_names(&self) -> String {
        self.keys.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
    }

    pub fn ddl(&self) -> String {
        let keys = self.keys.iter().map(|(n, t)| format!("{n} {t} NOT NULL"));
        let measures = self.measures().map(|m| format!("{m} BIGINT NOT NULL"));
        let columns: Vec<String> = keys.chain(measures).collect();
        format!(
            "CREATE TABLE IF NOT EXISTS {} (site_id UINTEGER NOT NULL, day INTEGER NOT NULL, {});",
            self.name,
            columns.join(", ")
        )
    }
}

pub const DAYS: RollupTable = RollupTable {
    name: "rollup_days",
    keys: &[("dim", "UTINYINT"), ("value", "VARCHAR")],
    extra: &["page_visitors", "page_visits", "first_visitors"],
};

pub const VISITS: RollupTable = RollupTable {
    name: "rollup_visits",
    keys: &[
        ("source", "VARCHAR"),
        ("channel", "VARCHAR"),
        ("device", "VARCHAR"),
        ("country", "VARCHAR"),
        ("browser", "VARCHAR"),
        ("os", "VARCHAR"),
    ],
    extra: &["first_source", "first_channel"],
};

/// Dimension 0 is the site total (value `""`); the others are these columns.
const DIMS: [Column; 19] = [
    Column::Pathname,
    Column::Hostname,
    Column::EntryPage,
    Column::Source,
    Column::Referrer,
    Column::Channel,
    Column::UtmMedium,
    Column::UtmSource,
    Column::UtmCampaign,
    Column::UtmContent,
    Column::UtmTerm,
    Column::Country,
    Column::Region,
    Column::City,
    Column::Device,
    Column::Browser,
    Column::BrowserVersion,
    Column::Os,
    Column::OsVersion,
];

fn dim_code(c: &Column) -> Option<u8> {
    let c = if *c == Column::CountryName { &Column::Country } else { c };
    DIMS.iter().position(|d| d == c).map(|i| i as u8 + 1)
}

/// The stored value of dimension `code` on a row.
fn value(row: &Row, code: u8) -> &str {
    let v = &row.visit;
    match DIMS.get(code as usize - 1) {
        Some(Column::Pathname) => &row.pathname,
        Some(Column::Hostname) => &row.hostname,
        Some(Column::EntryPage) => &row.entry_page,
        Some(Column::Source) => &v.source,
        Some(Column::Referrer) => &v.referrer,
        Some(Column::Channel) => &v.channel,
        Some(Column::UtmMedium) => &v.utm_medium,
        Some(Column::UtmSource) => &v.utm_source,
        Some(Column::UtmCampaign) => &v.utm_campaign,
        Some(Column::UtmContent) => &v.utm_content,
        Some(Column::UtmTerm) => &v.utm_term,
        Some(Column::Country) => &v.country,
        Some(Column::Region) => &v.region,
        Some(Column::City) => &v.city,
        Some(Column::Device) => &v.device,
        Some(Column::Browser) => &v.browser,
        Some(Column::BrowserVersion) => &v.browser_version,
        Some(Column::Os) => &v.os,
        Some(Column::OsVersion) => &v.os_version,
        _ => "",
    }
}

fn first_session_bit(code: u8) -> Option<u16> {
    DIMS.get((code as usize).checked_sub(1)?).and_then(Column::first_session_bit)
}

pub type Key<'a> = (u32, i32, u8, &'a str);

/// A batch's rollup rows, keyed by site, day, dimension and value.
pub fn aggregate(rows: &[Row]) -> HashMap<Key<'_>, [i64; 12]> {
    let mut out: HashMap<Key<'_>, [i64; 12]> = HashMap::new();
    for r in rows {
        let plain = plain_sums(r);
        for code in 0..=DIMS.len() as u8 {
            let first = first_session_bit(code).map_or(0, |bit| first_session(r, bit));
            let v = if code == 0 { "" } else { value(r, code) };
            let acc = out.entry((r.site_id, r.day, code, v)).or_insert([0; 12]);
            let extra = [r.page_visitors.into(), r.page_visits.into(), first];
            acc.iter_mut().zip(plain.into_iter().chain(extra)).for_each(|(a, b)| *a += b);
        }
    }
    out
}

/// `INSERT … SELECT` that fills `table` from raw rows grouped by `keys` (SQL expressions), with
/// `extra` the sums behind the table's own measures (`None`: always 0).
fn backfill(table: &RollupTable, keys: &[String], extra: &[Option<Sum>]) -> String {
    let sums: Vec<String> = PLAIN
        .iter()
        .map(|(_, s)| Some(*s))
        .chain(extra.iter().copied())
        .map(|s| s.map_or_else(|| "0".to_owned(), crate::sql::plain_sum))
        .collect();
    let keys = keys.join(", ");
    format!(
        "INSERT INTO {} SELECT site_id, day, {keys}, {} FROM events GROUP BY site_id, day, {keys}",
        table.name,
        sums.join(", ")
    )
}

/// SQL that fills the rollups from raw rows (for stores that had rows before rollups existed).
pub fn backfill_sql() -> Vec<String> {
    let days = (0..=DIMS.len() as u8).map(|code| {
        let col = if code == 0 { "''".to_owned() } else { crate::sql::plain_column(&DIMS[code as usize - 1]) };
        let first = first_session_bit(code).map(Sum::FirstSessionVisitors);
        // A cast, not a bare number: `GROUP BY 4` would mean the fourth column.
        let code = format!("CAST({code} AS UTINYINT)");
        backfill(&DAYS, &[code, col], &[Some(Sum::PageVisitors), Some(Sum::PageVisits), first])
    });
    let cube_keys: Vec<String> = CUBE.iter().map(crate::sql::plain_column).collect();
    let firsts = [Column::Source, Column::Channel].map(|c| Some(Sum::FirstSessionVisitors(first_bit(c))));
    days.chain([backfill(&VISITS, &cube_keys, &firsts)]).collect()
}

/// How a sums query reads the rollup: the dimension, where the day goes among the group
/// columns, and the measure behind each sum. `None` when it needs raw rows.
#[derive(Debug, PartialEq)]
pub struct RollupPlan {
    pub dim: u8,
    /// Group columns in the query's order: `true` for the day, `false` for the dimension value.
    pub group: Vec<bool>,
    pub measures: Vec<&'static str>,
}

pub fn plan(q: &SumsQuery) -> Option<RollupPlan> {
    if q.filter.is_some() || !q.kinds.is_empty() || q.prop_key.is_some() {
        return None;
    }
    let columns: Vec<&Column> = q.group_by.iter().filter(|c| **c != Column::Day).collect();
    if q.group_by.len() - columns.len() > 1 || columns.len() > 1 {
        return None;
    }
    let dim = match columns.first() {
        Some(c) => dim_code(c)?,
        None => 0,
    };
    let measures = measures(q, |s| match s {
        Sum::PageVisitors => Some("page_visitors"),
        Sum::PageVisits => Some("page_visits"),
        Sum::FirstSessionVisitors(bit) if first_session_bit(dim) == Some(*bit) => Some("first_visitors"),
        _ => None,
    })?;
    Some(RollupPlan { dim, group: q.group_by.iter().map(|c| *c == Column::Day).collect(), measures })
}

impl RollupPlan {
    /// SQL over `rollup_days`; parameters: site, first day, last day.
    pub fn sql(&self) -> String {
        let mut select: Vec<String> = self
            .group
            .iter()
            .map(|is_day| if *is_day { "CAST(day AS VARCHAR)".to_owned() } else { "value".to_owned() })
            .collect();
        select.extend(self.measures.iter().map(|m| format!("CAST(coalesce(sum({m}), 0) AS BIGINT)")));
        let mut sql = format!(
            "SELECT {} FROM {} WHERE site_id = ? AND day BETWEEN ? AND ? AND dim = {}",
            select.join(", "),
            DAYS.name,
            self.dim
        );
        if !self.group.is_empty() {
            let positions: Vec<String> = (1..=self.group.len()).map(|i| i.to_string()).collect();
            sql.push_str(&format!(" GROUP BY {}", positions.join(", ")));
        }
        sql
    }
}

/// The visit attributes of `rollup_visits`, in table order (the same names as in `events`, see
/// `VISITS.keys`).
const CUBE: [Column; 6] =
    [Column::Source, Column::Channel, Column::Device, Column::Country, Column::Browser, Column::Os];

pub type CubeKey<'a> = (u32, i32, [&'a str; 6]);

fn first_bit(c: Column) -> u16 {
    c.first_session_bit().expect("source and channel vary between sessions")
}

pub fn cube_aggregate(rows: &[Row]) -> HashMap<CubeKey<'_>, [i64; 11]> {
    let (source_bit, channel_bit) = (first_bit(Column::Source), first_bit(Column::Channel));
    let mut out: HashMap<CubeKey<'_>, [i64; 11]> = HashMap::new();
    for r in rows {
        let v = &r.visit;
        let key = (r.site_id, r.day, [&*v.source, &v.channel, &v.device, &v.country, &v.browser, &v.os]);
        let acc = out.entry(key).or_insert([0; 11]);
        let extra = [first_session(r, source_bit), first_session(r, channel_bit)];
        acc.iter_mut().zip(plain_sums(r).into_iter().chain(extra)).for_each(|(a, b)| *a += b);
    }
    out
}

/// The `rollup_visits` measure behind each sum of `q`, when it only groups and filters by the
/// cube's attributes; `None` when it needs raw rows.
pub fn cube_plan(q: &SumsQuery) -> Option<Vec<&'static str>> {
    if !q.kinds.is_empty() || q.prop_key.is_some() || q.filter.as_ref().is_some_and(crate::Filter::has_goal) {
        return None;
    }
    let mut cols: Vec<Column> = q.group_by.clone();
    if let Some(f) = &q.filter {
        f.columns(&mut cols);
    }
    let in_cube = |c: &Column| matches!(c, Column::Day | Column::CountryName) || CUBE.contains(c);
    if !cols.iter().all(in_cube) {
        return None;
    }
    let (source_bit, channel_bit) = (first_bit(Column::Source), first_bit(Column::Channel));
    measures(q, |s| match s {
        Sum::FirstSessionVisitors(b) if *b == source_bit => Some("first_source"),
        Sum::FirstSessionVisitors(b) if *b == channel_bit => Some("first_channel"),
        _ => None,
    })
}

/// The measure behind each sum of `q`: a plain one, or what `extra` names; `None` if any has none.
fn measures(q: &SumsQuery, extra: impl Fn(&Sum) -> Option<&'static str>) -> Option<Vec<&'static str>> {
    q.sums.iter().map(|s| plain_measure(s).or_else(|| extra(s))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DayRange, Filter, Op};

    fn q(group_by: Vec<Column>, sums: Vec<Sum>) -> SumsQuery {
        SumsQuery {
            site_id: 1,
            range: DayRange { from: 0, to: 9 },
            group_by,
            filter: None,
            kinds: vec![],
            prop_key: None,
            sums,
        }
    }

    #[test]
    fn only_unfiltered_single_column_queries_use_the_rollup() {
        let source_bit = Column::Source.first_session_bit().unwrap();
        let p = plan(&q(vec![Column::Source, Column::Day], vec![Sum::FirstSessionVisitors(source_bit), Sum::Visits]));
        assert_eq!(
            p,
            Some(RollupPlan { dim: 4, group: vec![false, true], measures: vec!["first_visitors", "visits"] })
        );
        assert!(plan(&q(vec![], vec![Sum::Visitors, Sum::Bounces])).is_some());
        // Another column's first-session bit, two columns, hours, names, or a filter: raw rows.
        let entry_bit = Column::EntryPage.first_session_bit().unwrap();
        assert_eq!(plan(&q(vec![Column::Source], vec![Sum::FirstSessionVisitors(entry_bit)])), None);
        assert_eq!(plan(&q(vec![Column::Source, Column::Device], vec![Sum::Visits])), None);
        assert_eq!(plan(&q(vec![Column::Day, Column::Hour], vec![Sum::HourVisitors])), None);
        assert_eq!(plan(&q(vec![Column::EventName], vec![Sum::Events])), None);
        let mut filtered = q(vec![], vec![Sum::Visits]);
        filtered.filter = Some(Filter::Condition {
            op: Op::Is,
            column: Column::Device,
            values: vec!["Mobile".into()],
            case_sensitive: true,
        });
        assert_eq!(plan(&filtered), None);
        // ...which the visit cube serves, unlike a filter on pages.
        assert_eq!(cube_plan(&filtered), Some(vec!["visits"]));
        let mut by_page = q(vec![Column::Source], vec![Sum::Visits]);
        by_page.filter = Some(Filter::Condition {
            op: Op::Is,
            column: Column::Pathname,
            values: vec!["/".into()],
            case_sensitive: true,
        });
        assert_eq!(cube_plan(&by_page), None);
        assert_eq!(cube_plan(&q(vec![Column::Source], vec![Sum::PageVisitors])), None);
    }
}
