//! Plausible's event body (short and long field names) → validated, signed queue entries.

use crate::Collector;
use crate::firewall::Hit;
use crate::refusal::Refusal;
use crate::useragent::{Agent, device_with_width};
use axum::http::{HeaderMap, header};
use chrono::DateTime;
use plumb_core::security::Reason;
use plumb_core::signature::visitor_signature;
use plumb_core::source::classify;
use plumb_core::time::local_day_hour;
use plumb_core::url::{MAX_PATH, MAX_VALUE, normalize_hostname, parse_page_url_with, parse_referrer, truncate};
use plumb_core::{EventKind, QueuedEvent, Revenue, VisitInfo};
use plumb_meta::permission::{Action, allowed, key_holders};
use plumb_meta::{ApiKey, Site, validate_domain};
use plumb_queue::Message;
use serde::Deserialize;
use serde_json::Value;
use std::borrow::Cow;
use std::net::IpAddr;

pub const MAX_NAME: usize = 120;
pub const MAX_PROPS: usize = 30;
pub const MAX_USER_AGENT: usize = 1024;
pub const MAX_DOMAINS: usize = 10;
/// Authenticated senders may date events this far into the future (clock skew).
const MAX_FUTURE_MS: i64 = 5 * 60_000;

/// Who sends a request, as its head tells: the client's address and the API key it presented
/// (verified before the body is read).
pub struct Sender {
    pub ip: IpAddr,
    /// A valid key. With `events:write` on an event's sites the sender is a trusted server (see
    /// `plumb_meta::permission::Action::SendAsServer`); any other key is refused for them.
    pub key: Option<ApiKey>,
}

/// What the request itself says about the sender.
pub struct Context {
    ip: IpAddr,
    user_agent: String,
    key: Option<ApiKey>,
    /// Whether the request carries a header every browser sends with the tracker's requests
    /// (`Accept-Language`, or the `Sec-Fetch-*` ones of modern browsers).
    browser_headers: bool,
    now_ms: i64,
}

impl Context {
    pub fn from_request(sender: Sender, headers: &HeaderMap) -> Self {
        let user_agent = headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or("");
        let browser_headers = headers.contains_key(header::ACCEPT_LANGUAGE) || headers.contains_key("sec-fetch-mode");
        Self {
            ip: sender.ip,
            user_agent: truncate(user_agent, MAX_USER_AGENT),
            key: sender.key,
            browser_headers,
            now_ms: chrono::Utc::now().timestamp_millis(),
        }
    }

    pub fn ip(&self) -> IpAddr {
        self.ip
    }

    pub fn key(&self) -> Option<&ApiKey> {
        self.key.as_ref()
    }

    pub fn now_ms(&self) -> i64 {
        self.now_ms
    }
}

/// `domain` as a list of lower-cased domains (Plausible allows several, comma-separated);
/// `None` when it is missing or blank.
fn domain_list(domain: Option<&str>) -> Option<Vec<String>> {
    let list = domain.map(str::trim).filter(|d| !d.is_empty())?;
    Some(list.split(',').map(|d| d.trim().to_ascii_lowercase()).filter(|d| !d.is_empty()).collect())
}

pub(crate) fn internal(e: impl std::fmt::Display) -> Refusal {
    tracing::error!("collector metadata look-up failed: {e}");
    Refusal::Unavailable("collector cannot reach its metadata, retry shortly".into())
}

#[derive(Debug, Deserialize)]
pub struct EventBody {
    #[serde(alias = "n")]
    name: Option<String>,
    #[serde(alias = "u")]
    url: Option<String>,
    #[serde(alias = "d")]
    domain: Option<String>,
    #[serde(alias = "r")]
    referrer: Option<String>,
    #[serde(alias = "p", alias = "m", alias = "meta")]
    props: Option<Value>,
    #[serde(alias = "h")]
    hash_mode: Option<Value>,
    #[serde(alias = "i")]
    interactive: Option<bool>,
    #[serde(alias = "$")]
    revenue: Option<Value>,
    /// The tracker's report of `navigator.webdriver`: the browser is driven by automation.
    #[serde(alias = "wd")]
    webdriver: Option<bool>,
    /// The tracker's `window.innerWidth`, in CSS pixels: a hint for the device type.
    #[serde(alias = "w")]
    screen_width: Option<Value>,
    /// Engagement: scroll depth in percent.
    sd: Option<Value>,
    /// Engagement: engaged time in milliseconds.
    e: Option<Value>,
    timestamp: Option<Value>,
    ip: Option<String>,
    user_agent: Option<String>,
}

