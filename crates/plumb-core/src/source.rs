//! Source and channel of a visit, from the referrer, the page's tags (`utm_source`, `ref`,
//! `source`, `utm_medium`) and click ids (`gclid`, `msclkid`, `fbclid`…). Known sites are our own
//! list, keyed by full host, by registrable domain (public suffix list) or by brand (the
//! registrable domain's label, for engines with a domain per country). Channels follow the
//! usual default channel grouping: Direct, Organic/Paid Search, Organic/Paid Social, Organic/Paid
//! Video, Organic/Paid Shopping, Email, Affiliates, Display, Audio, SMS, AI Assistants, Referral.

/// What kind of site a known source is; its channel when the visit is not paid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Search,
    Social,
    Video,
    Shopping,
    Email,
    Ai,
    Referral,
}

impl Kind {
    fn organic(self) -> &'static str {
        match self {
            Kind::Search => "Organic Search",
            Kind::Social => "Organic Social",
            Kind::Video => "Organic Video",
            Kind::Shopping => "Organic Shopping",
            Kind::Email => "Email",
            Kind::Ai => "AI Assistants",
            Kind::Referral => "Referral",
        }
    }

    fn paid(self) -> &'static str {
        match self {
            Kind::Social => "Paid Social",
            Kind::Video => "Paid Video",
            Kind::Shopping => "Paid Shopping",
            _ => "Paid Search",
        }
    }
}

use Kind::*;

/// (key, source name, kind). A key with a dot is a host or a registrable domain; one without
/// is a brand (`google` for google.com, google.co.uk…), an app id or a tag alias.
const KNOWN: &[(&str, &str, Kind)] = &[
    // Search engines.
    ("google", "Google", Search),
    ("bing", "Bing", Search),
    ("duckduckgo", "DuckDuckGo", Search),
    ("yahoo", "Yahoo!", Search),
    ("yandex", "Yandex", Search),
    ("ya.ru", "Yandex", Search),
    ("baidu", "Baidu", Search),
    ("naver", "Naver", Search),
    ("seznam", "Seznam", Search),
    ("ecosia", "Ecosia", Search),
    ("qwant", "Qwant", Search),
    ("startpage", "Startpage", Search),
    ("search.brave.com", "Brave Search", Search),
    ("ask", "Ask", Search),
    ("aol", "AOL", Search),
    ("sogou", "Sogou", Search),
    ("so.com", "360 Search", Search),
    ("daum", "Daum", Search),
    ("mojeek", "Mojeek", Search),
    ("kagi", "Kagi", Search),
    ("search.lilo.org", "Lilo", Search),
    ("metager", "MetaGer", Search),
    ("com.google.android.googlequicksearchbox", "Google", Search),
    // AI assistants (before the brands they live under: gemini.google.com is not Google Search).
    ("chatgpt.com", "ChatGPT", Ai),
    ("chat.openai.com", "ChatGPT", Ai),
    ("perplexity.ai", "Perplexity", Ai),
    ("claude.ai", "Claude", Ai),
    ("gemini.google.com", "Gemini", Ai),
    ("bard.google.com", "Gemini", Ai),
    ("copilot.microsoft.com", "Copilot", Ai),
    ("you.com", "You.com", Ai),
    ("phind.com", "Phind", Ai),
    ("chat.mistral.ai", "Mistral", Ai),
    ("chat.deepseek.com", "DeepSeek", Ai),
    ("poe.com", "Poe", Ai),
    ("meta.ai", "Meta AI", Ai),
    ("grok.com", "Grok", Ai),
    // E-mail.
    ("mail.google.com", "Gmail", Email),
    ("com.google.android.gm", "Gmail", Email),
    ("outlook.live.com", "Outlook", Email),
    ("outlook.office.com", "Outlook", Email),
    ("outlook.office365.com", "Outlook", Email),
    ("mail.yahoo.com", "Yahoo! Mail", Email),
    ("mail.proton.me", "Proton Mail", Email),
    ("mail.yandex.ru", "Yandex Mail", Email),
    ("mail.ru", "Mail.ru", Email),
    ("web.de", "WEB.DE", Email),
    ("gmx.net", "GMX", Email),
    ("gmx.de", "GMX", Email),
    ("fastmail.com", "Fastmail", Email),
    ("mail.zoho.com", "Zoho Mail", Email),
    // Video.
    ("youtube.com", "YouTube", Video),
    ("youtu.be", "YouTube", Video),
    ("m.youtube.com", "YouTube", Video),
    ("vimeo.com", "Vimeo", Video),
    ("twitch.tv", "Twitch", Video),
    ("dailymotion.com", "Dailymotion", Video),
    ("tiktok.com", "TikTok", Video),
    ("bilibili.com", "Bilibili", Video),
    // Social networks and communities.
    ("facebook.com", "Facebook", Social),
    ("fb.com", "Facebook", Social),
    ("fb", "Facebook", Social),
    ("messenger.com", "Facebook", Social),
    ("instagram.com", "Instagram", Social),
    ("ig", "Instagram", Social),
    ("threads.net", "Threads", Social),
    ("threads.com", "Threads", Social),
    ("t.co", "Twitter", Social),
    ("twitter.com", "Twitter", Social),
    ("x.com", "Twitter", Social),
    ("tw", "Twitter", Social),
    ("com.twitter.android", "Twitter", Social),
    ("linkedin.com", "LinkedIn", Social),
    ("lnkd.in", "LinkedIn", Social),
    ("li", "LinkedIn", Social),
    ("com.linkedin.android", "LinkedIn", Social),
    ("reddit.com", "Reddit", Social),
    ("com.reddit.frontpage", "Reddit", Social),
    ("news.ycombinator.com", "Hacker News", Social),
    ("bsky.app", "Bluesky", Social),
    ("mastodon.social", "Mastodon", Social),
    ("mastodon.online", "Mastodon", Social),
    ("pinterest", "Pinterest", Social),
    ("pin.it", "Pinterest", Social),
    ("quora.com", "Quora", Social),
    ("tumblr.com", "Tumblr", Social),
    ("vk.com", "VKontakte", Social),
    ("ok.ru", "Odnoklassniki", Social),
    ("weibo.com", "Weibo", Social),
    ("snapchat.com", "Snapchat", Social),
    ("discord.com", "Discord", Social),
    ("discordapp.com", "Discord", Social),
    ("slack.com", "Slack", Social),
    ("com.slack", "Slack", Social),
    ("t.me", "Telegram", Social),
    ("web.telegram.org", "Telegram", Social),
    ("org.telegram.messenger", "Telegram", Social),
    ("whatsapp.com", "WhatsApp", Social),
    ("web.whatsapp.com", "WhatsApp", Social),
    ("wa.me", "WhatsApp", Social),
    ("lobste.rs", "Lobsters", Social),
    ("producthunt.com", "Product Hunt", Social),
    ("medium.com", "Medium", Social),
    ("substack.com", "Substack", Social),
    ("stackoverflow.com", "Stack Overflow", Social),
    ("xing.com", "XING", Social),
    ("line.me", "LINE", Social),
    ("nextdoor.com", "Nextdoor", Social),
    // Shopping.
    ("amazon", "Amazon", Shopping),
    ("ebay", "eBay", Shopping),
    ("etsy.com", "Etsy", Shopping),
    ("shopping.google.com", "Google Shopping", Shopping),
    ("aliexpress.com", "AliExpress", Shopping),
    ("walmart.com", "Walmart", Shopping),
    // Referral sites people ask about by name.
    ("github.com", "GitHub", Referral),
    ("gitlab.com", "GitLab", Referral),
    ("wikipedia.org", "Wikipedia", Referral),
    ("dev.to", "DEV", Referral),
    ("notion.so", "Notion", Referral),
];

