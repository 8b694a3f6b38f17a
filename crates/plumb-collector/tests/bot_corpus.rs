//! Bot detection against public corpora (vendored in `tests/data`, see `data/NOTICE`): crawlers
//! from the crawler-user-agents project and uap-core's `Spider` test cases must be caught; real
//! browser User-Agents must not be — 10,000 samples of real browser traffic (the user-agents
//! package, counted as traffic: one sample, one hit) besides top-user-agents and uap-core's
//! Firefox and browser test strings. Prints the rates, and how often the device type agrees with
//! the traffic samples' own device category.

use plumb_collector::useragent::UserAgents;
use serde::Deserialize;
use std::collections::BTreeMap;

fn data(file: &str) -> String {
    std::fs::read_to_string(format!("{}/tests/data/{file}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn corpus(file: &str) -> BTreeMap<String, Vec<String>> {
    serde_json::from_str(&data(file)).unwrap()
}

#[derive(Deserialize)]
struct Sample {
    ua: String,
    device: String,
    samples: usize,
}

#[test]
fn crawlers_are_caught_and_browsers_are_not() {
    let u = UserAgents::new();
    let (mut caught, mut crawlers) = (0, 0);
    for (name, uas) in corpus("crawlers.json") {
        let hit = uas.iter().filter(|ua| u.parse_uncached(ua).bot.is_some()).count();
        println!("{name}: {hit}/{} caught ({:.2}%)", uas.len(), hit as f64 * 100.0 / uas.len() as f64);
        caught += hit;
        crawlers += uas.len();
    }
    // Hits: each listed string is one, each traffic sample is one.
    let (mut flagged, mut examples, mut browsers) = (0, Vec::new(), 0);
    for (name, uas) in corpus("browsers.json") {
        let total = uas.len();
        let wrong: Vec<String> = uas.into_iter().filter(|ua| u.parse_uncached(ua).bot.is_some()).collect();
        println!("{name}: {}/{total} flagged", wrong.len());
        flagged += wrong.len();
        examples.extend(wrong);
        browsers += total;
    }
    let traffic: Vec<Sample> = serde_json::from_str(&data("browser-traffic.json")).unwrap();
    let (mut hits, mut flagged_hits, mut same_device) = (0, 0, 0);
    for s in &traffic {
        let agent = u.parse_uncached(&s.ua);
        hits += s.samples;
        if agent.bot.is_some() {
            flagged_hits += s.samples;
            examples.push(s.ua.clone());
        }
        if agent.device.eq_ignore_ascii_case(&s.device) {
            same_device += s.samples;
        }
    }
    println!(
        "browser traffic (user-agents): {flagged_hits}/{hits} hits flagged, {} distinct User-Agents; device type agrees on {same_device}/{hits} = {:.2}%",
        traffic.len(),
        same_device as f64 * 100.0 / hits as f64
    );
    flagged += flagged_hits;
    browsers += hits;
    // A second, newer corpus of real traffic the rules were not made from (in-app browsers
    // among it), weighted by each User-Agent's share of that traffic.
    #[derive(Deserialize)]
    struct Share {
        ua: String,
        percent: f64,
    }
    let recent: Vec<Share> = serde_json::from_str(&data("browser-traffic-2025.json")).unwrap();
    let wrong: Vec<&Share> = recent.iter().filter(|s| u.parse_uncached(&s.ua).bot.is_some()).collect();
    let total_share: f64 = recent.iter().map(|s| s.percent).sum();
    let wrong_share = wrong.iter().fold(0.0, |sum, s| sum + s.percent);
    println!(
        "browser traffic (fake-useragent 2.2.0): {}/{} User-Agents flagged, {:.4}% of the traffic",
        wrong.len(),
        recent.len(),
        wrong_share * 100.0 / total_share
    );
    flagged += wrong.len();
    browsers += recent.len();
    examples.extend(wrong.iter().map(|s| s.ua.clone()));
    // What one uncached verdict costs (the cache answers repeats), over every string above.
    let all: Vec<String> = corpus("crawlers.json")
        .into_values()
        .chain(corpus("browsers.json").into_values())
        .flatten()
        .chain(traffic.iter().map(|s| s.ua.clone()))
        .chain(recent.iter().map(|s| s.ua.clone()))
        .collect();
    // Twice: the first pass also compiles the word-start form of each pattern that matched.
    for pass in ["first", "second"] {
        let started = std::time::Instant::now();
        let bots = all.iter().filter(|ua| u.parse_uncached(ua).bot.is_some()).count();
        let each = started.elapsed().as_secs_f64() * 1e6 / all.len() as f64;
        println!("{pass} pass: {} User-Agents parsed without the cache ({bots} bots), {each:.1} µs each", all.len());
    }
    let caught_pct = caught as f64 * 100.0 / crawlers as f64;
    let flagged_pct = flagged as f64 * 100.0 / browsers as f64;
    println!(
        "crawlers caught {caught}/{crawlers} = {caught_pct:.2}%; browser hits flagged {flagged}/{browsers} = {flagged_pct:.3}%"
    );
    assert!(caught_pct >= 95.0, "only {caught_pct:.2}% of crawlers caught");
    assert!(flagged_pct <= 0.01, "real browsers flagged as bots: {examples:?}");
    assert!(same_device * 100 >= hits * 95, "device type agrees on only {same_device}/{hits} hits");
}
