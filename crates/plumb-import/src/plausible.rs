//! Plausible's CSV export (see `plumb_query::plausible` for its tables): a zip of
//! `[imported_]<table>_<YYYYMMDD>_<YYYYMMDD>.csv` files, or a folder of them. Columns are
//! found by their header names; a missing count column reads as 0. Each table's rows become
//! the breakdowns its key columns stand for (sources also give channels; the visitors table
//! the day's totals, to which custom events add their events); rows dated outside their file's
//! dates are left out, as Plausible leaves them out. Cities are GeoNames ids there and names in
//! Plumb, so they are not imported.

use crate::{DaySums, Report};
use anyhow::{Context, Result, anyhow, bail};
use plumb_core::source::classify;
use plumb_query::imported::{Dim, ImportedRow, MEASURES, Measure};
use plumb_query::plausible::{self, Key, Table};
use plumb_query::{Attr, Column};
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

/// The most bytes one CSV record may take (a page path, a referrer: far less).
const MAX_RECORD: usize = 64 * 1024;

/// Reads RFC 4180 records (quoted fields may hold commas, quotes doubled, line breaks) one at
/// a time, with the line each starts on.
struct Records<R> {
    input: R,
    line: u64,
    buf: Vec<u8>,
}

impl<R: BufRead> Records<R> {
    fn new(input: R) -> Self {
        Records { input, line: 0, buf: Vec::new() }
    }

    /// The next record and its line number; `None` at the end.
    fn next_record(&mut self) -> Result<Option<(u64, Vec<String>)>> {
        let mut fields = Vec::new();
        let mut field = Vec::new();
        let mut quoted = false;
        let start = self.line + 1;
        loop {
            let line = crate::read_line(&mut self.input, &mut self.buf, MAX_RECORD)
                .with_context(|| format!("line {}", self.line + 1))?;
            let Some(whole) = line else {
                if quoted {
                    bail!("line {start}: a quoted field is never closed");
                }
                if fields.is_empty() && field.is_empty() {
                    return Ok(None);
                }
                break;
            };
            self.line += 1;
            if !whole {
                bail!("line {}: longer than {MAX_RECORD} bytes", self.line);
            }
            let mut bytes = self.buf.iter().copied().peekable();
            while let Some(b) = bytes.next() {
                match (b, quoted) {
                    (b'"', true) if bytes.peek() == Some(&b'"') => {
                        bytes.next();
                        field.push(b'"');
                    }
                    (b'"', true) => quoted = false,
                    (b'"', false) if field.is_empty() => quoted = true,
                    (b',', false) => fields.push(std::mem::take(&mut field)),
                    (b, _) => field.push(b),
                }
            }
            if field.len() + fields.iter().map(Vec::len).sum::<usize>() > MAX_RECORD {
                bail!("line {start}: a record of more than {MAX_RECORD} bytes");
            }
            if !quoted {
                break;
            }
            // A line break within a quoted field is part of it.
            field.push(b'\n');
        }
        fields.push(field);
        let fields = fields
            .into_iter()
            .map(|f| String::from_utf8(f).map_err(|_| anyhow!("line {start}: text that is not UTF-8")))
            .collect::<Result<_>>()?;
        Ok(Some((start, fields)))
    }
}

/// The CSV files of an export, by name, in the order Plumb reads them.
fn files(source: &Path) -> Result<Vec<String>> {
    let mut names = Vec::new();
    if source.is_dir() {
        for entry in std::fs::read_dir(source).with_context(|| format!("cannot read {}", source.display()))? {
            names.push(entry?.file_name().to_string_lossy().into_owned());
        }
    } else {
        let file = std::fs::File::open(source).with_context(|| format!("cannot open {}", source.display()))?;
        let zip = zip::ZipArchive::new(file).with_context(|| format!("{} is no zip file", source.display()))?;
        for name in zip.file_names() {
            names.push(
                name.with_context(|| format!("{}: a file name that cannot be read", source.display()))?.into_owned(),
            );
        }
    }
    names.sort();
    Ok(names)
}

/// The dates an export covers, from its files' names: the earliest first and latest last date.
pub fn date_range(source: &Path) -> Result<(chrono::NaiveDate, chrono::NaiveDate)> {
    let dates: Vec<_> = files(source)?.iter().filter_map(|n| plausible::parse_file_name(n)).collect();
    let first = dates.iter().map(|d| d.1).min();
    let last = dates.iter().map(|d| d.2).max();
    first.zip(last).ok_or_else(|| {
        anyhow!(
            "{} holds no file named like Plausible's export (imported_<table>_<YYYYMMDD>_<YYYYMMDD>.csv)",
            source.display()
        )
    })
}

