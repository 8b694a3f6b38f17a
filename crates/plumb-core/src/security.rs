//! Why a hit was turned away. Security counters are kept per site, hour and one of these
//! reasons; the names are what the API returns, the descriptions what the dashboard shows.

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// No User-Agent at all: every browser sends one.
    NoUserAgent,
    /// A known crawler, by the pattern list or uap-core's `Spider` device family.
    Crawler,
    /// A headless browser that says so (`HeadlessChrome`, PhantomJS…).
    Headless,
    /// The tracker reported `navigator.webdriver`: a browser driven by automation.
    Automation,
    /// A User-Agent that names a browser on a request without the headers every browser sends.
    Scripted,
    /// One visitor sending events faster than a person can.
    TooFast,
    /// A referrer (or `utm_source`/`ref`) on the referrer-spam list.
    Spam,
    /// Over an event rate limit: answered `429`.
    RateLimited,
    /// Matched one of the site's firewall rules: answered `403`.
    Blocked,
    /// Failed validation: answered `400`.
    Invalid,
}

impl Reason {
    pub const ALL: [Reason; 10] = [
        Reason::NoUserAgent,
        Reason::Crawler,
        Reason::Headless,
        Reason::Automation,
        Reason::Scripted,
        Reason::TooFast,
        Reason::Spam,
        Reason::RateLimited,
        Reason::Blocked,
        Reason::Invalid,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Reason::NoUserAgent => "no_user_agent",
            Reason::Crawler => "crawler",
            Reason::Headless => "headless",
            Reason::Automation => "automation",
            Reason::Scripted => "scripted",
            Reason::TooFast => "too_fast",
            Reason::Spam => "spam",
            Reason::RateLimited => "rate_limited",
            Reason::Blocked => "blocked",
            Reason::Invalid => "invalid",
        }
    }

    pub fn from_name(name: &str) -> Option<Reason> {
        Reason::ALL.into_iter().find(|r| r.name() == name)
    }

    /// For people: what the hit was and what was done with it.
    pub fn describe(self) -> &'static str {
        match self {
            Reason::NoUserAgent => "No User-Agent (every browser sends one); not counted",
            Reason::Crawler => "A known crawler or bot, by its User-Agent; not counted",
            Reason::Headless => "A headless browser that names itself; not counted",
            Reason::Automation => "A browser driven by automation (navigator.webdriver); not counted",
            Reason::Scripted => "Claimed to be a browser without sending a browser's headers; not counted",
            Reason::TooFast => "One visitor sending events faster than a person can; not counted",
            Reason::Spam => "Referrer spam (a domain on the referrer-spam list); not counted",
            Reason::RateLimited => "Over an event rate limit; refused (429)",
            Reason::Blocked => "Matched a firewall rule of this site; refused (403)",
            Reason::Invalid => "Failed validation; refused (400)",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_distinct_and_round_trip() {
        let names: std::collections::HashSet<_> = Reason::ALL.iter().map(|r| r.name()).collect();
        assert_eq!(names.len(), Reason::ALL.len());
        for r in Reason::ALL {
            assert_eq!(Reason::from_name(r.name()), Some(r));
        }
        assert_eq!(Reason::from_name("bored"), None);
    }
}
