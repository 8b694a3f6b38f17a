//! Plausible's CSV export, the format Plumb exports in and imports from: a zip of tables, each a
//! CSV file `imported_<table>_<YYYYMMDD>_<YYYYMMDD>.csv` holding sums per day (`date`,
//! `YYYY-MM-DD`) and value of some columns, matched by their header names. Every count is a
//! total (durations in whole seconds), so days and values add up.
//!
//! One definition serves both ways: a table's key columns and the Plumb column each stands for,
//! and its count columns and the imported measure each holds.

use crate::imported::Measure;
use crate::{Attr, Column, Metric};

/// A key column: the Plumb column it holds, or a value Plumb does not keep (written as given,
/// read as nothing).
#[derive(Debug, Clone, PartialEq)]
pub enum Key {
    Column(Column),
    Constant(&'static str),
}

/// What a count column holds: an imported measure, durations in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Count {
    pub name: &'static str,
    pub measure: Measure,
}

pub struct Table {
    pub name: &'static str,
    pub keys: Vec<(&'static str, Key)>,
    pub counts: Vec<Count>,
    /// What a query for the table asks (the metrics whose sums give its counts).
    pub metrics: &'static [Metric],
}

const VISIT: &[Metric] =
    &[Metric::Visitors, Metric::Visits, Metric::Pageviews, Metric::BounceRate, Metric::VisitDuration];

fn counts(names: &[(&'static str, Measure)]) -> Vec<Count> {
    names.iter().map(|(name, measure)| Count { name, measure: *measure }).collect()
}

fn column(a: Attr) -> Key {
    Key::Column(Column::Attr(a))
}

/// The tables of an export, in the order Plausible writes them.
pub fn tables() -> Vec<Table> {
    use Measure::*;
    let visit_counts = || {
        counts(&[
            ("visitors", Visitors),
            ("visits", Visits),
            ("visit_duration", DurationMs),
            ("bounces", Bounces),
            ("pageviews", Pageviews),
        ])
    };
    vec![
        Table {
            name: "visitors",
            keys: vec![],
            counts: counts(&[
                ("visitors", Visitors),
                ("pageviews", Pageviews),
                ("bounces", Bounces),
                ("visits", Visits),
                ("visit_duration", DurationMs),
            ]),
            metrics: VISIT,
        },
        Table {
            name: "sources",
            keys: vec![
                ("source", column(Attr::Source)),
                ("referrer", column(Attr::Referrer)),
                ("utm_source", column(Attr::UtmSource)),
                ("utm_medium", column(Attr::UtmMedium)),
                ("utm_campaign", column(Attr::UtmCampaign)),
                ("utm_content", column(Attr::UtmContent)),
                ("utm_term", column(Attr::UtmTerm)),
            ],
            counts: counts(&[
                ("pageviews", Pageviews),
                ("visitors", Visitors),
                ("visits", Visits),
                ("visit_duration", DurationMs),
                ("bounces", Bounces),
            ]),
            metrics: VISIT,
        },
        Table {
            name: "pages",
            keys: vec![("hostname", column(Attr::Hostname)), ("page", column(Attr::Pathname))],
            counts: counts(&[("visits", Visits), ("visitors", Visitors), ("pageviews", Pageviews)]),
            metrics: &[Metric::Visitors, Metric::Visits, Metric::Pageviews],
        },
        Table {
            name: "entry_pages",
            keys: vec![("entry_page", column(Attr::EntryPage))],
            counts: counts(&[
                ("visitors", Visitors),
                ("entrances", Visits),
                ("visit_duration", DurationMs),
                ("bounces", Bounces),
                ("pageviews", Pageviews),
            ]),
            metrics: VISIT,
        },
        Table {
            name: "exit_pages",
            keys: vec![("exit_page", Key::Column(Column::ExitPage))],
            counts: counts(&[("visitors", Visitors), ("exits", Visits)]),
            metrics: &[Metric::Visitors, Metric::Visits],
        },
        Table {
            name: "custom_events",
            keys: vec![
                ("name", Key::Column(Column::EventName)),
                ("link_url", Key::Constant("")),
                ("path", Key::Constant("")),
            ],
            counts: counts(&[("visitors", Visitors), ("events", Events)]),
            metrics: &[Metric::Visitors, Metric::Events],
        },
        Table {
            name: "locations",
            // Plumb keeps regions and cities by name; Plausible's cities are GeoNames ids.
            keys: vec![
                ("country", column(Attr::Country)),
                ("region", column(Attr::Region)),
                ("city", Key::Constant("0")),
            ],
            counts: visit_counts(),
            metrics: VISIT,
        },
        Table { name: "devices", keys: vec![("device", column(Attr::Device))], counts: visit_counts(), metrics: VISIT },
        Table {
            name: "browsers",
            keys: vec![("browser", column(Attr::Browser)), ("browser_version", column(Attr::BrowserVersion))],
            counts: visit_counts(),
            metrics: VISIT,
        },
        Table {
            name: "operating_systems",
            keys: vec![("operating_system", column(Attr::Os)), ("operating_system_version", column(Attr::OsVersion))],
            counts: visit_counts(),
            metrics: VISIT,
        },
    ]
}

/// The table a file name names: `[imported_]<table>_<YYYYMMDD>_<YYYYMMDD>.csv`, with its dates.
pub fn parse_file_name(name: &str) -> Option<(&'static str, chrono::NaiveDate, chrono::NaiveDate)> {
    let stem = name.rsplit('/').next()?.strip_suffix(".csv")?;
    let stem = stem.strip_prefix("imported_").unwrap_or(stem);
    let (rest, last) = stem.rsplit_once('_')?;
    let (table, first) = rest.rsplit_once('_')?;
    let date = |s: &str| chrono::NaiveDate::parse_from_str(s, "%Y%m%d").ok().filter(|_| s.len() == 8);
    let known = tables().into_iter().map(|t| t.name).find(|n| *n == table)?;
    Some((known, date(first)?, date(last)?))
}

/// The file name of a table for a range of dates.
pub fn file_name(table: &str, first: chrono::NaiveDate, last: chrono::NaiveDate) -> String {
    format!("imported_{table}_{}_{}.csv", first.format("%Y%m%d"), last.format("%Y%m%d"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_name_a_table_and_two_dates() {
        let (a, b) = (
            chrono::NaiveDate::from_ymd_opt(2024, 1, 1).unwrap(),
            chrono::NaiveDate::from_ymd_opt(2024, 12, 31).unwrap(),
        );
        for t in tables() {
            assert_eq!(parse_file_name(&file_name(t.name, a, b)), Some((t.name, a, b)));
        }
        assert_eq!(parse_file_name("devices_20240101_20241231.csv"), Some(("devices", a, b)));
        assert_eq!(parse_file_name("dir/imported_entry_pages_20240101_20241231.csv"), Some(("entry_pages", a, b)));
        assert_eq!(parse_file_name("imported_goals_20240101_20241231.csv"), None);
        assert_eq!(parse_file_name("imported_devices_2024_20241231.csv"), None);
        assert_eq!(parse_file_name("imported_devices_20240101_20241231.txt"), None);
    }
}