impl EventBody {
    pub fn pageview(url: String, domain: Option<String>, referrer: Option<String>) -> Self {
        Self {
            name: Some("pageview".into()),
            url: Some(url),
            domain,
            referrer,
            props: None,
            hash_mode: None,
            interactive: None,
            revenue: None,
            webdriver: None,
            screen_width: None,
            sd: None,
            e: None,
            timestamp: None,
            ip: None,
            user_agent: None,
        }
    }

    /// The sites the event names (its `domain` list, else its URL's host), read leniently so an
    /// invalid event can still be counted against a site.
    pub fn claimed_domains(&self) -> Vec<String> {
        domain_list(self.domain.as_deref()).unwrap_or_else(|| {
            let host = self.url.as_deref().and_then(|u| url::Url::parse(u).ok());
            host.and_then(|u| u.host_str().map(plumb_core::url::normalize_hostname)).into_iter().collect()
        })
    }

    /// Checks everything that can refuse the event (`400` for what is malformed, `403` for a key
    /// that may not send for its sites or a firewall rule) before any rate budget is spent.
    pub fn validate(self, c: &Collector, ctx: &Context) -> Result<Checked, Refusal> {
        let name = self.name.filter(|n| !n.trim().is_empty()).ok_or_else(|| Refusal::invalid("`name` is required"))?;
        if name.chars().count() > MAX_NAME {
            return Err(Refusal::invalid(format!("`name` is longer than {MAX_NAME} characters")));
        }
        let kind = match name.as_str() {
            "pageview" => EventKind::Pageview,
            "engagement" => EventKind::Engagement,
            _ => EventKind::Custom,
        };
        // No length check: the body limit bounds the URL, and the stored parts are truncated.
        let url = self.url.ok_or_else(|| Refusal::invalid("`url` is required"))?;
        let hash_mode = match &self.hash_mode {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(Value::Number(n)) => n.as_i64() == Some(1),
            Some(other) => return Err(Refusal::invalid(format!("`hash_mode` must be 0 or 1, got {other}"))),
        };
        let page = parse_page_url_with(&url, hash_mode, &c.config.pages).map_err(Refusal::Invalid)?;
        // Sites are named without `www.`, even where page hostnames keep it.
        let site_host: Cow<str> = if c.config.pages.keep_www {
            Cow::Owned(normalize_hostname(&page.hostname))
        } else {
            Cow::Borrowed(&page.hostname)
        };
        let props = parse_props(self.props)?;
        // Plausible's trackers send `{}` for a tagged element without revenue classes: no revenue.
        let none = |v: &Value| v.is_null() || v.as_object().is_some_and(|o| o.is_empty());
        let revenue = self.revenue.filter(|v| !none(v)).map(parse_revenue).transpose()?;
        let (engaged_ms, scroll_depth) = if kind == EventKind::Engagement {
            (parse_engaged_ms(self.e)?, parse_scroll_depth(self.sd)?)
        } else {
            (0, None)
        };

        let privileged = [
            ("timestamp", self.timestamp.as_ref().is_some_and(|v| !v.is_null())),
            ("ip", self.ip.is_some()),
            ("user_agent", self.user_agent.is_some()),
        ];
        let privileged = privileged.iter().find(|(_, set)| *set).map(|(field, _)| *field);
        if let Some(field) = privileged.filter(|_| ctx.key.is_none()) {
            return Err(Refusal::invalid(format!(
                "`{field}` may only be set by server-side senders with an API key (Authorization: Bearer <key>)"
            )));
        }
        let ts_ms = match self.timestamp.filter(|v| !v.is_null()) {
            Some(v) => parse_timestamp(&v, ctx.now_ms)?,
            None => ctx.now_ms,
        };
        let ip = match self.ip {
            Some(ip) => ip
                .trim()
                .parse::<IpAddr>()
                .map_err(|_| Refusal::invalid(format!("`ip` `{ip}` is not an IP address")))?,
            None => ctx.ip,
        };
        let user_agent =
            self.user_agent.map(|u| truncate(&u, MAX_USER_AGENT)).unwrap_or_else(|| ctx.user_agent.clone());

        let domains = match domain_list(self.domain.as_deref()) {
            Some(list) => list,
            None if !site_host.is_empty() => vec![site_host.to_string()],
            None => return Err(Refusal::invalid("`domain` is required when `url` has no host")),
        };
        if domains.len() > MAX_DOMAINS {
            return Err(Refusal::invalid(format!(
                "`domain` lists {} sites; at most {MAX_DOMAINS} are allowed",
                domains.len()
            )));
        }
        for d in &domains {
            validate_domain(d).map_err(|e| Refusal::invalid(format!("`domain`: {e}")))?;
        }
        let mut sites = Vec::with_capacity(domains.len());
        for d in &domains {
            if let Some(site) = c.sites.get(c.meta.as_ref(), d).map_err(internal)? {
                sites.push(site);
            }
        }
        if sites.is_empty() {
            return Err(Refusal::invalid(format!("domain `{}` is not registered with this Plumb", domains.join(","))));
        }
        // A key speaks for its visitors only where it may: elsewhere it is refused, not taken
        // for a browser.
        if let Some(key) = &ctx.key
            && let Some(site) = sites.iter().find(|s| !allowed(Action::SendAsServer, &key_holders(key, Some(s.id))))
        {
            return Err(Refusal::Forbidden(format!(
                "API key `{}` may not send events for `{}` (needs events:write on that site)",
                key.name, site.domain
            )));
        }

        let width = match &self.screen_width {
            None | Some(Value::Null) => None,
            Some(w) => Some(w.as_u64().filter(|w| (1..=100_000).contains(w)).ok_or_else(|| {
                Refusal::invalid(format!("`screen_width` must be a width in pixels (1 to 100000), got {w}"))
            })? as u32),
        };
        // The address is used here and dropped; only the place goes on.
        let place = c.geo.locate(ip);
        let hit = Hit { ip, country: &place.country, hostname: &page.hostname, pathname: &page.pathname };
        for site in &sites {
            if let Some(rule) = c.firewall.rules(c.meta.as_ref(), site.id).map_err(internal)?.blocks(&hit) {
                c.tally.add(site.id, Reason::Blocked, ctx.now_ms);
                return Err(Refusal::Forbidden(format!("blocked by a firewall rule ({rule})")));
            }
        }
        let referrer = self.referrer.as_deref().and_then(parse_referrer);
        // A referrer from the site itself is navigation, not a source.
        let referrer = referrer.filter(|(_, host)| *host != site_host && !domains.contains(host));
        Ok(Checked {
            kind,
            name,
            page,
            props,
            revenue,
            engaged_ms,
            scroll_depth,
            ts_ms,
            ip,
            user_agent,
            trusted: ctx.key.is_some(),
            sites,
            referrer,
            width,
            place,
            webdriver: self.webdriver == Some(true),
            interactive: self.interactive.unwrap_or(true),
        })
    }
}

