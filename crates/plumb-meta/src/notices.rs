//! What Plumb tells people: e-mail reports, traffic alerts and webhooks, and the outbox every
//! message goes through. A message is written to the outbox once, under a key that names what it
//! is (this report of this week to this address), and leaves it only when it was delivered or
//! given up on; so a crash or an outage delays mail but neither loses nor doubles it.

use crate::accounts::random_token;
use crate::{MetaError, Result, validate_email};

/// Report subscriptions, alerts and webhooks a site holds at most.
pub const MAX_REPORTS: u32 = 50;
pub const MAX_ALERTS: u32 = 10;
pub const MAX_WEBHOOKS: u32 = 5;
/// A spike alert's threshold at most: the current visitors Plumb remembers per site.
pub const MAX_ALERT_THRESHOLD: u32 = plumb_core::live::MAX_LIVE_VISITORS_PER_SITE as u32;
/// E-mails one site may have queued in a day (reports, alerts, invites): a site's admins choose
/// the addresses, so Plumb must not become a way to mail strangers in bulk. Over it, mail is
/// left out; webhooks are not counted.
pub const MAX_SITE_MAILS_PER_DAY: u32 = 500;
/// Minutes without pageviews before a drop alert, at most (a week).
pub const MAX_DROP_MINUTES: u32 = 7 * 24 * 60;
/// Cool-down after an alert fired, in minutes: at least one, at most a week.
pub const MAX_COOLDOWN_MINUTES: u32 = 7 * 24 * 60;
pub const MAX_URL_LEN: usize = 2048;
/// Delivery attempts before a message is given up on (about a day with [`retry_delay_ms`]).
pub const MAX_ATTEMPTS: u32 = 30;
/// How long a claimed message is left to its deliverer before another may try it.
pub const LEASE_MS: i64 = 60_000;
/// Delivered and given-up messages are kept this long (the delivery log; and a report's key is
/// remembered past the next period, so it is not sent twice).
pub const KEEP_DONE_MS: i64 = 100 * 24 * 3_600_000;
/// Delivery-log entries an answer lists at most.
pub const MAX_LOG: u32 = 100;

/// How often a report goes out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReportPeriod {
    Week,
    Month,
}

impl ReportPeriod {
    pub const ALL: [ReportPeriod; 2] = [ReportPeriod::Week, ReportPeriod::Month];

    pub fn name(self) -> &'static str {
        match self {
            ReportPeriod::Week => "week",
            ReportPeriod::Month => "month",
        }
    }

    pub fn parse(s: &str) -> Result<ReportPeriod> {
        Self::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| MetaError::Invalid(format!("a report period is `week` or `month`, not `{s}`")))
    }
}

/// One address that gets a site's report every week or month.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub id: u32,
    pub site_id: u32,
    pub email: String,
    pub period: ReportPeriod,
    pub created_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AlertKind {
    /// Current visitors (the last five minutes) at or above the threshold.
    Spike,
    /// No pageview for the threshold's minutes (a broken snippet after a deploy).
    Drop,
}

impl AlertKind {
    pub const ALL: [AlertKind; 2] = [AlertKind::Spike, AlertKind::Drop];

    pub fn name(self) -> &'static str {
        match self {
            AlertKind::Spike => "spike",
            AlertKind::Drop => "drop",
        }
    }

    pub fn parse(s: &str) -> Result<AlertKind> {
        Self::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| MetaError::Invalid(format!("an alert is `spike` or `drop`, not `{s}`")))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    pub id: u32,
    pub site_id: u32,
    pub kind: AlertKind,
    pub threshold: u32,
    pub cooldown_minutes: u32,
    /// Where the alert is mailed, if anywhere; the site's webhooks that take alerts get it too.
    pub email: Option<String>,
    pub last_fired_ms: Option<i64>,
    pub created_ms: i64,
}

