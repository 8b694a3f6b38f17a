//! End to end through HTTP: a scripted population across sites in different timezones, sent by
//! server-side ingestion with timestamps, must give exactly the numbers that an independent
//! computation of the counting rules (written here, from the brief) expects — on the embedded
//! backends, and through two collectors and one worker meeting on NATS JetStream with the
//! metadata on PostgreSQL.

mod common;

use chrono::{NaiveDate, TimeZone};
use chrono_tz::Tz;
use common::*;
use plumb_meta::testing::TestDb;
use plumb_queue::testing::NatsServer;
use plumb_store::testing::ClickHouseServer;
use serde_json::json;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

const MIN: i64 = 60_000;
const SITES: [(&str, &str); 3] =
    [("berlin.test", "Europe/Berlin"), ("la.test", "America/Los_Angeles"), ("tokyo.test", "Asia/Tokyo")];

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
    /// Index into REFERRERS; the same for every hit of a generated session.
    referrer: usize,
}

/// (referrer URL, the source it must be counted under)
const REFERRERS: [(&str, &str); 4] = [
    ("", ""),
    ("https://www.google.com/search?q=plumb", "Google"),
    ("https://t.co/abc", "Twitter"),
    ("https://news.example.org/story/1", "news.example.org"),
];

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
                let referrer = rng.range(0, 3) as usize;
                if session > 0 {
                    // A new session needs a gap over 30 minutes; exactly 30 stays in the session.
                    ts += if rng.chance(0.15) { 30 * MIN } else { rng.range(31, 240) * MIN };
                }
                for pv in 0..rng.range(1, 5) {
                    if pv > 0 {
                        ts += rng.range(10, 600) * 1000;
                    }
                    let path = format!("/page/{}", rng.range(1, 12));
                    hits.push(Hit { site, visitor, ts_ms: ts, kind: Kind::Pageview, path: path.clone(), referrer });
                    if rng.chance(0.2) {
                        ts += 5000;
                        let interactive = rng.chance(0.7);
                        hits.push(Hit {
                            site,
                            visitor,
                            ts_ms: ts,
                            kind: Kind::Custom { interactive },
                            path: path.clone(),
                            referrer,
                        });
                    }
                    if rng.chance(0.3) {
                        ts += 15_000;
                        hits.push(Hit {
                            site,
                            visitor,
                            ts_ms: ts,
                            kind: Kind::Engagement,
                            path: path.clone(),
                            referrer,
                        });
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
                        referrer: 0,
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

/// The `plan` prop a custom event carries, fixed by the hit so the population stays as it is.
fn plan_of(h: &Hit) -> &'static str {
    ["free", "pro", "team"][(h.ts_ms / 1000 % 3) as usize]
}

fn event_json(h: &Hit) -> serde_json::Value {
    let site = SITES[h.site].0;
    let mut e = json!({
        "domain": site,
        // Twitter visits come from a tagged campaign link.
        "url": format!("https://{site}{}{}", h.path, if h.referrer == 2 { "?utm_medium=social&utm_campaign=launch" } else { "" }),
        "ip": format!("10.{}.{}.{}", h.visitor / 65536, (h.visitor / 256) % 256, h.visitor % 256),
        "user_agent": format!("Mozilla/5.0 (X11; Linux x86_64) TestVisitor/{}", h.visitor),
        "referrer": REFERRERS[h.referrer].0,
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
            e["props"] = json!({"plan": plan_of(h)});
        }
        Kind::Engagement => {
            e["name"] = json!("engagement");
            e["e"] = json!(15_000);
            e["sd"] = json!(60);
        }
    }
    e
}

/// Where the roles run and meet.
enum Deployment {
    /// `plumb serve`: every role in one process, on the data directory's files.
    Embedded,
    /// `collectors` × `plumb collect` and one `plumb work` meeting on NATS JetStream, the
    /// metadata on PostgreSQL (each process gets its own data directory: they share nothing on disk).
    /// With `clickhouse`, the event store is there too, and there may be two workers, each
    /// reading half the partitions, with a `plumb web` answering.
    Distributed {
        nats: NatsServer,
        db: TestDb,
        clickhouse: Option<ClickHouseServer>,
        collectors: usize,
        workers: usize,
    },
}

impl Deployment {
    fn distributed(name: &str, collectors: usize) -> Deployment {
        Deployment::Distributed {
            nats: NatsServer::start(name),
            db: TestDb::create(),
            clickhouse: None,
            collectors,
            workers: 1,
        }
    }

    fn on_clickhouse(name: &str, collectors: usize, workers: usize) -> Deployment {
        let clickhouse = Some(ClickHouseServer::start(name));
        Deployment::Distributed { nats: NatsServer::start(name), db: TestDb::create(), clickhouse, collectors, workers }
    }

    /// What every command is given: where the queue, the metadata and the event store are.
    fn args(&self) -> Vec<String> {
        match self {
            Deployment::Embedded => vec![],
            Deployment::Distributed { nats, db, clickhouse, .. } => {
                let mut args = vec!["--queue".into(), nats.url(), "--meta".into(), db.url()];
                if let Some(ch) = clickhouse {
                    args.extend(["--store".into(), ch.url("plumb")]);
                }
                args
            }
        }
    }
}

/// Starts the deployment's servers, registers the sites, sends the whole population by
/// server-side ingestion (spread over the collectors) and waits until the pipeline has counted
/// all of it. Returns the server that answers queries.
async fn ingest(name: &str, hits: &[Hit], deployment: &Deployment) -> (Server, String) {
    let dir = temp_dir(name);
    let args = deployment.args();
    let key = sites_and_key(&dir, &args, &SITES);
    // Collectors apart from the reader, stopped when this returns (everything is counted by then).
    let mut apart = Vec::new();
    let (reader, collectors) = match deployment {
        Deployment::Embedded => {
            let server = Server::start(&dir, &[]);
            let url = server.url.clone();
            (server, vec![url])
        }
        Deployment::Distributed { collectors, workers, .. } => {
            for i in 0..*collectors {
                let own = temp_dir(&format!("{name}-collect-{i}"));
                apart.push(Server::start_role(&own, "collect", &refs(&args)));
            }
            let urls = apart.iter().map(|s| s.url.clone()).collect();
            if *workers == 1 {
                (Server::start_role(&dir, "work", &refs(&args)), urls)
            } else {
                // Half the partitions each; a web process answers from the store they share.
                for (i, half) in ["0-7", "8-15"].into_iter().enumerate() {
                    let own = temp_dir(&format!("{name}-work-{i}"));
                    let mut with_half = args.clone();
                    with_half.extend(["--partitions".into(), half.into()]);
                    apart.push(Server::start_role(&own, "work", &refs(&with_half)));
                }
                (Server::start_role(&temp_dir(&format!("{name}-web")), "web", &refs(&args)), urls)
            }
        }
    };
    let c = client();
    let total_pageviews = hits.iter().filter(|h| h.kind == Kind::Pageview).count() as i64;

    for (i, chunk) in hits.chunks(500).enumerate() {
        let body: Vec<_> = chunk.iter().map(event_json).collect();
        let collector = &collectors[i % collectors.len()];
        let r = c.post(format!("{collector}/api/events")).bearer_auth(&key).json(&body).send().await.unwrap();
        assert_eq!(r.status(), 202);
        let answer: serde_json::Value = r.json().await.unwrap();
        assert_eq!(answer["accepted"], json!(chunk.len()), "{answer}");
    }

    let caught_up = eventually(Duration::from_secs(60), || async {
        let mut n = 0;
        for (domain, _) in SITES {
            n += aggregate(&c, &reader.url, &key, domain, &["pageviews"], json!("all")).await[0].as_i64().unwrap();
        }
        n == total_pageviews
    })
    .await;
    assert!(caught_up, "pipeline did not reach {total_pageviews} pageviews");
    (reader, key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn population_counts_match_the_counting_rules() {
    population_counts("counting", &Deployment::Embedded).await;
}

/// Batches go to the two collectors in turn, so one visitor's hits reach both: they must sign
/// alike (this population is from 2024, so its hits carry the shared back-dated salts).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn population_counts_match_through_two_collectors_and_a_worker_on_nats_and_postgresql() {
    let deployment = tokio::task::block_in_place(|| Deployment::distributed("counting2", 2));
    population_counts("counting-distributed", &deployment).await;
}

/// The same, with the event store on ClickHouse (Debian's 18.16): one more backend, same counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn population_counts_match_through_two_collectors_and_a_worker_on_nats_postgresql_and_clickhouse() {
    let deployment = tokio::task::block_in_place(|| Deployment::on_clickhouse("counting-ch", 2, 1));
    population_counts("counting-clickhouse", &deployment).await;
}

/// Two workers side by side, partitions 0-7 and 8-15, writing one ClickHouse store; a `plumb
/// web` answers. A visitor's hits all reach one worker, so the counts are those of one worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn population_counts_match_with_two_workers_splitting_the_partitions_on_clickhouse() {
    let deployment = tokio::task::block_in_place(|| Deployment::on_clickhouse("counting-2w", 2, 2));
    population_counts("counting-two-workers", &deployment).await;
}

