//! End to end through HTTP: a scripted population across sites in different timezones, sent by
//! server-side ingestion with timestamps, must give exactly the numbers that an independent
//! computation of the counting rules (written here, from the brief) expects.

mod common;

use chrono::{NaiveDate, TimeZone};
use chrono_tz::Tz;
use common::*;
use serde_json::json;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

const MIN: i64 = 60_000;
const SITES: [(&str, &str); 3] =
    [("berlin.test", "Europe/Berlin"), ("la.test", "America/Los_Angeles"), ("tokyo.test", "Asia/Tokyo")];

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next() % (hi - lo + 1) as u64) as i64
    }
    fn chance(&mut self, p: f64) -> bool {
        (self.next() % 10_000) as f64 / 10_000.0 < p
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Kind {
    Pageview,
    Custom { interactive: bool },
    Engagement,
}

#[derive(Clone, Debug)]
struct Hit {
    site: usize,
    visitor: usize,
    ts_ms: i64,
    kind: Kind,
    path: String,
}

fn population() -> Vec<Hit> {
    let mut rng = Rng(0x5eed_1234_abcd_ef01);
    let mut hits = Vec::new();
    // 8–12 March 2024: Los Angeles switches to daylight time on the 10th.
    let first = NaiveDate::from_ymd_opt(2024, 3, 8).unwrap();
    for visitor in 0..360 {
        let site = visitor % SITES.len();
        let tz: Tz = SITES[site].1.parse().unwrap();
        let mut days: Vec<i64> = (0..5).filter(|_| rng.chance(0.5)).collect();
        if days.is_empty() {
            days.push(rng.range(0, 4));
        }
        for d in days {
            let date = first + chrono::Days::new(d as u64);
            let start_min = if rng.chance(0.1) { 23 * 60 + 40 } else { rng.range(0, 22 * 60) };
            let local = date.and_hms_opt(0, 0, 0).unwrap() + chrono::Duration::minutes(start_min);
            let Some(start) = tz.from_local_datetime(&local).earliest() else { continue };
            let mut ts = start.timestamp_millis();
            for session in 0..rng.range(1, 3) {
                if session > 0 {
                    // A new session needs a gap over 30 minutes; exactly 30 stays in the session.
                    ts += if rng.chance(0.15) { 30 * MIN } else { rng.range(31, 240) * MIN };
                }
                for pv in 0..rng.range(1, 5) {
                    if pv > 0 {
                        ts += rng.range(10, 600) * 1000;
                    }
                    let path = format!("/page/{}", rng.range(1, 12));
                    hits.push(Hit { site, visitor, ts_ms: ts, kind: Kind::Pageview, path: path.clone() });
                    if rng.chance(0.2) {
                        ts += 5000;
                        let interactive = rng.chance(0.7);
                        hits.push(Hit {
                            site,
                            visitor,
                            ts_ms: ts,
                            kind: Kind::Custom { interactive },
                            path: path.clone(),
                        });
                    }
                    if rng.chance(0.3) {
                        ts += 15_000;
                        hits.push(Hit { site, visitor, ts_ms: ts, kind: Kind::Engagement, path: path.clone() });
                    }
                }
                if rng.chance(0.05) {
                    // A stray ping long after the session ended: it must not count.
                    hits.push(Hit {
                        site,
                        visitor,
                        ts_ms: ts + 45 * MIN,
                        kind: Kind::Engagement,
                        path: "/page/1".into(),
                    });
                }
            }
        }
    }
    hits.sort_by_key(|h| h.ts_ms);
    hits
}

#[derive(Default, Debug, Clone, PartialEq)]
struct Expected {
    visitors: i64,
    visits: i64,
    pageviews: i64,
    events: i64,
    bounces: i64,
    duration_ms: i64,
}

struct Session {
    day: NaiveDate,
    first: i64,
    last: i64,
    pageviews: i64,
    custom: i64,
    interactive: bool,
}

/// The counting rules, computed directly: per (site, local date), an Expected.
fn expected(hits: &[Hit]) -> HashMap<(usize, NaiveDate), Expected> {
    let mut by_visitor: BTreeMap<(usize, usize), Vec<&Hit>> = BTreeMap::new();
    for h in hits {
        by_visitor.entry((h.site, h.visitor)).or_default().push(h);
    }
    let mut out: HashMap<(usize, NaiveDate), Expected> = HashMap::new();
    for ((site, _), mut hs) in by_visitor {
        hs.sort_by_key(|h| h.ts_ms);
        let tz: Tz = SITES[site].1.parse().unwrap();
        let day_of = |ts: i64| tz.timestamp_millis_opt(ts).unwrap().date_naive();
        let mut sessions: Vec<Session> = Vec::new();
        let mut days = HashSet::new();
        for h in hs {
            let day = day_of(h.ts_ms);
            let open = sessions.last().filter(|s| s.day == day && h.ts_ms - s.last <= 30 * MIN).is_some();
            if h.kind == Kind::Engagement {
                if open {
                    sessions.last_mut().unwrap().last = h.ts_ms;
                }
                continue;
            }
            days.insert(day);
            if !open {
                sessions.push(Session {
                    day,
                    first: h.ts_ms,
                    last: h.ts_ms,
                    pageviews: 0,
                    custom: 0,
                    interactive: false,
                });
            }
            let s = sessions.last_mut().unwrap();
            s.last = h.ts_ms;
            match h.kind {
                Kind::Pageview => s.pageviews += 1,
                Kind::Custom { interactive } => {
                    s.custom += 1;
                    s.interactive |= interactive;
                }
                Kind::Engagement => unreachable!(),
            }
        }
        for day in days {
            out.entry((site, day)).or_default().visitors += 1;
        }
        for s in sessions {
            let e = out.entry((site, s.day)).or_default();
            e.visits += 1;
            e.pageviews += s.pageviews;
            e.events += s.pageviews + s.custom;
            e.bounces += (s.pageviews <= 1 && !s.interactive) as i64;
            e.duration_ms += s.last - s.first;
        }
    }
    out
}

fn metrics_of(e: &Expected) -> Vec<serde_json::Value> {
    let ratio = |a: i64, b: i64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    vec![
        json!(e.visitors),
        json!(e.visits),
        json!(e.pageviews),
        json!(e.events),
        json!(ratio(e.bounces * 100, e.visits).round() as i64),
        json!(ratio(e.duration_ms, e.visits * 1000).round() as i64),
        json!((ratio(e.pageviews, e.visits) * 100.0).round() / 100.0),
    ]
}

fn sum(parts: impl Iterator<Item = Expected>) -> Expected {
    parts.fold(Expected::default(), |a, b| Expected {
        visitors: a.visitors + b.visitors,
        visits: a.visits + b.visits,
        pageviews: a.pageviews + b.pageviews,
        events: a.events + b.events,
        bounces: a.bounces + b.bounces,
        duration_ms: a.duration_ms + b.duration_ms,
    })
}

fn event_json(h: &Hit) -> serde_json::Value {
    let site = SITES[h.site].0;
    let mut e = json!({
        "domain": site,
        "url": format!("https://{site}{}", h.path),
        "ip": format!("10.{}.{}.{}", h.visitor / 65536, (h.visitor / 256) % 256, h.visitor % 256),
        "user_agent": format!("Mozilla/5.0 (X11; Linux x86_64) TestVisitor/{}", h.visitor),
    });
    // Both timestamp forms are accepted: alternate them.
    e["timestamp"] = if h.ts_ms % 2000 == 0 {
        json!(h.ts_ms / 1000)
    } else {
        json!(chrono::DateTime::from_timestamp_millis(h.ts_ms).unwrap().to_rfc3339())
    };
    match h.kind {
        Kind::Pageview => e["name"] = json!("pageview"),
        Kind::Custom { interactive } => {
            e["name"] = json!("Signup");
            e["interactive"] = json!(interactive);
        }
        Kind::Engagement => {
            e["name"] = json!("engagement");
            e["e"] = json!(15_000);
            e["sd"] = json!(60);
        }
    }
    e
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn population_counts_match_the_counting_rules() {
    let dir = temp_dir("counting");
    for (domain, tz) in SITES {
        cli(&dir, &["site", "add", domain, "--timezone", tz]);
    }
    let key = create_key(&dir, "ingest");
    let server = Server::start(&dir, &[]);
    let c = client();

    let hits = population();
    let want = expected(&hits);
    let total_pageviews: i64 = want.values().map(|e| e.pageviews).sum();
    assert!(hits.len() > 2000, "population is large enough: {} hits", hits.len());

    for chunk in hits.chunks(500) {
        let body: Vec<_> = chunk.iter().map(event_json).collect();
        let r = c.post(format!("{}/api/events", server.url)).bearer_auth(&key).json(&body).send().await.unwrap();
        assert_eq!(r.status(), 202);
        let answer: serde_json::Value = r.json().await.unwrap();
        assert_eq!(answer["accepted"], json!(chunk.len()), "{answer}");
    }

    let caught_up = eventually(Duration::from_secs(30), || async {
        let mut n = 0;
        for (domain, _) in SITES {
            n += aggregate(&c, &server.url, &key, domain, &["pageviews"], json!("all")).await[0].as_i64().unwrap();
        }
        n == total_pageviews
    })
    .await;
    assert!(caught_up, "pipeline did not reach {total_pageviews} pageviews");

    let metrics = ["visitors", "visits", "pageviews", "events", "bounce_rate", "visit_duration", "views_per_visit"];
    let first = NaiveDate::from_ymd_opt(2024, 3, 7).unwrap();
    let mut checked = 0;
    for (site, (domain, _)) in SITES.iter().enumerate() {
        // Every single day (including ones with no data), then every 2- and 3-day window.
        for len in 1..=3u64 {
            for start in 0..7u64 {
                let from = first + chrono::Days::new(start);
                let to = from + chrono::Days::new(len - 1);
                let days: Vec<NaiveDate> = from.iter_days().take_while(|d| *d <= to).collect();
                let exp = sum(days.iter().map(|d| want.get(&(site, *d)).cloned().unwrap_or_default()));
                let range = json!([from.to_string(), to.to_string()]);
                let got = aggregate(&c, &server.url, &key, domain, &metrics, range).await;
                assert_eq!(got, metrics_of(&exp), "{domain} {from}..{to}: expected {exp:?}");
                checked += 1;
            }
        }
    }
    let visitor_days: i64 = want.values().map(|e| e.visitors).sum();
    let sessions: i64 = want.values().map(|e| e.visits).sum();
    println!(
        "checked {checked} ranges over {} hits: {visitor_days} visitor-days, {sessions} sessions, {total_pageviews} pageviews",
        hits.len()
    );
}
