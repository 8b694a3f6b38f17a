//! The pure normalisers on any string: User-Agent parsing and bot verdicts, page URL and
//! referrer parsing, source classification. Checks what must always hold.
#![no_main]

use libfuzzer_sys::fuzz_target;
use plumb_collector::useragent::UserAgents;
use plumb_core::source::classify;
use plumb_core::url::{MAX_PATH, parse_page_url, parse_referrer};
use std::sync::LazyLock;

static AGENTS: LazyLock<UserAgents> = LazyLock::new(UserAgents::new);

fuzz_target!(|data: &[u8]| {
    let s = String::from_utf8_lossy(data);
    let agent = AGENTS.parse_uncached(&s);
    assert!(["Desktop", "Mobile", "Tablet", ""].contains(&agent.device.as_str()));
    if let Ok(page) = parse_page_url(&s, data.first().is_some_and(|b| b & 1 == 1)) {
        assert!(page.pathname.len() <= MAX_PATH, "path over the limit");
        let referrer = parse_referrer(&s);
        if let Some((stored, _)) = &referrer {
            assert!(stored.len() <= MAX_PATH, "referrer over the limit");
        }
        let source =
            classify(referrer.as_ref().map(|(_, h)| h.as_str()), &page.utm_source, &page.utm_medium, &page.click_id);
        assert!(!source.channel.is_empty());
    }
});
