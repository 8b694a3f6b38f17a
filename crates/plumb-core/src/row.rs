//! The stored analytics row. It carries no visitor or session identifier: everything that needs
//! "the same visitor" was decided by the pipeline and is stored as additive counters, so every
//! metric is a sum and later corrections are just more rows (a `-1` cancels an earlier `+1`).

use crate::event::{EventKind, Revenue, VisitInfo};

/// Visit attributes that can differ between the sessions of one visitor-day. (Location and
/// device come from the IP and User-Agent the signature is made of, so they never differ.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum VisitAttr {
    EntryPage = 0,
    Source,
    Referrer,
    Channel,
    UtmMedium,
    UtmSource,
    UtmCampaign,
    UtmContent,
    UtmTerm,
}

impl VisitAttr {
    pub const ALL: [VisitAttr; 9] = [
        VisitAttr::EntryPage,
        VisitAttr::Source,
        VisitAttr::Referrer,
        VisitAttr::Channel,
        VisitAttr::UtmMedium,
        VisitAttr::UtmSource,
        VisitAttr::UtmCampaign,
        VisitAttr::UtmContent,
        VisitAttr::UtmTerm,
    ];

    pub fn bit(self) -> u16 {
        1 << self as u8
    }

    pub fn value(self, entry_page: &str, visit: &VisitInfo) -> String {
        match self {
            VisitAttr::EntryPage => entry_page.to_owned(),
            VisitAttr::Source => visit.source.clone(),
            VisitAttr::Referrer => visit.referrer.clone(),
            VisitAttr::Channel => visit.channel.clone(),
            VisitAttr::UtmMedium => visit.utm_medium.clone(),
            VisitAttr::UtmSource => visit.utm_source.clone(),
            VisitAttr::UtmCampaign => visit.utm_campaign.clone(),
            VisitAttr::UtmContent => visit.utm_content.clone(),
            VisitAttr::UtmTerm => visit.utm_term.clone(),
        }
    }
}

/// A custom property of a hit, with whether this visitor-day sends this key and value for the
/// first time (what visitor counts by property sum).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowProp {
    pub key: String,
    pub value: String,
    pub first_of_day: bool,
}

/// Row kinds as stored. `Adjustment` rows only correct counters of an earlier row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum RowKind {
    Adjustment = 0,
    Pageview = 1,
    Custom = 2,
    Engagement = 3,
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
    /// 1 on a pageview row.
    pub pageviews: i8,
    /// 1 on pageview and custom event rows.
    pub events: i8,
    /// 1 on the first hit of a visitor-day.
    pub visitors: i8,
    /// 1 on the first hit of a session.
    pub visits: i8,
    /// +1 when a session starts, -1 when it stops being a bounce.
    pub bounces: i8,
    /// +1 on the session's latest pageview, -1 (adjustment row) when a later one replaces it.
    pub exits: i8,
    /// Like `exits`, for the visitor-day: +1 when one of its sessions starts exiting on the page
    /// and none did, -1 when the last such session moves on.
    pub exit_visitors: i8,
    /// 1 on the first view of this page by this visitor-day.
    pub page_visitors: i8,
    /// 1 on the first view of this page in this session.
    pub page_visits: i8,
    /// 1 on the first hit of this visitor-day within this local hour.
    pub hour_visitors: i8,
    /// 1 on the first completion of this event name by this visitor-day.
    pub name_visitors: i8,
    /// On a session's first row: bit per [`VisitAttr`] whose value this visitor-day had not had
    /// in an earlier session.
    pub attr_first: u16,
    /// Time since the session's previous event; summed per session it is last − first.
    pub duration_ms: i64,
    pub engaged_ms: u32,
    /// By how much this ping raised the deepest scroll seen for its page in this session. Summed
    /// and divided by `scroll_pages` it is the average deepest scroll per session and page.
    pub scroll_gain: u8,
    /// 1 on the first scroll report for a page in a session.
    pub scroll_pages: i8,
}
