//! Who is on each site right now, kept only in memory: per signature, the time of the last event,
//! the page it was on, the source it came from and its recent pageviews, for the last half hour.
//! Serves the realtime view and the Stats API's `realtime` and `30m` ranges; nothing here is ever
//! written down.

use serde::Serialize;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};

/// Current visitors: those with an event in the last five minutes (Plausible's `realtime`).
pub const REALTIME_WINDOW_MS: i64 = 5 * 60_000;
/// How long a visitor's hits are remembered: the longest window asked for (`30m`).
pub const LIVE_MEMORY_MS: i64 = 30 * 60_000;
/// Pageviews remembered per visitor; older ones are dropped first (a visitor is paced by the
/// collector well below this in half an hour).
const VIEWS_PER_VISITOR: usize = 256;
/// Visitors remembered per site: a flood of new signatures cannot grow memory past this; over it,
/// new visitors are not remembered (realtime figures then count fewer) until older ones are
/// forgotten.
pub const MAX_LIVE_VISITORS_PER_SITE: usize = 200_000;

/// One hit as the realtime view needs it.
pub struct LiveHit {
    pub site_id: u32,
    pub signature: u64,
    pub ts_ms: i64,
    pub page: String,
    pub source: String,
    /// Engagement pings keep a visitor current but never make one (as they never open a
    /// session), so a ping alone — a page left long ago, a beacon sent with another User-Agent —
    /// counts nobody.
    pub engagement: bool,
    /// A pageview (not a custom event or a ping).
    pub pageview: bool,
    /// A custom event's name.
    pub event: Option<String>,
}

/// What a hit completed, as goals ask: a pageview of a path, or a custom event of a name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Completion {
    Page(String),
    Event(String),
}

/// Minutes of completions kept per site, and completions (distinct pages and names) per minute.
pub const COMPLETION_MINUTES: i64 = 10;
pub const MAX_COMPLETIONS_PER_MINUTE: usize = 1_000;

struct Visitor {
    last_ms: i64,
    page: String,
    source: String,
    /// Pageviews remembered: time and page, oldest first.
    views: VecDeque<(i64, Arc<str>)>,
}

/// A page or source over a window, with its visitors and pageviews.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WindowCount {
    pub name: String,
    pub visitors: usize,
    pub pageviews: usize,
}

/// A site's visitors over the last minutes: those with an event in the window, their pageviews,
/// and both by page (viewed in the window) and by source (the visitor's first seen).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LiveWindow {
    pub visitors: usize,
    pub pageviews: usize,
    pub pages: Vec<WindowCount>,
    pub sources: Vec<WindowCount>,
}

/// Current visitors of a site, with the pages they are on and where they came from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LiveSnapshot {
    pub visitors: usize,
    pub pages: Vec<LiveCount>,
    pub sources: Vec<LiveCount>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LiveCount {
    pub name: String,
    pub visitors: usize,
}

/// A site's completions per unix minute.
type Minutes = BTreeMap<i64, HashMap<Completion, u64>>;

/// Who else hears of the hits recorded (other processes serving the realtime view).
type Tap = Box<dyn Fn(&[LiveHit]) + Send + Sync>;

#[derive(Default)]
pub struct LiveVisitors {
    sites: Mutex<HashMap<u32, HashMap<u64, Visitor>>>,
    /// Each site's latest pageview time, kept past the window (drop alerts ask how long ago).
    latest: Mutex<HashMap<u32, i64>>,
    /// Hits per site, minute (unix minutes of their time) and what they completed, for the last
    /// few minutes: goal conversions per minute, with nothing about who.
    completions: Mutex<HashMap<u32, Minutes>>,
    tap: Option<Tap>,
}

impl LiveVisitors {
    /// Visitors whose hits are also handed to `tap` as they are recorded.
    pub fn tapped(tap: impl Fn(&[LiveHit]) + Send + Sync + 'static) -> Self {
        Self { tap: Some(Box::new(tap)), ..Self::default() }
    }