/// Today's hits, signed with the day's salt from PostgreSQL: one visitor's pageviews through
/// either collector are one visitor and one visit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_visitor_is_one_visitor_whichever_collector_answers() {
    let deployment = tokio::task::block_in_place(|| Deployment::distributed("one-visitor", 2));
    let args = deployment.args();
    let dir = temp_dir("one-visitor");
    let key = sites_and_key(&dir, &args, &[("one.test", "UTC")]);
    let collectors: Vec<Server> = (0..2)
        .map(|i| Server::start_role(&temp_dir(&format!("one-visitor-collect-{i}")), "collect", &refs(&args)))
        .collect();
    let worker = Server::start_role(&dir, "work", &refs(&args));
    let c = client();
    for (i, path) in ["/", "/pricing", "/about", "/signup"].iter().enumerate() {
        let r = c
            .post(format!("{}/api/event", collectors[i % 2].url))
            .header("user-agent", BROWSER_UA)
            .json(&json!({"n": "pageview", "u": format!("https://one.test{path}"), "d": "one.test"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
    }
    let metrics = ["pageviews", "visitors", "visits"];
    let counted = eventually(Duration::from_secs(20), || async {
        aggregate(&c, &worker.url, &key, "one.test", &metrics, json!("day")).await[0] == 4
    })
    .await;
    assert!(counted, "the pageviews did not arrive");
    assert_eq!(aggregate(&c, &worker.url, &key, "one.test", &metrics, json!("day")).await, [4, 1, 1]);
}

/// `plumb web` apart from the workers, twice, over ClickHouse, with two workers splitting the
/// partitions: each web process answers the whole, and sees every current visitor, though each
/// worker holds only its own partitions' visitors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stateless_web_processes_answer_like_the_worker_and_see_current_visitors() {
    let deployment = tokio::task::block_in_place(|| Deployment::on_clickhouse("web-apart", 1, 2));
    let args = deployment.args();
    let dir = temp_dir("web-apart");
    let key = sites_and_key(&dir, &args, &[("web.test", "UTC")]);
    let collector = Server::start_role(&temp_dir("web-apart-collect"), "collect", &refs(&args));
    let workers: Vec<Server> = ["0-7", "8-15"]
        .into_iter()
        .enumerate()
        .map(|(i, half)| {
            let own = temp_dir(&format!("web-apart-work-{i}"));
            let with_half: Vec<String> = args.iter().cloned().chain(["--partitions".into(), half.into()]).collect();
            Server::start_role(&own, "work", &refs(&with_half))
        })
        .collect();
    let webs: Vec<Server> =
        (0..2).map(|i| Server::start_role(&temp_dir(&format!("web-apart-web-{i}")), "web", &refs(&args))).collect();
    let c = client();
    // Sixteen visitors (their own User-Agents), a pageview each: all in one half of the partitions
    // once in 32,768 runs.
    const VISITORS: i64 = 16;
    for v in 0..VISITORS {
        let r = c
            .post(format!("{}/api/event", collector.url))
            .header("user-agent", format!("{BROWSER_UA} Visitor/{v}"))
            .json(&json!({"n": "pageview", "u": format!("https://web.test/page/{v}"), "d": "web.test"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
    }
    let realtime = |url: String| {
        let (c, key) = (c.clone(), key.clone());
        async move {
            let r = c.get(format!("{url}/api/v1/stats/realtime/visitors?site_id=web.test")).bearer_auth(&key).send();
            r.await.unwrap().json::<serde_json::Value>().await.unwrap().as_i64().unwrap()
        }
    };
    let metrics = ["pageviews", "visitors", "visits"];
    for web in &webs {
        let counted = eventually(Duration::from_secs(20), || async {
            aggregate(&c, &web.url, &key, "web.test", &metrics, json!("day")).await == [VISITORS, VISITORS, VISITORS]
        })
        .await;
        assert!(counted, "{} does not answer {VISITORS} visitors", web.url);
        let now = eventually(Duration::from_secs(10), || async { realtime(web.url.clone()).await == VISITORS }).await;
        assert!(now, "{} does not see every current visitor", web.url);
    }
    // Each worker saw its own partitions' visitors, and together all of them.
    let mut seen = Vec::new();
    for w in &workers {
        seen.push(realtime(w.url.clone()).await);
    }
    assert_eq!(seen.iter().sum::<i64>(), VISITORS, "{seen:?}");
    assert!(seen.iter().all(|n| *n < VISITORS), "one worker had every visitor: {seen:?}");
    drop(webs);

    // Without a shared store there is nothing for it to read.
    // Without shared backends, neither `plumb web` nor a worker with a share of the partitions
    // has anything to work on; a malformed share is refused too.
    for (args, want) in [
        (vec!["web"], "plumb web needs the event store on a server"),
        (vec!["work", "--partitions", "0-7"], "--partitions splits the NATS queue (--queue) among workers"),
        (vec!["work", "--partitions", "7-0"], "`7-0` is not a list of partitions"),
    ] {
        let out = std::process::Command::new(BIN)
            .arg("--data-dir")
            .arg(temp_dir("web-alone"))
            .args(&args)
            .args(["--listen", "127.0.0.1:0"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(want), "{args:?}: {err}");
    }
}

async fn population_counts(name: &str, deployment: &Deployment) {
    let hits = population();
    let want = expected(&hits);
    let total_pageviews: i64 = want.values().map(|e| e.pageviews).sum();
    assert!(hits.len() > 2000, "population is large enough: {} hits", hits.len());
    let (server, key) = ingest(name, &hits, deployment).await;
    let c = client();

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

/// One model session with what the breakdowns need.
struct ModelSession {
    visitor: usize,
    day: NaiveDate,
    source: &'static str,
    entry: String,
    pages: Vec<String>,
    /// Local hours with a pageview or custom event.
    hours: Vec<u32>,
    first: i64,
    last: i64,
    custom: Vec<bool>,
    /// The `plan` prop of each custom event.
    plans: Vec<&'static str>,
}

impl ModelSession {
    fn bounced(&self) -> bool {
        self.pages.len() <= 1 && !self.custom.iter().any(|i| *i)
    }
}

/// Sessions per site, by the same rules as `expected`, keeping sources, pages and hours.
fn sessions(hits: &[Hit], site: usize) -> Vec<ModelSession> {
    use chrono::Timelike;
    let tz: Tz = SITES[site].1.parse().unwrap();
    let mut by_visitor: BTreeMap<usize, Vec<&Hit>> = BTreeMap::new();
    for h in hits.iter().filter(|h| h.site == site) {
        by_visitor.entry(h.visitor).or_default().push(h);
    }
    let mut out = Vec::new();
    for (visitor, hs) in by_visitor {
        let mut mine: Vec<ModelSession> = Vec::new();
        for h in hs {
            let local = tz.timestamp_millis_opt(h.ts_ms).unwrap();
            let day = local.date_naive();
            let open = mine.last().filter(|s| s.day == day && h.ts_ms - s.last <= 30 * MIN).is_some();
            if h.kind == Kind::Engagement {
                if open {
                    mine.last_mut().unwrap().last = h.ts_ms;
                }
                continue;
            }
            if !open {
                mine.push(ModelSession {
                    visitor,
                    day,
                    source: REFERRERS[h.referrer].1,
                    entry: h.path.clone(),
                    pages: vec![],
                    hours: vec![],
                    first: h.ts_ms,
                    last: h.ts_ms,
                    custom: vec![],
                    plans: vec![],
                });
            }
            let s = mine.last_mut().unwrap();
            s.last = h.ts_ms;
            s.hours.push(local.hour());
            match h.kind {
                Kind::Pageview => s.pages.push(h.path.clone()),
                Kind::Custom { interactive } => {
                    s.custom.push(interactive);
                    s.plans.push(plan_of(h));
                }
                Kind::Engagement => unreachable!(),
            }
        }
        out.extend(mine);
    }
    out
}

fn rate(num: usize, den: usize) -> serde_json::Value {
    json!(if den == 0 { 0 } else { (num as f64 * 100.0 / den as f64).round() as i64 })
}

fn secs(ms: i64, visits: usize) -> serde_json::Value {
    json!(if visits == 0 { 0 } else { (ms as f64 / (visits as f64 * 1000.0)).round() as i64 })
}

/// Expected rows keyed by dimension value, from a grouping of sessions (a session may belong to
/// several groups) and a metric function over the sessions of a group.
fn grouped<'a>(
    ss: &'a [ModelSession],
    groups: impl Fn(&ModelSession) -> Vec<String>,
    metrics: impl Fn(&str, &[&'a ModelSession]) -> Vec<serde_json::Value>,
) -> BTreeMap<Vec<String>, Vec<serde_json::Value>> {
    let mut by: BTreeMap<String, Vec<&ModelSession>> = BTreeMap::new();
    for s in ss {
        let mut gs = groups(s);
        gs.sort();
        gs.dedup();
        for g in gs {
            by.entry(g).or_default().push(s);
        }
    }
    by.into_iter().map(|(g, v)| (vec![g.clone()], metrics(&g, &v))).collect()
}

fn visitor_days(ss: &[&ModelSession]) -> usize {
    ss.iter().map(|s| (s.visitor, s.day)).collect::<HashSet<_>>().len()
}

async fn query(c: &reqwest::Client, server: &Server, key: &str, body: serde_json::Value) -> serde_json::Value {
    let r = c.post(format!("{}/api/v2/query", server.url)).bearer_auth(key).json(&body).send().await.unwrap();
    let status = r.status();
    let answer: serde_json::Value = r.json().await.unwrap();
    assert_eq!(status, 200, "{body} -> {answer}");
    answer
}

fn as_map(answer: &serde_json::Value) -> BTreeMap<Vec<String>, Vec<serde_json::Value>> {
    answer["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let dims = r["dimensions"].as_array().unwrap().iter().map(|d| d.as_str().unwrap().to_owned()).collect();
            (dims, r["metrics"].as_array().unwrap().clone())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breakdowns_filters_and_comparisons_match_the_counting_rules() {
    breakdowns("breakdowns", &Deployment::Embedded).await;
}

/// The breakdowns with the event store on ClickHouse 18.16 (raw rows: no rollups there).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breakdowns_filters_and_comparisons_match_the_counting_rules_on_clickhouse() {
    let deployment = tokio::task::block_in_place(|| Deployment::on_clickhouse("breakdowns-ch", 1, 1));
    breakdowns("breakdowns-clickhouse", &deployment).await;
}

async fn breakdowns(name: &str, deployment: &Deployment) {
    let hits = population();
    let (server, key) = ingest(name, &hits, deployment).await;
    let c = client();
    let range = json!(["2024-03-07", "2024-03-13"]);
    let mut checked = 0;
    for (site, (domain, _)) in SITES.iter().enumerate() {
        let ss = sessions(&hits, site);
        let q = |dims: serde_json::Value, metrics: serde_json::Value, filters: serde_json::Value| json!({"site_id": domain, "date_range": range, "dimensions": dims, "metrics": metrics, "filters": filters});

        // By source: visitors are visitor-days with at least one session from that source.
        let want = grouped(
            &ss,
            |s| vec![s.source.to_owned()],
            |_, g| {
                let pv: usize = g.iter().map(|s| s.pages.len()).sum();
                let dur: i64 = g.iter().map(|s| s.last - s.first).sum();
                let bounces = g.iter().filter(|s| s.bounced()).count();
                vec![json!(visitor_days(g)), json!(g.len()), json!(pv), rate(bounces, g.len()), secs(dur, g.len())]
            },
        );
        let metrics = json!(["visitors", "visits", "pageviews", "bounce_rate", "visit_duration"]);
        let got = query(&c, &server, &key, q(json!(["visit:source"]), metrics.clone(), json!([]))).await;
        assert_eq!(as_map(&got), want, "{domain} by source");
        let want_sources = want.clone();
        assert!(want.len() == 4, "all four sources occur: {want:?}");
        if site == 0 {
            println!("{domain} by source: {}", got["results"]);
        }

        // By page: visitor-days that viewed it, sessions that include it, views.
        let want = grouped(
            &ss,
            |s| s.pages.clone(),
            |page, g| {
                let views: usize = g.iter().map(|s| s.pages.iter().filter(|p| *p == page).count()).sum();
                vec![json!(visitor_days(g)), json!(g.len()), json!(views)]
            },
        );
        let got =
            query(&c, &server, &key, q(json!(["event:page"]), json!(["visitors", "visits", "pageviews"]), json!([])))
                .await;
        assert_eq!(as_map(&got), want, "{domain} by page");

        // By entry page, with bounce rate.
        let want = grouped(
            &ss,
            |s| vec![s.entry.clone()],
            |_, g| {
                vec![json!(visitor_days(g)), json!(g.len()), rate(g.iter().filter(|s| s.bounced()).count(), g.len())]
            },
        );
        let got = query(
            &c,
            &server,
            &key,
            q(json!(["visit:entry_page"]), json!(["visitors", "visits", "bounce_rate"]), json!([])),
        )
        .await;
        assert_eq!(as_map(&got), want, "{domain} by entry page");

        // By UTM campaign: visitor-days with a session from that campaign (or none).
        let want = grouped(
            &ss,
            |s| vec![if s.source == "Twitter" { "launch".to_owned() } else { String::new() }],
            |_, g| vec![json!(visitor_days(g)), json!(g.len()), json!(g.iter().map(|s| s.pages.len()).sum::<usize>())],
        );
        let got = query(
            &c,
            &server,
            &key,
            q(json!(["visit:utm_campaign"]), json!(["visitors", "visits", "pageviews"]), json!([])),
        )
        .await;
        assert_eq!(as_map(&got), want, "{domain} by campaign");

        // By exit page: sessions that ended there, and visitor-days with such a session.
        let want = grouped(
            &ss,
            |s| s.pages.last().cloned().into_iter().collect(),
            |_, g| vec![json!(visitor_days(g)), json!(g.len())],
        );
        let got =
            query(&c, &server, &key, q(json!(["visit:exit_page"]), json!(["visitors", "visits"]), json!([]))).await;
        assert_eq!(as_map(&got), want, "{domain} by exit page");

        // The same through Stats API v1, which clients written for v1 call.
        let v1 = |path: &str, params: &str| {
            let url = format!(
                "{}/api/v1/stats/{path}?site_id={domain}&period=custom&date=2024-03-07,2024-03-13&{params}",
                server.url
            );
            let (c, key) = (c.clone(), key.clone());
            async move {
                let r = c.get(url).bearer_auth(key).send().await.unwrap();
                assert_eq!(r.status(), 200);
                r.json::<serde_json::Value>().await.unwrap()["results"].clone()
            }
        };
        let rows_of = |v: serde_json::Value, key: &str| -> BTreeMap<Vec<String>, Vec<serde_json::Value>> {
            v.as_array()
                .unwrap()
                .iter()
                .map(|r| (vec![r[key].as_str().unwrap().to_owned()], vec![r["visitors"].clone(), r["visits"].clone()]))
                .collect()
        };
        let got = rows_of(v1("breakdown", "property=visit:source&metrics=visitors,visits&limit=10").await, "source");
        let want_v1: BTreeMap<_, _> = want_sources.iter().map(|(k, v)| (k.clone(), v[..2].to_vec())).collect();
        assert_eq!(got, want_v1, "{domain} v1 breakdown by source");

        // Filtered by a source, no dimension (v2, and v1's filter syntax).
        let google: Vec<&ModelSession> = ss.iter().filter(|s| s.source == "Google").collect();
        let want = vec![
            json!(visitor_days(&google)),
            json!(google.len()),
            json!(google.iter().map(|s| s.pages.len()).sum::<usize>()),
        ];
        let v1_google = v1("aggregate", "metrics=visitors,visits&filters=visit:source%3D%3DGoogle").await;
        assert_eq!(
            (&v1_google["visitors"]["value"], &v1_google["visits"]["value"]),
            (&want[0], &want[1]),
            "{domain} v1 aggregate"
        );
        let got = query(
            &c,
            &server,
            &key,
            q(json!([]), json!(["visitors", "visits", "pageviews"]), json!([["is", "visit:source", ["Google"]]])),
        )
        .await;
        assert_eq!(got["results"][0]["metrics"].as_array().unwrap(), &want, "{domain} source is Google");

        // Filtered by one page: its visitors and visits; bounce rate of sessions entering there.
        let with: Vec<&ModelSession> = ss.iter().filter(|s| s.pages.iter().any(|p| p == "/page/3")).collect();
        let entered: Vec<&ModelSession> = ss.iter().filter(|s| s.entry == "/page/3").collect();
        let views: usize = with.iter().map(|s| s.pages.iter().filter(|p| *p == "/page/3").count()).sum();
        let want = vec![
            json!(visitor_days(&with)),
            json!(with.len()),
            json!(views),
            rate(entered.iter().filter(|s| s.bounced()).count(), entered.len()),
        ];
        let got = query(
            &c,
            &server,
            &key,
            q(
                json!([]),
                json!(["visitors", "visits", "pageviews", "bounce_rate"]),
                json!([["is", "event:page", ["/page/3"]]]),
            ),
        )
        .await;
        assert_eq!(got["results"][0]["metrics"].as_array().unwrap(), &want, "{domain} page is /page/3");

        // Combined: Twitter sessions, case-insensitive contains on the source, grouped by page.
        let want = grouped(
            &ss.iter()
                .filter(|s| s.source == "Twitter")
                .map(|s| ModelSession {
                    pages: s.pages.clone(),
                    hours: vec![],
                    custom: vec![],
                    plans: vec![],
                    entry: String::new(),
                    ..*s
                })
                .collect::<Vec<_>>(),
            |s| s.pages.clone(),
            |page, g| vec![json!(g.iter().map(|s| s.pages.iter().filter(|p| *p == page).count()).sum::<usize>())],
        );
        let got = query(
            &c,
            &server,
            &key,
            q(
                json!(["event:page"]),
                json!(["pageviews"]),
                json!([["contains", "visit:source", ["TWIT"], {"case_sensitive": false}]]),
            ),
        )
        .await;
        assert_eq!(as_map(&got), want, "{domain} Twitter pages");

        // By event name: unique completions and counts.
        let mut want = BTreeMap::new();
        let all: Vec<&ModelSession> = ss.iter().collect();
        want.insert(
            vec!["pageview".to_owned()],
            vec![json!(visitor_days(&all)), json!(ss.iter().map(|s| s.pages.len()).sum::<usize>())],
        );
        let signups: Vec<&ModelSession> = ss.iter().filter(|s| !s.custom.is_empty()).collect();
        if !signups.is_empty() {
            want.insert(
                vec!["Signup".to_owned()],
                vec![json!(visitor_days(&signups)), json!(ss.iter().map(|s| s.custom.len()).sum::<usize>())],
            );
        }
        let got = query(&c, &server, &key, q(json!(["event:name"]), json!(["visitors", "events"]), json!([]))).await;
        assert_eq!(as_map(&got), want, "{domain} by event name");

        // By day and, for one day, by hour (visitor-days active in the hour).
        let want = grouped(&ss, |s| vec![s.day.to_string()], |_, g| vec![json!(visitor_days(g)), json!(g.len())]);
        let got = query(&c, &server, &key, q(json!(["time:day"]), json!(["visitors", "visits"]), json!([]))).await;
        assert_eq!(as_map(&got), want, "{domain} by day");
        // v1 lists every day of the period, with zeros on days without visits.
        let mut every_day = want.clone();
        for d in NaiveDate::from_ymd_opt(2024, 3, 7).unwrap().iter_days().take(7) {
            every_day.entry(vec![d.to_string()]).or_insert_with(|| vec![json!(0), json!(0)]);
        }
        assert_eq!(
            rows_of(v1("timeseries", "metrics=visitors,visits&interval=date").await, "date"),
            every_day,
            "{domain} v1 timeseries"
        );
        let day = NaiveDate::from_ymd_opt(2024, 3, 10).unwrap();
        let on_day: Vec<ModelSession> = ss
            .iter()
            .filter(|s| s.day == day)
            .map(|s| ModelSession {
                pages: vec![],
                custom: vec![],
                plans: vec![],
                entry: String::new(),
                hours: s.hours.clone(),
                ..*s
            })
            .collect();
        let want = grouped(
            &on_day,
            |s| s.hours.iter().map(|h| format!("{day} {h:02}:00:00")).collect(),
            |_, g| vec![json!(visitor_days(g))],
        );
        let body = json!({"site_id": domain, "date_range": [day.to_string(), day.to_string()], "dimensions": ["time:hour"], "metrics": ["visitors"]});
        assert_eq!(as_map(&query(&c, &server, &key, body).await), want, "{domain} by hour on {day}");

        // Ordering, ties and pagination: sources by visits ascending, second page of two.
        let mut by_visits: Vec<(String, usize)> =
            grouped(&ss, |s| vec![s.source.to_owned()], |_, g| vec![json!(g.len())])
                .into_iter()
                .map(|(k, v)| (k[0].clone(), v[0].as_u64().unwrap() as usize))
                .collect();
        by_visits.sort_by(|a, b| a.1.cmp(&b.1).then(a.0.cmp(&b.0)));
        let body = json!({"site_id": domain, "date_range": range, "dimensions": ["visit:source"], "metrics": ["visits"],
            "order_by": [["visits", "asc"]], "pagination": {"limit": 2, "offset": 1}, "include": {"total_rows": true}});
        let got = query(&c, &server, &key, body).await;
        let page: Vec<(String, usize)> = got["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r["dimensions"][0].as_str().unwrap().to_owned(), r["metrics"][0].as_u64().unwrap() as usize))
            .collect();
        assert_eq!(page, by_visits[1..3.min(by_visits.len())].to_vec(), "{domain} ordered page");
        assert_eq!(got["meta"]["total_rows"], json!(by_visits.len()));

        // Comparison with the previous period, per source.
        let (d1, d2) = (NaiveDate::from_ymd_opt(2024, 3, 11).unwrap(), NaiveDate::from_ymd_opt(2024, 3, 12).unwrap());
        let visits_in = |from: NaiveDate, to: NaiveDate, src: &str| {
            ss.iter().filter(|s| s.day >= from && s.day <= to && s.source == src).count()
        };
        let body = json!({"site_id": domain, "date_range": [d1.to_string(), d2.to_string()], "dimensions": ["visit:source"], "metrics": ["visits"],
            "include": {"comparisons": {"mode": "previous_period"}}});
        let got = query(&c, &server, &key, body).await;
        for r in got["results"].as_array().unwrap() {
            let src = r["dimensions"][0].as_str().unwrap();
            let (now, before) =
                (visits_in(d1, d2, src), visits_in(d1 - chrono::Days::new(2), d1 - chrono::Days::new(1), src));
            assert_eq!(r["metrics"][0], json!(now), "{domain} {src} now");
            assert_eq!(r["comparison"]["metrics"][0], json!(before), "{domain} {src} before");
            let change = if before == 0 {
                if now == 0 { 0.0 } else { 100.0 }
            } else {
                ((now as f64 - before as f64) / before as f64 * 1000.0).round() / 10.0
            };
            assert_eq!(r["comparison"]["change"][0].as_f64().unwrap(), change, "{domain} {src} change");
        }
        // Goals, defined after the data arrived (goals apply at query time): an event, one page,
        // and a wildcard over several pages.
        let wildcard_pages = ["/page/1", "/page/10", "/page/11", "/page/12"];
        let total = visitor_days(&ss.iter().collect::<Vec<_>>());
        let conversion = |v: usize, base: usize| json!((v as f64 * 10_000.0 / base as f64).round() / 100.0);
        let page_goal = |pages: &[&str]| {
            // Visitor-days per matching page, summed (the documented rule for several pages).
            let visitors: usize = pages
                .iter()
                .map(|p| visitor_days(&ss.iter().filter(|s| s.pages.iter().any(|x| x == p)).collect::<Vec<_>>()))
                .sum();
            let views: usize = ss.iter().map(|s| s.pages.iter().filter(|x| pages.contains(&x.as_str())).count()).sum();
            vec![json!(visitors), json!(views), conversion(visitors, total)]
        };
        let signup_days = visitor_days(&signups);
        let mut want = BTreeMap::new();
        want.insert(vec!["Visit /page/3".to_owned()], page_goal(&["/page/3"]));
        want.insert(vec!["Visit /page/1*".to_owned()], page_goal(&wildcard_pages));
        if !signups.is_empty() {
            let signup_events = ss.iter().map(|s| s.custom.len()).sum::<usize>();
            want.insert(
                vec!["Signup".to_owned()],
                vec![json!(signup_days), json!(signup_events), conversion(signup_days, total)],
            );
        }
        for goal in [["--event", "Signup"], ["--page", "/page/3"], ["--page", "/page/1*"]] {
            let args: Vec<String> = deployment
                .args()
                .into_iter()
                .chain(["goal".into(), "add".into(), domain.to_string()])
                .chain(goal.map(String::from))
                .collect();
            cli(&server.data_dir, &refs(&args));
        }
        let got = query(
            &c,
            &server,
            &key,
            q(json!(["event:goal"]), json!(["visitors", "events", "conversion_rate"]), json!([])),
        )
        .await;
        assert_eq!(as_map(&got), want, "{domain} by goal");

        // One goal by source: a visitor-day's first Signup counts under its session's source;
        // the rate divides by the source's visitors.
        let mut first_signup: BTreeMap<(usize, NaiveDate), &str> = BTreeMap::new();
        for s in ss.iter().filter(|s| !s.custom.is_empty()) {
            first_signup.entry((s.visitor, s.day)).or_insert(s.source);
        }
        let mut want = BTreeMap::new();
        for (source, base) in &want_sources {
            let n = first_signup.values().filter(|s| **s == source[0]).count();
            if n > 0 {
                let base = base[0].as_u64().unwrap() as usize;
                want.insert(source.clone(), vec![json!(n), conversion(n, base)]);
            }
        }
        let got = query(
            &c,
            &server,
            &key,
            q(
                json!(["visit:source"]),
                json!(["visitors", "conversion_rate"]),
                json!([["is", "event:goal", ["Signup"]]]),
            ),
        )
        .await;
        assert_eq!(as_map(&got), want, "{domain} Signup by source");
        // By a custom property: visitor-days that sent each value, and the events carrying it.
        let want = grouped(
            &ss,
            |s| s.plans.iter().map(|p| p.to_string()).collect(),
            |plan, g| {
                vec![json!(visitor_days(g)), json!(g.iter().flat_map(|s| &s.plans).filter(|p| **p == plan).count())]
            },
        );
        let got =
            query(&c, &server, &key, q(json!(["event:props:plan"]), json!(["visitors", "events"]), json!([]))).await;
        assert_eq!(as_map(&got), want, "{domain} by plan");
        let got = query(
            &c,
            &server,
            &key,
            q(json!([]), json!(["visitors", "events"]), json!([["is", "event:props:plan", ["pro"]]])),
        )
        .await;
        let pro = want.get(&vec!["pro".to_owned()]).cloned().unwrap_or_else(|| vec![json!(0), json!(0)]);
        assert_eq!(got["results"][0]["metrics"].as_array().unwrap(), &pro, "{domain} plan is pro");
        checked += 17;
    }
    println!("checked {checked} breakdown, filter, ordering and comparison queries");
}

/// A large table of Stats API queries: v2 by every dimension, every filter operator on several
/// columns, logical filters, comparisons, every time bucket, ordering and pages; v1's aggregate,
/// timeseries at every interval and breakdowns with its filter syntax. (path, JSON body or `None`
/// for a GET.)
fn query_table(domain: &str) -> Vec<(String, Option<serde_json::Value>)> {
    let week = json!(["2024-03-07", "2024-03-13"]);
    let ranges = [week.clone(), json!(["2024-03-10", "2024-03-10"]), json!(["2024-01-01", "2024-12-31"])];
    let all_metrics =
        json!(["visitors", "visits", "pageviews", "views_per_visit", "bounce_rate", "visit_duration", "events"]);
    let v2 = |body: serde_json::Value| ("/api/v2/query".to_owned(), Some(body));
    let mut out = Vec::new();
    for range in &ranges {
        for comparison in [None, Some("previous_period"), Some("year_over_year")] {
            let mut q = json!({"site_id": domain, "metrics": all_metrics, "date_range": range});
            if let Some(mode) = comparison {
                q["include"] = json!({"comparisons": {"mode": mode}});
            }
            out.push(v2(q.clone()));
            for bucket in ["time", "time:hour", "time:day", "time:week", "time:month"] {
                let mut t = q.clone();
                t["dimensions"] = json!([bucket]);
                t["include"]["time_labels"] = json!(true);
                out.push(v2(t));
            }
        }
    }
    let dimensions = plumb_query::Dimension::names().map(|d| d.replace("<key>", "plan"));
    for dimension in dimensions.filter(|d| !d.starts_with("time")) {
        for metrics in [
            json!(["visitors", "visits", "pageviews", "events"]),
            json!(["visitors", "percentage"]),
            json!(["visitors", "bounce_rate", "visit_duration"]),
        ] {
            out.push(v2(json!({"site_id": domain, "metrics": metrics, "date_range": week, "dimensions": [dimension],
                "include": {"total_rows": true}, "pagination": {"limit": 1000}})));
        }
        out.push(v2(
            json!({"site_id": domain, "metrics": ["visitors", "events", "conversion_rate"], "date_range": week,
            "dimensions": [dimension, "time:day"], "filters": [["is", "event:goal", ["Signup"]]]}),
        ));
    }
    let values = [
        ("event:page", "/page/1", "^/page/1[0-2]?$"),
        ("visit:source", "Google", "^(Google|Twitter)$"),
        ("event:name", "Signup", "^Sign"),
        ("event:props:plan", "pro", "^(pro|team)$"),
        ("visit:utm_campaign", "launch", "unch$"),
        ("visit:entry_page", "/page/3", "/page/[3-5]"),
    ];
    for (column, value, pattern) in values {
        for (op, _) in plumb_query::Op::ALL {
            let v = if op.starts_with("matches") {
                pattern
            } else if op.starts_with("contains") {
                &value[..value.len() - 1]
            } else {
                value
            };
            // Session metrics do not go with an event name or property.
            let metrics = if column.starts_with("event:n") || column.starts_with("event:props") {
                json!(["visitors", "pageviews", "events"])
            } else {
                json!(["visitors", "visits", "pageviews", "events"])
            };
            for dims in [json!([]), json!(["visit:source"]), json!(["event:page"])] {
                out.push(v2(json!({"site_id": domain, "metrics": metrics, "date_range": week,
                    "dimensions": dims, "filters": [[op, column, [v]]]})));
            }
        }
        out.push(v2(json!({"site_id": domain, "metrics": ["visitors", "pageviews"], "date_range": week,
            "filters": [["contains", column, [value.to_lowercase()], {"case_sensitive": false}]]})));
    }
    for filters in [
        json!([["or", [["is", "visit:source", ["Google"]], ["is", "event:page", ["/page/2"]]]]]),
        json!([["not", ["contains", "event:page", ["/page/1"]]], ["is_not", "visit:source", [""]]]),
        json!([["and", [["matches", "event:page", ["^/page/[0-9]$"]], ["not", ["is", "event:name", ["Signup"]]]]]]),
    ] {
        out.push(v2(json!({"site_id": domain, "metrics": ["visitors", "visits", "bounce_rate"], "date_range": week,
            "dimensions": ["visit:source"], "filters": filters, "include": {"comparisons": {"mode": "previous_period"}}})));
    }
    for order in [json!([["pageviews", "asc"], ["event:page", "desc"]]), json!([["event:page", "asc"]])] {
        for (limit, offset) in [(3, 0), (3, 2), (100, 10)] {
            out.push(v2(json!({"site_id": domain, "metrics": ["pageviews", "visitors"], "date_range": week,
                "dimensions": ["event:page"], "order_by": order, "pagination": {"limit": limit, "offset": offset}})));
        }
    }
    let v1 = |path: &str, params: &str| (format!("/api/v1/stats/{path}?site_id={domain}&{params}"), None);
    let custom = "period=custom&date=2024-03-07,2024-03-13";
    out.push(v1("aggregate", &format!("{custom}&metrics=visitors,visits,pageviews,views_per_visit,bounce_rate,visit_duration,events&compare=previous_period")));
    for interval in ["date", "week", "month"] {
        out.push(v1(
            "timeseries",
            &format!("{custom}&metrics=visitors,visits,pageviews,bounce_rate&interval={interval}"),
        ));
    }
    out.push(v1("timeseries", "period=day&date=2024-03-10&metrics=visitors,pageviews&interval=hour"));
    for property in [
        "event:page",
        "visit:source",
        "visit:entry_page",
        "visit:exit_page",
        "visit:utm_medium",
        "event:props:plan",
        "event:goal",
        "visit:device",
    ] {
        for filters in [
            "",
            "&filters=visit:source%3D%3DGoogle",
            "&filters=event:page%3D%3D/page/1|/page/2",
            "&filters=event:page!%3D/page/1*",
        ] {
            out.push(v1(
                "breakdown",
                &format!(
                    "{custom}&property={property}&metrics=visitors,visits,pageviews,bounce_rate&limit=100{filters}"
                ),
            ));
        }
    }
    out
}

/// The same population through `plumb serve` and through a cluster (two collectors, two workers
/// splitting the partitions, a web process; NATS, PostgreSQL, ClickHouse 18.16): every query of
/// [`query_table`] answers alike, status and body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_install_and_a_cluster_answer_every_query_alike() {
    let cluster = tokio::task::block_in_place(|| Deployment::on_clickhouse("alike", 2, 2));
    let hits = population();
    let (embedded, embedded_key) = ingest("alike-embedded", &hits, &Deployment::Embedded).await;
    let (web, web_key) = ingest("alike-cluster", &hits, &cluster).await;
    for (domain, _) in SITES {
        cli(&embedded.data_dir, &["goal", "add", domain, "--event", "Signup"]);
        cli(&web.data_dir, &[&refs(&cluster.args())[..], &["goal", "add", domain, "--event", "Signup"]].concat());
    }
    let c = client();
    let answer = |server: &Server, key: &str, path: &str, body: &Option<serde_json::Value>| {
        let url = format!("{}{path}", server.url);
        let request = match body {
            Some(b) => c.post(url).json(b),
            None => c.get(url),
        };
        let sent = request.bearer_auth(key.to_owned()).send();
        async move {
            let r = sent.await.unwrap();
            (r.status().as_u16(), r.json::<serde_json::Value>().await.unwrap())
        }
    };
    let (mut compared, mut answered, mut refused) = (0, 0, Vec::new());
    for (domain, _) in SITES {
        for (path, body) in query_table(domain) {
            let ours = answer(&embedded, &embedded_key, &path, &body).await;
            let theirs = answer(&web, &web_key, &path, &body).await;
            assert_eq!(theirs, ours, "{path} {}", body.as_ref().map_or(String::new(), |b| b.to_string()));
            compared += 1;
            let rows = ours.1["results"].as_array().map_or(0, Vec::len) + ours.1.as_array().map_or(0, Vec::len);
            answered += (ours.0 == 200 && (rows > 0 || ours.1["results"].is_object())) as usize;
            if ours.0 != 200 {
                refused.push(format!("{path} {}: {}", body.as_ref().map_or(String::new(), |b| b.to_string()), ours.1));
            }
        }
    }
    println!("{compared} queries answered alike, {answered} with data, {} refused alike, as:", refused.len());
    let reasons: std::collections::BTreeSet<&str> =
        refused.iter().map(|r| r.rsplit_once(": {").map_or(r.as_str(), |(_, e)| e)).collect();
    for reason in reasons {
        println!("  {{{reason}");
    }
    assert!(answered * 10 > compared * 8, "most queries find data: {answered} of {compared}");
}
