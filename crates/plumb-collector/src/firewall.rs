//! Per-site firewall rules, checked on every hit before anything is stored. Rules come from
//! metadata and are read again after a second, so a rule added while the server runs (CLI, API or
//! settings page) takes effect within one.

use plumb_core::url::wildcard_regex;
use plumb_meta::{MetaStore, RuleKind};
use regex::Regex;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const REFRESH: Duration = Duration::from_secs(1);

/// A site's rules, ready to match.
#[derive(Default)]
pub struct Rules {
    nets: Vec<ipnet::IpNet>,
    countries: Vec<String>,
    paths: Vec<Regex>,
    /// Empty: any hostname. Entries are exact hostnames, or suffixes (`.example.com`) from `*.`.
    hosts: Vec<String>,
}

/// What a hit is judged on.
pub struct Hit<'a> {
    pub ip: IpAddr,
    pub country: &'a str,
    pub hostname: &'a str,
    pub pathname: &'a str,
}

impl Rules {
    fn compile(rules: &[RuleKind]) -> Rules {
        let mut out = Rules::default();
        for r in rules {
            match r {
                RuleKind::Ip(n) => out.nets.push(*n),
                RuleKind::Country(c) => out.countries.push(c.clone()),
                // Patterns are checked when added; one that still fails to compile blocks nothing.
                RuleKind::Path(p) => out.paths.extend(Regex::new(&wildcard_regex(p)).ok()),
                RuleKind::AllowHost(h) => out.hosts.push(h.strip_prefix('*').unwrap_or(h).to_owned()),
            }
        }
        out
    }

    /// The rule kind that blocks the hit, if any.
    pub fn blocks(&self, hit: &Hit) -> Option<&'static str> {
        let ip = hit.ip.to_canonical();
        if self.nets.iter().any(|n| n.contains(&ip)) {
            return Some("ip");
        }
        if self.countries.iter().any(|c| c == hit.country) {
            return Some("country");
        }
        if self.paths.iter().any(|p| p.is_match(hit.pathname)) {
            return Some("path");
        }
        let allowed =
            |h: &String| if h.starts_with('.') { hit.hostname.ends_with(h.as_str()) } else { hit.hostname == h };
        if !self.hosts.is_empty() && !self.hosts.iter().any(allowed) {
            return Some("hostname");
        }
        None
    }
}

#[derive(Default)]
pub struct Firewall {
    sites: Mutex<HashMap<u32, (Instant, Arc<Rules>)>>,
}

impl Firewall {
    pub fn rules(&self, meta: &dyn MetaStore, site_id: u32) -> Result<Arc<Rules>, plumb_meta::MetaError> {
        if let Some((at, rules)) = self.sites.lock().unwrap().get(&site_id)
            && at.elapsed() < REFRESH
        {
            return Ok(rules.clone());
        }
        let kinds: Vec<RuleKind> = match meta.rules(site_id) {
            Ok(rules) => rules.into_iter().map(|r| r.kind).collect(),
            // The metadata store is unreachable: the rules as last read keep applying.
            Err(e) => return self.sites.lock().unwrap().get(&site_id).map(|(_, rules)| rules.clone()).ok_or(e),
        };
        let rules = Arc::new(Rules::compile(&kinds));
        self.sites.lock().unwrap().insert(site_id, (Instant::now(), rules.clone()));
        Ok(rules)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_of_rule_blocks_what_it_names() {
        let rule = |k: &str, v: &str| RuleKind::parse(k, v).unwrap();
        let rules = Rules::compile(&[
            rule("ip", "203.0.113.0/24"),
            rule("country", "RU"),
            rule("path", "/admin/**"),
            rule("allow_host", "*.example.com"),
            rule("allow_host", "example.com"),
        ]);
        let hit = |ip: &str, country, hostname, pathname| Hit { ip: ip.parse().unwrap(), country, hostname, pathname };
        assert_eq!(rules.blocks(&hit("198.51.100.1", "DE", "example.com", "/")), None);
        assert_eq!(rules.blocks(&hit("198.51.100.1", "DE", "shop.example.com", "/a")), None);
        assert_eq!(rules.blocks(&hit("203.0.113.9", "DE", "example.com", "/")), Some("ip"));
        assert_eq!(rules.blocks(&hit("::ffff:203.0.113.9", "DE", "example.com", "/")), Some("ip"), "mapped IPv4");
        assert_eq!(rules.blocks(&hit("198.51.100.1", "RU", "example.com", "/")), Some("country"));
        assert_eq!(rules.blocks(&hit("198.51.100.1", "DE", "example.com", "/admin/users/1")), Some("path"));
        assert_eq!(rules.blocks(&hit("198.51.100.1", "DE", "evil-example.com", "/")), Some("hostname"));
        assert_eq!(Rules::default().blocks(&hit("203.0.113.9", "RU", "any.host", "/admin")), None);
    }
}
