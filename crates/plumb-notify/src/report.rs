//! E-mail reports: which week or month is due, its numbers from the query engine, and the mail
//! (plain text and HTML) that carries them, with a link that unsubscribes without signing in.

use crate::{Mail, escape};
use chrono::{Datelike, Months};
use chrono_tz::Tz;
use plumb_core::time::{date_of_day, day_number, day_start_ms, local_day};
use plumb_meta::Site;
use plumb_meta::accounts::{constant_time_eq, sign};
use plumb_meta::notices::{Report, ReportPeriod};
use plumb_query::{DayRange, Dimension, Metric, OrderKey, Query, QueryError, SumsBackend};
use serde_json::Value;
use std::fmt::Write;

/// Pages and sources a report lists.
const TOP: usize = 5;
/// A period's report waits this long after the period ends, for hits still in the queue.
pub const SEND_DELAY_MS: i64 = 10 * 60_000;

/// The last whole period before `now_ms` in `tz`: Monday to Sunday, or a calendar month.
pub fn last_period(period: ReportPeriod, tz: Tz, now_ms: i64) -> DayRange {
    let today = date_of_day(local_day(tz, now_ms));
    match period {
        ReportPeriod::Week => {
            let monday = day_number(today) - today.weekday().num_days_from_monday() as i32;
            DayRange { from: monday - 7, to: monday - 1 }
        }
        ReportPeriod::Month => {
            let first = today.with_day(1).expect("every month has a first day");
            let previous = first.checked_sub_months(Months::new(1)).expect("a month before is a date");
            DayRange { from: day_number(previous), to: day_number(first) - 1 }
        }
    }
}

/// The period before `range`, for the change figures: the week before, or the month before.
pub fn previous_period(period: ReportPeriod, range: DayRange) -> DayRange {
    match period {
        ReportPeriod::Week => DayRange { from: range.from - 7, to: range.to - 7 },
        ReportPeriod::Month => {
            let first = date_of_day(range.from);
            let previous = first.checked_sub_months(Months::new(1)).expect("a month before is a date");
            DayRange { from: day_number(previous), to: range.from - 1 }
        }
    }
}

/// The report of `range` is due for `report`: the period ended (and the queue had time) after the
/// address subscribed. Earlier periods are never sent.
pub fn is_due(report: &Report, tz: Tz, range: DayRange, now_ms: i64) -> bool {
    let ended = day_start_ms(tz, range.to + 1);
    ended > report.created_ms && ended + SEND_DELAY_MS <= now_ms
}

/// The outbox key of a report: one per subscription and period; a "send now" has its own, so
/// it too goes once per period.
pub fn key(report: &Report, range: DayRange, now: bool) -> String {
    format!("report:{}:{}{}", report.id, range.from, if now { ":now" } else { "" })
}

/// The secret part of a report's unsubscribe link: an HMAC of its id under the server's key, so
/// links need no table and cannot be guessed or moved to another subscription.
pub fn unsubscribe_token(server_key: &[u8; 32], report_id: u32) -> String {
    // 128 of the HMAC's bits: a link short enough for any mail client.
    sign(server_key, &format!("plumb report unsubscribe {report_id}"))[..32].to_owned()
}

/// Whether `token` is `report_id`'s, compared in constant time.
pub fn token_matches(server_key: &[u8; 32], report_id: u32, token: &str) -> bool {
    constant_time_eq(&unsubscribe_token(server_key, report_id), token)
}

pub fn unsubscribe_url(public_url: &str, server_key: &[u8; 32], report_id: u32) -> String {
    format!("{}/unsubscribe/{report_id}/{}", public_url.trim_end_matches('/'), unsubscribe_token(server_key, report_id))
}

/// A report's numbers: the top figures with their change, the top pages and sources, visitors by day.
#[derive(Debug, Clone, PartialEq)]
pub struct Numbers {
    pub range: DayRange,
    /// visitors, pageviews, bounce rate (%), visit duration (s): (value, change in % or none)
    pub top: [(f64, Option<f64>); 4],
    pub pages: Vec<(String, f64)>,
    pub sources: Vec<(String, f64)>,
    pub days: Vec<(String, f64)>,
}

