//! Turns an ordered stream of signed hits into stored rows. All "same visitor" knowledge lives
//! here, in memory, keyed by (site, signature, local day); what leaves is additive counters (see
//! `plumb_core::row`). A visitor-day's sessions split after 30 idle minutes, and at local
//! midnight because the day is part of the key.

use plumb_core::row::{RowKind, RowProp};
use plumb_core::{EventKind, QueuedEvent, Row, VisitAttr, VisitInfo};
use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

pub const SESSION_TIMEOUT_MS: i64 = 30 * 60_000;

/// A stable 64-bit digest of a value, so state holds numbers rather than copies of strings.
/// `DefaultHasher::new()` has fixed keys, so a replay after restart digests identically.
fn digest(parts: &[&str]) -> u64 {
    let mut h = DefaultHasher::new();
    parts.hash(&mut h);
    h.finish()
}

struct Session {
    /// Queue position of the session's first hit: the queue keeps entries from here on while
    /// the session is open, so a restart replays whole sessions.
    first_seq: u64,
    /// Queue receive time of the latest hit.
    last_touch_ms: i64,
    last_ts: i64,
    pageviews: u32,
    bounce: bool,
    entry_page: String,
    visit: Arc<VisitInfo>,
    /// The page holding the session's exit flag: hostname, pathname, local hour.
    exit_page: Option<(String, String, u8)>,
    pages: HashSet<u64>,
    /// Deepest scroll reported per page in this session.
    scroll: HashMap<u64, u8>,
}

#[derive(Default)]
struct VisitorDay {
    /// Queue receive time of the latest hit; drives eviction, so a replay evicts alike.
    last_touch_ms: i64,
    /// Local hours (bit per hour) with a hit.
    hours: u32,
    pages: HashSet<u64>,
    names: HashSet<u64>,
    props: HashSet<u64>,
    /// Sessions of this visitor-day whose exit is on each page (hostname + pathname digest).
    exits: HashMap<u64, u32>,
    attr_values: [HashSet<u64>; VisitAttr::ALL.len()],
    session: Option<Session>,
}

#[derive(Default)]
pub struct Sessionizer {
    days: HashMap<(u32, u64, i32), VisitorDay>,
}

/// Counters of a row that are not copied from the event.
#[derive(Default)]
struct Flags {
    pageviews: i8,
    events: i8,
    visitors: i8,
    visits: i8,
    bounces: i8,
    exits: i8,
    exit_visitors: i8,
    page_visitors: i8,
    page_visits: i8,
    hour_visitors: i8,
    name_visitors: i8,
    attr_first: u16,
    duration_ms: i64,
    scroll_gain: u8,
    scroll_pages: i8,
}

impl Sessionizer {
    pub fn visitor_days(&self) -> usize {
        self.days.len()
    }

