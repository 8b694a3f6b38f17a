//! Browser and OS recognition against uap-core's own test corpus (tests/test_ua.yaml and
//! tests/test_os.yaml, vendored as JSON in `tests/data`). Prints the rates; the browser family
//! must be right for at least 99% of the cases.

use plumb_collector::useragent::UserAgents;
use serde_json::Value;

fn cases(file: &str) -> Vec<(String, String, Option<String>)> {
    let path = format!("{}/tests/data/{file}", env!("CARGO_MANIFEST_DIR"));
    let all: Vec<Value> = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    all.iter()
        .map(|c| {
            let s = |k: &str| c[k].as_str().map(str::to_owned);
            (s("ua").unwrap(), s("family").unwrap(), s("major"))
        })
        .collect()
}

/// (family right, family and major right, cases)
fn score(
    file: &str,
    got: impl Fn(&plumb_collector::useragent::Agent) -> (String, String),
    u: &UserAgents,
) -> (usize, usize, usize) {
    let cases = cases(file);
    let (mut family, mut both) = (0, 0);
    for (ua, want_family, want_major) in &cases {
        let (f, version) = got(&u.parse_uncached(ua));
        // Plumb keeps "Other" as unknown (empty).
        let f = if f.is_empty() { "Other".to_owned() } else { f };
        let major = version.split('.').next().filter(|m| !m.is_empty()).map(str::to_owned);
        if f == *want_family {
            family += 1;
            if major == *want_major {
                both += 1;
            }
        }
    }
    (family, both, cases.len())
}

#[test]
fn browsers_and_operating_systems_are_recognised_as_uap_core_expects() {
    let u = UserAgents::new();
    let pct = |n: usize, of: usize| n as f64 * 100.0 / of as f64;
    let (bf, bb, bn) = score("uap-test-ua.json", |a| (a.browser.clone(), a.browser_version.clone()), &u);
    let (of, ob, on) = score("uap-test-os.json", |a| (a.os.clone(), a.os_version.clone()), &u);
    println!(
        "browser family {bf}/{bn} = {:.2}%, family + major {bb}/{bn} = {:.2}%; \
         OS family {of}/{on} = {:.2}%, family + major {ob}/{on} = {:.2}%",
        pct(bf, bn),
        pct(bb, bn),
        pct(of, on),
        pct(ob, on)
    );
    assert!(bn > 1000 && on > 400, "the corpus is all there");
    assert!(pct(bf, bn) >= 99.0, "browser family right for {:.2}% of cases", pct(bf, bn));
    assert!(pct(bb, bn) >= 95.0 && pct(of, on) >= 95.0, "versions and OS families");
}