/// Checks an alert's numbers and address; the normalised address.
pub fn validate_alert(
    kind: AlertKind,
    threshold: u32,
    cooldown_minutes: u32,
    email: Option<&str>,
) -> Result<Option<String>> {
    let (max, unit) = match kind {
        AlertKind::Spike => (MAX_ALERT_THRESHOLD, "current visitors"),
        AlertKind::Drop => (MAX_DROP_MINUTES, "minutes without pageviews"),
    };
    if !(1..=max).contains(&threshold) {
        return Err(MetaError::Invalid(format!(
            "a {} alert's threshold is 1 to {max} {unit}, not {threshold}",
            kind.name()
        )));
    }
    if !(1..=MAX_COOLDOWN_MINUTES).contains(&cooldown_minutes) {
        return Err(MetaError::Invalid(format!(
            "an alert's cool-down is 1 to {MAX_COOLDOWN_MINUTES} minutes, not {cooldown_minutes}"
        )));
    }
    email.map(validate_email).transpose()
}

/// What a webhook is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WebhookEvent {
    /// Spike and drop alerts.
    Alert,
    /// Each local day's totals, after the day ends.
    Daily,
    /// The site's goal conversions of each minute that had any.
    Goal,
}

impl WebhookEvent {
    pub const ALL: [WebhookEvent; 3] = [WebhookEvent::Alert, WebhookEvent::Daily, WebhookEvent::Goal];

    pub fn name(self) -> &'static str {
        match self {
            WebhookEvent::Alert => "alert",
            WebhookEvent::Daily => "daily",
            WebhookEvent::Goal => "goal",
        }
    }

    pub fn parse(s: &str) -> Result<WebhookEvent> {
        Self::ALL
            .into_iter()
            .find(|e| e.name() == s)
            .ok_or_else(|| MetaError::Invalid(format!("a webhook event is `alert`, `daily` or `goal`, not `{s}`")))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    pub id: u32,
    pub site_id: u32,
    pub url: String,
    /// The HMAC key its deliveries are signed with (kept in clear: signing needs it).
    pub secret: String,
    pub events: Vec<WebhookEvent>,
    pub created_ms: i64,
}

impl Webhook {
    pub fn takes(&self, event: WebhookEvent) -> bool {
        self.events.contains(&event)
    }
}

/// Checks a webhook's address (http or https, a host, no credentials in it) and events.
pub fn validate_webhook(url: &str, events: &[WebhookEvent]) -> Result<String> {
    if url.len() > MAX_URL_LEN {
        return Err(MetaError::Invalid(format!("a webhook URL has at most {MAX_URL_LEN} characters")));
    }
    let parsed = url::Url::parse(url).map_err(|e| MetaError::Invalid(format!("`{url}` is not a URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none_or(str::is_empty) {
        return Err(MetaError::Invalid(format!("a webhook URL is http:// or https:// with a host, not `{url}`")));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(MetaError::Invalid("a webhook URL carries no user name or password".into()));
    }
    if events.is_empty() {
        return Err(MetaError::Invalid("a webhook takes at least one event: `alert`, `daily` or `goal`".into()));
    }
    Ok(parsed.to_string())
}

pub(crate) fn new_webhook_secret() -> String {
    format!("whsec_{}", random_token::<24>())
}

pub(crate) fn events_text(events: &[WebhookEvent]) -> String {
    WebhookEvent::ALL.iter().filter(|e| events.contains(e)).map(|e| e.name()).collect::<Vec<_>>().join(",")
}

pub(crate) fn parse_events(text: &str) -> Result<Vec<WebhookEvent>> {
    text.split(',').filter(|s| !s.is_empty()).map(WebhookEvent::parse).collect()
}

/// How a message leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    /// `target` is an address; `payload` the rendered mail as JSON (`plumb_notify::Mail`).
    Email,
    /// `target` is the webhook's id; `payload` the body.
    Webhook,
}

impl Channel {
    pub fn name(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Webhook => "webhook",
        }
    }

    pub(crate) fn parse(s: &str) -> Result<Channel> {
        match s {
            "email" => Ok(Channel::Email),
            "webhook" => Ok(Channel::Webhook),
            _ => Err(MetaError::Storage(format!("a stored channel `{s}`"))),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryState {
    Pending,
    Sent,
    /// Given up on after [`MAX_ATTEMPTS`] (or its target is gone).
    Failed,
}

impl DeliveryState {
    pub fn name(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Sent => "sent",
            DeliveryState::Failed => "failed",
        }
    }

    pub(crate) fn parse(s: &str) -> Result<DeliveryState> {
        match s {
            "pending" => Ok(DeliveryState::Pending),
            "sent" => Ok(DeliveryState::Sent),
            "failed" => Ok(DeliveryState::Failed),
            _ => Err(MetaError::Storage(format!("a stored delivery state `{s}`"))),
        }
    }
}

/// A message to put in the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    pub site_id: u32,
    /// Names what the message is; a second message with the same key is not added.
    pub key: String,
    pub channel: Channel,
    pub target: String,
    pub payload: String,
}

/// A message in the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub id: u64,
    pub site_id: u32,
    pub key: String,
    pub channel: Channel,
    pub target: String,
    pub payload: String,
    pub created_ms: i64,
    /// When it is next tried (while pending), or when it was done.
    pub due_ms: i64,
    pub attempts: u32,
    pub state: DeliveryState,
    pub last_error: Option<String>,
}

