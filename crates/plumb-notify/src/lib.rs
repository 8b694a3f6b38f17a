//! What Plumb tells people, beside the dashboard: e-mail reports, traffic alerts and webhooks.
//! Everything it sends goes through the metadata's outbox (`plumb_meta::notices`): a watcher
//! puts what is due there, once per key, and a deliverer takes it out, retrying with backoff until
//! it is delivered or given up on. Any number of processes may run both: the outbox's keys, leases
//! and the alerts' cool-downs are kept by the metadata store.

pub mod alerts;
pub mod outbox;
pub mod report;
pub mod webhook;

use plumb_core::live::LiveVisitors;
use plumb_meta::notices::{Channel, KEEP_DONE_MS, NewMessage, WebhookEvent};
use plumb_meta::{MetaError, MetaStore, Site};
use plumb_query::SumsBackend;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

/// A rendered e-mail, as the outbox keeps it: what is sent on every attempt is the same.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mail {
    pub subject: String,
    pub text: String,
    pub html: String,
    /// The one-click unsubscribe link (`List-Unsubscribe`), for reports.
    pub unsubscribe: Option<String>,
}

/// How this Plumb reaches people. (No `Debug`: the SMTP URL may hold a password.)
#[derive(Clone, Default)]
pub struct NotifyConfig {
    /// `smtp://`, `smtp://…?tls=required` (STARTTLS) or `smtps://` with user and password;
    /// without it, nothing is mailed (and reports and mailed alerts cannot be set up).
    pub smtp_url: Option<String>,
    /// The `From` of every mail.
    pub mail_from: Option<String>,
    /// Where people reach this Plumb, for links in mail.
    pub public_url: Option<String>,
    /// Let webhooks reach loopback and private addresses (a webhook receiver on the same host or
    /// network); off by default, so a site's admin cannot make the server call inside its network.
    pub allow_private_webhooks: bool,
    /// This process sees every current visitor of every site (the embedded server, a single
    /// worker, or a web process hearing all workers): only then does it judge alerts, as a
    /// partial view would see drops that are not there and miss spikes.
    pub watch_alerts: bool,
}

/// A minute's goal conversions are sent this long after it ends (hits reach the pipeline late
/// by the queue's commit and a batch).
pub const CONVERSIONS_DELAY_MS: i64 = 10_000;

/// How often alerts are looked at, and reports and daily summaries.
pub const ALERT_EVERY: Duration = Duration::from_secs(5);
pub const SCHEDULE_EVERY: Duration = Duration::from_secs(60);

/// Runs the watcher and the deliverer until the process ends.
pub struct Notifier {
    meta: Arc<dyn MetaStore>,
    reader: Arc<dyn SumsBackend + Send + Sync>,
    live: Arc<LiveVisitors>,
    public_url: String,
    mailing: bool,
    hooks: webhook::Hooks,
    deliverer: outbox::Deliverer,
    /// When this process began watching: no drop alert fires for silence before it.
    started_ms: i64,
    watch_alerts: bool,
    /// The last minute whose goal conversions were sent.
    conversions_sent: std::sync::Mutex<i64>,
}

impl Notifier {
    pub fn new(
        config: &NotifyConfig,
        meta: Arc<dyn MetaStore>,
        reader: Arc<dyn SumsBackend + Send + Sync>,
        live: Arc<LiveVisitors>,
    ) -> Result<Notifier, String> {
        let mailer = match (&config.smtp_url, &config.public_url) {
            (Some(url), Some(_)) => Some(outbox::Mailer::new(url, config.mail_from.as_deref())?),
            (Some(_), None) => {
                return Err("mail needs a public URL (--public-url) for the links it carries".into());
            }
            (None, _) => None,
        };
        let hooks = webhook::Hooks::new(config.allow_private_webhooks);
        Ok(Notifier {
            mailing: mailer.is_some(),
            deliverer: outbox::Deliverer::new(meta.clone(), mailer, hooks.clone()),
            hooks,
            meta,
            reader,
            live,
            public_url: config.public_url.clone().unwrap_or_default().trim_end_matches('/').to_owned(),
            started_ms: now_ms(),
            watch_alerts: config.watch_alerts,
            // From the minute this process starts in: it saw no earlier one whole.
            conversions_sent: std::sync::Mutex::new(now_ms().div_euclid(60_000)),
        })
    }

