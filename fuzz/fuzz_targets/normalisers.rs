//! The pure normalisers on any string: User-Agent parsing and bot verdicts, page URL (under each
//! configuration) and referrer parsing, referrer-spam look-ups, source classification. Checks
//! what must always hold.
#![no_main]

use libfuzzer_sys::fuzz_target;
use plumb_collector::spam::SpamList;
use plumb_collector::useragent::UserAgents;
use plumb_core::source::classify;
use plumb_core::url::{MAX_PATH, PageRules, normalize_hostname, parse_page_url_with, parse_referrer};
use std::sync::LazyLock;

static AGENTS: LazyLock<UserAgents> = LazyLock::new(UserAgents::new);
static SPAM: LazyLock<SpamList> = LazyLock::new(SpamList::new);

fuzz_target!(|data: &[u8]| {
    let s = String::from_utf8_lossy(data);
    let agent = AGENTS.parse_uncached(&s);
    assert!(["Desktop", "Mobile", "Tablet", ""].contains(&agent.device.as_str()));
    let flags = data.first().copied().unwrap_or(0);
    let rules = PageRules { keep_query_params: vec!["q".into()], keep_www: flags & 2 == 2 };
    if let Ok(page) = parse_page_url_with(&s, flags & 1 == 1, &rules) {
        assert!(page.pathname.len() <= MAX_PATH, "path over the limit");
        assert!(normalize_hostname(&page.hostname).len() <= page.hostname.len());
        let referrer = parse_referrer(&s);
        if let Some((stored, host)) = &referrer {
            assert!(stored.len() <= MAX_PATH, "referrer over the limit");
            assert!(!SPAM.is_spam(host) || host.contains('.'), "a spam domain has a dot");
        }
        let source =
            classify(referrer.as_ref().map(|(_, h)| h.as_str()), &page.utm_source, &page.utm_medium, &page.click_id);
        assert!(!source.channel.is_empty());
    }
});