    /// Applies one hit and appends the rows it produces to `out` (none for an engagement ping
    /// outside any open session).
    pub fn apply(&mut self, ev: &QueuedEvent, seq: u64, received_ms: i64, out: &mut Vec<Row>) {
        let key = (ev.site_id, ev.signature, ev.day);
        let open =
            |vd: &VisitorDay| vd.session.as_ref().filter(|s| ev.ts_ms - s.last_ts <= SESSION_TIMEOUT_MS).is_some();
        if ev.kind == EventKind::Engagement && !self.days.get(&key).is_some_and(open) {
            return;
        }
        let new_visitor = !self.days.contains_key(&key);
        let vd = self.days.entry(key).or_default();
        vd.last_touch_ms = vd.last_touch_ms.max(received_ms);
        let mut f = Flags { visitors: new_visitor as i8, ..Default::default() };

        if !open(vd) {
            f.visits = 1;
            f.bounces = 1;
            let visit = Arc::new(ev.visit.clone());
            for attr in VisitAttr::ALL {
                if vd.attr_values[attr as usize].insert(digest(&[&attr.value(&ev.pathname, &visit)])) {
                    f.attr_first |= attr.bit();
                }
            }
            vd.session = Some(Session {
                first_seq: seq,
                last_touch_ms: received_ms,
                last_ts: ev.ts_ms,
                pageviews: 0,
                bounce: true,
                entry_page: ev.pathname.clone(),
                visit,
                exit_page: None,
                pages: HashSet::new(),
                scroll: HashMap::new(),
            });
        }
        let s = vd.session.as_mut().expect("a session is open");
        s.last_touch_ms = s.last_touch_ms.max(received_ms);
        // Events from one visitor should arrive in order; a late one adds no negative time.
        f.duration_ms = (ev.ts_ms - s.last_ts).max(0);
        s.last_ts = s.last_ts.max(ev.ts_ms);

        if ev.kind != EventKind::Engagement {
            f.events = 1;
            let bit = 1u32 << (ev.hour % 24);
            if vd.hours & bit == 0 {
                vd.hours |= bit;
                f.hour_visitors = 1;
            }
        }
        match ev.kind {
            EventKind::Pageview => {
                f.pageviews = 1;
                s.pageviews += 1;
                let page = digest(&[&ev.hostname, &ev.pathname]);
                f.page_visitors = vd.pages.insert(page) as i8;
                f.page_visits = s.pages.insert(page) as i8;
                f.exits = 1;
                let now_exit = (ev.hostname.clone(), ev.pathname.clone(), ev.hour);
                if let Some((host, path, hour)) = s.exit_page.replace(now_exit) {
                    // The visitor-day stops exiting on the old page if no other session does.
                    let old = vd.exits.entry(digest(&[&host, &path])).or_default();
                    *old = old.saturating_sub(1);
                    let exit_visitors = -((*old == 0) as i8);
                    out.push(Row {
                        kind: RowKind::Adjustment,
                        hostname: host,
                        pathname: path,
                        hour,
                        exits: -1,
                        exit_visitors,
                        ..base_row(ev, s, "")
                    });
                }
                let now = vd.exits.entry(page).or_default();
                *now += 1;
                f.exit_visitors = (*now == 1) as i8;
            }
            EventKind::Custom => f.name_visitors = vd.names.insert(digest(&[&ev.name])) as i8,
            EventKind::Engagement => {
                if let Some(depth) = ev.scroll_depth {
                    let page = digest(&[&ev.hostname, &ev.pathname]);
                    match s.scroll.insert(page, depth) {
                        None => {
                            f.scroll_pages = 1;
                            f.scroll_gain = depth;
                        }
                        Some(before) => {
                            f.scroll_gain = depth.saturating_sub(before);
                            s.scroll.insert(page, before.max(depth));
                        }
                    }
                }
            }
        }
        let interacted = s.pageviews >= 2 || (ev.kind == EventKind::Custom && ev.interactive);
        if s.bounce && interacted {
            s.bounce = false;
            f.bounces -= 1;
        }
        let mut row = base_row(ev, s, &ev.name);
        row.kind = ev.kind.into();
        row.hostname = ev.hostname.clone();
        row.pathname = ev.pathname.clone();
        if ev.kind != EventKind::Engagement {
            row.props = ev
                .props
                .iter()
                .map(|(k, v)| RowProp {
                    key: k.clone(),
                    value: v.clone(),
                    first_of_day: vd.props.insert(digest(&[k.as_str(), v.as_str()])),
                })
                .collect();
        }
        row.revenue = ev.revenue.clone();
        row.engaged_ms = ev.engaged_ms;
        apply_flags(&mut row, f);
        out.push(row);
    }

    /// The queue position where the oldest session with a hit in the last `window_ms` (queue
    /// time) began: entries from there on stay in the queue, so a restart replays those sessions
    /// whole.
    pub fn oldest_recent_session(&self, now_ms: i64, window_ms: i64) -> Option<u64> {
        self.days
            .values()
            .filter_map(|vd| vd.session.as_ref())
            .filter(|s| now_ms - s.last_touch_ms <= window_ms)
            .map(|s| s.first_seq)
            .min()
    }