/// A valid event, admitted or not yet: what remains is to judge it (bots, spam, pace) and sign it.
pub struct Checked {
    kind: EventKind,
    name: String,
    page: plumb_core::url::PageUrl,
    props: Vec<(String, String)>,
    revenue: Option<Revenue>,
    engaged_ms: u32,
    scroll_depth: Option<u8>,
    ts_ms: i64,
    ip: IpAddr,
    user_agent: String,
    /// Sent by a key with `events:write` on every one of `sites`: a server speaking for its
    /// visitors, whose own headers and pace say nothing about them.
    trusted: bool,
    pub sites: Vec<Site>,
    referrer: Option<(String, String)>,
    width: Option<u32>,
    place: crate::geo::Place,
    webdriver: bool,
    interactive: bool,
}

/// The visit a hit belongs to, as stored on its rows: its source (the page's `utm_source` or
/// `ref` tag, else the referrer's host, else a click id), the User-Agent's browser, OS and device
/// (the tracker's width refines the device), and its place. `plumb import logs` makes visits of
/// logged requests with it too.
pub fn visit_info(
    agent: &Agent,
    referrer: Option<(String, String)>,
    page: &plumb_core::url::PageUrl,
    width: Option<u32>,
    place: crate::geo::Place,
) -> VisitInfo {
    let tag = if page.utm_source.is_empty() { &page.ref_param } else { &page.utm_source };
    let source = classify(referrer.as_ref().map(|(_, h)| h.as_str()), tag, &page.utm_medium, &page.click_id);
    VisitInfo {
        source: source.source,
        referrer: referrer.map(|(r, _)| r).unwrap_or_default(),
        channel: source.channel,
        utm_medium: page.utm_medium.clone(),
        utm_source: page.utm_source.clone(),
        utm_campaign: page.utm_campaign.clone(),
        utm_content: page.utm_content.clone(),
        utm_term: page.utm_term.clone(),
        browser: agent.browser.clone(),
        browser_version: agent.browser_version.clone(),
        os: agent.os.clone(),
        os_version: agent.os_version.clone(),
        device: device_with_width(&agent.device, width).to_owned(),
        country: place.country,
        region: place.region,
        city: place.city,
    }
}

