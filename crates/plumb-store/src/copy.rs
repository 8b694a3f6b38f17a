//! Moving an embedded install's rows into ClickHouse (`plumb migrate`), and checking that both
//! stores answer alike.

use crate::{ClickHouseStore, DuckSnapshot, Result, StoreError};
use plumb_core::schema::{self, ATTRS, ColumnType, Counter};
use plumb_query::rollup::{self, KeyType};
use plumb_query::{Column, DayRange, GroupSums, Sum, SumsBackend, SumsQuery};
use std::time::Duration;

/// Whose markers count the chunks copied, in each table (see the ClickHouse backend's notes on
/// markers); the snapshot's position and size follow, so rows of two different snapshots never mix.
use crate::clickhouse::COPY_WRITER as ROWS_WRITER;
/// Rows per insert: big enough that ClickHouse takes them fast, small enough that a retry is cheap.
pub const CHUNK_ROWS: u64 = 100_000;
/// Tries per chunk before the copy stops (run again, it goes on from there).
const TRIES: u32 = 5;

/// A table copied: its name and its columns (name, whether it holds text), in the order both
/// stores have them (before ClickHouse's `_writer` and `_pos`).
struct Copied {
    name: &'static str,
    columns: Vec<(String, bool)>,
}

/// `events`, then the rollups: the snapshot holds them as they were at its instant.
fn copied() -> Vec<Copied> {
    let events = schema::event_columns().into_iter().map(|c| {
        let text = matches!(c.ty, ColumnType::Text | ColumnType::OptionalText);
        (c.name.to_owned(), text)
    });
    let rollups = rollup::tables().map(|t| {
        let keys = t.keys.iter().map(|(n, ty)| (n.clone(), *ty == KeyType::Text));
        let measures = t.measure_names().into_iter().map(|m| (m, false));
        let fixed = [("site_id".to_owned(), false), ("day".to_owned(), false)];
        Copied { name: t.name, columns: fixed.into_iter().chain(keys).chain(measures).collect() }
    });
    std::iter::once(Copied { name: "events", columns: events.collect() }).chain(rollups).collect()
}

/// Copies the snapshot's rows and rollup rows into the ClickHouse store at `url`, a chunk of
/// `chunk_rows` (say [`CHUNK_ROWS`]) per insert. A chunk is stored exactly once with its number as
/// the position in its table, so a copy stopped anywhere goes on from where it stopped when run
/// again with the same chunk size. `progress(copied, total)` is called after each chunk.
pub fn copy_rows(
    snapshot: &DuckSnapshot,
    url: &str,
    chunk_rows: u64,
    mut progress: impl FnMut(u64, u64),
) -> Result<u64> {
    let tables = copied();
    let sizes: Vec<u64> = tables.iter().map(|t| snapshot.rows(t.name)).collect::<Result<_>>()?;
    let writer = format!("{ROWS_WRITER} {} {} {chunk_rows}", snapshot.position()?, sizes[0]);
    let mut store = ClickHouseStore::open_exact(url, &writer)?;
    if let Some(other) = store.writers()?.into_iter().find(|w| w.starts_with(ROWS_WRITER) && *w != writer) {
        return Err(StoreError::Backend(format!(
            "the ClickHouse store holds rows copied from another snapshot ({other}); copy into an empty database"
        )));
    }
    let total: u64 = sizes.iter().sum();
    let mut done = Vec::new();
    for t in &tables {
        done.push(store.table_position(t.name)?);
    }
    let copied_rows = |done: &[u64]| -> u64 { done.iter().zip(&sizes).map(|(d, n)| (d * chunk_rows).min(*n)).sum() };
    progress(copied_rows(&done), total);
    for (i, table) in tables.iter().enumerate() {
        for chunk in done[i]..sizes[i].div_ceil(chunk_rows) {
            let mut rows = store.rows(table.name, chunk + 1);
            snapshot.read(table.name, &table.columns, chunk * chunk_rows, (chunk + 1) * chunk_rows, |values| {
                rows.push(values.iter().cloned())
            })?;
            let mut tries = 0;
            while let Err(e) = store.commit_tsv(table.name, &rows) {
                tries += 1;
                if tries == TRIES {
                    return Err(e);
                }
                std::thread::sleep(Duration::from_secs(1 << tries));
            }
            done[i] = chunk + 1;
            progress(copied_rows(&done), total);
        }
    }
    Ok(sizes[0])
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