/// Click ids a page URL may carry: (parameter, source, paid channel kind).
const CLICK_IDS: &[(&str, &str, Kind)] = &[
    ("gclid", "Google", Search),
    ("gbraid", "Google", Search),
    ("wbraid", "Google", Search),
    ("dclid", "Google", Search),
    ("msclkid", "Bing", Search),
    ("yclid", "Yandex", Search),
    ("fbclid", "Facebook", Social),
    ("ttclid", "TikTok", Social),
    ("twclid", "Twitter", Social),
    ("li_fat_id", "LinkedIn", Social),
    ("rdt_cid", "Reddit", Social),
    ("epik", "Pinterest", Social),
];

/// Whether a query parameter is an ad click id (`gclid`, `msclkid`, `fbclid`…).
pub fn is_click_id(param: &str) -> bool {
    CLICK_IDS.iter().any(|(p, _, _)| *p == param)
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Source {
    pub source: String,
    pub channel: String,
}

fn lookup(key: &str) -> Option<(&'static str, Kind)> {
    KNOWN.iter().find(|(k, _, _)| *k == key).map(|(_, n, kind)| (*n, *kind))
}

/// A host by itself, then its registrable domain, then its brand; a tag also by source name or
/// by a known domain's first label.
fn known(host_or_tag: &str) -> Option<(&'static str, Kind)> {
    let h = host_or_tag.trim().trim_end_matches('.').to_ascii_lowercase();
    let h = h.strip_prefix("www.").unwrap_or(&h);
    if let Some(hit) = lookup(h) {
        return Some(hit);
    }
    if let Some(domain) = psl::domain_str(h) {
        if let Some(hit) = lookup(domain) {
            return Some(hit);
        }
        let suffix = psl::suffix_str(domain).unwrap_or_default();
        let brand = domain.strip_suffix(suffix).unwrap_or(domain).trim_end_matches('.');
        if let Some(hit) = lookup(brand) {
            return Some(hit);
        }
    }
    // Tags name sites loosely: `producthunt`, `Product Hunt`, `twitter`.
    let squash = |s: &str| s.chars().filter(|c| c.is_ascii_alphanumeric()).collect::<String>().to_ascii_lowercase();
    let tag = squash(h);
    KNOWN
        .iter()
        .find(|(k, n, _)| {
            // A domain's first label only when it is distinctive (`producthunt`, not `web` or `t`).
            let brand =
                || psl::domain_str(k) == Some(k) && k.split('.').next().is_some_and(|b| b.len() >= 5 && b == tag);
            squash(n) == tag || brand()
        })
        .map(|(_, n, kind)| (*n, *kind))
}

/// Channels a `utm_medium` decides by itself (GA4's default grouping, simplified).
fn medium_channel(medium: &str, kind: Option<Kind>) -> Option<&'static str> {
    let m = medium.to_ascii_lowercase();
    let paid = ["cpc", "ppc", "paid", "paidsearch", "paid_search", "paid-search", "retargeting", "cpv", "cpa"]
        .contains(&m.as_str())
        || m.starts_with("paid");
    if paid {
        return Some(kind.map_or("Paid Search", Kind::paid));
    }
    Some(match m.as_str() {
        "email" | "e-mail" | "e_mail" | "e mail" | "newsletter" | "mail" => "Email",
        "affiliate" | "affiliates" | "partner" => "Affiliates",
        "display" | "banner" | "cpm" | "interstitial" | "expandable" => "Display",
        "social" | "social-network" | "social-media" | "sm" | "social network" | "social media" => "Organic Social",
        "video" => "Organic Video",
        "audio" | "podcast" => "Audio",
        "sms" => "SMS",
        "organic" => "Organic Search",
        "referral" => "Referral",
        _ => return None,
    })
}

