//! The stored analytics row. It carries no visitor or session identifier: everything that needs
//! "the same visitor" was decided by the pipeline and is stored as additive counters, so every
//! metric is a sum and later corrections are just more rows (a `-1` cancels an earlier `+1`).

use crate::event::{EventKind, Revenue, VisitInfo};
use crate::schema::Counters;

/// A custom property of a hit, with whether this visitor-day sends this key and value for the
/// first time (what visitor counts by property sum).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowProp {
    pub key: String,
    pub value: String,
    pub first_of_day: bool,
}

/// Row kinds as stored. `Adjustment` rows only correct counters of an earlier row. A `Funnel`
/// row marks that a visitor-day reached a step of a funnel: its name is `<funnel id>:<step>`
/// (from 1), its only counter `funnel_visitors`, its other columns the hit's that got it there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum RowKind {
    Adjustment = 0,
    Pageview = 1,
    Custom = 2,
    Engagement = 3,
    Funnel = 4,
}

impl From<EventKind> for RowKind {
    fn from(k: EventKind) -> Self {
        match k {
            EventKind::Pageview => RowKind::Pageview,
            EventKind::Custom => RowKind::Custom,
            EventKind::Engagement => RowKind::Engagement,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub site_id: u32,
    /// Local day and hour: the only time a row carries. A precise timestamp next to
    /// `duration_ms` would let rows be chained back into a visitor's path.
    pub day: i32,
    pub hour: u8,
    pub kind: RowKind,
    pub name: String,
    pub hostname: String,
    pub pathname: String,
    pub entry_page: String,
    pub visit: std::sync::Arc<VisitInfo>,
    pub props: Vec<RowProp>,
    pub revenue: Option<Revenue>,
    pub counters: Counters,
}