    /// Hits must come in time order per visitor (the queue's order); a visitor's page is that of
    /// their latest hit, their source that of the first hit seen in the window.
    pub fn record(&self, hits: impl IntoIterator<Item = LiveHit>) {
        let hits: Vec<LiveHit> = hits.into_iter().collect();
        if let Some(tap) = &self.tap
            && !hits.is_empty()
        {
            tap(&hits);
        }
        let mut latest = self.latest.lock().unwrap();
        for h in hits.iter().filter(|h| h.pageview) {
            let at = latest.entry(h.site_id).or_insert(h.ts_ms);
            *at = (*at).max(h.ts_ms);
        }
        drop(latest);
        let mut completions = self.completions.lock().unwrap();
        for h in &hits {
            let done = match (&h.event, h.pageview) {
                (Some(name), _) => Completion::Event(name.clone()),
                (None, true) => Completion::Page(h.page.clone()),
                (None, false) => continue,
            };
            let minutes = completions.entry(h.site_id).or_default();
            let minute = h.ts_ms.div_euclid(60_000);
            let newest = minutes.last_key_value().map_or(minute, |(m, _)| (*m).max(minute));
            if minute <= newest - COMPLETION_MINUTES {
                continue;
            }
            if !minutes.contains_key(&minute) {
                // A new minute: the oldest may go (once a minute per site, not on every hit).
                minutes.retain(|m, _| *m > newest - COMPLETION_MINUTES);
            }
            let counts = minutes.entry(minute).or_default();
            if counts.len() < MAX_COMPLETIONS_PER_MINUTE || counts.contains_key(&done) {
                *counts.entry(done).or_default() += 1;
            }
        }
        drop(completions);
        let mut sites = self.sites.lock().unwrap();
        for h in hits {
            let site = sites.entry(h.site_id).or_default();
            let known = site.contains_key(&h.signature);
            if !known && (h.engagement || site.len() >= MAX_LIVE_VISITORS_PER_SITE) {
                continue;
            }
            let v = site.entry(h.signature).or_insert_with(|| Visitor {
                last_ms: h.ts_ms,
                page: String::new(),
                source: h.source,
                views: VecDeque::new(),
            });
            if h.pageview {
                if v.views.len() == VIEWS_PER_VISITOR {
                    v.views.pop_front();
                }
                v.views.push_back((h.ts_ms, Arc::from(h.page.as_str())));
            }
            if h.ts_ms >= v.last_ms || v.page.is_empty() {
                v.last_ms = v.last_ms.max(h.ts_ms);
                v.page = h.page;
            }
        }
    }

    /// Visitors with an event in the five minutes before `now_ms`, by page and by source (most
    /// visitors first, ties by name).
    pub fn snapshot(&self, site: u32, now_ms: i64) -> LiveSnapshot {
        let sites = self.sites.lock().unwrap();
        let Some(visitors) = sites.get(&site) else { return LiveSnapshot::default() };
        let current: Vec<&Visitor> =
            visitors.values().filter(|v| v.last_ms > now_ms - REALTIME_WINDOW_MS && v.last_ms <= now_ms).collect();
        let tally = |key: fn(&Visitor) -> &str| {
            let mut counts: HashMap<&str, usize> = HashMap::new();
            for v in &current {
                *counts.entry(key(v)).or_default() += 1;
            }
            let mut out: Vec<LiveCount> =
                counts.into_iter().map(|(name, visitors)| LiveCount { name: name.to_owned(), visitors }).collect();
            out.sort_by(|a, b| b.visitors.cmp(&a.visitors).then_with(|| a.name.cmp(&b.name)));
            out
        };
        LiveSnapshot { visitors: current.len(), pages: tally(|v| &v.page), sources: tally(|v| &v.source) }
    }

