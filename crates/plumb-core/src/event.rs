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

/// The first byte of a binary queue payload. Payloads written as JSON by earlier versions start
/// with `{` and are still read, so a queue written before an upgrade drains after it.
const BINARY_V1: u8 = 1;

/// A queue payload that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("queue payload ends early")]
    Truncated,
    #[error("queue payload has unknown format version {0}")]
    Version(u8),
    #[error("queue payload has unknown event kind {0}")]
    Kind(u8),
    #[error("queue payload holds text that is not UTF-8")]
    Text,
    #[error("queue payload in JSON is not an event: {0}")]
    Json(#[from] serde_json::Error),
}

impl QueuedEvent {
    /// What keeps a visitor-day's hits in one queue partition (and so with one worker): the
    /// site and signature, mixed so that sites spread over partitions too.
    pub fn partition_key(&self) -> u64 {
        self.signature ^ u64::from(self.site_id).wrapping_mul(0x9e37_79b9_7f4a_7c15)
    }

    /// The compact binary form (version byte, fixed-width numbers, length-prefixed strings):
    /// about a third of the JSON's size and a fraction of its encoding time on the hot path.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(160 + self.pathname.len() + self.hostname.len());
        out.push(BINARY_V1);
        out.extend_from_slice(&self.site_id.to_le_bytes());
        out.extend_from_slice(&self.ts_ms.to_le_bytes());
        out.extend_from_slice(&self.day.to_le_bytes());
        out.push(self.hour);
        out.extend_from_slice(&self.signature.to_le_bytes());
        out.push(match self.kind {
            EventKind::Pageview => 0,
            EventKind::Custom => 1,
            EventKind::Engagement => 2,
        });
        let flags =
            self.interactive as u8 | (self.revenue.is_some() as u8) << 1 | (self.scroll_depth.is_some() as u8) << 2;
        out.push(flags);
        out.extend_from_slice(&self.engaged_ms.to_le_bytes());
        out.push(self.scroll_depth.unwrap_or(0));
        let v = &self.visit;
        for text in [&self.name, &self.hostname, &self.pathname].into_iter().chain(visit_fields(v)) {
            put_str(&mut out, text);
        }
        put_len(&mut out, self.props.len());
        for (k, val) in &self.props {
            put_str(&mut out, k);
            put_str(&mut out, val);
        }
        if let Some(r) = &self.revenue {
            out.extend_from_slice(&r.amount_micros.to_le_bytes());
            put_str(&mut out, &r.currency);
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        match bytes.first() {
            Some(b'{') => return Ok(serde_json::from_slice(bytes)?),
            Some(&BINARY_V1) => {}
            Some(other) => return Err(DecodeError::Version(*other)),
            None => return Err(DecodeError::Truncated),
        }
        let mut r = Reader(&bytes[1..]);
        let site_id = u32::from_le_bytes(r.array()?);
        let ts_ms = i64::from_le_bytes(r.array()?);
        let day = i32::from_le_bytes(r.array()?);
        let [hour] = r.array()?;
        let signature = u64::from_le_bytes(r.array()?);
        let kind = match r.array::<1>()? {
            [0] => EventKind::Pageview,
            [1] => EventKind::Custom,
            [2] => EventKind::Engagement,
            [k] => return Err(DecodeError::Kind(k)),
        };
        let [flags] = r.array()?;
        let engaged_ms = u32::from_le_bytes(r.array()?);
        let [depth] = r.array()?;
        let (name, hostname, pathname) = (r.string()?, r.string()?, r.string()?);
        let mut visit = VisitInfo::default();
        for field in visit_fields_mut(&mut visit) {
            *field = r.string()?;
        }
        let n = r.len()?;
        let mut props = Vec::with_capacity(n.min(64));
        for _ in 0..n {
            props.push((r.string()?, r.string()?));
        }
        let revenue = if flags & 2 != 0 {
            Some(Revenue { amount_micros: i64::from_le_bytes(r.array()?), currency: r.string()? })
        } else {
            None
        };
        Ok(QueuedEvent {
            site_id,
            ts_ms,
            day,
            hour,
            signature,
            kind,
            name,
            hostname,
            pathname,
            visit,
            props,
            revenue,
            interactive: flags & 1 != 0,
            engaged_ms,
            scroll_depth: (flags & 4 != 0).then_some(depth),
        })
    }
}