/// The wait before attempt `attempts + 1`: 5 s, doubling, at most an hour.
pub fn retry_delay_ms(attempts: u32) -> i64 {
    (5_000_i64 << attempts.saturating_sub(1).min(20)).min(3_600_000)
}

/// Errors are kept short in the log.
pub(crate) fn short_error(error: &str) -> String {
    error.chars().take(500).collect()
}

/// Audit-log entries kept per site (older ones are dropped as new ones come).
pub const MAX_AUDIT: u32 = 5_000;

/// One change to a site's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub at_ms: i64,
    /// `user `a@b`` or `API key `name``.
    pub actor: String,
    /// What was done, in the API's words.
    pub action: String,
    /// The request's method and path (ids of what changed).
    pub detail: String,
}

/// Bounds a caller-influenced audit field.
pub(crate) fn audit_text(s: &str) -> String {
    s.chars().take(300).collect()
}

/// Reports, alerts, webhooks and the outbox, kept alike by both metadata backends.
pub trait Notices {
    fn add_report(&self, site_id: u32, email: &str, period: ReportPeriod) -> Result<Report>;
    fn reports(&self, site_id: Option<u32>) -> Result<Vec<Report>>;
    fn report(&self, id: u32) -> Result<Option<Report>>;
    fn remove_report(&self, site_id: u32, id: u32) -> Result<()>;

    fn add_alert(
        &self,
        site_id: u32,
        kind: AlertKind,
        threshold: u32,
        cooldown_minutes: u32,
        email: Option<&str>,
    ) -> Result<Alert>;
    fn alerts(&self, site_id: Option<u32>) -> Result<Vec<Alert>>;
    fn remove_alert(&self, site_id: u32, id: u32) -> Result<()>;
    /// Marks the alert fired at `now_ms` and puts `messages` in the outbox, in one transaction,
    /// if its cool-down has passed (so of processes that see the same spike, one fires it).
    fn fire_alert(&self, alert_id: u32, now_ms: i64, messages: &[NewMessage]) -> Result<bool>;

    /// A webhook with a new secret.
    fn add_webhook(&self, site_id: u32, url: &str, events: &[WebhookEvent]) -> Result<Webhook>;
    fn webhooks(&self, site_id: Option<u32>) -> Result<Vec<Webhook>>;
    fn webhook(&self, id: u32) -> Result<Option<Webhook>>;
    fn remove_webhook(&self, site_id: u32, id: u32) -> Result<()>;

