//! Daily rollups. Every row counter is additive, so sums over a rollup are exactly the sums over
//! the rows it summarises, for the queries it can serve:
//! - `rollup_days`: per site, day and one attribute's value (every attribute of
//!   `plumb_core::schema::ATTRS`, by its `dim` code; code 0 is the site total). Serves unfiltered
//!   queries by at most one column (plus days): the dashboard's panels without filters.
//! - `rollup_visits`: per site, day and combination of the `cube` attributes (low-cardinality
//!   visit attributes). Serves queries that only group and filter by those: top stats,
//!   timeseries and those panels under filters.
//!
//! Both tables are derived from the schema: a counter is kept where its `rollups` says, and an
//! attribute with a session bit gets a "first session with this value" measure. Over 100M rows
//! they read thousands of rollup rows instead of millions of rows.

use crate::sql::{Dialect, plain_sum};
use crate::{Column, Sum, SumsQuery};
use plumb_core::Row;
use plumb_core::schema::{ATTRS, Attr, Counter, Rollups};
use std::sync::LazyLock;

/// What a rollup column sums.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measure {
    Counter(Counter),
    /// `rollup_days`: rows of sessions that were the visitor-day's first with their value of the
    /// row's dimension (0 for dimensions without a session bit).
    FirstOfDim,
    /// `rollup_visits`: rows of sessions that were the visitor-day's first with their value of
    /// this attribute.
    FirstOf(Attr),
}

impl Measure {
    pub fn column(self) -> String {
        match self {
            Measure::Counter(c) => c.column().to_owned(),
            Measure::FirstOfDim => "first_visitors".to_owned(),
            Measure::FirstOf(a) => format!("first_{}", a.column()),
        }
    }

    /// The sum it holds, for rows of dimension `dim` (`None` in `rollup_visits`).
    fn sum(self, dim: Option<Attr>) -> Option<Sum> {
        match self {
            Measure::Counter(c) => Some(Sum::Counter(c)),
            Measure::FirstOfDim => dim?.session_bit().map(Sum::FirstSessionVisitors),
            Measure::FirstOf(a) => a.session_bit().map(Sum::FirstSessionVisitors),
        }
    }

    fn value(self, r: &Row, dim: Option<Attr>) -> i64 {
        let first_session =
            |bit: Option<u16>| bit.is_some_and(|bit| r.counters.visits == 1 && r.counters.attr_first & bit != 0).into();
        match self {
            Measure::Counter(c) => r.counters.get(c),
            Measure::FirstOfDim => first_session(dim.and_then(Attr::session_bit)),
            Measure::FirstOf(a) => first_session(a.session_bit()),
        }
    }
}

/// How a rollup table's key column is typed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    /// `rollup_days`' dimension code (0-255).
    Code,
    Text,
}

/// A rollup table: its key columns after site and day, and its measures, in table order.
pub struct RollupTable {
    pub name: &'static str,
    pub keys: Vec<(String, KeyType)>,
    pub measures: Vec<Measure>,
}

impl RollupTable {
    pub fn key_names(&self) -> Vec<String> {
        self.keys.iter().map(|(n, _)| n.clone()).collect()
    }

    pub fn measure_names(&self) -> Vec<String> {
        self.measures.iter().map(|m| m.column()).collect()
    }

    /// `SELECT`s of the table's rows (site, day, keys, measures, in table order) summing the raw
    /// rows of `source` that meet `condition`: what fills the table for rows that were stored
    /// before it had its current layout, or whose rollup rows went missing.
    pub fn select_sql(&self, d: &dyn Dialect, source: &str, condition: &str) -> Vec<String> {
        let sums = |dim: Option<Attr>| -> String {
            let sums = self.measures.iter().map(|m| m.sum(dim).map_or_else(|| "0".to_owned(), |s| plain_sum(d, s)));
            sums.collect::<Vec<_>>().join(", ")
        };
        // Keys are selected as given and grouped by the columns among them.
        let select = |keys: &[String], columns: &[String], sums: String| {
            let group: Vec<&str> = ["site_id", "day"].into_iter().chain(columns.iter().map(String::as_str)).collect();
            format!(
                "SELECT site_id, day, {}, {sums} FROM {source} WHERE {condition} GROUP BY {}",
                keys.join(", "),
                group.join(", ")
            )
        };
        if self.name == DAYS.name {
            let total = select(&["0".to_owned(), "''".to_owned()], &[], sums(None));
            let dims = ATTRS.iter().map(|a| {
                let column = a.column.to_owned();
                select(&[a.dim.to_string(), column.clone()], &[column], sums(Some(a.attr)))
            });
            std::iter::once(total).chain(dims).collect()
        } else {
            let keys = self.key_names();
            vec![select(&keys, &keys, sums(None))]
        }
    }
}

fn counters_in(rollups: &[Rollups]) -> impl Iterator<Item = Measure> + '_ {
    Counter::ALL.iter().filter(|c| rollups.contains(&c.rollups())).map(|c| Measure::Counter(*c))
}