    /// Visitors with an event in the `window_ms` before `now_ms` (at most [`LIVE_MEMORY_MS`]),
    /// their pageviews, by page and by source (most visitors first, ties by name).
    pub fn window(&self, site: u32, now_ms: i64, window_ms: i64) -> LiveWindow {
        let from = now_ms - window_ms.min(LIVE_MEMORY_MS);
        let sites = self.sites.lock().unwrap();
        let Some(visitors) = sites.get(&site) else { return LiveWindow::default() };
        let inside = |ts: i64| ts > from && ts <= now_ms;
        let mut out = LiveWindow::default();
        let mut pages: HashMap<&str, (usize, usize)> = HashMap::new();
        let mut sources: HashMap<&str, (usize, usize)> = HashMap::new();
        for v in visitors.values().filter(|v| inside(v.last_ms) || v.views.iter().any(|(t, _)| inside(*t))) {
            let views: Vec<&str> = v.views.iter().filter(|(t, _)| inside(*t)).map(|(_, p)| &**p).collect();
            out.visitors += 1;
            out.pageviews += views.len();
            let source = sources.entry(&v.source).or_default();
            source.0 += 1;
            source.1 += views.len();
            let mut seen: Vec<&str> = Vec::new();
            for page in views {
                let count = pages.entry(page).or_default();
                count.1 += 1;
                if !seen.contains(&page) {
                    seen.push(page);
                    count.0 += 1;
                }
            }
        }
        let sorted = |counts: HashMap<&str, (usize, usize)>| {
            let mut list: Vec<WindowCount> = counts
                .into_iter()
                .map(|(name, (visitors, pageviews))| WindowCount { name: name.to_owned(), visitors, pageviews })
                .collect();
            list.sort_by(|a, b| b.visitors.cmp(&a.visitors).then_with(|| a.name.cmp(&b.name)));
            list
        };
        out.pages = sorted(pages);
        out.sources = sorted(sources);
        out
    }

    /// What the site's hits of unix minute `minute` completed, and how many times.
    pub fn completions(&self, site: u32, minute: i64) -> HashMap<Completion, u64> {
        let all = self.completions.lock().unwrap();
        all.get(&site).and_then(|m| m.get(&minute)).cloned().unwrap_or_default()
    }

    /// When the site's latest pageview seen by this process happened.
    pub fn last_pageview(&self, site: u32) -> Option<i64> {
        self.latest.lock().unwrap().get(&site).copied()
    }

    pub fn forget_older_than(&self, cutoff_ms: i64) {
        let mut sites = self.sites.lock().unwrap();
        for visitors in sites.values_mut() {
            visitors.retain(|_, v| v.last_ms > cutoff_ms);
            for v in visitors.values_mut() {
                while v.views.front().is_some_and(|(t, _)| *t <= cutoff_ms) {
                    v.views.pop_front();
                }
            }
        }
        sites.retain(|_, v| !v.is_empty());
    }
}

/// Hits as bytes, to pass between processes (never stored): per hit the site, signature and
/// time, a flags byte (1: engagement, 2: pageview, 4: a custom event's name follows), then page,
/// source (and the name) with their lengths, little-endian.
pub fn encode_hits(hits: &[LiveHit]) -> Vec<u8> {
    let mut out = Vec::with_capacity(hits.len() * 64);
    for h in hits {
        out.extend_from_slice(&h.site_id.to_le_bytes());
        out.extend_from_slice(&h.signature.to_le_bytes());
        out.extend_from_slice(&h.ts_ms.to_le_bytes());
        out.push(h.engagement as u8 | (h.pageview as u8) << 1 | (h.event.is_some() as u8) << 2);
        for text in [&h.page, &h.source].into_iter().chain(&h.event) {
            let text = &text.as_bytes()[..text.len().min(u16::MAX as usize)];
            out.extend_from_slice(&(text.len() as u16).to_le_bytes());
            out.extend_from_slice(text);
        }
    }
    out
}

