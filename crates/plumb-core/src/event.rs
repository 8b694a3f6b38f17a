//! The event as it travels through the queue: already validated, enriched and signed by the
//! collector. It holds no IP and no User-Agent; the signature lives only as long as the queue
//! window keeps the entry.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Pageview,
    Custom,
    /// Tracker ping with engaged time and scroll depth; never counted as an event.
    Engagement,
}

/// Revenue in millionths of the currency unit, so sums are exact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revenue {
    pub amount_micros: i64,
    pub currency: String,
}

/// What is known about the visit from the request (device, place, source). Copied onto every row
/// of the session the event opens.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VisitInfo {
    pub source: String,
    pub referrer: String,
    pub channel: String,
    pub utm_medium: String,
    pub utm_source: String,
    pub utm_campaign: String,
    pub utm_content: String,
    pub utm_term: String,
    pub country: String,
    pub region: String,
    pub city: String,
    pub device: String,
    pub browser: String,
    pub browser_version: String,
    pub os: String,
    pub os_version: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueuedEvent {
    pub site_id: u32,
    /// Unix milliseconds, taken at collection (or given by an authenticated sender).
    pub ts_ms: i64,
    /// The site's local date of `ts_ms`, as days since 1970-01-01.
    pub day: i32,
    /// The site's local wall-clock hour of `ts_ms` (0–23).
    pub hour: u8,
    /// Keyed hash of site + IP + User-Agent under the day's salt.
    pub signature: u64,
    pub kind: EventKind,
    /// Custom event name; empty for pageviews and engagement.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    pub hostname: String,
    pub pathname: String,
    pub visit: VisitInfo,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub props: Vec<(String, String)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revenue: Option<Revenue>,
    /// Whether a custom event counts as interaction (ends a bounce). Plausible's default: true.
    pub interactive: bool,
    #[serde(default)]
    pub engaged_ms: u32,
    /// 0–100, or `None` when the tracker did not report it.
    #[serde(default)]
    pub scroll_depth: Option<u8>,
}

impl QueuedEvent {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("QueuedEvent always serializes")
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}
