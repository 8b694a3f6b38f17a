//! Turns an ordered stream of signed hits into stored rows. All "same visitor" knowledge lives
//! here, in memory, keyed by (site, signature, local day); what leaves is additive counters (see
//! `plumb_core::row`). A visitor-day's sessions split after 30 idle minutes, and at local
//! midnight because the day is part of the key.
//!
//! Funnels are counted here too, as hits arrive: each session remembers how many of a funnel's
//! steps it has done in order, each visitor-day the most any of its sessions has, and a row marks
//! each step the visitor-day reaches for the first time.

use plumb_core::row::{RowKind, RowProp};
use plumb_core::schema::{self, Counters};
use plumb_core::url::wildcard_regex;
use plumb_core::{EventKind, QueuedEvent, Row, VisitInfo};
use plumb_meta::{FUNNEL_START_DELAY_MS, Funnel, GoalKind};
use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

pub const SESSION_TIMEOUT_MS: i64 = 30 * 60_000;

/// How much sooner than [`FUNNEL_START_DELAY_MS`] the funnels must have been read before a hit.
pub const FUNNEL_READ_MARGIN_MS: i64 = 5_000;

/// A stable 64-bit digest of a value, so state holds numbers rather than copies of strings.
/// `DefaultHasher::new()` has fixed keys, so a replay after restart digests identically.
fn digest(parts: &[&str]) -> u64 {
    let mut h = DefaultHasher::new();
    parts.hash(&mut h);
    h.finish()
}

struct Session {
    /// Event time of the session's earliest and latest hit: where later hits are placed.
    first_ts: i64,
    last_ts: i64,
    /// Queue receive time of the latest hit.
    last_touch_ms: i64,
    /// Queue positions of the session's hits: they stay in the queue while the session is
    /// recent, so a restart replays it whole, and are released together once it is not.
    seqs: Vec<u64>,
    pageviews: u32,
    bounce: bool,
    entry_page: String,
    visit: Arc<VisitInfo>,
    /// The page holding the session's exit flag: hostname, pathname, local hour, event time.
    exit_page: Option<(String, String, u8, i64)>,
    pages: HashSet<u64>,
    /// Deepest scroll reported per page in this session.
    scroll: HashMap<u64, u8>,
    /// Steps done in order, per funnel id (funnels the session has begun only).
    funnels: Vec<(u32, u8)>,
}

impl Session {
    /// How far a hit at `ts` is from the session, in event time (0 within it), if it is close
    /// enough to belong to it.
    fn distance(&self, ts: i64) -> Option<i64> {
        let d = (self.first_ts - ts).max(ts - self.last_ts).max(0);
        (d <= SESSION_TIMEOUT_MS).then_some(d)
    }
}

#[derive(Default)]
struct VisitorDay {
    /// Queue receive time of the latest hit; drives eviction, so a replay evicts alike.
    last_touch_ms: i64,
    /// Local hours (bit per hour) with a hit; the highest is where the visitor-day's
    /// `last_hour_visitors` mark is.
    hours: u32,
    pages: HashSet<u64>,
    names: HashSet<u64>,
    props: HashSet<u64>,
    /// Sessions of this visitor-day whose exit is on each page (hostname + pathname digest).
    exits: HashMap<u64, u32>,
    /// Values each attribute with a session bit (by bit) had in this visitor-day's sessions.
    attr_values: [HashSet<u64>; 16],
    /// The day's sessions, in no particular order: a hit joins the one whose time span it is
    /// within 30 minutes of (the nearest, if two), so hits that arrive out of time order (from
    /// several senders, or retried) still split into the sessions their timestamps say.
    sessions: Vec<Session>,
    /// The most steps of each funnel one of the day's sessions has done.
    funnels: Vec<(u32, u8)>,
}

/// What completes a funnel step, as the sessionizer matches it.
enum StepRule {
    /// A pageview whose path matches (the goal's pattern, anchored).
    Page(regex::Regex),
    /// A custom event of this name.
    Event(String),
}

impl StepRule {
    fn matches(&self, ev: &QueuedEvent) -> bool {
        match self {
            StepRule::Page(re) => ev.kind == EventKind::Pageview && re.is_match(&ev.pathname),
            StepRule::Event(name) => ev.kind == EventKind::Custom && ev.name == *name,
        }
    }
}

