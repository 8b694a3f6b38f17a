//! Traffic alerts (a spike of current visitors, a drop to no pageviews), and the webhooks' daily
//! summaries and goal conversions per minute: when they go and what they say. No visitor data
//! leaves: only a site's totals.

use crate::{Mail, escape};
use plumb_core::live::Completion;
use plumb_core::time::date_of_day;
use plumb_core::url::wildcard_regex;
use plumb_meta::notices::{Alert, AlertKind, Channel, NewMessage, Webhook, WebhookEvent};
use plumb_meta::{Goal, GoalKind, Site};
use plumb_query::{DayRange, Metric, Query, QueryError, SumsBackend};
use serde_json::{Value, json};
use std::collections::HashMap;

/// What an alert found.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// Current visitors (spike) or minutes without pageviews (drop).
    pub value: u64,
    pub text: String,
}

/// Whether the alert's cool-down has passed (the metadata store checks again as it fires).
pub fn cooled_down(alert: &Alert, now_ms: i64) -> bool {
    alert.last_fired_ms.is_none_or(|at| at + i64::from(alert.cooldown_minutes) * 60_000 <= now_ms)
}

/// Whether `alert` fires now: `current` visitors are on the site, and no pageview came since
/// `quiet_since_ms` (the last one seen, or when watching began, whichever is later).
pub fn finding(alert: &Alert, current: usize, quiet_since_ms: i64, now_ms: i64) -> Option<Finding> {
    match alert.kind {
        AlertKind::Spike if current as u64 >= u64::from(alert.threshold) => Some(Finding {
            value: current as u64,
            text: format!("{current} current visitors (the alert is at {})", alert.threshold),
        }),
        AlertKind::Drop => {
            let quiet_since = quiet_since_ms.max(alert.created_ms);
            let minutes = (now_ms - quiet_since).max(0) / 60_000;
            (minutes >= i64::from(alert.threshold)).then(|| Finding {
                value: minutes as u64,
                text: format!(
                    "no pageviews for {minutes} minute{} (the alert is at {})",
                    if minutes == 1 { "" } else { "s" },
                    alert.threshold
                ),
            })
        }
        AlertKind::Spike => None,
    }
}

/// What firing `alert` sends: a mail to its address and a delivery to each of the site's webhooks
/// that take alerts, all keyed by the alert and the moment it fired. (The mail is queued even if
/// this process has no SMTP: one that has delivers it.)
pub fn messages(
    alert: &Alert,
    site: &Site,
    finding: &Finding,
    hooks: &[Webhook],
    dashboard_url: &str,
    now_ms: i64,
) -> Vec<NewMessage> {
    let fired_at = chrono::DateTime::from_timestamp_millis(now_ms).map(|t| t.to_rfc3339()).unwrap_or_default();
    let title = match alert.kind {
        AlertKind::Spike => format!("Traffic spike on {}", site.domain),
        AlertKind::Drop => format!("No traffic on {}", site.domain),
    };
    let key = |what: &str| format!("alert:{}:{now_ms}:{what}", alert.id);
    let mut out = Vec::new();
    if let Some(email) = &alert.email {
        let text = format!(
            "{title}: {}.\n\nDashboard: {dashboard_url}\n\nThis alert waits {} minutes before it fires again.\n",
            finding.text, alert.cooldown_minutes
        );
        let html = format!(
            "<!doctype html><html><body style=\"font-family:sans-serif\"><h2>{}</h2><p>{}.</p><p><a href=\"{}\">Open the dashboard</a></p><p style=\"color:#888;font-size:12px\">This alert waits {} minutes before it fires again.</p></body></html>",
            escape(&title),
            escape(&finding.text),
            escape(dashboard_url),
            alert.cooldown_minutes
        );
        let mail = Mail { subject: title.clone(), text, html, unsubscribe: None };
        out.push(NewMessage {
            site_id: site.id,
            key: key("email"),
            channel: Channel::Email,
            target: email.clone(),
            payload: serde_json::to_string(&mail).expect("a mail is JSON"),
        });
    }
    for hook in hooks.iter().filter(|h| h.site_id == site.id && h.takes(WebhookEvent::Alert)) {
        let body = json!({
            "event": "alert",
            "site": site.domain,
            "alert_id": alert.id,
            "kind": alert.kind.name(),
            "threshold": alert.threshold,
            "value": finding.value,
            "message": format!("{title}: {}", finding.text),
            "fired_at": fired_at,
            "cooldown_minutes": alert.cooldown_minutes,
        });
        out.push(NewMessage {
            site_id: site.id,
            key: key(&format!("hook:{}", hook.id)),
            channel: Channel::Webhook,
            target: hook.id.to_string(),
            payload: body.to_string(),
        });
    }
    out
}