    /// Puts each message whose key is new in the outbox, due now; how many were new.
    fn enqueue(&self, messages: &[NewMessage], now_ms: i64) -> Result<usize>;
    /// Whether a message with this key was ever put in the outbox (and is still remembered).
    fn has_message(&self, key: &str) -> Result<bool>;
    /// Up to `n` pending messages due by `now_ms` (mail only if `email`: a process without SMTP
    /// leaves it to one with), each leased for [`LEASE_MS`] and counted as an attempt.
    fn claim_due(&self, now_ms: i64, n: u32, email: bool) -> Result<Vec<Message>>;
    /// `claim` was delivered: the message keeps its key and log, not its body (an invite's
    /// carries a secret). Only the claim that holds the lease marks, once (its attempt number and
    /// lease end): after the lease ran out and another process claimed the message, or after a
    /// first mark, a mark changes nothing and answers `false`.
    fn mark_sent(&self, claim: &Message, now_ms: i64) -> Result<bool>;
    /// `claim` failed: tried again at `retry_at_ms`, or given up on (`None`, the body erased);
    /// fenced like [`mark_sent`](Self::mark_sent).
    fn mark_failed(&self, claim: &Message, error: &str, retry_at_ms: Option<i64>) -> Result<bool>;
    /// A site's latest messages on one channel (and target), newest first: the delivery log.
    fn messages(&self, site_id: u32, channel: Channel, target: Option<&str>, limit: u32) -> Result<Vec<Message>>;
    /// When the next pending message is due, if any.
    fn next_due(&self) -> Result<Option<i64>>;
    /// Forgets messages done before `before_ms`; how many.
    fn purge_messages(&self, before_ms: i64) -> Result<usize>;

    /// Records a change to a site's settings (the newest [`MAX_AUDIT`] are kept).
    fn record_audit(&self, site_id: u32, entry: &AuditEntry) -> Result<()>;
    /// A site's latest changes, newest first.
    fn audit_log(&self, site_id: u32, limit: u32) -> Result<Vec<AuditEntry>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_to_an_hour() {
        let delays: Vec<i64> = (1..=6).map(retry_delay_ms).collect();
        assert_eq!(delays, [5_000, 10_000, 20_000, 40_000, 80_000, 160_000]);
        assert_eq!(retry_delay_ms(MAX_ATTEMPTS), 3_600_000);
        let total: i64 = (1..MAX_ATTEMPTS).map(retry_delay_ms).sum();
        assert!((20 * 3_600_000..30 * 3_600_000).contains(&total), "{total}");
    }

    #[test]
    fn webhook_urls_are_checked() {
        let ok = validate_webhook("https://hooks.example.com/x?y=1", &[WebhookEvent::Alert]).unwrap();
        assert_eq!(ok, "https://hooks.example.com/x?y=1");
        for bad in ["ftp://x.example/", "https://user:pw@x.example/", "not a url", "mailto:a@b.example"] {
            assert!(validate_webhook(bad, &[WebhookEvent::Alert]).is_err(), "{bad}");
        }
        assert!(validate_webhook("https://x.example/", &[]).is_err());
        let long = format!("https://x.example/{}", "a".repeat(MAX_URL_LEN));
        assert!(validate_webhook(&long, &[WebhookEvent::Alert]).is_err());
    }

    #[test]
    fn alerts_are_bounded() {
        assert!(validate_alert(AlertKind::Spike, 0, 10, None).is_err());
        assert!(validate_alert(AlertKind::Drop, MAX_DROP_MINUTES + 1, 10, None).is_err());
        assert!(validate_alert(AlertKind::Spike, 5, 0, None).is_err());
        assert!(validate_alert(AlertKind::Spike, 5, 10, Some("nope")).is_err());
        assert_eq!(
            validate_alert(AlertKind::Drop, 60, 10, Some(" A@B.example ")).unwrap().as_deref(),
            Some("a@b.example")
        );
        let all = [WebhookEvent::Goal, WebhookEvent::Daily, WebhookEvent::Alert];
        assert_eq!(parse_events(&events_text(&all)).unwrap(), WebhookEvent::ALL);
    }
}