impl Checked {
    /// One queue entry per site the event is recorded for; none for a bot, spam or a visitor
    /// faster than a person (counted, answered like any hit).
    pub fn into_entries(self, c: &Collector, ctx: &Context) -> Result<Vec<Message>, Refusal> {
        let Checked {
            kind,
            name,
            page,
            props,
            revenue,
            engaged_ms,
            scroll_depth,
            ts_ms,
            ip,
            user_agent,
            trusted,
            sites,
            referrer,
            width,
            place,
            webdriver,
            interactive,
        } = self;
        let agent = c.agents.parse(&user_agent);
        let tag = if page.utm_source.is_empty() { &page.ref_param } else { &page.utm_source };
        let turned_away = if webdriver {
            Some(Reason::Automation)
        } else if agent.bot.is_some() {
            agent.bot
        } else if !trusted && !ctx.browser_headers && claims_browser(&user_agent) {
            Some(Reason::Scripted)
        } else if referrer.as_ref().is_some_and(|(_, host)| c.spam.is_spam(host))
            || (!tag.is_empty() && c.spam.is_spam(&tag.to_ascii_lowercase()))
        {
            Some(Reason::Spam)
        } else {
            None
        };
        if let Some(reason) = turned_away {
            // Answered like any hit, so bots and spammers learn nothing; counted, never stored.
            for site in &sites {
                c.tally.add(site.id, reason, ctx.now_ms);
            }
            return Ok(vec![]);
        }
        let visit = visit_info(&agent, referrer, &page, width, place);
        let mut entries = Vec::with_capacity(sites.len());
        for site in sites {
            let (day, hour) = local_day_hour(site.timezone, ts_ms);
            let salt = c.salts.get(c.meta.as_ref(), day, ctx.now_ms).map_err(internal)?;
            let signature = visitor_signature(&salt, site.id, day, ip, &user_agent);
            // Faster than a person can browse: a script, however browser-like it looks.
            if !trusted && c.limits.visitor.take(&(site.id, signature)).is_err() {
                c.tally.add(site.id, Reason::TooFast, ctx.now_ms);
                continue;
            }
            let event = QueuedEvent {
                site_id: site.id,
                ts_ms,
                day,
                hour,
                signature,
                kind,
                name: if kind == EventKind::Custom { name.clone() } else { String::new() },
                hostname: page.hostname.clone(),
                pathname: page.pathname.clone(),
                visit: visit.clone(),
                props: props.clone(),
                revenue: revenue.clone(),
                interactive,
                engaged_ms,
                scroll_depth,
            };
            entries.push(Message { key: event.partition_key(), payload: event.encode() });
        }
        Ok(entries)
    }
}

/// Every browser's User-Agent starts so (Opera's old Presto ones with `Opera/`).
fn claims_browser(user_agent: &str) -> bool {
    user_agent.starts_with("Mozilla/") || user_agent.starts_with("Opera/")
}