/// Reads the export at `source` (a zip or a folder) into rows of site `site_id`.
pub fn read(source: &Path, site_id: u32, sink: &mut dyn FnMut(ImportedRow) -> Result<()>) -> Result<Report> {
    let mut sums = DaySums::new(site_id, sink);
    let tables = plausible::tables();
    let names = files(source)?;
    let mut zip = if source.is_dir() {
        None
    } else {
        Some(
            zip::ZipArchive::new(std::fs::File::open(source)?)
                .with_context(|| format!("{} is no zip file", source.display()))?,
        )
    };
    let mut found: Vec<(&str, &str)> = Vec::new();
    for name in &names {
        let Some((table_name, first, last)) = plausible::parse_file_name(name) else {
            sums.report.skip(format!("files that are no table of Plausible's export ({name})"));
            continue;
        };
        // One file per table and dates, as Plausible writes them: a second would count twice.
        if let Some((_, other)) = found.iter().find(|(t, other)| *t == table_name && same_dates(other, name)) {
            bail!("{name} and {other} hold the same table for the same dates");
        }
        let table = tables.iter().find(|t| t.name == table_name).expect("a parsed name is a table");
        let days = (plumb_core::time::day_number(first), plumb_core::time::day_number(last));
        let read_table = |input: &mut dyn Read, sums: &mut DaySums<_>| {
            read_table(BufReader::new(input), table, days, sums).with_context(|| name.clone())
        };
        match &mut zip {
            Some(zip) => {
                let mut entry = zip.by_name(name).with_context(|| format!("cannot read {name} in the zip"))?;
                read_table(&mut entry, &mut sums)?;
            }
            None => {
                let mut file = std::fs::File::open(source.join(name)).with_context(|| format!("cannot open {name}"))?;
                read_table(&mut file, &mut sums)?;
            }
        }
        found.push((table_name, name));
    }
    if found.is_empty() {
        bail!("{} holds no table of Plausible's export", source.display());
    }
    sums.finish()
}

/// Whether two file names name the same dates.
fn same_dates(a: &str, b: &str) -> bool {
    let dates = |n: &str| plausible::parse_file_name(n).map(|(_, f, l)| (f, l));
    dates(a) == dates(b)
}

/// What a table's key column stands for, if Plumb keeps it.
fn dim(key: &Key) -> Option<Dim> {
    match key {
        Key::Column(Column::Attr(Attr::City)) | Key::Constant(_) => None,
        Key::Column(Column::Attr(a)) => Some(Dim::Attr(*a)),
        Key::Column(Column::ExitPage) => Some(Dim::ExitPage),
        Key::Column(Column::EventName) => Some(Dim::EventName),
        Key::Column(_) => None,
    }
}

