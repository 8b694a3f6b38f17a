//! Moving an embedded install's rows into ClickHouse (`plumb migrate`), and checking that both
//! stores answer alike.

use crate::{ClickHouseStore, DuckSnapshot, EventWriter, Result, StoreError, TsvRows};
use plumb_core::schema::{ATTRS, Counter};
use plumb_query::{Column, DayRange, GroupSums, Sum, SumsBackend, SumsQuery};
use std::time::Duration;

/// Whose markers count the chunks copied (see the ClickHouse backend's notes on markers); the
/// snapshot's position and size follow, so rows of two different snapshots never mix.
use crate::clickhouse::COPY_WRITER as ROWS_WRITER;
/// Rows per insert: big enough that ClickHouse takes them fast, small enough that a retry is cheap.
pub const CHUNK_ROWS: u64 = 100_000;
/// Tries per chunk before the copy stops (run again, it goes on from there).
const TRIES: u32 = 5;

/// Copies the snapshot's rows into the ClickHouse store at `url`, a chunk of `chunk_rows` (say
/// [`CHUNK_ROWS`]) per insert. A chunk is stored exactly once with its number as the position, so
/// a copy stopped anywhere goes on from where it stopped when run again with the same chunk size.
/// `progress(copied, total)` is called after each chunk.
pub fn copy_rows(
    snapshot: &DuckSnapshot,
    url: &str,
    chunk_rows: u64,
    mut progress: impl FnMut(u64, u64),
) -> Result<u64> {
    let total = snapshot.rows()?;
    let writer = format!("{ROWS_WRITER} {} {total} {chunk_rows}", snapshot.position()?);
    let mut store = ClickHouseStore::open_exact(url, &writer)?;
    if let Some(other) = store.writers()?.into_iter().find(|w| w.starts_with(ROWS_WRITER) && *w != writer) {
        return Err(StoreError::Backend(format!(
            "the ClickHouse store holds rows copied from another snapshot ({other}); copy into an empty database"
        )));
    }
    let chunks = total.div_ceil(chunk_rows);
    let done = store.position()?;
    progress((done * chunk_rows).min(total), total);
    for chunk in done..chunks {
        let mut rows = TsvRows::new(chunk + 1);
        snapshot.read(chunk * chunk_rows, (chunk + 1) * chunk_rows, |values| rows.push(values.iter().cloned()))?;
        let mut tries = 0;
        while let Err(e) = store.commit_tsv(&rows) {
            tries += 1;
            if tries == TRIES {
                return Err(e);
            }
            std::thread::sleep(Duration::from_secs(1 << tries));
        }
        progress(((chunk + 1) * chunk_rows).min(total), total);
    }
    Ok(total)
}

/// Each month of `range` (queries per month stay far below the groups one answer may hold).
fn months(range: DayRange) -> impl Iterator<Item = DayRange> {
    let starts = (range.from..=range.to).step_by(31);
    starts.map(move |from| DayRange { from, to: (from + 30).min(range.to) })
}

/// Where two stores' sums for a site over `range` differ: every counter, summed per day, hour,
/// event name and value of each attribute (what every Stats API answer is computed from).
/// Empty when they agree; at most `max` differences are described.
pub fn differences(
    a: &dyn SumsBackend,
    b: &dyn SumsBackend,
    site_id: u32,
    range: DayRange,
    max: usize,
) -> Result<Vec<String>> {
    let mut groupings = vec![Column::Day, Column::Hour, Column::EventName];
    groupings.extend(ATTRS.iter().map(|spec| Column::Attr(spec.attr)));
    let sums: Vec<Sum> = Counter::ALL.iter().map(|c| Sum::Counter(*c)).collect();
    let mut found = Vec::new();
    for part in months(range) {
        for column in &groupings {
            let q = SumsQuery {
                site_id,
                range: part,
                group_by: vec![column.clone()],
                filter: None,
                kinds: vec![],
                prop_key: None,
                sums: sums.clone(),
            };
            let sorted = |mut g: Vec<GroupSums>| {
                g.sort_by(|x, y| x.keys.cmp(&y.keys));
                g
            };
            let (left, right) = (sorted(a.sums(&q)?), sorted(b.sums(&q)?));
            if left != right {
                let unlike = left.iter().zip(&right).find(|(l, r)| l != r);
                found.push(format!(
                    "site {site_id}, days {}..={}, by {column:?}: {} groups against {}{}",
                    part.from,
                    part.to,
                    left.len(),
                    right.len(),
                    unlike.map_or(String::new(), |(l, r)| format!(", first unlike: {l:?} against {r:?}"))
                ));
                if found.len() == max {
                    return Ok(found);
                }
            }
        }
    }
    Ok(found)
}