/// Props: an object (or a JSON string holding one) of at most 30 scalar values. Lists, maps and
/// nulls are dropped as Plausible does; control characters are removed (they delimit props in
/// storage).
fn parse_props(v: Option<Value>) -> Result<Vec<(String, String)>, Refusal> {
    let v = match v {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::String(s)) => serde_json::from_str(&s)
            .map_err(|e| Refusal::invalid(format!("`props` string is not a JSON object: {e}")))?,
        Some(v) => v,
    };
    let Value::Object(map) = v else {
        return Err(Refusal::invalid("`props` must be an object of string keys to values"));
    };
    if map.len() > MAX_PROPS {
        return Err(Refusal::invalid(format!("`props` has {} keys; at most {MAX_PROPS} are allowed", map.len())));
    }
    let clean = |s: &str| s.chars().filter(|c| !c.is_control()).collect::<String>();
    let mut out = Vec::with_capacity(map.len());
    for (k, v) in map {
        let value = match v {
            Value::String(s) => s,
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            _ => continue,
        };
        let (k, value) = (clean(&k), clean(&value));
        if k.is_empty() || k.len() > MAX_VALUE {
            return Err(Refusal::invalid(format!("prop key `{k}` must be 1 to {MAX_VALUE} bytes")));
        }
        if value.len() > MAX_PATH {
            return Err(Refusal::invalid(format!("prop `{k}` value is longer than {MAX_PATH} bytes")));
        }
        if !value.is_empty() {
            out.push((k, value));
        }
    }
    out.sort();
    Ok(out)
}

/// `{"currency": "EUR", "amount": 12.5}`; the amount may also be a decimal string.
fn parse_revenue(v: Value) -> Result<Revenue, Refusal> {
    let currency = v.get("currency").and_then(Value::as_str).unwrap_or("");
    if currency.len() != 3 || !currency.chars().all(|c| c.is_ascii_alphabetic()) {
        return Err(Refusal::invalid("`revenue.currency` must be a three-letter ISO 4217 code"));
    }
    let amount_micros = match v.get("amount") {
        // JSON numbers are often float arithmetic (0.1 + 0.2): round to millionths.
        Some(Value::Number(n)) => n
            .as_f64()
            .filter(|x| x.is_finite() && x.abs() < 1e12)
            .map(|x| (x * 1e6).round() as i64)
            .ok_or_else(|| Refusal::invalid(format!("`revenue.amount` {n} is out of range")))?,
        // Decimal strings are taken exactly.
        Some(Value::String(s)) => decimal_micros(s.trim())
            .ok_or_else(|| Refusal::invalid(format!("`revenue.amount` `{s}` is not a decimal number")))?,
        _ => return Err(Refusal::invalid("`revenue.amount` must be a number")),
    };
    Ok(Revenue { amount_micros, currency: currency.to_ascii_uppercase() })
}

/// Exact decimal → millionths (no float rounding), up to six decimals and 10^12 units.
fn decimal_micros(s: &str) -> Option<i64> {
    let (neg, s) = s.strip_prefix('-').map_or((false, s), |r| (true, r));
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if int.is_empty() && frac.is_empty()
        || !int.chars().all(|c| c.is_ascii_digit())
        || !frac.chars().all(|c| c.is_ascii_digit())
        || frac.len() > 6
        || int.len() > 12
    {
        return None;
    }
    let whole: i64 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let frac: i64 = format!("{frac:0<6}").parse().ok()?;
    let v = whole * 1_000_000 + frac;
    Some(if neg { -v } else { v })
}

fn parse_engaged_ms(v: Option<Value>) -> Result<u32, Refusal> {
    match v {
        None | Some(Value::Null) => Ok(0),
        Some(Value::Number(n)) => n
            .as_f64()
            .filter(|x| *x >= 0.0)
            // An engagement ping covers at most a day; longer is a broken clock.
            .map(|x| x.min(86_400_000.0) as u32)
            .ok_or_else(|| Refusal::invalid("`e` (engaged ms) must be a non-negative number")),
        Some(other) => Err(Refusal::invalid(format!("`e` (engaged ms) must be a number, got {other}"))),
    }
}