const TOP_METRICS: [(Metric, &str); 4] = [
    (Metric::Visitors, "Visitors"),
    (Metric::Pageviews, "Pageviews"),
    (Metric::BounceRate, "Bounce rate"),
    (Metric::VisitDuration, "Visit duration"),
];

fn number(v: &Value) -> f64 {
    v.as_f64().unwrap_or(0.0)
}

/// Asks the query engine for a report's numbers, as the Stats API would answer them.
pub fn numbers(
    backend: &dyn SumsBackend,
    site_id: u32,
    period: ReportPeriod,
    range: DayRange,
) -> Result<Numbers, QueryError> {
    let mut totals = Query::over(site_id, range);
    totals.metrics = TOP_METRICS.iter().map(|(m, _)| *m).collect();
    totals.comparison = Some(previous_period(period, range));
    let out = plumb_query::run(backend, &totals)?;
    let mut top = [(0.0, None); 4];
    if let Some(row) = out.results.first() {
        for (i, slot) in top.iter_mut().enumerate() {
            let change = row.comparison.as_ref().and_then(|c| c.change.get(i)).and_then(Value::as_f64);
            *slot = (row.metrics.get(i).map(number).unwrap_or(0.0), change);
        }
    }
    let by = |dimension: &str, limit: usize| -> Result<Vec<(String, f64)>, QueryError> {
        let mut q = Query::over(site_id, range);
        q.metrics = vec![Metric::Visitors];
        q.dimensions = vec![Dimension::parse(dimension, range).expect("a known dimension")];
        if limit < usize::MAX {
            q.order_by = vec![(OrderKey::Metric(0), true), (OrderKey::Dimension(0), false)];
            q.limit = limit;
        }
        let out = plumb_query::run(backend, &q)?;
        Ok(out
            .results
            .into_iter()
            .map(|r| (r.dimensions[0].clone(), r.metrics.first().map(number).unwrap_or(0.0)))
            .collect())
    };
    Ok(Numbers {
        range,
        top,
        pages: by("event:page", TOP)?,
        sources: by("visit:source", TOP)?,
        days: by("time:day", usize::MAX)?,
    })
}

fn day_label(day: i32) -> String {
    date_of_day(day).format("%-d %b %Y").to_string()
}

fn shown(i: usize, v: f64) -> String {
    match i {
        2 => format!("{v}%"),
        3 => format!("{}m {:02}s", v as i64 / 60, v as i64 % 60),
        _ => {
            let digits = (v.round() as i64).to_string();
            let mut out = String::new();
            for (n, c) in digits.chars().enumerate() {
                if n > 0 && (digits.len() - n).is_multiple_of(3) && c.is_ascii_digit() {
                    out.push(',');
                }
                out.push(c);
            }
            out
        }
    }
}

/// A figure's change on the period before: in percent, or in points for the bounce rate (a
/// percentage itself, `i == 2`).
fn change(i: usize, c: Option<f64>, period: ReportPeriod) -> String {
    let unit = if i == 2 { " points" } else { "%" };
    match c {
        Some(c) => format!("{}{c}{unit} on the {} before", if c > 0.0 { "+" } else { "" }, period.name()),
        None => format!("no {} before to compare", period.name()),
    }
}