/// [`encode_hits`] undone; `None` for bytes that are not hits.
pub fn decode_hits(mut bytes: &[u8]) -> Option<Vec<LiveHit>> {
    fn take<'a>(bytes: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        let (head, rest) = bytes.split_at_checked(n)?;
        *bytes = rest;
        Some(head)
    }
    fn text(bytes: &mut &[u8]) -> Option<String> {
        let len = u16::from_le_bytes(take(bytes, 2)?.try_into().ok()?) as usize;
        String::from_utf8(take(bytes, len)?.to_vec()).ok()
    }
    let mut hits = Vec::new();
    while !bytes.is_empty() {
        let site_id = u32::from_le_bytes(take(&mut bytes, 4)?.try_into().ok()?);
        let signature = u64::from_le_bytes(take(&mut bytes, 8)?.try_into().ok()?);
        let ts_ms = i64::from_le_bytes(take(&mut bytes, 8)?.try_into().ok()?);
        let flags = take(&mut bytes, 1)?[0];
        if flags > 7 {
            return None;
        }
        let (page, source) = (text(&mut bytes)?, text(&mut bytes)?);
        let event = if flags & 4 != 0 { Some(text(&mut bytes)?) } else { None };
        hits.push(LiveHit {
            site_id,
            signature,
            ts_ms,
            engagement: flags & 1 != 0,
            pageview: flags & 2 != 0,
            page,
            source,
            event,
        });
    }
    Some(hits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hits_survive_the_trip_between_processes_and_junk_is_refused() {
        let hits = vec![
            hit(1, 11, 1_000, "/ü/page", "Google"),
            LiveHit { engagement: true, pageview: false, ..hit(u32::MAX, u64::MAX, -5, "", "") },
        ];
        let bytes = encode_hits(&hits);
        let back = decode_hits(&bytes).unwrap();
        assert_eq!(back.len(), 2);
        for (a, b) in hits.iter().zip(&back) {
            assert_eq!(
                (a.site_id, a.signature, a.ts_ms, a.engagement, a.pageview),
                (b.site_id, b.signature, b.ts_ms, b.engagement, b.pageview)
            );
            assert_eq!((&a.page, &a.source), (&b.page, &b.source));
        }
        assert!(decode_hits(&bytes[..bytes.len() - 1]).is_none());
        assert_eq!(decode_hits(&[]).map(|h| h.len()), Some(0));
        // What a tapped record hands on is what it records.
        let seen = std::sync::Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        let live = LiveVisitors::tapped(move |h| s.lock().unwrap().push(encode_hits(h)));
        live.record(hits);
        assert_eq!(seen.lock().unwrap().as_slice(), [bytes]);
        assert_eq!(live.snapshot(1, 1_000).visitors, 1);
    }

    fn hit(site_id: u32, signature: u64, ts_ms: i64, page: &str, source: &str) -> LiveHit {
        LiveHit {
            site_id,
            signature,
            ts_ms,
            page: page.into(),
            source: source.into(),
            engagement: false,
            pageview: true,
            event: None,
        }
    }

    #[test]
    fn completions_are_counted_per_site_and_minute_for_the_last_minutes() {
        let live = LiveVisitors::default();
        let signup = |site, ts| LiveHit { pageview: false, event: Some("Signup".into()), ..hit(site, 7, ts, "/", "") };
        let ping = LiveHit { engagement: true, pageview: false, ..hit(1, 7, 61_000, "/", "") };
        live.record([
            hit(1, 1, 60_000, "/a", ""),
            hit(1, 2, 119_999, "/a", ""),
            signup(1, 61_000),
            ping,
            signup(2, 61_000),
        ]);
        let minute = live.completions(1, 1);
        assert_eq!(minute.get(&Completion::Page("/a".into())), Some(&2));
        assert_eq!(minute.get(&Completion::Event("Signup".into())), Some(&1));
        assert_eq!(minute.len(), 2, "pings complete nothing");
        assert_eq!(live.completions(2, 1).len(), 1);
        live.record([hit(1, 3, (1 + COMPLETION_MINUTES) * 60_000, "/b", "")]);
        assert!(live.completions(1, 1).is_empty(), "older minutes are forgotten");
        let hits = [signup(1, 5), hit(1, 2, 6, "/x", "y")];
        let back = decode_hits(&encode_hits(&hits)).unwrap();
        assert_eq!(back.iter().map(|h| h.event.clone()).collect::<Vec<_>>(), [Some("Signup".to_owned()), None]);
    }

    #[test]
    fn the_latest_pageview_of_each_site_outlives_the_window() {
        let live = LiveVisitors::default();
        let event = LiveHit { pageview: false, ..hit(2, 9, 9_000, "/", "") };
        live.record([hit(1, 1, 5_000, "/a", ""), hit(1, 2, 4_000, "/b", ""), event]);
        assert_eq!((live.last_pageview(1), live.last_pageview(2)), (Some(5_000), None), "events are not pageviews");
        live.forget_older_than(LIVE_MEMORY_MS * 10);
        assert_eq!(live.window(1, 6_000, LIVE_MEMORY_MS).visitors, 0);
        assert_eq!(live.last_pageview(1), Some(5_000));
    }

    #[test]
    fn counts_distinct_visitors_in_the_window_by_page_and_source() {
        let live = LiveVisitors::default();
        let now = 10_000_000;
        live.record([
            hit(1, 11, now - 1000, "/", "Google"),
            hit(1, 11, now - 500, "/pricing", ""),
            hit(1, 12, now - 6 * 60_000, "/old", "Twitter"),
            hit(1, 14, now - 200, "/pricing", ""),
            hit(2, 13, now, "/", ""),
        ]);
        // A ping alone is nobody; a ping of a known visitor keeps them current.
        live.record([
            LiveHit { engagement: true, pageview: false, ..hit(1, 15, now - 100, "/left", "") },
            LiveHit { engagement: true, pageview: false, ..hit(1, 14, now - 100, "/pricing", "") },
        ]);
        let s = live.snapshot(1, now);
        assert_eq!(s.visitors, 2);
        assert_eq!(s.pages, vec![LiveCount { name: "/pricing".into(), visitors: 2 }]);
        let sources: Vec<(&str, usize)> = s.sources.iter().map(|c| (c.name.as_str(), c.visitors)).collect();
        assert_eq!(sources, vec![("", 1), ("Google", 1)]);
        assert_eq!(live.snapshot(2, now).visitors, 1);
        assert_eq!(live.snapshot(3, now), LiveSnapshot::default());
        live.forget_older_than(now);
        assert_eq!(live.snapshot(1, now).visitors, 0);
    }

    #[test]
    fn a_window_counts_visitors_and_pageviews_by_page_and_source() {
        let live = LiveVisitors::default();
        let now = 100_000_000;
        let min = 60_000;
        live.record([
            // Visitor 1: / and /pricing twice in the last 5 minutes, from Google.
            hit(1, 1, now - 4 * min, "/", "Google"),
            hit(1, 1, now - 3 * min, "/pricing", ""),
            hit(1, 1, now - 2 * min, "/pricing", ""),
            // Visitor 2: /pricing 20 minutes ago, then a custom event now.
            hit(1, 2, now - 20 * min, "/pricing", ""),
            LiveHit { pageview: false, ..hit(1, 2, now - min, "/pricing", "") },
            // Visitor 3: 40 minutes ago, gone from both windows.
            hit(1, 3, now - 40 * min, "/", "Twitter"),
        ]);
        let w = live.window(1, now, REALTIME_WINDOW_MS);
        assert_eq!((w.visitors, w.pageviews), (2, 3));
        let pricing = WindowCount { name: "/pricing".into(), visitors: 1, pageviews: 2 };
        assert_eq!(w.pages, [WindowCount { name: "/".into(), visitors: 1, pageviews: 1 }, pricing]);
        let w = live.window(1, now, LIVE_MEMORY_MS);
        assert_eq!((w.visitors, w.pageviews), (2, 4));
        assert_eq!(w.pages[0], WindowCount { name: "/pricing".into(), visitors: 2, pageviews: 3 });
        let sources: Vec<(&str, usize, usize)> =
            w.sources.iter().map(|c| (c.name.as_str(), c.visitors, c.pageviews)).collect();
        assert_eq!(sources, [("", 1, 1), ("Google", 1, 3)]);
        // Forgetting the half hour before drops visitor 3 and visitor 2's old pageview.
        live.forget_older_than(now - LIVE_MEMORY_MS);
        let w = live.window(1, now, LIVE_MEMORY_MS);
        assert_eq!((w.visitors, w.pageviews), (2, 4));
        live.forget_older_than(now - 10 * min);
        assert_eq!(live.window(1, now, LIVE_MEMORY_MS).pageviews, 3);
    }

    #[test]
    fn a_flood_of_new_visitors_is_bounded() {
        let live = LiveVisitors::default();
        let hits = (0..MAX_LIVE_VISITORS_PER_SITE as u64 + 10).map(|sig| hit(1, sig, 1_000, "/", ""));
        live.record(hits);
        assert_eq!(live.window(1, 1_000, LIVE_MEMORY_MS).visitors, MAX_LIVE_VISITORS_PER_SITE);
        // A visitor already known still counts; another site has room of its own.
        live.record([hit(1, 0, 2_000, "/b", ""), hit(2, 1, 2_000, "/", "")]);
        assert_eq!(live.window(1, 2_000, LIVE_MEMORY_MS).pageviews, MAX_LIVE_VISITORS_PER_SITE + 1);
        assert_eq!(live.window(2, 2_000, LIVE_MEMORY_MS).visitors, 1);
    }
}