struct FunnelRule {
    id: u32,
    /// Hits received (queue time) before this are not counted for it.
    starts_ms: i64,
    steps: Vec<StepRule>,
}

/// The funnels being counted, per site, and when the metadata was read.
#[derive(Default)]
struct Funnels {
    by_site: HashMap<u32, Vec<FunnelRule>>,
    defined: Vec<Funnel>,
    loaded_ms: Option<i64>,
}

/// Steps done of funnel `id`, kept in a short list as few funnels are begun at once.
fn steps_done(list: &[(u32, u8)], id: u32) -> u8 {
    list.iter().find(|(f, _)| *f == id).map_or(0, |(_, done)| *done)
}

fn set_steps_done(list: &mut Vec<(u32, u8)>, id: u32, done: u8) {
    match list.iter_mut().find(|(f, _)| *f == id) {
        Some(entry) => entry.1 = done,
        None => list.push((id, done)),
    }
}

#[derive(Default)]
pub struct Sessionizer {
    days: HashMap<(u32, u64, i32), VisitorDay>,
    funnels: Funnels,
    /// Queue positions no session needs any more: hits that joined none, and sessions that are
    /// no longer recent.
    releasable: Vec<u64>,
}

impl Sessionizer {
    pub fn visitor_days(&self) -> usize {
        self.days.len()
    }

    /// The funnels to count, as the metadata said at `loaded_ms` (read before asking).
    pub fn set_funnels(&mut self, funnels: Vec<Funnel>, loaded_ms: i64) {
        self.funnels.loaded_ms = Some(loaded_ms);
        if funnels == self.funnels.defined {
            return;
        }
        let mut by_site: HashMap<u32, Vec<FunnelRule>> = HashMap::new();
        for f in &funnels {
            let steps = f.steps.iter().map(|s| match &s.kind {
                GoalKind::Page(p) => regex::Regex::new(&wildcard_regex(p)).map(StepRule::Page),
                GoalKind::Event(n) => Ok(StepRule::Event(n.clone())),
            });
            match steps.collect() {
                Ok(steps) => {
                    by_site.entry(f.site_id).or_default().push(FunnelRule { id: f.id, starts_ms: f.starts_ms, steps })
                }
                // Patterns are checked when goals are made; one that still does not compile counts nothing.
                Err(e) => tracing::warn!(funnel = f.id, "funnel step does not compile, funnel not counted: {e}"),
            }
        }
        self.funnels = Funnels { by_site, defined: funnels, loaded_ms: Some(loaded_ms) };
    }

    /// Whether a hit received at `received_ms` may be applied with the funnels as last loaded: a
    /// funnel counts hits received [`FUNNEL_START_DELAY_MS`] after it was made, so metadata read
    /// less than that long before the hit (by [`FUNNEL_READ_MARGIN_MS`], for the moment between
    /// stamping a funnel and committing it and for clocks that differ a little) knows every
    /// funnel the hit counts for, and a replay after a restart counts the same.
    pub fn funnels_known_for(&self, received_ms: i64) -> bool {
        self.funnels.loaded_ms.is_some_and(|at| received_ms <= at + FUNNEL_START_DELAY_MS - FUNNEL_READ_MARGIN_MS)
    }

