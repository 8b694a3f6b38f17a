//! Takes due messages out of the outbox and delivers them: mail over SMTP, webhooks over HTTP.
//! A message is marked sent as soon as its receiver accepted it; a failure is tried again with
//! backoff, and a crash leaves the message leased for a minute, then it is tried again. Each
//! delivery gets half the lease, so no other process claims a message one may still deliver,
//! and only the latest claim can mark it. (The one gap: a crash between the receiver's
//! acceptance and the mark, one metadata write, sends it again; mail keeps its `Message-ID` and
//! webhooks their `Plumb-Delivery`, so receivers can tell.)

use crate::webhook::Hooks;
use crate::{Mail, blocking, now_ms};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message as Email, Tokio1Executor};
use plumb_meta::notices::{Channel, LEASE_MS, MAX_ATTEMPTS, Message, retry_delay_ms};
use plumb_meta::{MetaError, MetaStore};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// Messages claimed at once, and how long the deliverer sleeps when nothing is due.
const BATCH: u32 = 16;
const IDLE: Duration = Duration::from_secs(1);
/// Connecting to the SMTP server may take this long…
const SMTP_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// …and one whole delivery (mail or webhook) this long: half the lease.
const DELIVERY_TIMEOUT: Duration = Duration::from_millis(LEASE_MS as u64 / 2);

pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl Mailer {
    pub fn new(smtp_url: &str, from: Option<&str>) -> Result<Mailer, String> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(smtp_url)
            .map_err(|e| format!("the SMTP URL is not usable: {e}"))?
            .timeout(Some(SMTP_CONNECT_TIMEOUT))
            .build();
        let from = from.ok_or("mail needs a sender address (--mail-from)")?;
        let from = from.parse().map_err(|e| format!("`{from}` is not a sender address: {e}"))?;
        Ok(Mailer { transport, from })
    }

    /// Whether the SMTP server can be reached and greets (for `plumb doctor`).
    pub async fn check(&self) -> Result<(), String> {
        match self.transport.test_connection().await {
            Ok(true) => Ok(()),
            Ok(false) => Err("it did not answer NOOP".into()),
            Err(e) => Err(e.to_string()),
        }
    }

    async fn send(&self, id: u64, to: &str, mail: &Mail) -> Result<(), Failure> {
        let to: Mailbox = to.parse().map_err(|e| Failure::permanent(format!("`{to}` is not an address: {e}")))?;
        let domain = self.from.email.domain().to_owned();
        let mut builder = Email::builder()
            .from(self.from.clone())
            .to(to)
            .subject(&mail.subject)
            .message_id(Some(format!("<plumb-{id}@{domain}>")));
        if let Some(link) = &mail.unsubscribe {
            // RFC 8058: mail clients may unsubscribe with one POST to the link.
            builder = builder
                .raw_header(HeaderValue::new(HeaderName::new_from_ascii_str("List-Unsubscribe"), format!("<{link}>")))
                .raw_header(HeaderValue::new(
                    HeaderName::new_from_ascii_str("List-Unsubscribe-Post"),
                    "List-Unsubscribe=One-Click".into(),
                ));
        }
        let email = builder
            .multipart(MultiPart::alternative_plain_html(mail.text.clone(), mail.html.clone()))
            .map_err(|e| Failure::permanent(format!("the mail could not be built: {e}")))?;
        match self.transport.send(email).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_permanent() => Err(Failure::permanent(format!("the SMTP server refused the mail: {e}"))),
            Err(e) => Err(Failure::again(format!("SMTP: {e}"))),
        }
    }
}

/// Why a delivery failed, and whether trying again could help.
pub struct Failure {
    error: String,
    retry: bool,
}

impl Failure {
    fn again(error: String) -> Failure {
        Failure { error, retry: true }
    }

    fn permanent(error: String) -> Failure {
        Failure { error, retry: false }
    }
}

pub struct Deliverer {
    meta: Arc<dyn MetaStore>,
    mailer: Option<Mailer>,
    hooks: Hooks,
    wake: Notify,
}