/// The mail for `numbers`: a plain-text part a script can read (`Visitors: 1,234 (...)`) and an
/// HTML part with a small bar chart of visitors by day (tables: mail clients drop SVG and CSS).
pub fn mail(site: &Site, period: ReportPeriod, n: &Numbers, dashboard_url: &str, unsubscribe: &str) -> Mail {
    let label = match period {
        ReportPeriod::Week => "Weekly",
        ReportPeriod::Month => "Monthly",
    };
    let span = format!("{} – {}", day_label(n.range.from), day_label(n.range.to));
    let subject = format!("{label} report for {}: {span}", site.domain);
    let mut text = format!("{subject}\n\n");
    for (i, ((_, name), (value, c))) in TOP_METRICS.iter().zip(n.top).enumerate() {
        let _ = writeln!(text, "{name}: {} ({})", shown(i, value), change(i, c, period));
    }
    for (title, list) in [("Top pages", &n.pages), ("Top sources", &n.sources)] {
        let _ = writeln!(text, "\n{title} (visitors)");
        for (name, v) in list {
            let _ = writeln!(text, "  {}  {name}", shown(0, *v));
        }
        if list.is_empty() {
            text.push_str("  none\n");
        }
    }
    let _ = writeln!(text, "\nVisitors by day");
    for (day, v) in &n.days {
        let _ = writeln!(text, "  {day}  {}", shown(0, *v));
    }
    let _ = write!(text, "\nDashboard: {dashboard_url}\nUnsubscribe from this report: {unsubscribe}\n");

    let cell = "padding:4px 8px;border-bottom:1px solid #eee";
    let mut html = format!(
        "<!doctype html><html><body style=\"font-family:sans-serif;color:#222;max-width:560px\">\
         <h2 style=\"margin:0 0 4px\">{}</h2><p style=\"color:#666;margin:0 0 16px\">{label} report · {}</p><table style=\"border-collapse:collapse;width:100%\">",
        escape(&site.domain),
        escape(&span)
    );
    for (i, ((_, name), (value, c))) in TOP_METRICS.iter().zip(n.top).enumerate() {
        let _ = write!(
            html,
            "<tr><td style=\"{cell}\">{name}</td><td style=\"{cell};font-weight:bold;text-align:right\">{}</td><td style=\"{cell};color:#666\">{}</td></tr>",
            shown(i, value),
            escape(&change(i, c, period))
        );
    }
    html.push_str("</table><h3>Visitors by day</h3><table style=\"border-collapse:collapse\">");
    let most = n.days.iter().map(|(_, v)| *v).fold(1.0, f64::max);
    for (day, v) in &n.days {
        let width = ((v / most) * 300.0).round().max(1.0) as u32;
        let _ = write!(
            html,
            "<tr><td style=\"padding:1px 8px 1px 0;color:#666;font-size:12px\">{}</td><td><div style=\"background:#4f46e5;height:10px;width:{width}px\"></div></td><td style=\"padding-left:6px;font-size:12px\">{}</td></tr>",
            escape(day),
            shown(0, *v)
        );
    }
    html.push_str("</table>");
    for (title, head, list) in [("Top pages", "Page", &n.pages), ("Top sources", "Source", &n.sources)] {
        let _ = write!(
            html,
            "<h3>{title}</h3><table style=\"border-collapse:collapse;width:100%\"><tr><th style=\"{cell};text-align:left\">{head}</th><th style=\"{cell};text-align:right\">Visitors</th></tr>"
        );
        for (name, v) in list {
            let _ = write!(
                html,
                "<tr><td style=\"{cell}\">{}</td><td style=\"{cell};text-align:right\">{}</td></tr>",
                escape(name),
                shown(0, *v)
            );
        }
        html.push_str("</table>");
    }
    let _ = write!(
        html,
        "<p><a href=\"{}\">Open the dashboard</a></p><p style=\"color:#888;font-size:12px\">You get this because someone with access to {} added this address. <a href=\"{}\">Unsubscribe</a> (no sign-in needed).</p></body></html>",
        escape(dashboard_url),
        escape(&site.domain),
        escape(unsubscribe)
    );
    Mail { subject, text, html, unsubscribe: Some(unsubscribe.to_owned()) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{NaiveDate, TimeZone};

    fn ms(tz: Tz, y: i32, m: u32, d: u32, h: u32) -> i64 {
        tz.with_ymd_and_hms(y, m, d, h, 0, 0).unwrap().timestamp_millis()
    }

    fn day(y: i32, m: u32, d: u32) -> i32 {
        day_number(NaiveDate::from_ymd_opt(y, m, d).unwrap())
    }

    #[test]
    fn the_last_whole_week_and_month_in_the_sites_timezone() {
        let tz: Tz = "Pacific/Auckland".parse().unwrap();
        // Monday 7 Dec 2026, 00:30 in Auckland (still Sunday in UTC).
        let now = ms(tz, 2026, 12, 7, 0) + 30 * 60_000;
        assert_eq!(
            last_period(ReportPeriod::Week, tz, now),
            DayRange { from: day(2026, 11, 30), to: day(2026, 12, 6) }
        );
        assert_eq!(
            last_period(ReportPeriod::Week, chrono_tz::UTC, now),
            DayRange { from: day(2026, 11, 23), to: day(2026, 11, 29) }
        );
        let march = last_period(ReportPeriod::Month, tz, ms(tz, 2024, 3, 1, 9));
        assert_eq!(march, DayRange { from: day(2024, 2, 1), to: day(2024, 2, 29) });
        assert_eq!(
            previous_period(ReportPeriod::Month, march),
            DayRange { from: day(2024, 1, 1), to: day(2024, 1, 31) }
        );
        let jan = last_period(ReportPeriod::Month, tz, ms(tz, 2027, 1, 15, 9));
        assert_eq!(jan, DayRange { from: day(2026, 12, 1), to: day(2026, 12, 31) });
    }

    #[test]
    fn a_period_is_due_once_it_ended_after_the_subscription_and_the_queue_had_time() {
        let tz = chrono_tz::UTC;
        let week = DayRange { from: day(2026, 11, 30), to: day(2026, 12, 6) };
        let end = ms(tz, 2026, 12, 7, 0);
        let report = |created_ms| Report {
            id: 1,
            site_id: 1,
            email: "a@b.example".into(),
            period: ReportPeriod::Week,
            created_ms,
        };
        assert!(is_due(&report(end - 1), tz, week, end + SEND_DELAY_MS));
        assert!(!is_due(&report(end - 1), tz, week, end + SEND_DELAY_MS - 1), "hits may still be queued");
        assert!(!is_due(&report(end), tz, week, end + 3_600_000), "subscribed after the week ended");
    }

    #[test]
    fn unsubscribe_tokens_are_per_report_and_per_server() {
        let (a, b) = ([1u8; 32], [2u8; 32]);
        let t = unsubscribe_token(&a, 7);
        assert_eq!(t.len(), 32);
        assert!(token_matches(&a, 7, &t));
        assert!(!token_matches(&a, 8, &t) && !token_matches(&b, 7, &t));
        assert!(!token_matches(&a, 7, &t[..31]) && !token_matches(&a, 7, ""));
    }

    #[test]
    fn the_mail_says_the_numbers_in_both_parts_and_escapes_names() {
        let site = Site { id: 1, domain: "example.com".into(), timezone: chrono_tz::UTC };
        let n = Numbers {
            range: DayRange { from: day(2026, 11, 30), to: day(2026, 12, 6) },
            top: [(12_345.0, Some(12.5)), (40_000.0, Some(-3.0)), (41.0, Some(-2.0)), (83.0, None)],
            pages: vec![("/<script>".into(), 9.0)],
            sources: vec![],
            days: vec![("2026-11-30".into(), 4.0), ("2026-12-01".into(), 8.0)],
        };
        let m = mail(
            &site,
            ReportPeriod::Week,
            &n,
            "https://stats.example/example.com",
            "https://stats.example/unsubscribe/1/ab",
        );
        assert_eq!(m.subject, "Weekly report for example.com: 30 Nov 2026 – 6 Dec 2026");
        assert!(m.text.contains("Visitors: 12,345 (+12.5% on the week before)"), "{}", m.text);
        assert!(m.text.contains("Pageviews: 40,000 (-3% on the week before)"));
        assert!(m.text.contains("Bounce rate: 41% (-2 points on the week before)"));
        assert!(m.text.contains("Visit duration: 1m 23s (no week before to compare)"));
        assert!(m.text.contains("  9  /<script>") && m.text.contains("  none\n"));
        assert!(m.html.contains("/&lt;script&gt;") && !m.html.contains("/<script>"));
        assert!(m.html.contains("width:150px") && m.html.contains("width:300px"), "bars scale to the busiest day");
        assert!(m.html.contains("https://stats.example/unsubscribe/1/ab"));
    }
}
