//! Domain types and pure rules shared by every role. No I/O lives here.

pub mod country;
pub mod event;
pub mod limit;
pub mod live;
pub mod net;
pub mod paths;
pub mod row;
pub mod schema;
pub mod security;
pub mod signature;
pub mod source;
pub mod time;
pub mod url;

pub use event::{EventKind, QueuedEvent, Revenue, VisitInfo};
pub use row::Row;
pub use schema::{Attr, Counter, Counters};
