//! Referrer spam: fake visits that exist to put a domain in the site owner's referrer list.
//! Matomo's community list (public domain, about 2,000 domains; see `data/NOTICE`) names them; a
//! hit whose referrer — or `utm_source`/`ref` — is on it, or is a subdomain of one on it, is
//! answered like any other and only counted.

use std::collections::HashSet;

const LIST: &str = include_str!("../data/referrer-spam.txt");

pub struct SpamList {
    domains: HashSet<String>,
}

impl SpamList {
    pub fn new() -> Self {
        let domains = LIST
            .lines()
            .map(|l| l.trim().to_ascii_lowercase())
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect();
        SpamList { domains }
    }

    /// Whether `host` (lower case) or a domain it is under is on the list. Names without a dot
    /// (`google`, as a `utm_source`) are never spam domains.
    pub fn is_spam(&self, host: &str) -> bool {
        let mut h = host.trim_end_matches('.');
        while let Some((_, parent)) = h.split_once('.') {
            if self.domains.contains(h) {
                return true;
            }
            h = parent;
        }
        false
    }
}

impl Default for SpamList {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_domains_and_their_subdomains_are_spam_and_nothing_else() {
        let s = SpamList::new();
        assert!(s.domains.len() > 2000, "the vendored list has {} domains", s.domains.len());
        assert!(s.is_spam("semalt.com"));
        assert!(s.is_spam("free-share-buttons.com"));
        assert!(s.is_spam("sub.semalt.com"), "subdomains of a listed domain");
        assert!(s.is_spam("qiwi.xyz"), "entries are matched in lower case");
        assert!(s.is_spam("prizesk.com"), "entries are trimmed");
        assert!(!s.is_spam("google.com"));
        assert!(!s.is_spam("news.ycombinator.com"));
        assert!(!s.is_spam("notsemalt.com"), "only whole labels match");
        assert!(!s.is_spam("com"));
        assert!(!s.is_spam("google"));
        assert!(!s.is_spam(""));
    }
}