/// The visit's text fields in their one wire order.
fn visit_fields(v: &VisitInfo) -> [&String; 16] {
    [
        &v.source,
        &v.referrer,
        &v.channel,
        &v.utm_medium,
        &v.utm_source,
        &v.utm_campaign,
        &v.utm_content,
        &v.utm_term,
        &v.country,
        &v.region,
        &v.city,
        &v.device,
        &v.browser,
        &v.browser_version,
        &v.os,
        &v.os_version,
    ]
}

fn visit_fields_mut(v: &mut VisitInfo) -> [&mut String; 16] {
    [
        &mut v.source,
        &mut v.referrer,
        &mut v.channel,
        &mut v.utm_medium,
        &mut v.utm_source,
        &mut v.utm_campaign,
        &mut v.utm_content,
        &mut v.utm_term,
        &mut v.country,
        &mut v.region,
        &mut v.city,
        &mut v.device,
        &mut v.browser,
        &mut v.browser_version,
        &mut v.os,
        &mut v.os_version,
    ]
}

/// Lengths as LEB128 varints: one byte for the short strings most fields are.
fn put_len(out: &mut Vec<u8>, mut n: usize) {
    while n >= 0x80 {
        out.push((n as u8 & 0x7f) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_len(out, s.len());
    out.extend_from_slice(s.as_bytes());
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let (head, rest) = self.0.split_first_chunk::<N>().ok_or(DecodeError::Truncated)?;
        self.0 = rest;
        Ok(*head)
    }

    fn len(&mut self) -> Result<usize, DecodeError> {
        let mut n = 0usize;
        for shift in (0..64).step_by(7) {
            let [b] = self.array()?;
            n |= ((b & 0x7f) as usize) << shift;
            if b & 0x80 == 0 {
                return Ok(n);
            }
        }
        Err(DecodeError::Truncated)
    }

    fn string(&mut self) -> Result<String, DecodeError> {
        let n = self.len()?;
        if n > self.0.len() {
            return Err(DecodeError::Truncated);
        }
        let (text, rest) = self.0.split_at(n);
        self.0 = rest;
        String::from_utf8(text.to_vec()).map_err(|_| DecodeError::Text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> QueuedEvent {
        QueuedEvent {
            site_id: 7,
            ts_ms: 1_700_000_000_123,
            day: 19_675,
            hour: 22,
            signature: 0xdead_beef_0123_4567,
            kind: EventKind::Custom,
            name: "Signup".into(),
            hostname: "shop.test".into(),
            pathname: "/pricing/".repeat(30),
            visit: VisitInfo {
                source: "Google".into(),
                country: "DE".into(),
                os_version: "17.4".into(),
                ..Default::default()
            },
            props: vec![("plan".into(), "pro".into()), ("ü".into(), "∑".into())],
            revenue: Some(Revenue { amount_micros: -19_990_000, currency: "EUR".into() }),
            interactive: false,
            engaged_ms: 12_345,
            scroll_depth: Some(0),
        }
    }

    #[test]
    fn binary_payloads_round_trip_and_json_ones_are_still_read() {
        let ev = sample();
        let bytes = ev.encode();
        assert_eq!(QueuedEvent::decode(&bytes).unwrap(), ev);
        let json = serde_json::to_vec(&ev).unwrap();
        assert!(bytes.len() * 2 < json.len(), "binary {} bytes, JSON {}", bytes.len(), json.len());
        assert_eq!(QueuedEvent::decode(&json).unwrap(), ev, "a payload queued before the upgrade");
        let plain = QueuedEvent { revenue: None, scroll_depth: None, props: vec![], interactive: true, ..ev };
        assert_eq!(QueuedEvent::decode(&plain.encode()).unwrap(), plain);
    }

    #[test]
    fn damaged_payloads_are_errors_not_panics() {
        let bytes = sample().encode();
        for cut in 0..bytes.len() {
            assert!(QueuedEvent::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        assert!(matches!(QueuedEvent::decode(&[9, 0, 0]), Err(DecodeError::Version(9))));
        let mut bad_kind = bytes.clone();
        bad_kind[26] = 7;
        assert!(matches!(QueuedEvent::decode(&bad_kind), Err(DecodeError::Kind(7))));
    }
}