const DAILY_METRICS: [(Metric, &str); 5] = [
    (Metric::Visitors, "visitors"),
    (Metric::Visits, "visits"),
    (Metric::Pageviews, "pageviews"),
    (Metric::BounceRate, "bounce_rate"),
    (Metric::VisitDuration, "visit_duration"),
];

/// The goals a minute's completions converted, by goal name (those with none left out): page goals
/// by their path pattern, event goals by name.
pub fn conversions(goals: &[Goal], done: &HashMap<Completion, u64>) -> Vec<(String, u64)> {
    goals
        .iter()
        .filter_map(|g| {
            let n: u64 = match &g.kind {
                GoalKind::Event(name) => done.get(&Completion::Event(name.clone())).copied().unwrap_or(0),
                GoalKind::Page(pattern) => {
                    let re = regex::Regex::new(&wildcard_regex(pattern)).ok()?;
                    done.iter()
                        .filter(|(c, _)| matches!(c, Completion::Page(p) if re.is_match(p)))
                        .map(|(_, n)| n)
                        .sum()
                }
            };
            (n > 0).then(|| (g.display_name.clone(), n))
        })
        .collect()
}

/// The body of a minute's goal conversions: counts only.
pub fn goal_payload(site: &Site, minute: i64, conversions: &[(String, u64)]) -> String {
    let at = chrono::DateTime::from_timestamp(minute * 60, 0).map(|t| t.to_rfc3339()).unwrap_or_default();
    let goals: Vec<Value> = conversions.iter().map(|(g, n)| json!({"goal": g, "conversions": n})).collect();
    json!({"event": "goal", "site": site.domain, "minute": at, "goals": goals}).to_string()
}

/// One local day's totals, as the Stats API answers them.
pub fn daily_numbers(backend: &dyn SumsBackend, site_id: u32, day: i32) -> Result<Vec<Value>, QueryError> {
    let mut q = Query::over(site_id, DayRange { from: day, to: day });
    q.metrics = DAILY_METRICS.iter().map(|(m, _)| *m).collect();
    let out = plumb_query::run(backend, &q)?;
    Ok(out.results.into_iter().next().map(|r| r.metrics).unwrap_or_default())
}

