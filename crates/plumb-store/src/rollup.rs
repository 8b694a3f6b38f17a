//! Daily rollups. Every row counter is additive, so sums over a rollup are exactly the sums over
//! the rows it summarises, for the queries it can serve:
//! - `rollup_days`: per site, day and one dimension's value. Serves unfiltered queries by at most
//!   one column (plus days): the dashboard's panels without filters.
//! - `rollup_visits`: per site, day and combination of the low-cardinality visit attributes
//!   (source, channel, device, country, browser, OS). Serves queries that only group and filter
//!   by those: top stats, timeseries and those panels under filters.
//!
//! Over 100M rows they read thousands of rollup rows instead of millions of rows.

use crate::query::{Column, Sum, SumsQuery};
use plumb_core::Row;
use std::collections::HashMap;

/// Rolled-up measures, in table order.
pub const MEASURES: [&str; 12] = [
    "visitors",
    "visits",
    "pageviews",
    "events",
    "bounces",
    "duration_ms",
    "page_visitors",
    "page_visits",
    "first_visitors",
    "engaged_ms",
    "scroll_gain",
    "scroll_pages",
];

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
        let base = [
            r.visitors as i64,
            r.visits as i64,
            r.pageviews as i64,
            r.events as i64,
            r.bounces as i64,
            r.duration_ms,
            r.page_visitors as i64,
            r.page_visits as i64,
            0,
            r.engaged_ms as i64,
            r.scroll_gain as i64,
            r.scroll_pages as i64,
        ];
        for code in 0..=DIMS.len() as u8 {
            let mut m = base;
            if let Some(bit) = first_session_bit(code) {
                m[8] = (r.visits == 1 && r.attr_first & bit != 0) as i64;
            }
            let v = if code == 0 { "" } else { value(r, code) };
            let acc = out.entry((r.site_id, r.day, code, v)).or_insert([0; 12]);
            acc.iter_mut().zip(m).for_each(|(a, b)| *a += b);
        }
    }
    out
}

/// SQL that fills the rollup from raw rows (for stores that had rows before rollups existed).
pub fn backfill_sql() -> Vec<String> {
    (0..=DIMS.len() as u8)
        .map(|code| {
            let col = if code == 0 { "''".to_owned() } else { crate::sql::plain_column(&DIMS[code as usize - 1]) };
            let first = match first_session_bit(code) {
                Some(bit) => format!("sum(CASE WHEN visits = 1 AND (attr_first & {bit}) <> 0 THEN 1 ELSE 0 END)"),
                None => "0".to_owned(),
            };
            let sums: Vec<String> = MEASURES
                .iter()
                .map(|m| if *m == "first_visitors" { first.clone() } else { format!("sum({m})") })
                .collect();
            format!(
                "INSERT INTO rollup_days SELECT site_id, day, {code}, {col}, {} FROM events GROUP BY site_id, day, {col}",
                sums.join(", ")
            )
        })
        .collect()
}

/// How a sums query reads the rollup: the dimension, where the day goes among the group
/// columns, and the measure behind each sum. `None` when it needs raw rows.
#[derive(Debug, PartialEq)]
pub struct Plan {
    pub dim: u8,
    /// Group columns in the query's order: `true` for the day, `false` for the dimension value.
    pub group: Vec<bool>,
    pub measures: Vec<&'static str>,
}

pub fn plan(q: &SumsQuery) -> Option<Plan> {
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
    let measures = q
        .sums
        .iter()
        .map(|s| {
            Some(match s {
                Sum::Visitors => "visitors",
                Sum::Visits => "visits",
                Sum::Pageviews => "pageviews",
                Sum::Events => "events",
                Sum::Bounces => "bounces",
                Sum::DurationMs => "duration_ms",
                Sum::PageVisitors => "page_visitors",
                Sum::PageVisits => "page_visits",
                Sum::FirstSessionVisitors(bit) if first_session_bit(dim) == Some(*bit) => "first_visitors",
                Sum::EngagedMs => "engaged_ms",
                Sum::ScrollGain => "scroll_gain",
                Sum::ScrollPages => "scroll_pages",
                _ => return None,
            })
        })
        .collect::<Option<Vec<_>>>()?;
    Some(Plan { dim, group: q.group_by.iter().map(|c| *c == Column::Day).collect(), measures })
}