    /// Starts the watcher and the deliverer on the current runtime.
    pub fn spawn(self: &Arc<Self>) {
        let this = self.clone();
        let watcher = self.clone();
        tokio::spawn(async move {
            let mut scheduled = None::<std::time::Instant>;
            loop {
                if watcher.watch_alerts {
                    if let Err(e) = watcher.check_alerts().await {
                        tracing::warn!("checking alerts failed: {e}");
                    }
                    if let Err(e) = watcher.send_conversions().await {
                        tracing::warn!("sending goal conversions failed: {e}");
                    }
                }
                if scheduled.is_none_or(|at| at.elapsed() >= SCHEDULE_EVERY) {
                    scheduled = Some(std::time::Instant::now());
                    if let Err(e) = watcher.schedule().await {
                        tracing::warn!("scheduling reports and summaries failed: {e}");
                    }
                }
                tokio::time::sleep(ALERT_EVERY).await;
            }
        });
        tokio::spawn(async move { this.deliverer.run().await });
    }

    /// Whether mail is configured: reports and mailed alerts need it.
    pub fn mailing(&self) -> bool {
        self.mailing
    }

    pub fn hooks(&self) -> &webhook::Hooks {
        &self.hooks
    }

    /// Looks at every alert whose cool-down has passed; one that fails to fire is logged and
    /// looked at again next time.
    async fn check_alerts(&self) -> Result<(), MetaError> {
        let now = now_ms();
        let all = blocking(&self.meta, |m| m.alerts(None)).await?;
        for alert in all.into_iter().filter(|a| alerts::cooled_down(a, now)) {
            if let Err(e) = self.check_alert(&alert, now).await {
                tracing::warn!(alert = alert.id, "cannot fire an alert: {e}");
            }
        }
        Ok(())
    }

    async fn check_alert(&self, alert: &plumb_meta::notices::Alert, now: i64) -> Result<(), MetaError> {
        let current = self.live.window(alert.site_id, now, plumb_core::live::REALTIME_WINDOW_MS).visitors;
        let quiet_since = self.live.last_pageview(alert.site_id).unwrap_or(0).max(self.started_ms);
        let Some(finding) = alerts::finding(alert, current, quiet_since, now) else { return Ok(()) };
        let site_id = alert.site_id;
        let (site, hooks) =
            blocking(&self.meta, move |m| Ok((m.site_by_id(site_id)?, m.webhooks(Some(site_id))?))).await?;
        let Some(site) = site else { return Ok(()) };
        let messages = alerts::messages(alert, &site, &finding, &hooks, &self.dashboard_url(&site), now);
        let id = alert.id;
        if blocking(&self.meta, move |m| m.fire_alert(id, now, &messages)).await? {
            tracing::info!(site = %site.domain, alert = id, "alert: {}", finding.text);
            metrics::counter!("plumb_alerts_fired_total", "kind" => alert.kind.name()).increment(1);
            self.deliverer.wake();
        }
        Ok(())
    }

    /// Once a minute has passed (and the hits of its last seconds had time to arrive), sends each
    /// goal webhook the minute's conversions, if any. Minutes are remembered in memory only: a
    /// minute a restart interrupted is not sent.
    async fn send_conversions(&self) -> Result<(), MetaError> {
        let minute = (now_ms() - CONVERSIONS_DELAY_MS).div_euclid(60_000) - 1;
        if std::mem::replace(&mut *self.conversions_sent.lock().unwrap(), minute) >= minute {
            return Ok(());
        }
        let hooks = blocking(&self.meta, |m| m.webhooks(None)).await?;
        let now = now_ms();
        for hook in hooks.into_iter().filter(|h| h.takes(WebhookEvent::Goal)) {
            let done = self.live.completions(hook.site_id, minute);
            if done.is_empty() {
                continue;
            }
            let site_id = hook.site_id;
            let (site, goals) =
                blocking(&self.meta, move |m| Ok((m.site_by_id(site_id)?, m.list_goals(site_id)?))).await?;
            let Some(site) = site else { continue };
            let converted = alerts::conversions(&goals, &done);
            if converted.is_empty() {
                continue;
            }
            let message = NewMessage {
                site_id,
                key: format!("goal:{}:{minute}", hook.id),
                channel: Channel::Webhook,
                target: hook.id.to_string(),
                payload: alerts::goal_payload(&site, minute, &converted),
            };
            blocking(&self.meta, move |m| m.enqueue(&[message], now)).await?;
            self.deliverer.wake();
        }
        Ok(())
    }