fn parse_scroll_depth(v: Option<Value>) -> Result<Option<u8>, Refusal> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match n.as_f64() {
            Some(x) if (0.0..=100.0).contains(&x) => Ok(Some(x.round() as u8)),
            _ => Err(Refusal::invalid(format!("`sd` (scroll depth) must be 0 to 100, got {n}"))),
        },
        Some(other) => Err(Refusal::invalid(format!("`sd` (scroll depth) must be a number, got {other}"))),
    }
}

/// RFC 3339 text or unix seconds; not more than five minutes ahead of the server's clock.
fn parse_timestamp(v: &Value, now_ms: i64) -> Result<i64, Refusal> {
    let ms = match v {
        Value::String(s) => DateTime::parse_from_rfc3339(s.trim())
            .map(|t| t.timestamp_millis())
            .map_err(|e| Refusal::invalid(format!("`timestamp` `{s}` is not RFC 3339 ({e})")))?,
        Value::Number(n) => match n.as_f64() {
            Some(secs) if secs.is_finite() && secs > 0.0 && secs < 1e11 => (secs * 1000.0).round() as i64,
            _ => return Err(Refusal::invalid(format!("`timestamp` {n} is not unix seconds"))),
        },
        other => {
            return Err(Refusal::invalid(format!("`timestamp` must be RFC 3339 text or unix seconds, got {other}")));
        }
    };
    if ms > now_ms + MAX_FUTURE_MS {
        return Err(Refusal::invalid("`timestamp` is in the future"));
    }
    Ok(ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn decimals_convert_exactly() {
        assert_eq!(decimal_micros("12.5"), Some(12_500_000));
        assert_eq!(decimal_micros("0.000001"), Some(1));
        assert_eq!(decimal_micros("-3"), Some(-3_000_000));
        assert_eq!(decimal_micros(".5"), Some(500_000));
        assert_eq!(decimal_micros("1.2345678"), None);
        assert_eq!(decimal_micros("1e3"), None);
        assert_eq!(decimal_micros(""), None);
    }

    #[test]
    fn props_accept_objects_and_json_strings_and_drop_nested_values() {
        let p = parse_props(Some(json!({"b": 2, "a": "x", "list": [1], "n": null, "t": true}))).unwrap();
        assert_eq!(p, vec![("a".into(), "x".into()), ("b".into(), "2".into()), ("t".into(), "true".into())]);
        assert_eq!(parse_props(Some(json!("{\"k\":\"v\"}"))).unwrap(), vec![("k".into(), "v".into())]);
        let many: serde_json::Map<String, Value> = (0..31).map(|i| (format!("k{i}"), json!("v"))).collect();
        assert!(parse_props(Some(Value::Object(many))).unwrap_err().message().contains("at most 30"));
        assert!(parse_props(Some(json!([1]))).is_err());
    }

    #[test]
    fn timestamps_and_engagement_are_checked() {
        let now = 1_700_000_000_000;
        assert_eq!(parse_timestamp(&json!("2023-11-14T22:13:20Z"), now).unwrap(), now);
        assert_eq!(parse_timestamp(&json!(1_699_999_000), now).unwrap(), now - 1_000_000);
        assert!(parse_timestamp(&json!(1_800_000_000), now).is_err());
        assert!(parse_timestamp(&json!("yesterday"), now).is_err());
        assert_eq!(parse_scroll_depth(Some(json!(42.4))).unwrap(), Some(42));
        assert!(parse_scroll_depth(Some(json!(101))).is_err());
        assert!(parse_engaged_ms(Some(json!(-1))).is_err());
    }

    #[test]
    fn revenue_needs_a_currency_and_a_decimal_amount() {
        assert_eq!(
            parse_revenue(json!({"currency": "eur", "amount": "19.99"})).unwrap(),
            Revenue { amount_micros: 19_990_000, currency: "EUR".into() }
        );
        assert!(parse_revenue(json!({"currency": "EURO", "amount": 1})).is_err());
        assert!(parse_revenue(json!({"currency": "EUR", "amount": "ten"})).is_err());
        assert_eq!(parse_revenue(json!({"currency": "USD", "amount": 0.1 + 0.2})).unwrap().amount_micros, 300_000);
        assert!(parse_revenue(json!({"currency": "USD", "amount": 1e21})).is_err());
    }
}