    /// Forgets visitor-days whose local day is over (per `day_over`) and which saw no hit for
    /// `idle_ms` of queue time. Returns how many were dropped.
    pub fn evict(&mut self, now_ms: i64, idle_ms: i64, mut day_over: impl FnMut(u32, i32) -> bool) -> usize {
        let before = self.days.len();
        self.days.retain(|(site, _, day), vd| !(now_ms - vd.last_touch_ms > idle_ms && day_over(*site, *day)));
        before - self.days.len()
    }
}

fn base_row(ev: &QueuedEvent, s: &Session, name: &str) -> Row {
    Row {
        site_id: ev.site_id,
        day: ev.day,
        hour: ev.hour,
        kind: RowKind::Adjustment,
        name: name.to_owned(),
        hostname: String::new(),
        pathname: String::new(),
        entry_page: s.entry_page.clone(),
        visit: s.visit.clone(),
        props: Vec::new(),
        revenue: None,
        pageviews: 0,
        events: 0,
        visitors: 0,
        visits: 0,
        bounces: 0,
        exits: 0,
        exit_visitors: 0,
        page_visitors: 0,
        page_visits: 0,
        hour_visitors: 0,
        name_visitors: 0,
        attr_first: 0,
        duration_ms: 0,
        engaged_ms: 0,
        scroll_gain: 0,
        scroll_pages: 0,
    }
}

