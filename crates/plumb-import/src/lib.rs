//! Readers of other tools' history: each turns its source into imported rows (see
//! `plumb_query::imported`): one site's sums per local day and value of a breakdown. Sources are
//! read as streams (database cursors, files line by line) and summed one day at a time, so
//! memory stays bounded by one day's distinct values whatever the source's size.

pub mod fathom;
pub mod plausible;

use plumb_query::imported::{Dim, ImportedRow, MEASURES};
use std::collections::{BTreeSet, HashMap};

/// The most bytes of breakdown values one day may hold (a day's pages, referrers…): the bound on
/// what an import keeps in memory, whatever its source holds (values are at most `MAX_PATH`).
pub const MAX_DAY_BYTES: usize = 256 << 20;

/// Measures in `MEASURES` order: visitors, visits, pageviews, bounces, duration (ms), events.
pub type Measures = [i64; MEASURES.len()];

/// What an import read, made and left out, for its report.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    /// Source records read (rows of tables, lines of files).
    pub read: u64,
    /// Imported rows made.
    pub rows: u64,
    pub first_day: Option<i32>,
    pub last_day: Option<i32>,
    /// Breakdowns the rows hold (`Dim` codes).
    pub dims: BTreeSet<u8>,
    /// Records left out, by reason.
    pub skipped: HashMap<String, u64>,
}

impl Report {
    pub fn skip(&mut self, reason: impl Into<String>) {
        *self.skipped.entry(reason.into()).or_default() += 1;
    }

    fn saw(&mut self, row: &ImportedRow) {
        self.rows += 1;
        self.first_day = Some(self.first_day.map_or(row.day, |d| d.min(row.day)));
        self.last_day = Some(self.last_day.map_or(row.day, |d| d.max(row.day)));
        self.dims.insert(row.dim);
    }
}

/// One site's rows being summed: a day's sums per breakdown and value, handed on when a record
/// of another day comes (sources are read in time order, so each day is handed on once; a
/// record out of order only splits its day's sums over two rows, which queries add up again).
pub struct DaySums<S> {
    site_id: u32,
    day: Option<i32>,
    sums: HashMap<(u8, String), Measures>,
    /// The bytes of the day's values so far.
    bytes: usize,
    /// Where rows go, in the order they are made.
    sink: S,
    pub report: Report,
    pub progress: Progress,
}

impl<S: FnMut(ImportedRow) -> anyhow::Result<()>> DaySums<S> {
    pub fn new(site_id: u32, sink: S) -> Self {
        let progress = Progress::new("", 0);
        DaySums { site_id, day: None, sums: HashMap::new(), bytes: 0, sink, report: Report::default(), progress }
    }

    /// Counts a source record read, `units` of the progress' total.
    pub fn record(&mut self, units: u64) {
        self.report.read += 1;
        self.progress.advance(units);
    }

    /// Adds to a value of a breakdown (cut to `MAX_PATH`, the longest the collector keeps of a
    /// page or referrer). A day whose values take more than [`MAX_DAY_BYTES`] is refused.
    pub fn add(&mut self, day: i32, dim: Dim, value: &str, m: Measures) -> anyhow::Result<()> {
        if self.day != Some(day) {
            self.flush()?;
            self.day = Some(day);
        }
        let key = (dim.code(), plumb_core::url::truncate(value, plumb_core::url::MAX_PATH));
        if !self.sums.contains_key(&key) {
            self.bytes += key.1.len() + std::mem::size_of::<((u8, String), Measures)>();
            if self.bytes > MAX_DAY_BYTES {
                anyhow::bail!(
                    "{}'s breakdown values take more than {} MiB",
                    plumb_core::time::date_of_day(day),
                    MAX_DAY_BYTES >> 20
                );
            }
        }
        let sums = self.sums.entry(key).or_default();
        sums.iter_mut().zip(m).for_each(|(s, v)| *s += v);
        Ok(())
    }

    /// Hands on the day being summed.
    pub fn flush(&mut self) -> anyhow::Result<()> {
        let Some(day) = self.day else { return Ok(()) };
        self.bytes = 0;
        let mut sums: Vec<((u8, String), Measures)> = self.sums.drain().collect();
        // The same order on every run, so a file made twice is the same file.
        sums.sort();
        for ((dim, value), measures) in sums {
            let row = ImportedRow { site_id: self.site_id, day, dim, value, measures };
            self.report.saw(&row);
            (self.sink)(row)?;
        }
        Ok(())
    }

    /// Flushes and returns the report.
    pub fn finish(mut self) -> anyhow::Result<Report> {
        self.flush()?;
        self.progress.clear();
        Ok(self.report)
    }
}

/// A progress bar on standard error while it is a terminal: how much of a known total (records,
/// bytes) is read, redrawn at most every 200 ms.
pub struct Progress {
    what: String,
    total: u64,
    done: u64,
    shown: std::time::Instant,
    on: bool,
}

impl Progress {
    pub fn new(what: &str, total: u64) -> Progress {
        use std::io::IsTerminal;
        let on = total > 0 && std::io::stderr().is_terminal();
        Progress { what: what.to_owned(), total, done: 0, shown: std::time::Instant::now(), on }
    }

    pub fn advance(&mut self, units: u64) {
        self.done += units;
        if self.on && self.shown.elapsed() >= std::time::Duration::from_millis(200) {
            self.shown = std::time::Instant::now();
            let share = (self.done as f64 / self.total as f64).min(1.0);
            let filled = (share * 30.0) as usize;
            eprint!("\r  [{}{}] {:>3.0}% of {}", "#".repeat(filled), ".".repeat(30 - filled), share * 100.0, self.what);
        }
    }

    fn clear(&self) {
        if self.on {
            eprint!("\r\x1b[K");
        }
    }
}

/// Reads one line of at most `max` bytes into `buf` (without its line break); a longer line is
/// read to its end and dropped. Returns `None` at the end, `Some(false)` for a line too long.
pub fn read_line(input: &mut impl std::io::BufRead, buf: &mut Vec<u8>, max: usize) -> std::io::Result<Option<bool>> {
    use std::io::BufRead;
    buf.clear();
    let n = std::io::Read::take(&mut *input, max as u64 + 1).read_until(b'\n', buf)?;
    if n == 0 {
        return Ok(None);
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
        return Ok(Some(true));
    }
    if buf.len() <= max {
        return Ok(Some(true)); // the last line, without a line break
    }
    // Too long: skip to the end of the line.
    let mut rest = Vec::new();
    loop {
        rest.clear();
        let n = std::io::Read::take(&mut *input, 64 * 1024).read_until(b'\n', &mut rest)?;
        if n == 0 || rest.last() == Some(&b'\n') {
            buf.clear();
            return Ok(Some(false));
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn lines_are_read_up_to_their_bound() {
        let text = format!("short\r\n{}\nlast", "x".repeat(100));
        let mut input = text.as_bytes();
        let mut buf = Vec::new();
        assert_eq!(super::read_line(&mut input, &mut buf, 10).unwrap(), Some(true));
        assert_eq!(buf, b"short");
        assert_eq!(super::read_line(&mut input, &mut buf, 10).unwrap(), Some(false));
        assert_eq!(super::read_line(&mut input, &mut buf, 10).unwrap(), Some(true));
        assert_eq!(buf, b"last");
        assert_eq!(super::read_line(&mut input, &mut buf, 10).unwrap(), None);
    }
}
