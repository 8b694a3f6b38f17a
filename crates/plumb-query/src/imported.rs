//! Imported history: daily aggregates brought in from other tools (Fathom Lite, Plausible's CSV
//! export, access logs), kept in the event store's `imported` table beside the live rows. A source
//! gives totals per day and, separately, per day and value of some breakdowns (pages, sources,
//! countries…), never their combinations, so imported rows can join an answer only when the
//! answer asks for one breakdown at a time, unfiltered, in whole days. [`plan`] says whether a
//! sums query is such an answer, and if not, why; the engine adds the imported sums where it is and
//! reports where it is not.

use crate::{Column, DayRange, Sum, SumsQuery};
use plumb_core::schema::{Attr, ColumnType, Counter, IntType};

/// The event store's table of imported rows.
pub const TABLE: &str = "imported";

/// Its key columns, in table order; the [`MEASURES`] follow, as 64-bit integers.
pub const KEYS: [(&str, ColumnType); 5] = [
    ("import_id", ColumnType::Int(IntType::U32)),
    ("site_id", ColumnType::Int(IntType::U32)),
    ("day", ColumnType::Int(IntType::I32)),
    ("dim", ColumnType::Int(IntType::U8)),
    ("value", ColumnType::Text),
];

/// Every column of the table, in table order.
pub fn columns() -> Vec<(&'static str, ColumnType)> {
    let measures = MEASURES.iter().map(|m| (m.column(), ColumnType::Int(IntType::I64)));
    KEYS.into_iter().chain(measures).collect()
}

/// What an imported row counts, in table order after its keys (`import_id`, `site_id`, `day`,
/// `dim`, `value`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Measure {
    /// Visitors of the day (with the row's value).
    Visitors,
    /// Sessions (entering on the row's page for entry pages, ending on it for exit pages).
    Visits,
    Pageviews,
    /// Sessions of one pageview.
    Bounces,
    /// Summed session length, in milliseconds.
    DurationMs,
    /// Pageviews and custom events.
    Events,
}

pub const MEASURES: [Measure; 6] =
    [Measure::Visitors, Measure::Visits, Measure::Pageviews, Measure::Bounces, Measure::DurationMs, Measure::Events];

impl Measure {
    pub const fn column(self) -> &'static str {
        match self {
            Measure::Visitors => "visitors",
            Measure::Visits => "visits",
            Measure::Pageviews => "pageviews",
            Measure::Bounces => "bounces",
            Measure::DurationMs => "duration_ms",
            Measure::Events => "events",
        }
    }

    /// The imported measure that stands for a sum of live rows of breakdown `dim`, if any does.
    /// Which visitors and visits a sum means follows the query's grain, and an imported row of a
    /// breakdown counts them that way already (page visitors and page visits on a page row,
    /// exits on an exit-page row). Summed over page or exit rows, sessions, bounces and durations
    /// mean the sessions that entered there, which such rows do not hold.
    fn of(s: Sum, dim: Dim) -> Option<Measure> {
        let per_page = match dim {
            Dim::Attr(a) => a.spec().level == plumb_core::schema::Level::Event,
            Dim::ExitPage => true,
            Dim::Total | Dim::EventName => false,
        };
        Some(match s {
            Sum::Counter(Counter::Visitors | Counter::PageVisitors | Counter::ExitVisitors)
            | Sum::FirstSessionVisitors(_)
            | Sum::NameVisitors => Measure::Visitors,
            Sum::Counter(Counter::PageVisits | Counter::Exits) | Sum::EntryVisits => Measure::Visits,
            Sum::Counter(Counter::Pageviews) => Measure::Pageviews,
            Sum::Counter(Counter::Events) => Measure::Events,
            Sum::Counter(Counter::Visits) if !per_page => Measure::Visits,
            Sum::Counter(Counter::Bounces) if !per_page => Measure::Bounces,
            Sum::Counter(Counter::DurationMs) if !per_page => Measure::DurationMs,
            _ => return None,
        })
    }
}

/// The breakdown an imported row belongs to, stored as its code: the attribute's `rollup_days`
/// code, 0 for the day's totals, and codes of their own for exit pages and event names (which
/// are no stored attribute).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dim {
    Total,
    Attr(Attr),
    ExitPage,
    EventName,
}

const EXIT_PAGE: u8 = 250;
const EVENT_NAME: u8 = 251;

impl Dim {
    pub fn code(self) -> u8 {
        match self {
            Dim::Total => 0,
            Dim::Attr(a) => a.spec().dim,
            Dim::ExitPage => EXIT_PAGE,
            Dim::EventName => EVENT_NAME,
        }
    }

    pub fn from_code(code: u8) -> Option<Dim> {
        match code {
            0 => Some(Dim::Total),
            EXIT_PAGE => Some(Dim::ExitPage),
            EVENT_NAME => Some(Dim::EventName),
            _ => plumb_core::schema::ATTRS.iter().find(|a| a.dim == code).map(|a| Dim::Attr(a.attr)),
        }
    }