impl Deliverer {
    pub fn new(meta: Arc<dyn MetaStore>, mailer: Option<Mailer>, hooks: Hooks) -> Deliverer {
        Deliverer { meta, mailer, hooks, wake: Notify::new() }
    }

    /// Something was put in the outbox: look now rather than at the next tick.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    pub async fn run(&self) {
        loop {
            match self.deliver_due().await {
                Ok(n) if n > 0 => continue,
                Ok(_) => {}
                Err(e) => tracing::warn!("the outbox could not be read: {e}"),
            }
            let _ = tokio::time::timeout(IDLE, self.wake.notified()).await;
        }
    }

    /// Delivers what is due now, all at once, marking each as soon as it is done; how many were
    /// tried.
    async fn deliver_due(&self) -> Result<usize, MetaError> {
        let email = self.mailer.is_some();
        let due = blocking(&self.meta, move |m| m.claim_due(now_ms(), BATCH, email)).await?;
        let n = due.len();
        let mut running: FuturesUnordered<_> = due
            .into_iter()
            .map(|m| async move {
                // Well within the lease, so no other process takes the message while this one
                // may still deliver it.
                let outcome = match tokio::time::timeout(DELIVERY_TIMEOUT, self.deliver(&m)).await {
                    Ok(outcome) => outcome,
                    Err(_) => Err(Failure::again(format!("no answer within {DELIVERY_TIMEOUT:?}"))),
                };
                self.mark(m, outcome).await;
            })
            .collect();
        while running.next().await.is_some() {}
        Ok(n)
    }

    /// Records how a claimed message's delivery went.
    async fn mark(&self, message: Message, outcome: Result<(), Failure>) {
        let channel = message.channel.name();
        let (label, marked) = match outcome {
            Ok(()) => ("sent", blocking(&self.meta, move |m| m.mark_sent(&message, now_ms())).await),
            Err(f) => {
                let give_up = !f.retry || message.attempts >= MAX_ATTEMPTS;
                tracing::warn!(message = message.id, key = %message.key, attempt = message.attempts, "delivery failed: {}", f.error);
                let retry_at = (!give_up).then(|| now_ms() + retry_delay_ms(message.attempts));
                let label = if give_up { "failed" } else { "retry" };
                (label, blocking(&self.meta, move |m| m.mark_failed(&message, &f.error, retry_at)).await)
            }
        };
        metrics::counter!("plumb_deliveries_total", "channel" => channel, "outcome" => label).increment(1);
        match marked {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!("a delivery's outcome came after its lease ran out; the newer attempt's stands")
            }
            // Left leased: tried again when the lease runs out.
            Err(e) => tracing::error!("cannot record a delivery's outcome: {e}"),
        }
    }

    async fn deliver(&self, m: &Message) -> Result<(), Failure> {
        match m.channel {
            Channel::Email => {
                let mailer = self.mailer.as_ref().ok_or_else(|| Failure::again("SMTP is not configured".into()))?;
                let mail: Mail = serde_json::from_str(&m.payload)
                    .map_err(|e| Failure::permanent(format!("the stored mail is not readable: {e}")))?;
                mailer.send(m.id, &m.target, &mail).await
            }
            Channel::Webhook => {
                let id: u32 = m.target.parse().map_err(|_| Failure::permanent(format!("no webhook `{}`", m.target)))?;
                let hook = blocking(&self.meta, move |meta| meta.webhook(id))
                    .await
                    .map_err(|e| Failure::again(e.to_string()))?
                    .ok_or_else(|| Failure::permanent("the webhook was removed".into()))?;
                let event = serde_json::from_str::<serde_json::Value>(&m.payload)
                    .ok()
                    .and_then(|v| v["event"].as_str().map(str::to_owned))
                    .unwrap_or_default();
                self.hooks.send(&hook.url, &hook.secret, m.id, &event, &m.payload).await.map_err(|e| match e {
                    crate::webhook::HookError::Refused(e) => Failure::permanent(e),
                    crate::webhook::HookError::Failed(e) => Failure::again(e),
                })
            }
        }
    }
}