    fn dashboard_url(&self, site: &Site) -> String {
        format!("{}/sites/{}", self.public_url, site.domain)
    }

    /// Puts due reports and daily summaries in the outbox (each once: its key says which period),
    /// and forgets messages done long ago.
    async fn schedule(&self) -> Result<(), MetaError> {
        let now = now_ms();
        let (reports, hooks) = blocking(&self.meta, |m| Ok((m.reports(None)?, m.webhooks(None)?))).await?;
        // One failing (a site's query timing out) holds up none of the others.
        for r in reports.iter().filter(|_| self.mailing) {
            if let Err(e) = self.schedule_report(r, now).await {
                tracing::warn!(report = r.id, "cannot prepare a report: {e}");
            }
        }
        for hook in hooks.iter().filter(|h| h.takes(WebhookEvent::Daily)) {
            if let Err(e) = self.schedule_daily(hook, now).await {
                tracing::warn!(webhook = hook.id, "cannot prepare a daily summary: {e}");
            }
        }
        blocking(&self.meta, move |m| m.purge_messages(now - KEEP_DONE_MS)).await?;
        Ok(())
    }

    async fn schedule_report(&self, r: &plumb_meta::notices::Report, now: i64) -> Result<(), MetaError> {
        let site_id = r.site_id;
        let Some(site) = blocking(&self.meta, move |m| m.site_by_id(site_id)).await? else { return Ok(()) };
        let range = report::last_period(r.period, site.timezone, now);
        if !report::is_due(r, site.timezone, range, now) {
            return Ok(());
        }
        self.enqueue_report(&site, r, range, report::key(r, range, false), now).await.map(|_| ())
    }

    async fn schedule_daily(&self, hook: &plumb_meta::notices::Webhook, now: i64) -> Result<(), MetaError> {
        let site_id = hook.site_id;
        let Some(site) = blocking(&self.meta, move |m| m.site_by_id(site_id)).await? else { return Ok(()) };
        let day = plumb_core::time::local_day(site.timezone, now) - 1;
        let ended = plumb_core::time::day_start_ms(site.timezone, day + 1);
        let key = format!("daily:{}:{day}", hook.id);
        let k = key.clone();
        if ended <= hook.created_ms
            || ended + report::SEND_DELAY_MS > now
            || blocking(&self.meta, move |m| m.has_message(&k)).await?
        {
            return Ok(());
        }
        let reader = self.reader.clone();
        let numbers = tokio::task::spawn_blocking(move || alerts::daily_numbers(reader.as_ref(), site_id, day))
            .await
            .map_err(|e| MetaError::Storage(e.to_string()))?
            .map_err(|e| MetaError::Storage(format!("the daily summary's query failed: {e}")))?;
        let payload = alerts::daily_payload(&site, day, &numbers);
        let message = NewMessage { site_id, key, channel: Channel::Webhook, target: hook.id.to_string(), payload };
        blocking(&self.meta, move |m| m.enqueue(&[message], now)).await?;
        self.deliverer.wake();
        Ok(())
    }

    /// Puts `r`'s report of `range` in the outbox under `key` unless it is there already (asked
    /// first, so a repeat runs no query); whether it was new.
    async fn enqueue_report(
        &self,
        site: &Site,
        r: &plumb_meta::notices::Report,
        range: plumb_query::DayRange,
        key: String,
        now: i64,
    ) -> Result<bool, MetaError> {
        let k = key.clone();
        if blocking(&self.meta, move |m| m.has_message(&k)).await? {
            return Ok(false);
        }
        let message = self.report_message(site, r, range, key).await?;
        let added = blocking(&self.meta, move |m| m.enqueue(&[message], now)).await?;
        self.deliverer.wake();
        Ok(added == 1)
    }