fn read_table<S: FnMut(ImportedRow) -> Result<()>>(
    input: impl BufRead,
    table: &Table,
    (first, last): (i32, i32),
    sums: &mut DaySums<S>,
) -> Result<()> {
    let mut records = Records::new(input);
    let Some((_, header)) = records.next_record()? else { return Ok(()) };
    let at = |name: &str| header.iter().position(|h| h.trim().trim_start_matches('\u{feff}') == name);
    let date_at = at("date").ok_or_else(|| anyhow!("line 1: no `date` column (the header is {})", header.join(",")))?;
    let keys: Vec<(Option<usize>, Option<Dim>, &str)> =
        table.keys.iter().map(|(name, key)| (at(name), dim(key), *name)).collect();
    let counts: Vec<(Option<usize>, usize, Measure, &str)> = table
        .counts
        .iter()
        .map(|c| (at(c.name), MEASURES.iter().position(|m| *m == c.measure).expect("a measure"), c.measure, c.name))
        .collect();
    let events = MEASURES.iter().position(|m| *m == Measure::Events).expect("events is a measure");
    let pageviews = MEASURES.iter().position(|m| *m == Measure::Pageviews).expect("pageviews is a measure");
    while let Some((line, record)) = records.next_record()? {
        sums.record(1);
        let cell = |i: Option<usize>| i.and_then(|i| record.get(i)).map_or("", |s| s.as_str());
        let date = cell(Some(date_at));
        let day = chrono::NaiveDate::parse_from_str(date.trim(), "%Y-%m-%d")
            .ok()
            .filter(|_| date.trim().len() == 10)
            .map(plumb_core::time::day_number)
            .ok_or_else(|| anyhow!("line {line}: date `{date}` is not YYYY-MM-DD"))?;
        if !(first..=last).contains(&day) {
            sums.report.skip(format!("{} rows dated outside their file's dates", table.name));
            continue;
        }
        let mut m = [0; MEASURES.len()];
        for (i, slot, measure, name) in &counts {
            let text = cell(*i).trim();
            let v: i64 = if text.is_empty() {
                0
            } else {
                text.parse()
                    .ok()
                    .filter(|v: &i64| *v >= 0)
                    .ok_or_else(|| anyhow!("line {line}: `{name}` is `{text}`, not a count"))?
            };
            m[*slot] += if *measure == Measure::DurationMs { v.saturating_mul(1000) } else { v };
        }
        if table.name != "custom_events" {
            m[events] = m[pageviews];
        }
        let mut any_key = false;
        for (i, d, name) in &keys {
            let Some(d) = d else { continue };
            any_key = true;
            let mut value = cell(*i).to_owned();
            if *name == "country" && value == "ZZ" {
                value.clear();
            }
            sums.add(day, *d, &value, m)?;
            if *name == "source" {
                let channel = classify(None, &value, cell(at("utm_medium")), "").channel;
                sums.add(day, Dim::Attr(Attr::Channel), &channel, m)?;
            }
        }
        if !any_key {
            sums.add(day, Dim::Total, "", m)?;
        } else if table.name == "custom_events" {
            // Custom events count among the day's events.
            sums.add(day, Dim::Total, "", [0, 0, 0, 0, 0, m[events]])?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_follow_rfc_4180() {
        let text = "date,page\r\n2024-01-01,\"/a,b\"\n2024-01-02,\"say \"\"hi\"\"\nthere\"\n\n";
        let mut r = Records::new(text.as_bytes());
        assert_eq!(r.next_record().unwrap(), Some((1, vec!["date".into(), "page".into()])));
        assert_eq!(r.next_record().unwrap(), Some((2, vec!["2024-01-01".into(), "/a,b".into()])));
        assert_eq!(r.next_record().unwrap(), Some((3, vec!["2024-01-02".into(), "say \"hi\"\nthere".into()])));
        assert_eq!(r.next_record().unwrap(), Some((5, vec![String::new()])));
        assert_eq!(r.next_record().unwrap(), None);
        let mut open = Records::new("a,\"b\n".as_bytes());
        assert!(open.next_record().unwrap_err().to_string().contains("never closed"));
    }

    #[test]
    fn bad_cells_are_named_with_their_line() {
        let table = plausible::tables().into_iter().find(|t| t.name == "visitors").unwrap();
        let mut rows = Vec::new();
        let mut sink = |r: ImportedRow| -> Result<()> {
            rows.push(r);
            Ok(())
        };
        let mut sums = DaySums::new(1, &mut sink);
        let day = plumb_core::time::day_number(chrono::NaiveDate::from_ymd_opt(2024, 1, 1).unwrap());
        let csv =
            "date,visitors,pageviews,bounces,visits,visit_duration\n2024-01-01,3,5,1,4,90\n2024-01-01,x,1,1,1,1\n";
        let e = read_table(csv.as_bytes(), &table, (day, day), &mut sums).unwrap_err();
        assert_eq!(e.to_string(), "line 3: `visitors` is `x`, not a count");
        let csv = "date,visitors\n2024-1-1,3\n";
        let e = read_table(csv.as_bytes(), &table, (day, day), &mut sums).unwrap_err();
        assert!(e.to_string().contains("line 2: date `2024-1-1`"), "{e}");
        let csv = "visitors\n3\n";
        assert!(
            read_table(csv.as_bytes(), &table, (day, day), &mut sums).unwrap_err().to_string().contains("no `date`")
        );
        let csv = "date,visitors,visit_duration,visits\n2024-01-01,3,90,4\n2024-01-02,9,9,9\n";
        read_table(csv.as_bytes(), &table, (day, day), &mut sums).unwrap();
        let report = sums.finish().unwrap();
        assert_eq!(report.skipped.values().sum::<u64>(), 1, "the row of another day");
        assert_eq!(rows.iter().map(|r| r.measures).collect::<Vec<_>>(), [[3 + 3, 4 + 4, 5, 1, 180_000, 5]]);
    }
}
