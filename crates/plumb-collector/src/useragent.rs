//! User-Agent → browser, OS (with versions), device type and whether it is a bot, by uap-core's
//! regexes through the uap project's own Rust port and the crawler-user-agents pattern list, with
//! a cache in front: a few hundred distinct strings make up most traffic, and a full parse costs
//! microseconds.

use plumb_core::security::Reason;
use regex::{Regex, RegexSet};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use ua_parser::{Extractor, Regexes};

/// uap-core's `regexes.yaml` as JSON (see `data/NOTICE`).
const REGEXES: &str = include_str!("../data/uap-regexes.json");
/// The crawler-user-agents project's patterns (MIT; see `data/NOTICE`).
const CRAWLER_PATTERNS: &str = include_str!("../data/crawler-patterns.json");

/// Distinct strings kept in each of the cache's two generations; a full one ages at once.
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
    /// The crawler patterns as listed: a quick first look that rejects nearly every browser and
    /// junk string.
    crawlers: RegexSet,
    /// The same patterns held to the start of a word, as one alternation: asked only when the
    /// first look matched (alone it is slow on unusual strings; a set of 1,500 separately
    /// anchored patterns was slower still).
    anchored: Regex,
    cache: Mutex<Generations>,
}

/// Strings seen since the last [`UserAgents::age`] and in the period before: a string unseen for
/// two periods is forgotten, so no User-Agent stays in memory long after its visitor left.
#[derive(Default)]
struct Generations {
    current: HashMap<String, Arc<Agent>>,
    previous: HashMap<String, Arc<Agent>>,
}

impl UserAgents {
    pub fn new() -> Self {
        let regexes: Regexes<'static> = serde_json::from_str(REGEXES).expect("the vendored uap-core regexes parse");
        let extractor = Extractor::try_from(regexes).expect("the vendored uap-core regexes compile");
        let patterns: Vec<String> =
            serde_json::from_str(CRAWLER_PATTERNS).expect("the vendored crawler patterns parse");
        // Room for the automaton of 1,500 alternatives, so matching never falls back to the slow
        // engine.
        let crawlers = RegexSet::new(&patterns).expect("the vendored crawler patterns compile");
        let anchored = regex::RegexBuilder::new(&crawler_alternation(&patterns))
            .size_limit(64 << 20)
            .dfa_size_limit(64 << 20)
            .build()
            .expect("the vendored crawler patterns compile");
        UserAgents { extractor, crawlers, anchored, cache: Mutex::new(Generations::default()) }
    }

    pub fn parse(&self, ua: &str) -> Arc<Agent> {
        {
            let mut cache = self.cache.lock().unwrap();
            if let Some(a) = cache.current.get(ua) {
                return a.clone();
            }
            if let Some((k, a)) = cache.previous.remove_entry(ua) {
                cache.current.insert(k, a.clone());
                return a;
            }
        }
        let agent = Arc::new(self.parse_uncached(ua));
        let mut cache = self.cache.lock().unwrap();
        if cache.current.len() >= CACHE_SIZE {
            cache.age();
        }
        cache.current.insert(ua.to_owned(), agent.clone());
        agent
    }

    /// Starts a new period (every minute): strings not seen in the last two are forgotten.
    pub fn age(&self) {
        self.cache.lock().unwrap().age();
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
        // uap-core's `Spider` family and a product token named like a crawler catch crawlers that
        // do not pose as browsers; a browser-shaped User-Agent is one only by a listed crawler's
        // own token, since apps' in-app browsers append their names (`StudyBot/2.0`, `yahoo`).
        let crawler_like = || device_family == "Spider" || CRAWLER_TOKEN.is_match(ua);
        let bot = if ["HeadlessChrome", "PhantomJS", "SlimerJS", "Headless"].iter().any(|h| ua.contains(h)) {
            Some(Reason::Headless)
        } else if (self.crawlers.is_match(ua) && self.anchored.is_match(ua)) || (!browser_shaped(ua) && crawler_like())
        {
            Some(Reason::Crawler)
        } else {
            None
        };
        Agent { browser, browser_version, os, os_version, device, bot }
    }
}

/// A product token whose name ends like a crawler's: `Whoiswebsitebot/0.1`, `FooCrawler;`.
static CRAWLER_TOKEN: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
    regex::Regex::new(
        r"(?:^|[^A-Za-z0-9])[A-Za-z][A-Za-z0-9_.-]*(?:[Bb]ot|BOT|[Cc]rawler|[Ss]pider|[Ss]craper)(?:[/;)-]|$)",
    )
    .expect("the crawler token pattern compiles")
});

/// The crawler patterns as one regular expression, each held to the start of a word of the
/// User-Agent: a crawler names itself (`Googlebot/2.1`, `compatible; bingbot/2.0`), so `bot` must
/// not match inside `Abbot`, nor `eright` inside `Copyright`, nor `exabot` inside `Alexabot`
/// (caught as a crawler token). Patterns that begin with `^` or punctuation keep their own start.
fn crawler_alternation(patterns: &[String]) -> String {
    let (words, others): (Vec<&String>, Vec<&String>) =
        patterns.iter().partition(|p| p.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '['));
    let group = |ps: &[&String]| ps.iter().map(|p| format!("(?:{p})")).collect::<Vec<_>>().join("|");
    format!("(?:^|[^A-Za-z0-9])(?:{})|{}", group(&words), group(&others))
}

/// Shaped like a browser's User-Agent: `Mozilla/5.0 (platform) AppleWebKit/…` or `… Gecko/…`.
fn browser_shaped(ua: &str) -> bool {
    ua.starts_with("Mozilla/5.0 (") && (ua.contains("AppleWebKit/") || ua.contains("Gecko/"))
}

impl Generations {
    fn age(&mut self) {
        self.previous = std::mem::take(&mut self.current);
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
            bot("Mozilla/5.0 (compatible; Alexabot/1.0; +http://www.alexa.com/help/certifyscan)"),
            Some(Reason::Crawler)
        );
        assert_eq!(bot("NewsGator/3.0"), Some(Reason::Crawler), "uap-core's Spider family, not shaped like a browser");
        // In-app browsers that name their app: browsers, whatever the name.
        for webview in [
            "Mozilla/5.0 (Linux; Android 13; SM-T220 Build/TP1A.220624.014; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/120.0.6099.230 Safari/537.36 StudyBot/2.4.1",
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 YJApp-IOS jp.co.yahoo.ipn.appli/4.52.2",
            "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 ClassroomCrawler/1.0 (education)",
            "Mozilla/5.0 (Linux; Android 12; Abbott FreeStyle Build/SP1A) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/118.0 Mobile Safari/537.36",
        ] {
            assert_eq!(bot(webview), None, "{webview}");
        }
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
        let sizes = |u: &UserAgents| {
            let c = u.cache.lock().unwrap();
            (c.current.len(), c.previous.len())
        };
        assert!(sizes(&u).0 <= CACHE_SIZE && sizes(&u).1 <= CACHE_SIZE);
        assert_eq!(*u.parse(ua), *a);
        // Two periods unseen: forgotten; seen in the last one: kept.
        u.age();
        u.parse(ua);
        u.age();
        let c = u.cache.lock().unwrap();
        assert!(c.previous.contains_key(ua) && !c.previous.contains_key("Agent/1") && c.current.is_empty());
    }
}