    /// A report's mail for `range`, as an outbox message under `key`.
    pub async fn report_message(
        &self,
        site: &Site,
        r: &plumb_meta::notices::Report,
        range: plumb_query::DayRange,
        key: String,
    ) -> Result<NewMessage, MetaError> {
        let reader = self.reader.clone();
        let (site_id, period) = (site.id, r.period);
        let numbers = tokio::task::spawn_blocking(move || report::numbers(reader.as_ref(), site_id, period, range))
            .await
            .map_err(|e| MetaError::Storage(e.to_string()))?
            .map_err(|e| MetaError::Storage(format!("the report's query failed: {e}")))?;
        let server_key = blocking(&self.meta, |m| m.server_key()).await?;
        let unsubscribe = report::unsubscribe_url(&self.public_url, &server_key, r.id);
        let mail = report::mail(site, period, &numbers, &self.dashboard_url(site), &unsubscribe);
        Ok(NewMessage {
            site_id: site.id,
            key,
            channel: Channel::Email,
            target: r.email.clone(),
            payload: serde_json::to_string(&mail).expect("a mail is JSON"),
        })
    }

    /// Puts the report of the last whole period in the outbox now, once per period: once that
    /// period's scheduled report is due, under the same key, so it is not mailed twice.
    pub async fn send_report_now(&self, site: &Site, r: &plumb_meta::notices::Report) -> Result<bool, MetaError> {
        if !self.mailing {
            return Err(not_mailing());
        }
        let now = now_ms();
        let range = report::last_period(r.period, site.timezone, now);
        let early = !report::is_due(r, site.timezone, range, now);
        self.enqueue_report(site, r, range, report::key(r, range, early), now).await
    }
}

impl Notifier {
    /// Mails an invite link to the address it is for (when mail is configured and the site's
    /// daily mail budget allows): whether it was queued. The link's secret stays in the outbox
    /// only until the mail is accepted.
    pub async fn send_invite(&self, site: &Site, email: &str, role: &str, link: &str) -> Result<bool, MetaError> {
        if !self.mailing {
            return Ok(false);
        }
        let subject = format!("You are invited to see {} on Plumb", site.domain);
        let text = format!(
            "You are invited to see the statistics of {} as {role}.\n\nAccept within 7 days (the link works once):\n{link}\n\nIf you did not expect this, ignore this mail.\n",
            site.domain
        );
        let html = format!(
            "<!doctype html><html><body style=\"font-family:sans-serif\"><p>You are invited to see the statistics of <strong>{}</strong> as {}.</p><p><a href=\"{}\">Accept the invite</a> within 7 days (the link works once).</p><p style=\"color:#888;font-size:12px\">If you did not expect this, ignore this mail.</p></body></html>",
            escape(&site.domain),
            escape(role),
            escape(link)
        );
        let mail = Mail { subject, text, html, unsubscribe: None };
        let now = now_ms();
        let message = NewMessage {
            site_id: site.id,
            key: format!("invite:{}:{email}:{now}", site.id),
            channel: Channel::Email,
            target: email.to_owned(),
            payload: serde_json::to_string(&mail).expect("a mail is JSON"),
        };
        let added = blocking(&self.meta, move |m| m.enqueue(&[message], now)).await?;
        self.deliverer.wake();
        Ok(added == 1)
    }
}

/// Why reports or mailed alerts cannot be set up here.
pub fn not_mailing() -> MetaError {
    MetaError::Invalid("this Plumb sends no e-mail: its operator has not configured SMTP (--smtp-url)".into())
}

/// Text for HTML mail.
pub(crate) fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

pub(crate) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Runs a metadata call off the async workers (both backends block).
pub(crate) async fn blocking<T: Send + 'static>(
    meta: &Arc<dyn MetaStore>,
    f: impl FnOnce(&dyn MetaStore) -> Result<T, MetaError> + Send + 'static,
) -> Result<T, MetaError> {
    let meta = meta.clone();
    tokio::task::spawn_blocking(move || f(meta.as_ref())).await.map_err(|e| MetaError::Storage(e.to_string()))?
}
