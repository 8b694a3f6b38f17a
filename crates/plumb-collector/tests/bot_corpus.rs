//! Bot detection against public corpora (vendored in `tests/data`, see `data/NOTICE`): crawlers
//! from the crawler-user-agents project and uap-core's `Spider` test cases must be caught; real
//! browser User-Agents (top-user-agents, uap-core's Firefox and browser test strings) must not.
//! Prints the rates.

use plumb_collector::useragent::UserAgents;
use std::collections::BTreeMap;

fn corpus(file: &str) -> BTreeMap<String, Vec<String>> {
    let path = format!("{}/tests/data/{file}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
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
    let (mut flagged, mut browsers) = (Vec::new(), 0);
    for (name, uas) in corpus("browsers.json") {
        let total = uas.len();
        let wrong: Vec<String> = uas.into_iter().filter(|ua| u.parse_uncached(ua).bot.is_some()).collect();
        println!("{name}: {}/{total} flagged", wrong.len());
        flagged.extend(wrong);
        browsers += total;
    }
    let caught_pct = caught as f64 * 100.0 / crawlers as f64;
    let flagged_pct = flagged.len() as f64 * 100.0 / browsers as f64;
    println!(
        "crawlers caught {caught}/{crawlers} = {caught_pct:.2}%; browsers flagged {}/{browsers} = {flagged_pct:.3}%",
        flagged.len()
    );
    assert!(caught_pct >= 95.0, "only {caught_pct:.2}% of crawlers caught");
    assert!(flagged_pct <= 0.01, "real browsers flagged as bots: {flagged:?}");
}
