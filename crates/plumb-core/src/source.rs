//! Source and channel of a visit, from the referrer and the page's tags. This is the first cut:
//! a short list of well-known sites; the full classification (public suffix list, click ids,
//! paid channels, spam lists) replaces the table without changing the signature.

/// (host suffix, source name, channel)
const KNOWN: &[(&str, &str, &str)] = &[
    ("google.", "Google", "Organic Search"),
    ("bing.com", "Bing", "Organic Search"),
    ("duckduckgo.com", "DuckDuckGo", "Organic Search"),
    ("search.yahoo.com", "Yahoo!", "Organic Search"),
    ("yandex.", "Yandex", "Organic Search"),
    ("ecosia.org", "Ecosia", "Organic Search"),
    ("facebook.com", "Facebook", "Organic Social"),
    ("t.co", "Twitter", "Organic Social"),
    ("twitter.com", "Twitter", "Organic Social"),
    ("x.com", "Twitter", "Organic Social"),
    ("linkedin.com", "LinkedIn", "Organic Social"),
    ("reddit.com", "Reddit", "Organic Social"),
    ("news.ycombinator.com", "Hacker News", "Organic Social"),
    ("github.com", "GitHub", "Referral"),
    ("chatgpt.com", "ChatGPT", "AI Assistants"),
    ("perplexity.ai", "Perplexity", "AI Assistants"),
];

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Source {
    pub source: String,
    pub channel: String,
}

fn known(host: &str) -> Option<(&'static str, &'static str)> {
    KNOWN.iter().find_map(|(suffix, name, channel)| {
        let hit = if suffix.ends_with('.') {
            host.starts_with(suffix) || host.contains(&format!(".{suffix}"))
        } else {
            host == *suffix || host.ends_with(&format!(".{suffix}"))
        };
        hit.then_some((*name, *channel))
    })
}

/// `referrer_host` must already be normalised and must not be the site itself (self-referrals
/// are dropped by the caller). A tag (`utm_source`, `ref`, `source`) wins over the referrer.
pub fn classify(referrer_host: Option<&str>, tag_source: &str, utm_medium: &str) -> Source {
    let medium = utm_medium.to_ascii_lowercase();
    let (source, mut channel) = if !tag_source.is_empty() {
        match known(&tag_source.to_ascii_lowercase()) {
            Some((n, c)) => (n.to_owned(), c.to_owned()),
            None => (tag_source.to_owned(), "Referral".to_owned()),
        }
    } else if let Some(host) = referrer_host.filter(|h| !h.is_empty()) {
        match known(host) {
            Some((n, c)) => (n.to_owned(), c.to_owned()),
            None => (host.to_owned(), "Referral".to_owned()),
        }
    } else {
        return Source { source: String::new(), channel: "Direct".to_owned() };
    };
    if medium.contains("email") || medium == "newsletter" {
        channel = "Email".to_owned();
    } else if ["cpc", "ppc", "paid", "paidsearch"].contains(&medium.as_str()) {
        channel = if channel == "Organic Social" { "Paid Social" } else { "Paid Search" }.to_owned();
    }
    Source { source, channel }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_referrers_and_tags() {
        let c = |h: Option<&str>, t: &str, m: &str| {
            let s = classify(h, t, m);
            (s.source, s.channel)
        };
        assert_eq!(c(None, "", ""), ("".into(), "Direct".into()));
        assert_eq!(c(Some("google.de"), "", ""), ("Google".into(), "Organic Search".into()));
        assert_eq!(c(Some("m.facebook.com"), "", ""), ("Facebook".into(), "Organic Social".into()));
        assert_eq!(c(Some("blog.example.org"), "", ""), ("blog.example.org".into(), "Referral".into()));
        assert_eq!(c(None, "newsletter", "email"), ("newsletter".into(), "Email".into()));
        assert_eq!(c(Some("google.com"), "", "cpc"), ("Google".into(), "Paid Search".into()));
        // A host that merely contains a known name is not that site.
        assert_eq!(c(Some("notx.com"), "", ""), ("notx.com".into(), "Referral".into()));
    }
}
