//! User-Agent → browser, OS (with versions), device type and whether it is a bot, by uap-core's
//! regexes through the uap project's own Rust port and the crawler-user-agents pattern list, with
//! a cache in front: a few hundred distinct strings make up most traffic, and a full parse costs
//! microseconds.

use plumb_core::security::Reason;
use regex::RegexSet;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use ua_parser::{Extractor, Regexes};

/// uap-core's `regexes.yaml` as JSON (see `data/NOTICE`).
const REGEXES: &str = include_str!("../data/uap-regexes.json");
/// The crawler-user-agents project's patterns (MIT; see `data/NOTICE`).
const CRAWLER_PATTERNS: &str = include_str!("../data/crawler-patterns.json");

/// Distinct strings kept; the cache starts over when full, which is cheap and bounds memory.
const CACHE_SIZE: usize = 20_000;

/// What a User-Agent says, as stored on a visit. Empty strings: unknown.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Agent {
    pub browser: String,
    /// `major.minor` (`major` alone when there is no minor).
    pub browser_version: String,
    pub os: String,
    pub os_version: String,
    /// `Desktop`, `Mobile` or `Tablet`.
    pub device: String,
    /// Why the User-Agent alone says this is a bot: `NoUserAgent`, `Crawler` or `Headless`.
    pub bot: Option<Reason>,
}

pub struct UserAgents {
    extractor: Extractor<'static>,
    crawlers: RegexSet,
    cache: Mutex<HashMap<String, Arc<Agent>>>,
}

impl UserAgents {
    pub fn new() -> Self {
        let regexes: Regexes<'static> = serde_json::from_str(REGEXES).expect("the vendored uap-core regexes parse");
        let extractor = Extractor::try_from(regexes).expect("the vendored uap-core regexes compile");
        let patterns: Vec<String> =
            serde_json::from_str(CRAWLER_PATTERNS).expect("the vendored crawler patterns parse");
        let crawlers = RegexSet::new(&patterns).expect("the vendored crawler patterns compile");
        UserAgents { extractor, crawlers, cache: Mutex::new(HashMap::new()) }
    }

    pub fn parse(&self, ua: &str) -> Arc<Agent> {
        if let Some(a) = self.cache.lock().unwrap().get(ua) {
            return a.clone();
        }
        let agent = Arc::new(self.parse_uncached(ua));
        let mut cache = self.cache.lock().unwrap();
        if cache.len() >= CACHE_SIZE {
            cache.clear();
        }
        cache.insert(ua.to_owned(), agent.clone());
        agent
    }

    pub fn parse_uncached(&self, ua: &str) -> Agent {
        if ua.trim().is_empty() {
            return Agent { bot: Some(Reason::NoUserAgent), ..Agent::default() };
        }
        let (browser, os, device) = self.extractor.extract(ua);
        let version = |major: Option<&str>, minor: Option<&str>| match (major, minor) {
            (Some(a), Some(b)) => format!("{a}.{b}"),
            (Some(a), None) => a.to_owned(),
            _ => String::new(),
        };
        let known = |family: &str| if family == "Other" { String::new() } else { family.to_owned() };
        let (browser, browser_version) = match browser {
            Some(b) => (known(&b.family), version(b.major, b.minor)),
            None => Default::default(),
        };
        let (os, os_version) = match os {
            Some(o) => (known(&o.os), version(o.major.as_deref(), o.minor.as_deref())),
            None => Default::default(),
        };
        let device_family = device.map(|d| d.device.into_owned()).unwrap_or_default();
        let device = device_type(ua, &os, &device_family).to_owned();
        let bot = if ["HeadlessChrome", "PhantomJS", "SlimerJS", "Headless"].iter().any(|h| ua.contains(h)) {
            Some(Reason::Headless)
        } else if device_family == "Spider" || self.crawlers.is_match(ua) {
            Some(Reason::Crawler)
        } else {
            None
        };
        Agent { browser, browser_version, os, os_version, device, bot }
    }
}

impl Default for UserAgents {
    fn default() -> Self {
        Self::new()
    }
}