/// The body of a daily summary.
pub fn daily_payload(site: &Site, day: i32, numbers: &[Value]) -> String {
    let mut body = json!({ "event": "daily", "site": site.domain, "date": date_of_day(day).to_string() });
    for ((_, name), value) in DAILY_METRICS.iter().zip(numbers) {
        body[*name] = value.clone();
    }
    body.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(kind: AlertKind, threshold: u32) -> Alert {
        Alert {
            id: 3,
            site_id: 1,
            kind,
            threshold,
            cooldown_minutes: 30,
            email: Some("ops@example.com".into()),
            last_fired_ms: None,
            created_ms: 1_000_000,
        }
    }

    #[test]
    fn a_spike_fires_at_its_threshold_and_a_drop_after_its_quiet_minutes() {
        let spike = alert(AlertKind::Spike, 10);
        assert_eq!(finding(&spike, 9, 0, 2_000_000), None);
        assert_eq!(finding(&spike, 10, 0, 2_000_000).unwrap().value, 10);
        let drop = alert(AlertKind::Drop, 60);
        let hour = 3_600_000;
        assert_eq!(finding(&drop, 0, 5 * hour, 6 * hour - 1), None);
        assert_eq!(finding(&drop, 0, 5 * hour, 6 * hour).unwrap().value, 60);
        // Made after the last pageview: it counts from when it was made.
        let fresh = Alert { created_ms: 5 * hour + 30 * 60_000, ..drop };
        assert_eq!(finding(&fresh, 0, 5 * hour, 6 * hour), None);
    }

    #[test]
    fn a_minutes_completions_convert_the_goals_they_match() {
        let goal = |id, name: &str, kind| Goal { id, site_id: 1, display_name: name.into(), kind, currency: None };
        let goals = [
            goal(1, "Signup", GoalKind::Event("Signup".into())),
            goal(2, "Pricing", GoalKind::Page("/pricing/**".into())),
            goal(3, "Never", GoalKind::Page("/never".into())),
        ];
        let done: HashMap<Completion, u64> = [
            (Completion::Event("Signup".into()), 3),
            (Completion::Page("/pricing/team".into()), 2),
            (Completion::Page("/pricing/a/b".into()), 1),
            (Completion::Page("/pricing".into()), 5),
            (Completion::Event("Other".into()), 9),
        ]
        .into();
        let mut got = conversions(&goals, &done);
        got.sort();
        assert_eq!(got, [("Pricing".to_owned(), 3), ("Signup".to_owned(), 3)]);
        let site = Site { id: 1, domain: "example.com".into(), timezone: chrono_tz::UTC };
        let body: Value = serde_json::from_str(&goal_payload(&site, 28_333_333, &got)).unwrap();
        assert_eq!(body["minute"], "2023-11-14T22:13:00+00:00");
        assert_eq!(body["goals"][0], json!({"goal": "Pricing", "conversions": 3}));
    }

    #[test]
    fn the_cool_down_holds_the_next_firing() {
        let fired = Alert { last_fired_ms: Some(10_000_000), ..alert(AlertKind::Spike, 1) };
        assert!(!cooled_down(&fired, 10_000_000 + 30 * 60_000 - 1));
        assert!(cooled_down(&fired, 10_000_000 + 30 * 60_000));
        assert!(cooled_down(&alert(AlertKind::Spike, 1), 0));
    }

    #[test]
    fn firing_mails_and_calls_each_alert_webhook_of_the_site_once() {
        let site = Site { id: 1, domain: "example.com".into(), timezone: chrono_tz::UTC };
        let hook = |id, site_id, events: Vec<WebhookEvent>| Webhook {
            id,
            site_id,
            url: "https://x.example/".into(),
            secret: "s".into(),
            events,
            created_ms: 0,
        };
        let hooks = [
            hook(1, 1, vec![WebhookEvent::Alert]),
            hook(2, 1, vec![WebhookEvent::Daily]),
            hook(3, 2, vec![WebhookEvent::Alert]),
        ];
        let a = alert(AlertKind::Spike, 10);
        let f = finding(&a, 12, 0, 5).unwrap();
        let out = messages(&a, &site, &f, &hooks, "https://stats.example/example.com", 1_700_000_000_000);
        let keys: Vec<&str> = out.iter().map(|m| m.key.as_str()).collect();
        assert_eq!(keys, ["alert:3:1700000000000:email", "alert:3:1700000000000:hook:1"]);
        let body: Value = serde_json::from_str(&out[1].payload).unwrap();
        assert_eq!(
            (body["kind"].as_str(), body["value"].as_u64(), body["site"].as_str()),
            (Some("spike"), Some(12), Some("example.com"))
        );
        let mail: Mail = serde_json::from_str(&out[0].payload).unwrap();
        assert!(mail.text.starts_with("Traffic spike on example.com: 12 current visitors"), "{}", mail.text);
        let quiet = Alert { email: None, ..a.clone() };
        assert_eq!(messages(&quiet, &site, &f, &hooks, "", 1).len(), 1, "no address, no mail");
    }
}
