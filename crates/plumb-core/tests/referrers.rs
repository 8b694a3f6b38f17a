//! Referrers as browsers send them (and page URLs with tags and click ids) → source and channel,
//! through the same parsing the collector does.

use plumb_core::source::classify;
use plumb_core::url::{parse_page_url, parse_referrer};

/// (referrer, page query string, source, channel)
const CASES: &[(&str, &str, &str, &str)] = &[
    // Search engines, by brand across country domains and subdomains.
    ("https://www.google.com/", "", "Google", "Organic Search"),
    ("https://www.google.de/", "", "Google", "Organic Search"),
    ("https://www.google.co.uk/", "", "Google", "Organic Search"),
    ("https://www.google.com.br/", "", "Google", "Organic Search"),
    ("https://www.google.co.jp/", "", "Google", "Organic Search"),
    ("https://www.google.fr/search?q=plumb", "", "Google", "Organic Search"),
    ("https://news.google.com/", "", "Google", "Organic Search"),
    ("android-app://com.google.android.googlequicksearchbox/", "", "Google", "Organic Search"),
    ("https://www.bing.com/", "", "Bing", "Organic Search"),
    ("https://cn.bing.com/search?q=x", "", "Bing", "Organic Search"),
    ("https://duckduckgo.com/", "", "DuckDuckGo", "Organic Search"),
    ("https://html.duckduckgo.com/", "", "DuckDuckGo", "Organic Search"),
    ("https://search.yahoo.com/", "", "Yahoo!", "Organic Search"),
    ("https://de.search.yahoo.com/", "", "Yahoo!", "Organic Search"),
    ("https://yandex.ru/", "", "Yandex", "Organic Search"),
    ("https://yandex.com.tr/", "", "Yandex", "Organic Search"),
    ("https://ya.ru/", "", "Yandex", "Organic Search"),
    ("https://www.baidu.com/link?url=x", "", "Baidu", "Organic Search"),
    ("https://search.naver.com/", "", "Naver", "Organic Search"),
    ("https://www.seznam.cz/", "", "Seznam", "Organic Search"),
    ("https://www.ecosia.org/", "", "Ecosia", "Organic Search"),
    ("https://www.qwant.com/", "", "Qwant", "Organic Search"),
    ("https://www.startpage.com/", "", "Startpage", "Organic Search"),
    ("https://search.brave.com/", "", "Brave Search", "Organic Search"),
    ("https://www.ask.com/", "", "Ask", "Organic Search"),
    ("https://search.aol.com/", "", "AOL", "Organic Search"),
    ("https://www.sogou.com/", "", "Sogou", "Organic Search"),
    ("https://www.so.com/", "", "360 Search", "Organic Search"),
    ("https://search.daum.net/", "", "Daum", "Organic Search"),
    ("https://www.mojeek.com/", "", "Mojeek", "Organic Search"),
    ("https://kagi.com/", "", "Kagi", "Organic Search"),
    ("https://metager.org/", "", "MetaGer", "Organic Search"),
    // AI assistants.
    ("https://chatgpt.com/", "", "ChatGPT", "AI Assistants"),
    ("https://chat.openai.com/", "", "ChatGPT", "AI Assistants"),
    ("https://www.perplexity.ai/", "", "Perplexity", "AI Assistants"),
    ("https://claude.ai/", "", "Claude", "AI Assistants"),
    ("https://gemini.google.com/", "", "Gemini", "AI Assistants"),
    ("https://copilot.microsoft.com/", "", "Copilot", "AI Assistants"),
    ("https://you.com/", "", "You.com", "AI Assistants"),
    ("https://www.phind.com/", "", "Phind", "AI Assistants"),
    ("https://chat.mistral.ai/", "", "Mistral", "AI Assistants"),
    ("https://chat.deepseek.com/", "", "DeepSeek", "AI Assistants"),
    ("https://poe.com/", "", "Poe", "AI Assistants"),
    ("https://grok.com/", "", "Grok", "AI Assistants"),
    // Social networks and communities.
    ("https://www.facebook.com/", "", "Facebook", "Organic Social"),
    ("https://m.facebook.com/", "", "Facebook", "Organic Social"),
    ("https://l.facebook.com/", "", "Facebook", "Organic Social"),
    ("https://lm.facebook.com/", "", "Facebook", "Organic Social"),
    ("https://www.instagram.com/", "", "Instagram", "Organic Social"),
    ("https://l.instagram.com/", "", "Instagram", "Organic Social"),
    ("https://www.threads.net/", "", "Threads", "Organic Social"),
    ("https://t.co/abc123", "", "Twitter", "Organic Social"),
    ("https://twitter.com/", "", "Twitter", "Organic Social"),
    ("https://x.com/someone/status/1", "", "Twitter", "Organic Social"),
    ("android-app://com.twitter.android/", "", "Twitter", "Organic Social"),
    ("https://www.linkedin.com/", "", "LinkedIn", "Organic Social"),
    ("https://lnkd.in/abc", "", "LinkedIn", "Organic Social"),
    ("android-app://com.linkedin.android/", "", "LinkedIn", "Organic Social"),
    ("https://www.reddit.com/r/rust/", "", "Reddit", "Organic Social"),
    ("https://old.reddit.com/", "", "Reddit", "Organic Social"),
    ("android-app://com.reddit.frontpage/", "", "Reddit", "Organic Social"),
    ("https://news.ycombinator.com/", "", "Hacker News", "Organic Social"),
    ("https://bsky.app/", "", "Bluesky", "Organic Social"),
    ("https://mastodon.social/", "", "Mastodon", "Organic Social"),
    ("https://www.pinterest.com/", "", "Pinterest", "Organic Social"),
    ("https://www.pinterest.de/", "", "Pinterest", "Organic Social"),
    ("https://www.quora.com/", "", "Quora", "Organic Social"),
    ("https://vk.com/", "", "VKontakte", "Organic Social"),
    ("https://ok.ru/", "", "Odnoklassniki", "Organic Social"),
    ("https://discord.com/", "", "Discord", "Organic Social"),
    ("https://app.slack.com/", "", "Slack", "Organic Social"),
    ("android-app://com.slack/", "", "Slack", "Organic Social"),
    ("https://web.telegram.org/", "", "Telegram", "Organic Social"),
    ("android-app://org.telegram.messenger/", "", "Telegram", "Organic Social"),
    ("https://web.whatsapp.com/", "", "WhatsApp", "Organic Social"),
    ("https://lobste.rs/", "", "Lobsters", "Organic Social"),
    ("https://www.producthunt.com/", "", "Product Hunt", "Organic Social"),
    ("https://medium.com/@someone/post", "", "Medium", "Organic Social"),
    ("https://someone.substack.com/", "", "Substack", "Organic Social"),
    ("https://stackoverflow.com/questions/1", "", "Stack Overflow", "Organic Social"),
    // Video.
    ("https://www.youtube.com/", "", "YouTube", "Organic Video"),
    ("https://m.youtube.com/", "", "YouTube", "Organic Video"),
    ("https://youtu.be/abc", "", "YouTube", "Organic Video"),
    ("https://vimeo.com/", "", "Vimeo", "Organic Video"),
    ("https://www.twitch.tv/", "", "Twitch", "Organic Video"),
    ("https://www.tiktok.com/", "", "TikTok", "Organic Video"),
    // E-mail.
    ("https://mail.google.com/", "", "Gmail", "Email"),
    ("android-app://com.google.android.gm/", "", "Gmail", "Email"),
    ("https://outlook.live.com/", "", "Outlook", "Email"),
    ("https://outlook.office.com/", "", "Outlook", "Email"),
    ("https://mail.yahoo.com/", "", "Yahoo! Mail", "Email"),
    ("https://mail.proton.me/", "", "Proton Mail", "Email"),
    ("https://web.de/", "", "WEB.DE", "Email"),
    ("https://www.gmx.net/", "", "GMX", "Email"),
    // Shopping.
    ("https://www.amazon.com/", "", "Amazon", "Organic Shopping"),
    ("https://www.amazon.de/", "", "Amazon", "Organic Shopping"),
    ("https://www.amazon.co.uk/", "", "Amazon", "Organic Shopping"),
    ("https://www.ebay.com/", "", "eBay", "Organic Shopping"),
    ("https://www.etsy.com/", "", "Etsy", "Organic Shopping"),
    // Referrals.
    ("https://github.com/user/repo", "", "GitHub", "Referral"),
    ("https://gitlab.com/", "", "GitLab", "Referral"),
    ("https://en.wikipedia.org/wiki/Web_analytics", "", "Wikipedia", "Referral"),
    ("https://dev.to/", "", "DEV", "Referral"),
    ("https://blog.example.org/post", "", "blog.example.org", "Referral"),
    ("https://www.example.com/", "", "example.com", "Referral"),
    ("http://news.example.co.uk/a", "", "news.example.co.uk", "Referral"),
    // Tags win over the referrer; mediums and click ids decide paid and other channels.
    ("", "utm_source=google&utm_medium=cpc", "Google", "Paid Search"),
    ("https://www.google.com/", "gclid=abc", "Google", "Paid Search"),
    ("", "gclid=abc", "Google", "Paid Search"),
    ("", "gbraid=abc", "Google", "Paid Search"),
    ("https://www.bing.com/", "msclkid=abc", "Bing", "Paid Search"),
    ("", "msclkid=abc", "Bing", "Paid Search"),
    ("https://l.facebook.com/", "fbclid=abc", "Facebook", "Organic Social"),
    ("https://l.facebook.com/", "fbclid=abc&utm_medium=paid", "Facebook", "Paid Social"),
    ("", "utm_source=facebook&utm_medium=paid_social", "Facebook", "Paid Social"),
    ("", "utm_source=fb&utm_medium=social", "Facebook", "Organic Social"),
    ("", "ttclid=abc", "TikTok", "Paid Social"),
    ("", "li_fat_id=abc", "LinkedIn", "Paid Social"),
    ("", "utm_source=newsletter&utm_medium=email", "newsletter", "Email"),
    ("", "utm_source=partner-site&utm_medium=affiliate", "partner-site", "Affiliates"),
    ("", "utm_source=adnet&utm_medium=display", "adnet", "Display"),
    ("", "utm_source=podcast-x&utm_medium=audio", "podcast-x", "Audio"),
    ("", "utm_source=sms-blast&utm_medium=sms", "sms-blast", "SMS"),
    ("https://www.google.com/", "ref=producthunt", "Product Hunt", "Organic Social"),
    ("", "ref=hn", "hn", "Referral"),
    ("https://t.co/x", "utm_source=twitter&utm_medium=paid", "Twitter", "Paid Social"),
    ("", "utm_source=youtube&utm_medium=cpv", "YouTube", "Paid Video"),
    ("", "utm_source=amazon&utm_medium=cpc", "Amazon", "Paid Shopping"),
    // Nothing at all.
    ("", "", "", "Direct"),
    ("", "utm_campaign=spring", "", "Direct"),
];

#[test]
fn real_referrers_map_to_their_source_and_channel() {
    assert!(CASES.len() >= 100, "{} cases", CASES.len());
    let mut wrong = Vec::new();
    for (referrer, query, source, channel) in CASES {
        let page = parse_page_url(&format!("https://site.test/landing?{query}"), false).unwrap();
        let referrer = parse_referrer(referrer);
        let tag = if page.utm_source.is_empty() { &page.ref_param } else { &page.utm_source };
        let got = classify(referrer.as_ref().map(|(_, h)| h.as_str()), tag, &page.utm_medium, &page.click_id);
        if (got.source.as_str(), got.channel.as_str()) != (*source, *channel) {
            wrong.push(format!(
                "{referrer:?} ?{query}: got {} / {}, want {source} / {channel}",
                got.source, got.channel
            ));
        }
    }
    println!("{} referrers classified, {} wrong", CASES.len(), wrong.len());
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