/// The device type, refined by the window width the tracker reports: a desktop browser in a
/// phone-sized window is a phone (and a tablet-sized one a tablet) only when the User-Agent
/// could not tell — a User-Agent that names a phone or tablet wins.
pub fn device_with_width(device: &str, width: Option<u32>) -> &str {
    match (device, width) {
        ("Desktop" | "", Some(w)) if w < 576 => "Mobile",
        ("Desktop" | "", Some(w)) if w < 992 => "Tablet",
        ("", Some(_)) => "Desktop",
        (d, _) => d,
    }
}

/// Tablets by name or by Android without `Mobile` (Google's rule for Android tablets); phones by
/// the mobile operating systems; everything else is a desktop.
fn device_type(ua: &str, os: &str, device_family: &str) -> &'static str {
    let tablet_names = ["iPad", "Kindle", "Tablet", "Nexus 7", "Nexus 9", "Nexus 10"];
    if tablet_names.iter().any(|t| device_family.contains(t) || ua.contains(t))
        || (os == "Android" && !ua.contains("Mobile"))
    {
        return "Tablet";
    }
    let mobile_os = ["iOS", "Android", "Windows Phone", "BlackBerry OS", "KaiOS", "Symbian OS", "Firefox OS"];
    if mobile_os.contains(&os) || ua.contains("Mobi") {
        return "Mobile";
    }
    "Desktop"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_browsers_parse_with_versions_and_device_types() {
        let u = UserAgents::new();
        let cases = [
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.6367.91 Safari/537.36",
                ("Chrome", "124.0", "Windows", "10", "Desktop"),
            ),
            (
                "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4.1 Mobile/15E148 Safari/604.1",
                ("Mobile Safari", "17.4", "iOS", "17.4", "Mobile"),
            ),
            (
                "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.6 Mobile/15E148 Safari/604.1",
                ("Mobile Safari", "16.6", "iOS", "16.6", "Tablet"),
            ),
            (
                "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36",
                ("Chrome Mobile", "124.0", "Android", "14", "Mobile"),
            ),
            (
                "Mozilla/5.0 (Linux; Android 13; SM-X710) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/123.0.0.0 Safari/537.36",
                ("Chrome", "123.0", "Android", "13", "Tablet"),
            ),
            (
                "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
                ("Firefox", "125.0", "Ubuntu", "", "Desktop"),
            ),
        ];
        for (ua, (browser, bv, os, ov, device)) in cases {
            let a = u.parse(ua);
            assert_eq!(
                (
                    a.browser.as_str(),
                    a.browser_version.as_str(),
                    a.os.as_str(),
                    a.os_version.as_str(),
                    a.device.as_str()
                ),
                (browser, bv, os, ov, device),
                "{ua}"
            );
            assert_eq!(a.bot, None, "{ua}");
        }
        let bot = |ua: &str| u.parse(ua).bot;
        assert_eq!(bot(""), Some(Reason::NoUserAgent));
        assert_eq!(
            bot("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"),
            Some(Reason::Crawler)
        );
        assert_eq!(bot("curl/8.5.0"), Some(Reason::Crawler));
        assert_eq!(
            bot(
                "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/124.0.0.0 Safari/537.36"
            ),
            Some(Reason::Headless)
        );
    }

    #[test]
    fn the_window_width_refines_only_what_the_user_agent_left_open() {
        assert_eq!(device_with_width("Desktop", Some(390)), "Mobile");
        assert_eq!(device_with_width("Desktop", Some(800)), "Tablet");
        assert_eq!(device_with_width("Desktop", Some(1440)), "Desktop");
        assert_eq!(device_with_width("", Some(1440)), "Desktop");
        assert_eq!(device_with_width("Mobile", Some(1200)), "Mobile", "the User-Agent wins");
        assert_eq!(device_with_width("Tablet", None), "Tablet");
        assert_eq!(device_with_width("", None), "");
    }

    #[test]
    fn the_cache_answers_the_same_and_stays_bounded() {
        let u = UserAgents::new();
        let ua = "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0";
        let a = u.parse(ua);
        assert!(Arc::ptr_eq(&a, &u.parse(ua)), "the second parse comes from the cache");
        for i in 0..CACHE_SIZE + 5 {
            u.parse(&format!("Agent/{i}"));
        }
        assert!(u.cache.lock().unwrap().len() <= CACHE_SIZE);
        assert_eq!(*u.parse(ua), *a);
    }
}