pub static DAYS: LazyLock<RollupTable> = LazyLock::new(|| RollupTable {
    name: "rollup_days",
    keys: vec![("dim".to_owned(), KeyType::Code), ("value".to_owned(), KeyType::Text)],
    measures: counters_in(&[Rollups::All, Rollups::Days]).chain([Measure::FirstOfDim]).collect(),
});

/// How many attributes `rollup_visits` is keyed by.
const CUBE_LEN: usize = {
    let (mut i, mut n) = (0, 0);
    while i < ATTRS.len() {
        n += ATTRS[i].cube as usize;
        i += 1;
    }
    n
};

/// The attributes `rollup_visits` is keyed by, in table order.
fn cube() -> impl Iterator<Item = Attr> {
    ATTRS.iter().filter(|a| a.cube).map(|a| a.attr)
}

pub static VISITS: LazyLock<RollupTable> = LazyLock::new(|| RollupTable {
    name: "rollup_visits",
    keys: cube().map(|a| (a.column().to_owned(), KeyType::Text)).collect(),
    measures: counters_in(&[Rollups::All])
        .chain(cube().filter(|a| a.session_bit().is_some()).map(Measure::FirstOf))
        .collect(),
});

pub fn tables() -> [&'static RollupTable; 2] {
    [&DAYS, &VISITS]
}

/// Rollup rows being summed: keys in the order first seen, and their measures side by side in
/// one buffer (a batch makes tens of thousands of groups; one allocation each would show). Each
/// row is looked up once per dimension, so the map hashes with foldhash rather than SipHash.
pub struct Groups<K> {
    index: foldhash::HashMap<K, usize>,
    keys: Vec<K>,
    sums: Vec<i64>,
    width: usize,
}

impl<K: std::hash::Hash + Eq + Clone> Groups<K> {
    fn new(width: usize) -> Self {
        Groups { index: foldhash::HashMap::default(), keys: Vec::new(), sums: Vec::new(), width }
    }

    fn add(&mut self, key: K, values: &[i64]) {
        let at = *self.index.entry(key).or_insert_with_key(|k| {
            self.keys.push(k.clone());
            self.sums.resize(self.sums.len() + self.width, 0);
            self.keys.len() - 1
        });
        let sums = &mut self.sums[at * self.width..][..self.width];
        sums.iter_mut().zip(values).for_each(|(s, v)| *s += v);
    }
}

impl<K> Groups<K> {
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Measures per group.
    pub fn width(&self) -> usize {
        self.width
    }

    pub fn keys(&self) -> &[K] {
        &self.keys
    }

    /// The measures of group `i`, in table order.
    pub fn sums(&self, i: usize) -> &[i64] {
        &self.sums[i * self.width..][..self.width]
    }

    /// Measure `i` of every group, in key order.
    pub fn measure(&self, i: usize) -> impl Iterator<Item = i64> + '_ {
        self.sums.iter().skip(i).step_by(self.width).copied()
    }
}

/// A `rollup_days` key: site, day, dimension code and value.
pub type Key<'a> = (u32, i32, u8, &'a str);

/// A batch's `rollup_days` rows: measures in table order.
pub fn aggregate(rows: &[Row]) -> Groups<Key<'_>> {
    let measures = &DAYS.measures;
    let mut out = Groups::new(measures.len());
    let first_of_dim = measures.iter().position(|m| *m == Measure::FirstOfDim);
    let mut values = vec![0; measures.len()];
    for r in rows {
        // Only the first-of-dimension measure differs between a row's dimensions.
        measures.iter().zip(values.iter_mut()).for_each(|(m, v)| *v = m.value(r, None));
        out.add((r.site_id, r.day, 0, ""), &values);
        for a in ATTRS {
            if let Some(i) = first_of_dim {
                values[i] = Measure::FirstOfDim.value(r, Some(a.attr));
            }
            out.add((r.site_id, r.day, a.dim, (a.value)(r)), &values);
        }
    }
    out
}

/// A `rollup_visits` key: site, day and the cube attributes' values.
pub type CubeKey<'a> = (u32, i32, [&'a str; CUBE_LEN]);

/// A batch's `rollup_visits` rows: measures in table order.
pub fn cube_aggregate(rows: &[Row]) -> Groups<CubeKey<'_>> {
    let measures = &VISITS.measures;
    let mut out = Groups::new(measures.len());
    let mut values = vec![0; measures.len()];
    let attrs: Vec<Attr> = cube().collect();
    for r in rows {
        measures.iter().zip(values.iter_mut()).for_each(|(m, v)| *v = m.value(r, None));
        // A key on the stack: one allocation per row would show at this rate.
        out.add((r.site_id, r.day, std::array::from_fn(|i| attrs[i].value(r))), &values);
    }
    out
}