    /// Applies one hit and appends the rows it produces to `out` (none for an engagement ping
    /// outside any session).
    pub fn apply(&mut self, ev: &QueuedEvent, seq: u64, received_ms: i64, out: &mut Vec<Row>) {
        let key = (ev.site_id, ev.signature, ev.day);
        let nearest = |vd: &VisitorDay| {
            vd.sessions
                .iter()
                .enumerate()
                .filter_map(|(i, s)| s.distance(ev.ts_ms).map(|d| (d, i)))
                .min()
                .map(|(_, i)| i)
        };
        let joins = self.days.get(&key).and_then(nearest);
        if ev.kind == EventKind::Engagement && joins.is_none() {
            self.releasable.push(seq);
            return;
        }
        let new_visitor = !self.days.contains_key(&key);
        let vd = self.days.entry(key).or_default();
        vd.last_touch_ms = vd.last_touch_ms.max(received_ms);
        let mut f = Counters { visitors: new_visitor as i8, ..Default::default() };

        let at = match joins {
            Some(i) => i,
            None => {
                f.visits = 1;
                f.bounces = 1;
                let visit = Arc::new(ev.visit.clone());
                vd.sessions.push(Session {
                    first_ts: ev.ts_ms,
                    last_ts: ev.ts_ms,
                    last_touch_ms: received_ms,
                    seqs: Vec::new(),
                    pageviews: 0,
                    bounce: true,
                    entry_page: ev.pathname.clone(),
                    visit,
                    exit_page: None,
                    pages: HashSet::new(),
                    scroll: HashMap::new(),
                    funnels: Vec::new(),
                });
                vd.sessions.len() - 1
            }
        };
        let s = &mut vd.sessions[at];
        s.seqs.push(seq);
        s.last_touch_ms = s.last_touch_ms.max(received_ms);
        // The session's duration is its last hit's time less its first's: a hit outside the
        // span adds what it extends it by, on either side; one within adds nothing.
        f.duration_ms = (ev.ts_ms - s.last_ts).max(0) + (s.first_ts - ev.ts_ms).max(0);
        s.last_ts = s.last_ts.max(ev.ts_ms);
        s.first_ts = s.first_ts.min(ev.ts_ms);

        if ev.kind != EventKind::Engagement {
            f.events = 1;
            let bit = 1u32 << (ev.hour % 24);
            // A later hour than any before moves the latest-hour mark to this hit. The correction
            // carries this session's visit, not the earlier one's, so that no row ties two
            // sessions' sources or entry pages together; only the attributes every session of a
            // visitor-day shares (location, device) are read with it.
            if vd.hours < bit {
                f.last_hour_visitors = 1;
                if vd.hours != 0 {
                    out.push(Row {
                        hour: (31 - vd.hours.leading_zeros()) as u8,
                        counters: Counters { last_hour_visitors: -1, ..Default::default() },
                        ..base_row(ev, s, "")
                    });
                }
            }
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
                // The exit is the session's latest pageview; an earlier one arriving late leaves
                // it where it is.
                if s.exit_page.as_ref().is_none_or(|(_, _, _, ts)| ev.ts_ms >= *ts) {
                    f.exits = 1;
                    let now_exit = (ev.hostname.clone(), ev.pathname.clone(), ev.hour, ev.ts_ms);
                    if let Some((host, path, hour, _)) = s.exit_page.replace(now_exit) {
                        // The visitor-day stops exiting on the old page if no other session does.
                        let old = vd.exits.entry(digest(&[&host, &path])).or_default();
                        *old = old.saturating_sub(1);
                        let exit_visitors = -((*old == 0) as i8);
                        out.push(Row {
                            kind: RowKind::Adjustment,
                            hostname: host,
                            pathname: path,
                            hour,
                            counters: Counters { exits: -1, exit_visitors, ..Default::default() },
                            ..base_row(ev, s, "")
                        });
                    }
                    let now = vd.exits.entry(page).or_default();
                    *now += 1;
                    f.exit_visitors = (*now == 1) as i8;
                }
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
        f.engaged_ms = ev.engaged_ms;
        if joins.is_none() {
            // The session's first row carries its visit attributes.
            for a in schema::ATTRS {
                if let Some(bit) = a.session_bit
                    && vd.attr_values[bit as usize].insert(digest(&[(a.value)(&row)]))
                {
                    f.attr_first |= 1 << bit;
                }
            }
        }
        row.counters = f;
        out.push(row);

        let rules = self.funnels.by_site.get(&ev.site_id).map_or(&[][..], Vec::as_slice);
        for rule in rules.iter().filter(|r| received_ms >= r.starts_ms) {
            let done = steps_done(&s.funnels, rule.id);
            if !rule.steps.get(done as usize).is_some_and(|step| step.matches(ev)) {
                continue;
            }
            let done = done + 1;
            set_steps_done(&mut s.funnels, rule.id, done);
            if done > steps_done(&vd.funnels, rule.id) {
                set_steps_done(&mut vd.funnels, rule.id, done);
                // The visit's attributes only (funnels take visit filters): not the page, which
                // next to the step would tell which page of the visit did it.
                out.push(Row {
                    kind: RowKind::Funnel,
                    name: plumb_query::funnel::step_name(rule.id, done.into()),
                    counters: Counters { funnel_visitors: 1, ..Default::default() },
                    ..base_row(ev, s, "")
                });
            }
        }
    }

    /// Hands out the queue positions no session needs any more: hits that joined no session,
    /// and those of sessions without a hit in the last `window_ms` of queue time (a restart then
    /// has nothing of them to rebuild). The caller releases those it has committed.
    pub fn take_releasable(&mut self, now_ms: i64, window_ms: i64) -> Vec<u64> {
        let mut out = std::mem::take(&mut self.releasable);
        for s in self.days.values_mut().flat_map(|vd| vd.sessions.iter_mut()) {
            if now_ms - s.last_touch_ms > window_ms {
                out.append(&mut s.seqs);
            }
        }
        out
    }

    /// Forgets visitor-days whose local day is over (per `day_over`) and which saw no hit for
    /// `idle_ms` of queue time, handing their sessions' queue positions to `take_releasable`.
    /// Returns how many were dropped.
    pub fn evict(&mut self, now_ms: i64, idle_ms: i64, mut day_over: impl FnMut(u32, i32) -> bool) -> usize {
        let before = self.days.len();
        let releasable = &mut self.releasable;
        self.days.retain(|(site, _, day), vd| {
            let keep = !(now_ms - vd.last_touch_ms > idle_ms && day_over(*site, *day));
            if !keep {
                releasable.extend(vd.sessions.iter_mut().flat_map(|s| s.seqs.drain(..)));
            }
            keep
        });
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
        counters: Counters::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use plumb_core::Attr;

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
        assert_eq!((on("/x", |r| r.counters.exits), on("/x", |r| r.counters.exit_visitors)), (2, 1));
        assert_eq!((on("/y", |r| r.counters.exits), on("/y", |r| r.counters.exit_visitors)), (1, 1));
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

        assert_eq!(sum(&rows, |r| r.counters.visitors as i64), 2);
        assert_eq!(sum(&rows, |r| r.counters.visits as i64), 3);
        assert_eq!(sum(&rows, |r| r.counters.pageviews as i64), 5);
        assert_eq!(sum(&rows, |r| r.counters.bounces as i64), 2, "session B and visitor 2 bounced");
        assert_eq!(sum(&rows, |r| r.counters.duration_ms), 3 * MIN + MIN);
        // Exactly one exit per session, on its last page.
        let exits = |p: &str| sum(&rows, |r| if r.pathname == p { r.counters.exits as i64 } else { 0 });
        assert_eq!((exits("/"), exits("/a"), exits("/b")), (1, 1, 1));
        assert_eq!(sum(&rows, |r| r.counters.exits as i64), 3);
        let exit_visitors = |p: &str| sum(&rows, |r| if r.pathname == p { r.counters.exit_visitors as i64 } else { 0 });
        assert_eq!((exit_visitors("/"), exit_visitors("/a"), exit_visitors("/b")), (1, 1, 1));
        // /a viewed twice in one session: one page visitor, one page visit.
        let pv = |p: &str| sum(&rows, |r| if r.pathname == p { r.counters.page_visitors as i64 } else { 0 });
        assert_eq!(pv("/a"), 1);
        assert_eq!(pv("/"), 2);
        // Session B is the visitor's first Google session and a new entry page.
        let b = rows.iter().find(|r| r.pathname == "/b" && r.counters.visits == 1).unwrap();
        assert_eq!(b.counters.attr_first & Attr::Source.session_bit().unwrap(), Attr::Source.session_bit().unwrap());
        assert_eq!(
            b.counters.attr_first & Attr::EntryPage.session_bit().unwrap(),
            Attr::EntryPage.session_bit().unwrap()
        );
        assert_eq!(b.counters.attr_first & Attr::Channel.session_bit().unwrap(), 0, "channel unchanged (empty)");
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
        let gain = sum(&rows, |r| r.counters.scroll_gain as i64);
        let pages = sum(&rows, |r| r.counters.scroll_pages as i64);
        assert_eq!((gain, pages), (130, 2));
        assert_eq!(sum(&rows, |r| r.counters.engaged_ms as i64), 4 * 5000);
    }

    #[test]
    fn a_new_local_day_is_a_new_visitor_and_session() {
        let mut s = Sessionizer::default();
        let mut rows = Vec::new();
        s.apply_t(&hit(1, 10, 100 * MIN, EventKind::Pageview, "/", ""), 0, &mut rows);
        s.apply_t(&hit(1, 11, 101 * MIN, EventKind::Pageview, "/", ""), 0, &mut rows);
        assert_eq!(sum(&rows, |r| r.counters.visitors as i64), 2);
        assert_eq!(sum(&rows, |r| r.counters.visits as i64), 2);
        assert_eq!(sum(&rows, |r| r.counters.bounces as i64), 2);
    }

    #[test]
    fn interactive_events_end_a_bounce_and_count_unique_completions() {
        let mut s = Sessionizer::default();
        let mut rows = Vec::new();
        s.apply_t(&hit(1, 10, 0, EventKind::Pageview, "/", ""), 0, &mut rows);
        let mut quiet = hit(1, 10, MIN, EventKind::Custom, "/", "");
        quiet.interactive = false;
        s.apply_t(&quiet, 0, &mut rows);
        assert_eq!(sum(&rows, |r| r.counters.bounces as i64), 1);
        s.apply_t(&hit(1, 10, 2 * MIN, EventKind::Custom, "/", ""), 0, &mut rows);
        assert_eq!(sum(&rows, |r| r.counters.bounces as i64), 0);
        assert_eq!(sum(&rows, |r| r.counters.events as i64), 3);
        assert_eq!(sum(&rows, |r| r.counters.name_visitors as i64), 1);
        assert_eq!(sum(&rows, |r| r.counters.hour_visitors as i64), 1);
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
        let exits_in = |h: u8| sum(&rows, |r| if r.hour == h { r.counters.exits as i64 } else { 0 });
        assert_eq!((exits_in(0), exits_in(1)), (0, 1));
    }

    #[test]
    fn a_session_releases_its_queue_entries_once_it_is_no_longer_recent() {
        let mut s = Sessionizer::default();
        let mut rows = Vec::new();
        // Visitor 1 stays active; visitor 2 came once; a stray ping joins no session.
        s.apply(&hit(1, 10, 0, EventKind::Pageview, "/", ""), 5, 1_000, &mut rows);
        s.apply(&hit(2, 10, 0, EventKind::Pageview, "/", ""), 6, 2_000, &mut rows);
        s.apply(&hit(3, 10, 0, EventKind::Engagement, "/", ""), 7, 2_000, &mut rows);
        s.apply(&hit(1, 10, 20 * MIN, EventKind::Pageview, "/a", ""), 8, 20 * MIN, &mut rows);
        assert_eq!(s.take_releasable(20 * MIN, SESSION_TIMEOUT_MS), vec![7], "the ping is needed by nobody");
        s.apply(&hit(1, 10, 40 * MIN, EventKind::Pageview, "/b", ""), 9, 40 * MIN, &mut rows);
        // Visitor 2 is idle for over 30 minutes of queue time: released, though visitor 1 is not.
        let mut released = s.take_releasable(40 * MIN, SESSION_TIMEOUT_MS);
        released.sort();
        assert_eq!(released, vec![6]);
        assert!(s.take_releasable(40 * MIN + 29 * MIN, SESSION_TIMEOUT_MS).is_empty());
        let mut released = s.take_releasable(40 * MIN + 31 * MIN, SESSION_TIMEOUT_MS);
        released.sort();
        assert_eq!(released, vec![5, 8, 9], "visitor 1's whole session at once");
    }

    #[test]
    fn visits_sent_newest_first_split_into_their_sessions() {
        let t0 = 1_000 * MIN;
        // Three visits an hour apart, two pages each, sent newest visit first (each visit in order).
        let visits = [(t0 + 120 * MIN, "/c"), (t0 + 60 * MIN, "/b"), (t0, "/a")];
        let mut in_order = Sessionizer::default();
        let mut reversed = Sessionizer::default();
        let (mut a, mut b) = (Vec::new(), Vec::new());
        let hits = |(ts, page): (i64, &str)| {
            [hit(1, 10, ts, EventKind::Pageview, page, "Google"), hit(1, 10, ts + MIN, EventKind::Pageview, "/x", "")]
        };
        for v in visits.iter().rev() {
            for h in hits(*v) {
                in_order.apply_t(&h, h.ts_ms, &mut a);
            }
        }
        for v in visits {
            for h in hits(v) {
                reversed.apply_t(&h, h.ts_ms, &mut b);
            }
        }
        for rows in [&a, &b] {
            assert_eq!(sum(rows, |r| r.counters.visits as i64), 3);
            assert_eq!(sum(rows, |r| r.counters.visitors as i64), 1);
            assert_eq!(sum(rows, |r| r.counters.bounces as i64), 0);
            assert_eq!(sum(rows, |r| r.counters.duration_ms), 3 * MIN);
            assert_eq!(sum(rows, |r| if r.pathname == "/x" { r.counters.exits as i64 } else { 0 }), 3);
            let entries: Vec<&str> =
                rows.iter().filter(|r| r.counters.visits == 1).map(|r| r.entry_page.as_str()).collect::<Vec<_>>();
            assert_eq!(entries.len(), 3);
        }
        // Pages out of order within a session: the exit stays on the latest, the duration spans
        // first to last.
        let mut s = Sessionizer::default();
        let mut rows = Vec::new();
        for (ts, page) in [(t0 + 5 * MIN, "/last"), (t0, "/first"), (t0 + 2 * MIN, "/middle")] {
            s.apply_t(&hit(1, 10, ts, EventKind::Pageview, page, ""), ts, &mut rows);
        }
        assert_eq!(sum(&rows, |r| r.counters.visits as i64), 1);
        assert_eq!(sum(&rows, |r| r.counters.duration_ms), 5 * MIN);
        let exits = |p: &str| sum(&rows, |r| if r.pathname == p { r.counters.exits as i64 } else { 0 });
        assert_eq!((exits("/last"), exits("/first"), exits("/middle")), (1, 0, 0));
    }

    fn funnel(id: u32, starts_ms: i64, steps: &[GoalKind]) -> Funnel {
        let steps = steps.iter().map(|k| plumb_meta::FunnelStep { name: k.default_name(), kind: k.clone() }).collect();
        Funnel { id, site_id: 1, name: format!("f{id}"), steps, created_ms: 0, starts_ms }
    }

    /// Visitor-days that reached each step of funnel `id`, from the rows.
    fn reached(rows: &[Row], id: u32, steps: usize) -> Vec<i64> {
        (1..=steps)
            .map(|k| {
                let name = plumb_query::funnel::step_name(id, k);
                sum(rows, |r| {
                    if r.kind == RowKind::Funnel && r.name == name { r.counters.funnel_visitors.into() } else { 0 }
                })
            })
            .collect()
    }

    #[test]
    fn funnel_steps_count_once_per_visitor_day_in_order_within_a_visit() {
        let steps = [GoalKind::Page("/a".into()), GoalKind::Event("Signup".into()), GoalKind::Page("/c/**".into())];
        let mut s = Sessionizer::default();
        // Funnel 2 begins at queue time 1000: hits received before do nothing for it.
        s.set_funnels(vec![funnel(1, 0, &steps), funnel(2, 1_000, &steps[..2])], 0);
        let mut rows = Vec::new();
        let t0 = 1_000 * MIN;
        let pv = |sig, ts, path: &str| hit(sig, 10, ts, EventKind::Pageview, path, "");
        let signup = |sig, ts| hit(sig, 10, ts, EventKind::Custom, "/a", "");
        // Visitor 1: /a, Signup, /a again, Signup again, /c/x/y: all three steps, each once.
        for (i, h) in [
            pv(1, t0, "/a"),
            signup(1, t0 + MIN),
            pv(1, t0 + 2 * MIN, "/a"),
            signup(1, t0 + 3 * MIN),
            pv(1, t0 + 4 * MIN, "/c/x/y"),
        ]
        .iter()
        .enumerate()
        {
            s.apply_t(h, 2_000 + i as i64, &mut rows);
        }
        // Visitor 2: Signup before /a (out of order), then /c: only step 1.
        for h in [signup(2, t0), pv(2, t0 + MIN, "/a"), pv(2, t0 + 2 * MIN, "/c/x")] {
            s.apply_t(&h, 2_000, &mut rows);
        }
        // Visitor 3: /a in one session, Signup in the next (an hour later): step 1 only; then a
        // third session that does both reaches step 2 once.
        for h in [pv(3, t0, "/a"), signup(3, t0 + 60 * MIN), pv(3, t0 + 120 * MIN, "/a"), signup(3, t0 + 121 * MIN)] {
            s.apply_t(&h, 2_000, &mut rows);
        }
        // Visitor 4: /a received before funnel 2 began, Signup after: funnel 1 sees both, 2 neither.
        s.apply_t(&pv(4, t0, "/a"), 500, &mut rows);
        s.apply_t(&signup(4, t0 + MIN), 2_000, &mut rows);
        assert_eq!(reached(&rows, 1, 3), [4, 3, 1]);
        assert_eq!(reached(&rows, 2, 2), [3, 2]);
        // A mark carries the visit's attributes, not the hit's page, and no other counter.
        let mark = rows.iter().find(|r| r.kind == RowKind::Funnel && r.name == "1:3").unwrap();
        assert_eq!((mark.pathname.as_str(), mark.entry_page.as_str()), ("", "/a"));
        assert_eq!(mark.counters, Counters { funnel_visitors: 1, ..Default::default() });
    }

    #[test]
    fn a_replayed_queue_rebuilds_funnel_progress() {
        let steps = [GoalKind::Page("/a".into()), GoalKind::Page("/b".into()), GoalKind::Page("/c".into())];
        let t0 = 1_000 * MIN;
        let hits: Vec<QueuedEvent> = (0..60)
            .map(|i| {
                hit(
                    (i % 7) as u64,
                    10,
                    t0 + i as i64 * MIN,
                    EventKind::Pageview,
                    ["/a", "/b", "/x", "/c"][(i * 5 % 11) % 4],
                    "",
                )
            })
            .collect();
        let run = |restart_at: usize| {
            let mut s = Sessionizer::default();
            s.set_funnels(vec![funnel(1, 0, &steps)], 0);
            let mut rows = Vec::new();
            for (i, h) in hits.iter().enumerate() {
                if i == restart_at {
                    // A restart: fresh state, the queue's entries so far replayed into nothing.
                    s = Sessionizer::default();
                    s.set_funnels(vec![funnel(1, 0, &steps)], 0);
                    for h in &hits[..i] {
                        s.apply_t(h, 0, &mut Vec::new());
                    }
                }
                s.apply_t(h, 0, &mut rows);
            }
            reached(&rows, 1, 3)
        };
        let whole = run(usize::MAX);
        assert!(whole[2] > 0, "{whole:?}");
        assert_eq!(run(30), whole);
    }

    #[test]
    fn funnels_are_known_for_hits_received_up_to_the_start_delay_after_a_read() {
        let mut s = Sessionizer::default();
        assert!(!s.funnels_known_for(0), "nothing read yet");
        s.set_funnels(vec![], 5_000);
        assert!(s.funnels_known_for(5_000 + FUNNEL_START_DELAY_MS - FUNNEL_READ_MARGIN_MS));
        assert!(!s.funnels_known_for(5_001 + FUNNEL_START_DELAY_MS - FUNNEL_READ_MARGIN_MS));
    }

    #[test]
    fn the_latest_hour_mark_moves_with_the_visitor_days_latest_hit() {
        let mut s = Sessionizer::default();
        let mut rows = Vec::new();
        let at = |sig, hour: i64, kind| {
            let mut h = hit(sig, 10, hour * 60 * MIN, kind, "/", "");
            h.hour = hour as u8;
            h
        };
        // Visitor 1 at 8, 9 and 20 (two sessions), an earlier hour late, and a ping at 22;
        // visitor 2 at 5.
        for h in [at(1, 8, EventKind::Pageview), at(1, 9, EventKind::Pageview), at(1, 20, EventKind::Pageview)] {
            s.apply_t(&h, 0, &mut rows);
        }
        s.apply_t(&at(1, 7, EventKind::Custom), 0, &mut rows);
        s.apply_t(&at(1, 22, EventKind::Engagement), 0, &mut rows);
        s.apply_t(&at(2, 5, EventKind::Pageview), 0, &mut rows);
        let from = |h0: u8| sum(&rows, |r| if r.hour >= h0 { r.counters.last_hour_visitors.into() } else { 0 });
        // Active from hour H on: both from 0 to 5, visitor 1 alone from 6 to 20, nobody after.
        assert_eq!((from(0), from(5), from(6), from(20), from(21)), (2, 2, 1, 1, 0));
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