/// `referrer_host` must already be normalised and must not be the site itself (self-referrals
/// are dropped by the caller). A tag (`utm_source`, `ref`, `source`) wins over the referrer, the
/// referrer over a click id; `utm_medium` and click ids decide paid channels.
pub fn classify(referrer_host: Option<&str>, tag_source: &str, utm_medium: &str, click_id: &str) -> Source {
    let click = CLICK_IDS.iter().find(|(p, _, _)| *p == click_id);
    let tag = tag_source.trim();
    let (source, kind) = if !tag.is_empty() {
        match known(tag) {
            Some((n, k)) => (n.to_owned(), Some(k)),
            None => (tag.to_owned(), None),
        }
    } else if let Some(host) = referrer_host.filter(|h| !h.is_empty()) {
        match known(host) {
            Some((n, k)) => (n.to_owned(), Some(k)),
            None => (host.to_owned(), None),
        }
    } else if let Some((_, n, k)) = click {
        (n.to_string(), Some(*k))
    } else if let Some(channel) = medium_channel(utm_medium, None) {
        return Source { source: String::new(), channel: channel.to_owned() };
    } else {
        return Source { source: String::new(), channel: "Direct".to_owned() };
    };
    let channel = match (medium_channel(utm_medium, kind), click) {
        (Some(c), _) => c,
        // Facebook adds fbclid to every outbound link, paid or not.
        (None, Some((p, _, k))) if *p != "fbclid" => k.paid(),
        _ => kind.map_or("Referral", Kind::organic),
    };
    Source { source, channel: channel.to_owned() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_referrers_tags_and_click_ids() {
        let c = |h: Option<&str>, t: &str, m: &str, id: &str| {
            let s = classify(h, t, m, id);
            (s.source, s.channel)
        };
        let s = |a: &str, b: &str| (a.to_owned(), b.to_owned());
        assert_eq!(c(None, "", "", ""), s("", "Direct"));
        assert_eq!(c(Some("google.co.uk"), "", "", ""), s("Google", "Organic Search"));
        assert_eq!(c(Some("m.facebook.com"), "", "", ""), s("Facebook", "Organic Social"));
        assert_eq!(c(Some("gemini.google.com"), "", "", ""), s("Gemini", "AI Assistants"));
        assert_eq!(c(Some("blog.example.org"), "", "", ""), s("blog.example.org", "Referral"));
        assert_eq!(c(None, "newsletter", "email", ""), s("newsletter", "Email"));
        assert_eq!(c(None, "fb", "", ""), s("Facebook", "Organic Social"));
        assert_eq!(c(None, "producthunt", "", ""), s("Product Hunt", "Organic Social"));
        // Generic tags stay themselves, even where a known host starts with them.
        assert_eq!(c(None, "news", "", ""), s("news", "Referral"));
        assert_eq!(c(None, "web", "", ""), s("web", "Referral"));
        assert_eq!(c(None, "Google", "cpc", ""), s("Google", "Paid Search"));
        assert_eq!(c(Some("google.com"), "", "", "gclid"), s("Google", "Paid Search"));
        assert_eq!(c(None, "", "", "gclid"), s("Google", "Paid Search"));
        assert_eq!(c(None, "", "", "msclkid"), s("Bing", "Paid Search"));
        assert_eq!(c(Some("l.facebook.com"), "", "", "fbclid"), s("Facebook", "Organic Social"));
        assert_eq!(c(Some("l.facebook.com"), "", "paid", "fbclid"), s("Facebook", "Paid Social"));
        assert_eq!(c(None, "", "display", ""), s("", "Display"));
        // A host that merely contains a known name is not that site.
        assert_eq!(c(Some("notx.com"), "", "", ""), s("notx.com", "Referral"));
        assert_eq!(c(Some("googleusercontent.example"), "", "", ""), s("googleusercontent.example", "Referral"));
    }
}