/// How a sums query reads a rollup: the table, the dimension code for `rollup_days` (whose
/// `value` column then stands for the query's one grouped column), and the measure column
/// behind each sum.
#[derive(Debug, PartialEq)]
pub struct RollupRead {
    pub table: &'static str,
    pub dim: Option<u8>,
    pub measures: Vec<String>,
}

/// The rollup read that answers `q` exactly, if one does.
pub fn route(q: &SumsQuery) -> Option<RollupRead> {
    plan(q).or_else(|| cube_plan(q))
}

/// `rollup_days` serves unfiltered queries by at most one column besides the day.
fn plan(q: &SumsQuery) -> Option<RollupRead> {
    if q.filter.is_some() || !q.kinds.is_empty() || q.prop_key.is_some() {
        return None;
    }
    let columns: Vec<&Column> = q.group_by.iter().filter(|c| **c != Column::Day).collect();
    if q.group_by.len() - columns.len() > 1 || columns.len() > 1 {
        return None;
    }
    let attr = match columns.first() {
        Some(c) => Some(c.attr()?),
        None => None,
    };
    let dim = attr.map_or(0, |a| a.spec().dim);
    let measures = measures(q, &DAYS, attr)?;
    Some(RollupRead { table: DAYS.name, dim: Some(dim), measures })
}

/// `rollup_visits` serves queries that group and filter only by its attributes (and days).
fn cube_plan(q: &SumsQuery) -> Option<RollupRead> {
    if !q.kinds.is_empty() || q.prop_key.is_some() || q.filter.as_ref().is_some_and(crate::Filter::has_goal) {
        return None;
    }
    let mut cols: Vec<Column> = q.group_by.clone();
    if let Some(f) = &q.filter {
        f.columns(&mut cols);
    }
    let in_cube = |c: &Column| *c == Column::Day || c.attr().is_some_and(|a| a.spec().cube);
    if !cols.iter().all(in_cube) {
        return None;
    }
    Some(RollupRead { table: VISITS.name, dim: None, measures: measures(q, &VISITS, None)? })
}

/// The measure column behind each sum of `q`; `None` if any has none.
fn measures(q: &SumsQuery, table: &RollupTable, dim: Option<Attr>) -> Option<Vec<String>> {
    let find = |s: &Sum| table.measures.iter().find(|m| m.sum(dim).as_ref() == Some(s)).map(|m| m.column());
    q.sums.iter().map(find).collect()
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
        let source_bit = Attr::Source.session_bit().unwrap();
        let p = plan(&q(
            vec![Column::Attr(Attr::Source), Column::Day],
            vec![Sum::FirstSessionVisitors(source_bit), Sum::Counter(Counter::Visits)],
        ));
        let measures = vec!["first_visitors".to_owned(), "visits".to_owned()];
        assert_eq!(p, Some(RollupRead { table: "rollup_days", dim: Some(Attr::Source.spec().dim), measures }));
        assert!(plan(&q(vec![], vec![Sum::Counter(Counter::Visitors), Sum::Counter(Counter::Bounces)])).is_some());
        // Another column's first-session bit, two columns, hours, names, or a filter: raw rows.
        let entry_bit = Column::Attr(Attr::EntryPage).first_session_bit().unwrap();
        assert_eq!(plan(&q(vec![Column::Attr(Attr::Source)], vec![Sum::FirstSessionVisitors(entry_bit)])), None);
        assert_eq!(
            plan(&q(vec![Column::Attr(Attr::Source), Column::Attr(Attr::Device)], vec![Sum::Counter(Counter::Visits)])),
            None
        );
        assert_eq!(plan(&q(vec![Column::Day, Column::Hour], vec![Sum::Counter(Counter::HourVisitors)])), None);
        assert_eq!(plan(&q(vec![Column::EventName], vec![Sum::Counter(Counter::Events)])), None);
        let mut filtered = q(vec![], vec![Sum::Counter(Counter::Visits)]);
        filtered.filter = Some(Filter::Condition {
            op: Op::Is,
            column: Column::Attr(Attr::Device),
            values: vec!["Mobile".into()],
            case_sensitive: true,
        });
        assert_eq!(plan(&filtered), None);
        // ...which the visit cube serves, unlike a filter on pages.
        let visits = vec!["visits".to_owned()];
        assert_eq!(cube_plan(&filtered), Some(RollupRead { table: "rollup_visits", dim: None, measures: visits }));
        let mut by_page = q(vec![Column::Attr(Attr::Source)], vec![Sum::Counter(Counter::Visits)]);
        by_page.filter = Some(Filter::Condition {
            op: Op::Is,
            column: Column::Attr(Attr::Pathname),
            values: vec!["/".into()],
            case_sensitive: true,
        });
        assert_eq!(cube_plan(&by_page), None);
        assert_eq!(cube_plan(&q(vec![Column::Attr(Attr::Source)], vec![Sum::Counter(Counter::PageVisitors)])), None);
    }
}