fn apply_flags(row: &mut Row, f: Flags) {
    row.pageviews = f.pageviews;
    row.events = f.events;
    row.visitors = f.visitors;
    row.visits = f.visits;
    row.bounces = f.bounces;
    row.exits = f.exits;
    row.exit_visitors = f.exit_visitors;
    row.page_visitors = f.page_visitors;
    row.page_visits = f.page_visits;
    row.hour_visitors = f.hour_visitors;
    row.name_visitors = f.name_visitors;
    row.attr_first = f.attr_first;
    row.duration_ms = f.duration_ms;
    row.scroll_gain = f.scroll_gain;
    row.scroll_pages = f.scroll_pages;
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    fn hit(sig: u64, day: i32, ts: i64, kind: EventKind, path: &str, source: &str) -> QueuedEvent {
        QueuedEvent {
            site_id: 1,
            ts_ms: ts,
            day,
            hour: (ts / 3_600_000 % 24) as u8,
            signature: sig,
            kind,
            name: if kind == EventKind::Custom { "Signup".into() } else { String::new() },
            hostname: "example.com".into(),
            pathname: path.into(),
            visit: VisitInfo { source: source.into(), ..Default::default() },
            props: vec![],
            revenue: None,
            interactive: true,
            engaged_ms: if kind == EventKind::Engagement { 5000 } else { 0 },
            scroll_depth: if kind == EventKind::Engagement { Some(40) } else { None },
        }
    }

    impl Sessionizer {
        /// `apply` with the queue position taken from the receive time (unique enough here).
        fn apply_t(&mut self, ev: &QueuedEvent, received_ms: i64, out: &mut Vec<Row>) {
            self.apply(ev, received_ms as u64, received_ms, out)
        }
    }

    fn sum(rows: &[Row], f: impl Fn(&Row) -> i64) -> i64 {
        rows.iter().map(f).sum()
    }

    #[test]
    fn exit_visitors_count_a_visitor_day_once_per_exit_page() {
        let mut s = Sessionizer::default();
        let mut rows = Vec::new();
        let t0 = 1_000 * MIN;
        // Two sessions that both end on /x, then a third that ends on /x and moves on to /y.
        for (ts, path) in [(t0, "/x"), (t0 + 40 * MIN, "/x"), (t0 + 80 * MIN, "/x"), (t0 + 81 * MIN, "/y")] {
            s.apply_t(&hit(1, 10, ts, EventKind::Pageview, path, ""), ts, &mut rows);
        }
        let on = |p: &str, f: fn(&Row) -> i8| sum(&rows, |r| if r.pathname == p { f(r) as i64 } else { 0 });
        assert_eq!((on("/x", |r| r.exits), on("/x", |r| r.exit_visitors)), (2, 1));
        assert_eq!((on("/y", |r| r.exits), on("/y", |r| r.exit_visitors)), (1, 1));
    }

    #[test]
    fn sessions_bounces_exits_and_duration_add_up() {
        let mut s = Sessionizer::default();
        let mut rows = Vec::new();
        let t0 = 1_000 * MIN;
        // Visitor 1: session A (/, /a, /a), 40 min gap, session B (/b) from Google.
        for (ts, path, src) in
            [(t0, "/", ""), (t0 + MIN, "/a", ""), (t0 + 3 * MIN, "/a", ""), (t0 + 43 * MIN, "/b", "Google")]
        {
            s.apply_t(&hit(1, 10, ts, EventKind::Pageview, path, src), ts, &mut rows);
        }
        // Engagement on the open session adds duration, not pageviews.
        s.apply_t(&hit(1, 10, t0 + 44 * MIN, EventKind::Engagement, "/b", ""), 0, &mut rows);
        // Visitor 2: one pageview (a bounce), and a stray engagement long after: dropped.
        s.apply_t(&hit(2, 10, t0, EventKind::Pageview, "/", ""), 0, &mut rows);
        let before = rows.len();
        s.apply_t(&hit(2, 10, t0 + 90 * MIN, EventKind::Engagement, "/", ""), 0, &mut rows);
        assert_eq!(rows.len(), before);

        assert_eq!(sum(&rows, |r| r.visitors as i64), 2);
        assert_eq!(sum(&rows, |r| r.visits as i64), 3);
        assert_eq!(sum(&rows, |r| r.pageviews as i64), 5);
        assert_eq!(sum(&rows, |r| r.bounces as i64), 2, "session B and visitor 2 bounced");
        assert_eq!(sum(&rows, |r| r.duration_ms), 3 * MIN + MIN);
        // Exactly one exit per session, on its last page.
        let exits = |p: &str| sum(&rows, |r| if r.pathname == p { r.exits as i64 } else { 0 });
        assert_eq!((exits("/"), exits("/a"), exits("/b")), (1, 1, 1));
        assert_eq!(sum(&rows, |r| r.exits as i64), 3);
        let exit_visitors = |p: &str| sum(&rows, |r| if r.pathname == p { r.exit_visitors as i64 } else { 0 });
        assert_eq!((exit_visitors("/"), exit_visitors("/a"), exit_visitors("/b")), (1, 1, 1));
        // /a viewed twice in one session: one page visitor, one page visit.
        let pv = |p: &str| sum(&rows, |r| if r.pathname == p { r.page_visitors as i64 } else { 0 });
        assert_eq!(pv("/a"), 1);
        assert_eq!(pv("/"), 2);
        // Session B is the visitor's first Google session and a new entry page.
        let b = rows.iter().find(|r| r.pathname == "/b" && r.visits == 1).unwrap();
        assert_eq!(b.attr_first & VisitAttr::Source.bit(), VisitAttr::Source.bit());
        assert_eq!(b.attr_first & VisitAttr::EntryPage.bit(), VisitAttr::EntryPage.bit());
        assert_eq!(b.attr_first & VisitAttr::Channel.bit(), 0, "channel unchanged (empty)");
    }

    #[test]
    fn scroll_depth_averages_the_deepest_scroll_per_session_page() {
        let mut s = Sessionizer::default();
        let mut rows = Vec::new();
        s.apply_t(&hit(1, 10, 0, EventKind::Pageview, "/", ""), 0, &mut rows);
        for depth in [40, 30, 90] {
            let mut ping = hit(1, 10, MIN, EventKind::Engagement, "/", "");
            ping.scroll_depth = Some(depth);
            s.apply_t(&ping, 0, &mut rows);
        }
        s.apply_t(&hit(2, 10, 0, EventKind::Pageview, "/", ""), 0, &mut rows);
        s.apply_t(&hit(2, 10, MIN, EventKind::Engagement, "/", ""), 0, &mut rows);
        // Visitor 1 reached 90, visitor 2 reached 40: average 65.
        let gain = sum(&rows, |r| r.scroll_gain as i64);
        let pages = sum(&rows, |r| r.scroll_pages as i64);
        assert_eq!((gain, pages), (130, 2));
        assert_eq!(sum(&rows, |r| r.engaged_ms as i64), 4 * 5000);
    }

    #[test]
    fn a_new_local_day_is_a_new_visitor_and_session() {
        let mut s = Sessionizer::default();
        let mut rows = Vec::new();
        s.apply_t(&hit(1, 10, 100 * MIN, EventKind::Pageview, "/", ""), 0, &mut rows);
        s.apply_t(&hit(1, 11, 101 * MIN, EventKind::Pageview, "/", ""), 0, &mut rows);
        assert_eq!(sum(&rows, |r| r.visitors as i64), 2);
        assert_eq!(sum(&rows, |r| r.visits as i64), 2);
        assert_eq!(sum(&rows, |r| r.bounces as i64), 2);
    }

    #[test]
    fn interactive_events_end_a_bounce_and_count_unique_completions() {
        let mut s = Sessionizer::default();
        let mut rows = Vec::new();
        s.apply_t(&hit(1, 10, 0, EventKind::Pageview, "/", ""), 0, &mut rows);
        let mut quiet = hit(1, 10, MIN, EventKind::Custom, "/", "");
        quiet.interactive = false;
        s.apply_t(&quiet, 0, &mut rows);
        assert_eq!(sum(&rows, |r| r.bounces as i64), 1);
        s.apply_t(&hit(1, 10, 2 * MIN, EventKind::Custom, "/", ""), 0, &mut rows);
        assert_eq!(sum(&rows, |r| r.bounces as i64), 0);
        assert_eq!(sum(&rows, |r| r.events as i64), 3);
        assert_eq!(sum(&rows, |r| r.name_visitors as i64), 1);
        assert_eq!(sum(&rows, |r| r.hour_visitors as i64), 1);
    }

    #[test]
    fn exit_corrections_land_in_the_hour_of_the_replaced_page() {
        let mut s = Sessionizer::default();
        let mut rows = Vec::new();
        let mut a = hit(1, 10, 59 * MIN, EventKind::Pageview, "/a", "");
        a.hour = 0;
        let mut b = hit(1, 10, 61 * MIN, EventKind::Pageview, "/b", "");
        b.hour = 1;
        s.apply_t(&a, 0, &mut rows);
        s.apply_t(&b, 0, &mut rows);
        let exits_in = |h: u8| sum(&rows, |r| if r.hour == h { r.exits as i64 } else { 0 });
        assert_eq!((exits_in(0), exits_in(1)), (0, 1));
    }

    #[test]
    fn recent_sessions_pin_their_first_queue_entry() {
        let mut s = Sessionizer::default();
        let mut rows = Vec::new();
        s.apply(&hit(1, 10, 0, EventKind::Pageview, "/", ""), 5, 1_000, &mut rows);
        s.apply(&hit(1, 10, MIN, EventKind::Pageview, "/", ""), 9, 61_000, &mut rows);
        s.apply(&hit(2, 10, 0, EventKind::Pageview, "/", ""), 7, 2_000, &mut rows);
        assert_eq!(s.oldest_recent_session(61_000, SESSION_TIMEOUT_MS), Some(5));
        // Visitor 2's session has been idle for over 30 minutes of queue time; visitor 1's not.
        assert_eq!(s.oldest_recent_session(2_000 + 30 * MIN + 1, SESSION_TIMEOUT_MS), Some(5));
        assert_eq!(s.oldest_recent_session(61_000 + 31 * MIN, SESSION_TIMEOUT_MS), None);
    }

    #[test]
    fn eviction_waits_for_the_day_to_end_and_the_idle_time() {
        let mut s = Sessionizer::default();
        let mut rows = Vec::new();
        s.apply_t(&hit(1, 10, 0, EventKind::Pageview, "/", ""), 1_000, &mut rows);
        assert_eq!(s.evict(1_000 + 10 * MIN, MIN, |_, _| false), 0);
        assert_eq!(s.evict(1_000 + 30, MIN, |_, _| true), 0);
        assert_eq!(s.evict(1_000 + 10 * MIN, MIN, |_, _| true), 1);
        assert_eq!(s.visitor_days(), 0);
    }
}
