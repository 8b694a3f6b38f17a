//! The query engine, standing alone: the model every reader uses, the engine that answers it from
//! sums, the periods callers name, the SQL compiler behind a `Dialect`, and the daily rollups
//! (which queries they serve, and the rows they hold). Stored rows hold additive counters (see
//! `plumb_core::row`), so a backend only returns *sums per group*; every metric, time bucket,
//! comparison, ordering and page is computed here, once, for all backends. No storage engine is a
//! dependency: `cargo test -p plumb-query` runs against the in-memory backend (`memory`).

mod engine;
mod filter;
pub mod funnel;
pub mod imported;
pub mod memory;
mod model;
pub mod period;
pub mod plausible;
pub mod rollup;
pub mod sql;

pub use engine::{bucket_count, number, run, time_labels, totals};
pub use model::*;
pub use plumb_core::schema::{Attr, Counter};