    /// The Stats API's name of the breakdown.
    pub fn api_name(self) -> &'static str {
        match self {
            Dim::Total => "totals",
            Dim::Attr(a) => a.spec().api,
            Dim::ExitPage => "visit:exit_page",
            Dim::EventName => "event:name",
        }
    }

    fn of(c: &Column) -> Option<Dim> {
        match c {
            Column::Attr(a) => Some(Dim::Attr(*a)),
            Column::CountryName => Some(Dim::Attr(Attr::Country)),
            Column::ExitPage => Some(Dim::ExitPage),
            Column::EventName => Some(Dim::EventName),
            Column::Day | Column::Hour | Column::Prop(_) => None,
        }
    }
}

/// One imported row: a day's sums for one value of one breakdown (`value` is empty for totals).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedRow {
    pub site_id: u32,
    pub day: i32,
    pub dim: u8,
    pub value: String,
    /// In [`MEASURES`] order.
    pub measures: [i64; 6],
}

/// A finished import a query may read, as metadata keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportRef {
    pub id: u32,
    /// What it was imported from, for notes (`fathom-lite`, `plausible`, `logs`).
    pub kind: String,
    pub range: DayRange,
    /// The breakdowns it holds, by [`Dim::code`].
    pub dims: Vec<u8>,
}

/// A group key of an imported read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    Day,
    Value,
}

/// What a backend is asked for imported rows: sums of measures over one breakdown of some
/// imports of a site, grouped as the live sums query it stands beside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedQuery {
    pub site_id: u32,
    pub range: DayRange,
    pub import_ids: Vec<u32>,
    pub dim: u8,
    pub group_by: Vec<Key>,
    pub measures: Vec<Measure>,
}

/// Whether an answer holds imported rows, and what it says where the site has some for its
/// range: the Stats API's `imports_included`, `imports_skip_reason` and `imports_warning`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportsUse {
    /// Whether the site has imports overlapping the answer's range at all.
    pub relevant: bool,
    /// The imports whose rows joined the answer.
    pub ids: Vec<u32>,
    pub included: bool,
    /// Why imported rows were left out: `unsupported_query` or `unsupported_interval`.
    pub skip_reason: Option<&'static str>,
    /// What was left out, in words.
    pub warning: Option<String>,
}

impl ImportsUse {
    pub(crate) fn merge(&mut self, other: ImportsUse) {
        self.relevant |= other.relevant;
        for id in other.ids {
            if !self.ids.contains(&id) {
                self.ids.push(id);
            }
        }
        self.included |= other.included;
        self.skip_reason = self.skip_reason.or(other.skip_reason);
        if self.warning.is_none() {
            self.warning = other.warning;
        }
    }
}

/// How a sums query reads imported rows (`None`: the site has none for its range, or they
/// cannot join it), and what the answer says about them.
pub fn plan(q: &SumsQuery, imports: &[ImportRef]) -> (Option<ImportedQuery>, ImportsUse) {
    let overlapping: Vec<&ImportRef> =
        imports.iter().filter(|i| i.range.from <= q.range.to && i.range.to >= q.range.from).collect();
    if overlapping.is_empty() {
        return (None, ImportsUse::default());
    }
    match read(q, &overlapping) {
        Ok((query, without)) => {
            let warning = (!without.is_empty()).then(|| missing(&without, query.dim));
            let ids = query.import_ids.clone();
            (Some(query), ImportsUse { relevant: true, ids, included: true, skip_reason: None, warning })
        }
        Err(why) => {
            let hourly = q.group_by.contains(&Column::Hour) || q.filter.as_ref().is_some_and(crate::Filter::has_hours);
            let reason = if hourly { "unsupported_interval" } else { "unsupported_query" };
            (
                None,
                ImportsUse {
                    relevant: true,
                    ids: vec![],
                    included: false,
                    skip_reason: Some(reason),
                    warning: Some(why),
                },
            )
        }
    }
}