impl Plan {
    /// SQL over `rollup_days`; parameters: site, first day, last day.
    pub fn sql(&self) -> String {
        let mut select: Vec<String> = self
            .group
            .iter()
            .map(|is_day| if *is_day { "CAST(day AS VARCHAR)".to_owned() } else { "value".to_owned() })
            .collect();
        select.extend(self.measures.iter().map(|m| format!("CAST(coalesce(sum({m}), 0) AS BIGINT)")));
        let mut sql = format!(
            "SELECT {} FROM rollup_days WHERE site_id = ? AND day BETWEEN ? AND ? AND dim = {}",
            select.join(", "),
            self.dim
        );
        if !self.group.is_empty() {
            let positions: Vec<String> = (1..=self.group.len()).map(|i| i.to_string()).collect();
            sql.push_str(&format!(" GROUP BY {}", positions.join(", ")));
        }
        sql
    }
}

/// The visit attributes of `rollup_visits`, in table order (the same names as in `events`).
const CUBE: [Column; 6] =
    [Column::Source, Column::Channel, Column::Device, Column::Country, Column::Browser, Column::Os];

/// Its measures, in table order: the plain sums, then first-session visitors by source and by
/// channel (the two attributes here that can differ between a visitor-day's sessions).
pub const CUBE_MEASURES: [&str; 11] = [
    "visitors",
    "visits",
    "pageviews",
    "events",
    "bounces",
    "duration_ms",
    "engaged_ms",
    "scroll_gain",
    "scroll_pages",
    "first_source",
    "first_channel",
];

pub type CubeKey<'a> = (u32, i32, [&'a str; 6]);

fn first_bit(c: Column) -> u16 {
    c.first_session_bit().expect("source and channel vary between sessions")
}

pub fn cube_aggregate(rows: &[Row]) -> HashMap<CubeKey<'_>, [i64; 11]> {
    let (source_bit, channel_bit) = (first_bit(Column::Source), first_bit(Column::Channel));
    let mut out: HashMap<CubeKey<'_>, [i64; 11]> = HashMap::new();
    for r in rows {
        let v = &r.visit;
        let first = |bit: u16| (r.visits == 1 && r.attr_first & bit != 0) as i64;
        let m = [
            r.visitors as i64,
            r.visits as i64,
            r.pageviews as i64,
            r.events as i64,
            r.bounces as i64,
            r.duration_ms,
            r.engaged_ms as i64,
            r.scroll_gain as i64,
            r.scroll_pages as i64,
            first(source_bit),
            first(channel_bit),
        ];
        let key = (r.site_id, r.day, [&*v.source, &v.channel, &v.device, &v.country, &v.browser, &v.os]);
        let acc = out.entry(key).or_insert([0; 11]);
        acc.iter_mut().zip(m).for_each(|(a, b)| *a += b);
    }
    out
}

pub fn cube_backfill_sql() -> String {
    let cols: Vec<String> = CUBE.iter().map(crate::sql::plain_column).collect();
    let first =
        |c: Column| format!("sum(CASE WHEN visits = 1 AND (attr_first & {}) <> 0 THEN 1 ELSE 0 END)", first_bit(c));
    let mut sums: Vec<String> = CUBE_MEASURES[..9].iter().map(|m| format!("sum({m})")).collect();
    sums.extend([first(Column::Source), first(Column::Channel)]);
    format!(
        "INSERT INTO rollup_visits SELECT site_id, day, {cols}, {} FROM events GROUP BY site_id, day, {cols}",
        sums.join(", "),
        cols = cols.join(", ")
    )
}

/// The `rollup_visits` measure behind each sum of `q`, when it only groups and filters by the
/// cube's attributes; `None` when it needs raw rows.
pub fn cube_plan(q: &SumsQuery) -> Option<Vec<&'static str>> {
    if !q.kinds.is_empty() || q.prop_key.is_some() || q.filter.as_ref().is_some_and(crate::query::Filter::has_goal) {
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
    q.sums
        .iter()
        .map(|s| {
            Some(match s {
                Sum::Visitors => "visitors",
                Sum::Visits => "visits",
                Sum::Pageviews => "pageviews",
                Sum::Events => "events",
                Sum::Bounces => "bounces",
                Sum::DurationMs => "duration_ms",
                Sum::EngagedMs => "engaged_ms",
                Sum::ScrollGain => "scroll_gain",
                Sum::ScrollPages => "scroll_pages",
                Sum::FirstSessionVisitors(b) if *b == source_bit => "first_source",
                Sum::FirstSessionVisitors(b) if *b == channel_bit => "first_channel",
                _ => return None,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::{DayRange, Filter, Op};

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
        assert_eq!(p, Some(Plan { dim: 4, group: vec![false, true], measures: vec!["first_visitors", "visits"] }));
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
