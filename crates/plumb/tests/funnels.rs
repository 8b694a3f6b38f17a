//! Funnels end to end: generated visits that skip, repeat and reorder steps, some before the
//! funnel was made and some across a `kill -9` of the server, must give exactly the step counts an
//! independent model of the same visits expects — overall and for visits from one source.

mod common;

use common::*;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;

const MIN: i64 = 60_000;
const SITE: &str = "funnel.test";

/// What a hit is: a pageview of a path, or a custom event of a name.
#[derive(Clone, Debug, PartialEq)]
enum What {
    Page(&'static str),
    Event(&'static str),
    /// An engagement ping: never a step.
    Ping,
}

#[derive(Clone, Debug)]
struct Hit {
    visitor: usize,
    ts_ms: i64,
    what: What,
    /// Every hit of a session comes from the same place.
    google: bool,
}

/// The funnel's steps as the model reads them: /pricing, then Signup, then anything under
/// /welcome/ (the goal `/welcome/**`).
fn step_done(step: usize, w: &What) -> bool {
    match (step, w) {
        (0, What::Page(p)) => *p == "/pricing",
        (1, What::Event(n)) => *n == "Signup",
        (2, What::Page(p)) => p.starts_with("/welcome/"),
        _ => false,
    }
}

const CHOICES: [What; 9] = [
    What::Page("/pricing"),
    What::Page("/pricing"),
    What::Page("/"),
    What::Page("/blog/post"),
    What::Event("Signup"),
    What::Event("Signup"),
    What::Event("Newsletter"),
    What::Page("/welcome/a"),
    What::Ping,
];

/// Each visitor's sessions (1 to `most`, over 30 minutes apart), 1–7 hits each, from `start_ms`
/// plus up to half an hour on.
fn visits(visitors: std::ops::Range<usize>, seed: u64, start_ms: i64, most: i64) -> Vec<Vec<Hit>> {
    let mut rng = Rng(seed);
    let mut sessions = Vec::new();
    for visitor in visitors {
        let mut ts = start_ms + rng.range(0, 30) * MIN;
        for s in 0..rng.range(1, most) {
            if s > 0 {
                ts += rng.range(31, 60) * MIN;
            }
            let google = rng.range(0, 1) == 1;
            let mut session = Vec::new();
            for _ in 0..rng.range(1, 7) {
                ts += rng.range(1, 3) * MIN;
                let what = match CHOICES[rng.range(0, CHOICES.len() as i64 - 1) as usize].clone() {
                    What::Page("/welcome/a") if rng.range(0, 1) == 1 => What::Page("/welcome/b/c"),
                    w => w,
                };
                session.push(Hit { visitor, ts_ms: ts, what, google });
            }
            sessions.push(session);
        }
    }
    sessions
}

/// The expected visitors at each step, over all visits and for those from Google: per
/// visitor-day, the most steps one session did in order (a subsequence of its hits, checked
/// step count by step count), counting only hits sent after the funnel began; each step reached
/// is credited to the source of the session that first reached it.
fn model(sessions: &[Vec<Hit>]) -> ([i64; 3], [i64; 3]) {
    let mut days: BTreeMap<(usize, i64), Vec<&Vec<Hit>>> = BTreeMap::new();
    for s in sessions {
        days.entry((s[0].visitor, s[0].ts_ms / 86_400_000)).or_default().push(s);
    }
    let (mut all, mut google) = ([0; 3], [0; 3]);
    for day in days.values() {
        let mut best = 0;
        for hits in day {
            let done = (1..=3)
                .filter(|&k| {
                    let mut it = hits.iter();
                    (0..k).all(|step| it.any(|h| step_done(step, &h.what)))
                })
                .max()
                .unwrap_or(0);
            for step in best..done {
                all[step] += 1;
                google[step] += hits[0].google as i64;
            }
            best = best.max(done);
        }
    }
    (all, google)
}

fn event_json(h: &Hit) -> Value {
    let mut e = json!({
        "domain": SITE,
        "url": format!("https://{SITE}{}", match &h.what { What::Page(p) => p, _ => "/" }),
        "ip": format!("10.9.{}.{}", h.visitor / 256, h.visitor % 256),
        "user_agent": format!("Mozilla/5.0 (X11; Linux x86_64) FunnelVisitor/{}", h.visitor),
        "referrer": if h.google { "https://www.google.com/search?q=plumb" } else { "" },
        "timestamp": h.ts_ms / 1000,
    });
    e["name"] = match &h.what {
        What::Page(_) => json!("pageview"),
        What::Event(n) => json!(n),
        What::Ping => {
            e["e"] = json!(5_000);
            json!("engagement")
        }
    };
    e
}

async fn send(c: &reqwest::Client, url: &str, key: &str, hits: &[Hit]) {
    for chunk in hits.chunks(200) {
        let body: Vec<Value> = chunk.iter().map(event_json).collect();
        let r = c.post(format!("{url}/api/events")).bearer_auth(key).json(&body).send().await.unwrap();
        assert_eq!(r.status(), 202);
        let answer: Value = r.json().await.unwrap();
        assert_eq!(answer["accepted"], json!(chunk.len()), "{answer}");
    }
}

/// Waits until the store holds `pageviews` pageviews of the site.
async fn counted(c: &reqwest::Client, url: &str, key: &str, pageviews: usize) {
    let done = eventually(Duration::from_secs(60), || async {
        aggregate(c, url, key, SITE, &["pageviews"], json!("all")).await[0] == json!(pageviews)
    })
    .await;
    assert!(done, "the pipeline did not count {pageviews} pageviews");
}

async fn funnel(c: &reqwest::Client, url: &str, key: &str, id: u32, range: &Value, filters: Value) -> Value {
    let body = json!({"site_id": SITE, "funnel_id": id, "date_range": range, "filters": filters});
    let r = c.post(format!("{url}/api/v2/funnel")).bearer_auth(key).json(&body).send().await.unwrap();
    let status = r.status();
    let answer: Value = r.json().await.unwrap();
    assert_eq!(status, 200, "{answer}");
    answer
}

fn steps(answer: &Value) -> Vec<i64> {
    answer["steps"].as_array().unwrap().iter().map(|s| s["visitors"].as_i64().unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_funnel_counts_what_a_model_of_the_visits_expects_across_a_restart() {
    let dir = temp_dir("funnels");
    let key = sites_and_key(&dir, &[], &[(SITE, "UTC")]);
    for goal in [["--page", "/pricing"], ["--event", "Signup"], ["--page", "/welcome/**"]] {
        cli(&dir, &["goal", "add", SITE, goal[0], goal[1]]);
    }
    let mut server = Server::start(&dir, &[]);
    let c = client();
    let now = chrono::Utc::now().timestamp_millis();
    let start = now - 5 * 60 * MIN;

    // Visitors 0–39 come once before the funnel exists; those hits count for nothing.
    let early = visits(0..40, 0xf00d_1234_5678_9abc, start, 1);
    let mut sent: Vec<(Vec<Hit>, bool)> = early.iter().map(|s| (s.clone(), false)).collect();
    let early_hits: Vec<Hit> = early.iter().flatten().cloned().collect();
    send(&c, &server.url, &key, &early_hits).await;
    let pageviews = |sessions: &[(Vec<Hit>, bool)]| {
        sessions.iter().flat_map(|s| &s.0).filter(|h| matches!(h.what, What::Page(_))).count()
    };
    counted(&c, &server.url, &key, pageviews(&sent)).await;

    let made = cli(&dir, &["funnel", "add", SITE, "Sign-up", "Visit /pricing", "Signup", "Visit /welcome/**"]);
    let id: u32 = made.split_whitespace().nth(1).unwrap().parse().unwrap();
    let list: Value = c
        .get(format!("{}/api/v1/sites/{SITE}/funnels", server.url))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let listed = &list["funnels"][0];
    assert_eq!(listed["steps"], json!(["Visit /pricing", "Signup", "Visit /welcome/**"]));
    let since = chrono::DateTime::parse_from_rfc3339(listed["counting_since"].as_str().unwrap()).unwrap();
    let wait = since.timestamp_millis() - chrono::Utc::now().timestamp_millis();
    tokio::time::sleep(Duration::from_millis(wait.max(0) as u64 + 500)).await;

    // Visitors 0–159 from here on (0–39 again: a new session for some, one going on for others),
    // sent in time order; the server is killed after the first half and started again.
    let later = visits(0..160, 0xbeef_0042_1357_2468, start + 45 * MIN, 3);
    let mut hits: Vec<Hit> = later.iter().flatten().cloned().collect();
    hits.sort_by_key(|h| h.ts_ms);
    sent.extend(later.iter().map(|s| (s.clone(), true)));
    let (first, second) = hits.split_at(hits.len() / 2);
    send(&c, &server.url, &key, first).await;
    let first_pageviews = pageviews(&sent) - second.iter().filter(|h| matches!(h.what, What::Page(_))).count();
    counted(&c, &server.url, &key, first_pageviews).await;
    server.kill9();
    server.restart();
    send(&c, &server.url, &key, second).await;
    counted(&c, &server.url, &key, pageviews(&sent)).await;

    // The sessions as the server must split them: an early visit and a later one of the same
    // visitor are one session when they come within 30 minutes.
    let sessions = resplit(&sent);
    let (all, google) = model(&sessions);
    assert!(all[2] > 0 && all[0] > all[2] && google[0] > 0, "the visits exercise the funnel: {all:?} {google:?}");
    println!("{} sessions; expected steps {all:?}, from Google {google:?}", sessions.len());
    let range = json!([
        chrono::DateTime::from_timestamp_millis(start).unwrap().date_naive().to_string(),
        chrono::DateTime::from_timestamp_millis(now).unwrap().date_naive().to_string()
    ]);
    let answer = funnel(&c, &server.url, &key, id, &range, json!([])).await;
    assert_eq!(steps(&answer), all, "{answer}");
    let visitors = aggregate(&c, &server.url, &key, SITE, &["visitors"], range.clone()).await[0].clone();
    assert_eq!(answer["all_visitors"], visitors);
    assert_eq!(answer["steps"][1]["dropoff"], json!(all[0] - all[1]));
    assert!(answer["meta"]["warning"].as_str().unwrap().contains("Counted as visits happen"), "{answer}");
    let from_google = json!([["is", "visit:source", ["Google"]]]);
    assert_eq!(steps(&funnel(&c, &server.url, &key, id, &range, from_google).await), google);

    // Filters on hits are refused, saying why; an unknown funnel is not found.
    let body = json!({"site_id": SITE, "funnel_id": id, "date_range": range, "filters": [["is", "event:page", ["/"]]]});
    let r = c.post(format!("{}/api/v2/funnel", server.url)).bearer_auth(&key).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("visit attributes only"));
    let body = json!({"site_id": SITE, "funnel_id": id + 1, "date_range": range});
    let r = c.post(format!("{}/api/v2/funnel", server.url)).bearer_auth(&key).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 404);

    // Funnels made through the API: bad steps are refused, saying what is wrong.
    let admin = create_key_with(&dir, "admin", &["--scope", "sites:admin"]);
    let url = format!("{}/api/v1/sites/{SITE}/funnels", server.url);
    for (steps, why) in [
        (json!("Signup"), "a funnel has 2 to 8 steps, not 1"),
        (json!(["Signup", "Visit /nowhere"]), "`Visit /nowhere` is not a goal of this site"),
        (json!(vec!["Signup"; 9]), "at most 8 steps"),
        (json!([1, 2]), "`steps` must be a list of goal names"),
        (json!(null), "`steps` is required"),
    ] {
        let r = c.post(&url).bearer_auth(&admin).json(&json!({"name": "F", "steps": steps})).send().await.unwrap();
        assert_eq!(r.status(), 400, "{steps}");
        let text = r.text().await.unwrap();
        assert!(text.contains(why), "{steps}: {text}");
    }
    let r = c
        .post(&url)
        .bearer_auth(&admin)
        .json(&json!({"name": " ", "steps": ["Signup", "Visit /pricing"]}))
        .send()
        .await;
    assert_eq!(r.unwrap().status(), 400, "a blank name");
    let r = c
        .post(&url)
        .bearer_auth(&admin)
        .json(&json!({"name": "Up", "steps": ["Signup", "Visit /pricing"]}))
        .send()
        .await;
    assert_eq!(r.unwrap().status(), 201);
}

/// The sessions the server sees: each visitor's hits (early and later) merged in time order and
/// cut where 30 minutes pass without a hit or the day changes. Hits sent before the funnel began
/// stay in their session but can do no step (they become pings here); a session comes from where
/// its first hit came from.
fn resplit(sent: &[(Vec<Hit>, bool)]) -> Vec<Vec<Hit>> {
    let mut by_visitor: BTreeMap<usize, Vec<Hit>> = BTreeMap::new();
    for (hits, counted) in sent {
        for h in hits {
            let what = if *counted { h.what.clone() } else { What::Ping };
            by_visitor.entry(h.visitor).or_default().push(Hit { what, ..h.clone() });
        }
    }
    let mut out: Vec<Vec<Hit>> = Vec::new();
    for (_, mut hits) in by_visitor {
        hits.sort_by_key(|h| h.ts_ms);
        let mut last: Option<i64> = None;
        for h in hits {
            let ts = h.ts_ms;
            if last.is_none_or(|l| ts - l > 30 * MIN || ts / 86_400_000 != l / 86_400_000) {
                out.push(vec![h]);
            } else {
                let session = out.last_mut().unwrap();
                let google = session[0].google;
                session.push(Hit { google, ..h });
            }
            last = Some(ts);
        }
    }
    out
}