/// The imported read, and the overlapping imports it leaves out for lack of the breakdown.
fn read<'a>(q: &SumsQuery, overlapping: &[&'a ImportRef]) -> Result<(ImportedQuery, Vec<&'a ImportRef>), String> {
    if q.group_by.contains(&Column::Hour) || q.filter.as_ref().is_some_and(crate::Filter::has_hours) {
        return Err("imported data is kept by day, not by hour".into());
    }
    if q.filter.is_some() {
        return Err("imported data has no combinations of breakdowns, so it is left out of filtered answers".into());
    }
    if q.prop_key.is_some() || q.group_by.iter().any(|c| matches!(c, Column::Prop(_))) {
        return Err("imported data has no custom properties".into());
    }
    let columns: Vec<&Column> = q.group_by.iter().filter(|c| **c != Column::Day).collect();
    if columns.len() > 1 {
        return Err("imported data has one breakdown at a time".into());
    }
    let dim = match columns.first() {
        Some(c) => Dim::of(c).ok_or("imported data has no such breakdown")?,
        None => Dim::Total,
    };
    // Only event-name breakdowns read custom-event rows alone.
    if !q.kinds.is_empty() && dim != Dim::EventName {
        return Err("imported data has no goals".into());
    }
    let Some(measures) = q.sums.iter().map(|s| Measure::of(*s, dim)).collect::<Option<Vec<_>>>() else {
        return Err(format!(
            "imported data has no time on page, scroll depth or revenue, and no sessions, bounces or durations by `{}`",
            dim.api_name()
        ));
    };
    let (with, without): (Vec<&ImportRef>, Vec<&ImportRef>) =
        overlapping.iter().partition(|i| i.dims.contains(&dim.code()));
    if with.is_empty() {
        return Err(missing(&without, dim.code()));
    }
    let query = ImportedQuery {
        site_id: q.site_id,
        range: q.range,
        import_ids: with.iter().map(|i| i.id).collect(),
        dim: dim.code(),
        group_by: q.group_by.iter().map(|c| if *c == Column::Day { Key::Day } else { Key::Value }).collect(),
        measures,
    };
    Ok((query, without))
}

/// Names the imports that lack a breakdown.
fn missing(imports: &[&ImportRef], dim: u8) -> String {
    let mut kinds: Vec<&str> = imports.iter().map(|i| i.kind.as_str()).collect();
    kinds.sort();
    kinds.dedup();
    let name = Dim::from_code(dim).map_or("?", Dim::api_name);
    format!("imported data from {} has no `{name}` breakdown", kinds.join(", "))
}

impl ImportedRow {
    /// The row as one line of an import's rows file: tab-separated, the value with `\`, tab and
    /// line breaks escaped.
    pub fn encode(&self, out: &mut String) {
        use std::fmt::Write;
        let _ = write!(out, "{}\t{}\t{}\t", self.site_id, self.day, self.dim);
        for c in self.value.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\t' => out.push_str("\\t"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                c => out.push(c),
            }
        }
        for m in self.measures {
            let _ = write!(out, "\t{m}");
        }
        out.push('\n');
    }

    /// A line written by [`encode`](Self::encode) (without its line break).
    pub fn decode(line: &str) -> Result<ImportedRow, String> {
        let fields: Vec<&str> = line.split('\t').collect();
        if fields.len() != 4 + MEASURES.len() {
            return Err(format!("a row of {} fields, not {}", fields.len(), 4 + MEASURES.len()));
        }
        let int = |i: usize| fields[i].parse::<i64>().map_err(|e| format!("field {}: `{}`: {e}", i + 1, fields[i]));
        let mut value = String::with_capacity(fields[3].len());
        let mut chars = fields[3].chars();
        while let Some(c) = chars.next() {
            value.push(match (c, c == '\\') {
                (_, true) => match chars.next() {
                    Some('t') => '\t',
                    Some('n') => '\n',
                    Some('r') => '\r',
                    Some('\\') => '\\',
                    other => return Err(format!("field 4: a bad escape `\\{}`", other.unwrap_or(' '))),
                },
                (c, false) => c,
            });
        }
        let mut measures = [0; 6];
        for (i, m) in measures.iter_mut().enumerate() {
            *m = int(4 + i)?;
        }
        let out_of_range = |i: usize| format!("field {}: `{}` is out of range", i + 1, fields[i]);
        Ok(ImportedRow {
            site_id: u32::try_from(int(0)?).map_err(|_| out_of_range(0))?,
            day: i32::try_from(int(1)?).map_err(|_| out_of_range(1))?,
            dim: u8::try_from(int(2)?).map_err(|_| out_of_range(2))?,
            value,
            measures,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_survive_their_file_and_bad_lines_are_named() {
        let row =
            ImportedRow { site_id: 7, day: 19_000, dim: 1, value: "/a\tb\\c\nd".into(), measures: [1, 2, 3, -4, 5, 6] };
        let mut line = String::new();
        row.encode(&mut line);
        assert_eq!(line.matches('\n').count(), 1, "one line: {line:?}");
        assert_eq!(ImportedRow::decode(line.trim_end_matches('\n')), Ok(row));
        assert!(ImportedRow::decode("1\t2\t3").unwrap_err().contains("3 fields"));
        assert!(ImportedRow::decode("1\t2\t300\tx\t0\t0\t0\t0\t0\t0").unwrap_err().contains("out of range"));
        assert!(ImportedRow::decode("1\t2\t3\tx\\q\t0\t0\t0\t0\t0\t0").unwrap_err().contains("bad escape"));
    }
}
