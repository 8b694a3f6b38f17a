use super::{SqliteMeta, or_no_site, storage};
use crate::backend::now_ms;
use crate::notices::{
    Alert, AlertKind, AuditEntry, Channel, DeliveryState, LEASE_MS, MAX_ALERTS, MAX_AUDIT, MAX_REPORTS,
    MAX_SITE_MAILS_PER_DAY, MAX_WEBHOOKS, Message, NewMessage, Notices, Report, ReportPeriod, Webhook, WebhookEvent,
    audit_text, events_text, new_webhook_secret, parse_events, short_error, validate_alert, validate_webhook,
};
use crate::{MetaError, Result, validate_email};
use rusqlite::{OptionalExtension, Transaction, params};

const REPORT_COLUMNS: &str = "SELECT id, site_id, email, period, created_ms FROM reports";
const ALERT_COLUMNS: &str =
    "SELECT id, site_id, kind, threshold, cooldown_minutes, email, last_fired_ms, created_ms FROM alerts";
const WEBHOOK_COLUMNS: &str = "SELECT id, site_id, url, secret, events, created_ms FROM webhooks";
const MESSAGE_COLUMNS: &str =
    "SELECT id, site_id, key, channel, target, payload, created_ms, due_ms, attempts, state, last_error FROM outbox";

fn report_row(r: &rusqlite::Row) -> rusqlite::Result<Result<Report>> {
    let period: String = r.get(3)?;
    let (id, site_id, email, created_ms) = (r.get(0)?, r.get(1)?, r.get(2)?, r.get(4)?);
    Ok(ReportPeriod::parse(&period).map(|period| Report { id, site_id, email, period, created_ms }))
}

fn alert_row(r: &rusqlite::Row) -> rusqlite::Result<Result<Alert>> {
    let kind: String = r.get(2)?;
    let alert = Alert {
        id: r.get(0)?,
        site_id: r.get(1)?,
        kind: AlertKind::Spike,
        threshold: r.get(3)?,
        cooldown_minutes: r.get(4)?,
        email: r.get(5)?,
        last_fired_ms: r.get(6)?,
        created_ms: r.get(7)?,
    };
    Ok(AlertKind::parse(&kind).map(|kind| Alert { kind, ..alert }))
}

fn webhook_row(r: &rusqlite::Row) -> rusqlite::Result<Result<Webhook>> {
    let events: String = r.get(4)?;
    let (id, site_id, url, secret, created_ms) = (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(5)?);
    Ok(parse_events(&events).map(|events| Webhook { id, site_id, url, secret, events, created_ms }))
}

fn message_row(r: &rusqlite::Row) -> rusqlite::Result<Result<Message>> {
    let (channel, state): (String, String) = (r.get(3)?, r.get(9)?);
    let parsed = Channel::parse(&channel).and_then(|c| Ok((c, DeliveryState::parse(&state)?)));
    let id: i64 = r.get(0)?;
    let (site_id, key, target, payload, created_ms, due_ms, attempts, last_error) =
        (r.get(1)?, r.get(2)?, r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?, r.get(8)?, r.get(10)?);
    Ok(parsed.map(|(channel, state)| Message {
        id: id as u64,
        site_id,
        key,
        channel,
        target,
        payload,
        created_ms,
        due_ms,
        attempts,
        state,
        last_error,
    }))
}

/// The rows `sql` selects, each made by `row`.
fn select<T>(
    conn: &rusqlite::Connection,
    sql: &str,
    params: impl rusqlite::Params,
    row: fn(&rusqlite::Row) -> rusqlite::Result<Result<T>>,
) -> Result<Vec<T>> {
    let mut stmt = conn.prepare_cached(sql).map_err(storage)?;
    let rows = stmt.query_map(params, row).map_err(storage)?;
    rows.map(|r| r.map_err(storage)?).collect()
}

fn insert_messages(tx: &Transaction, messages: &[NewMessage], now_ms: i64) -> Result<usize> {
    let mut added = 0;
    for m in messages {
        added += tx
            .execute(
                "INSERT INTO outbox (site_id, key, channel, target, payload, created_ms, due_ms)
                 SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?6 WHERE ?3 <> 'email' OR (SELECT count(*) FROM outbox
                   WHERE site_id = ?1 AND channel = 'email' AND created_ms > ?6 - 86400000) < ?7
                 ON CONFLICT (key) DO NOTHING",
                params![m.site_id, m.key, m.channel.name(), m.target, m.payload, now_ms, MAX_SITE_MAILS_PER_DAY],
            )
            .map_err(or_no_site(m.site_id))?;
    }
    Ok(added)
}

/// Deletes `table`'s row `id` of `site_id`, or says which was not there.
fn delete_one(meta: &SqliteMeta, table: &str, site_id: u32, id: u32) -> Result<()> {
    let conn = meta.conn.lock().unwrap();
    let n = conn
        .execute(&format!("DELETE FROM {table} WHERE site_id = ?1 AND id = ?2"), params![site_id, id])
        .map_err(storage)?;
    if n == 0 {
        Err(MetaError::NotFound(format!("{} {id} of site {site_id}", &table[..table.len() - 1])))
    } else {
        Ok(())
    }
}

impl Notices for SqliteMeta {
    fn add_report(&self, site_id: u32, email: &str, period: ReportPeriod) -> Result<Report> {
        let email = validate_email(email)?;
        let conn = self.conn.lock().unwrap();
        let created_ms = now_ms();
        let added = conn
            .execute(
                "INSERT INTO reports (site_id, email, period, created_ms) SELECT ?1, ?2, ?3, ?4
                 WHERE (SELECT count(*) FROM reports WHERE site_id = ?1) < ?5
                 ON CONFLICT (site_id, email, period) DO NOTHING",
                params![site_id, email, period.name(), created_ms, MAX_REPORTS],
            )
            .map_err(or_no_site(site_id))?;
        if added == 0 {
            let exists = conn
                .query_row(
                    "SELECT 1 FROM reports WHERE site_id = ?1 AND email = ?2 AND period = ?3",
                    params![site_id, email, period.name()],
                    |_| Ok(()),
                )
                .optional()
                .map_err(storage)?;
            return Err(match exists {
                Some(()) => MetaError::Invalid(format!("`{email}` already gets this site's {} report", period.name())),
                None => MetaError::too_many("report subscriptions", MAX_REPORTS),
            });
        }
        Ok(Report { id: conn.last_insert_rowid() as u32, site_id, email, period, created_ms })
    }

    fn reports(&self, site_id: Option<u32>) -> Result<Vec<Report>> {
        let conn = self.conn.lock().unwrap();
        select(&conn, &format!("{REPORT_COLUMNS} WHERE ?1 IS NULL OR site_id = ?1 ORDER BY id"), [site_id], report_row)
    }

    fn report(&self, id: u32) -> Result<Option<Report>> {
        let conn = self.conn.lock().unwrap();
        Ok(select(&conn, &format!("{REPORT_COLUMNS} WHERE id = ?1"), [id], report_row)?.pop())
    }

    fn remove_report(&self, site_id: u32, id: u32) -> Result<()> {
        delete_one(self, "reports", site_id, id)
    }

    fn add_alert(
        &self,
        site_id: u32,
        kind: AlertKind,
        threshold: u32,
        cooldown_minutes: u32,
        email: Option<&str>,
    ) -> Result<Alert> {
        let email = validate_alert(kind, threshold, cooldown_minutes, email)?;
        let conn = self.conn.lock().unwrap();
        let created_ms = now_ms();
        let added = conn
            .execute(
                "INSERT INTO alerts (site_id, kind, threshold, cooldown_minutes, email, created_ms)
                 SELECT ?1, ?2, ?3, ?4, ?5, ?6 WHERE (SELECT count(*) FROM alerts WHERE site_id = ?1) < ?7",
                params![site_id, kind.name(), threshold, cooldown_minutes, email, created_ms, MAX_ALERTS],
            )
            .map_err(or_no_site(site_id))?;
        if added == 0 {
            return Err(MetaError::too_many("alerts", MAX_ALERTS));
        }
        let id = conn.last_insert_rowid() as u32;
        Ok(Alert { id, site_id, kind, threshold, cooldown_minutes, email, last_fired_ms: None, created_ms })
    }

    fn alerts(&self, site_id: Option<u32>) -> Result<Vec<Alert>> {
        let conn = self.conn.lock().unwrap();
        select(&conn, &format!("{ALERT_COLUMNS} WHERE ?1 IS NULL OR site_id = ?1 ORDER BY id"), [site_id], alert_row)
    }

    fn remove_alert(&self, site_id: u32, id: u32) -> Result<()> {
        delete_one(self, "alerts", site_id, id)
    }

    fn fire_alert(&self, alert_id: u32, now_ms: i64, messages: &[NewMessage]) -> Result<bool> {
        let mut conn = self.conn.lock().unwrap();
        let tx = conn.transaction().map_err(storage)?;
        let fired = tx
            .execute(
                "UPDATE alerts SET last_fired_ms = ?2
                 WHERE id = ?1 AND (last_fired_ms IS NULL OR last_fired_ms + cooldown_minutes * 60000 <= ?2)",
                params![alert_id, now_ms],
            )
            .map_err(storage)?;
        if fired == 0 {
            return Ok(false);
        }
        insert_messages(&tx, messages, now_ms)?;
        tx.commit().map_err(storage)?;
        Ok(true)
    }

    fn add_webhook(&self, site_id: u32, url: &str, events: &[WebhookEvent]) -> Result<Webhook> {
        let url = validate_webhook(url, events)?;
        let secret = new_webhook_secret();
        let conn = self.conn.lock().unwrap();
        let created_ms = now_ms();
        let added = conn
            .execute(
                "INSERT INTO webhooks (site_id, url, secret, events, created_ms)
                 SELECT ?1, ?2, ?3, ?4, ?5 WHERE (SELECT count(*) FROM webhooks WHERE site_id = ?1) < ?6",
                params![site_id, url, secret, events_text(events), created_ms, MAX_WEBHOOKS],
            )
            .map_err(or_no_site(site_id))?;
        if added == 0 {
            return Err(MetaError::too_many("webhooks", MAX_WEBHOOKS));
        }
        let id = conn.last_insert_rowid() as u32;
        let events = parse_events(&events_text(events))?;
        Ok(Webhook { id, site_id, url, secret, events, created_ms })
    }

    fn webhooks(&self, site_id: Option<u32>) -> Result<Vec<Webhook>> {
        let conn = self.conn.lock().unwrap();
        select(
            &conn,
            &format!("{WEBHOOK_COLUMNS} WHERE ?1 IS NULL OR site_id = ?1 ORDER BY id"),
            [site_id],
            webhook_row,
        )
    }

    fn webhook(&self, id: u32) -> Result<Option<Webhook>> {
        let conn = self.conn.lock().unwrap();
        Ok(select(&conn, &format!("{WEBHOOK_COLUMNS} WHERE id = ?1"), [id], webhook_row)?.pop())
    }

    fn remove_webhook(&self, site_id: u32, id: u32) -> Result<()> {
        delete_one(self, "webhooks", site_id, id)
    }

    fn enqueue(&self, messages: &[NewMessage], now_ms: i64) -> Result<usize> {
        let mut conn = self.conn.lock().unwrap();
        let tx = conn.transaction().map_err(storage)?;
        let added = insert_messages(&tx, messages, now_ms)?;
        tx.commit().map_err(storage)?;
        Ok(added)
    }

    fn has_message(&self, key: &str) -> Result<bool> {
        let conn = self.conn.lock().unwrap();
        let found = conn.query_row("SELECT 1 FROM outbox WHERE key = ?1", [key], |_| Ok(())).optional();
        Ok(found.map_err(storage)?.is_some())
    }

    fn claim_due(&self, now_ms: i64, n: u32, email: bool) -> Result<Vec<Message>> {
        let mut conn = self.conn.lock().unwrap();
        let tx = conn.transaction().map_err(storage)?;
        let due = select(
            &tx,
            &format!(
                "{MESSAGE_COLUMNS} WHERE state = 'pending' AND due_ms <= ?1 AND (?3 OR channel <> 'email')
                 ORDER BY due_ms, id LIMIT ?2"
            ),
            params![now_ms, n, email],
            message_row,
        )?;
        for m in &due {
            tx.execute(
                "UPDATE outbox SET due_ms = ?2, attempts = attempts + 1 WHERE id = ?1",
                params![m.id as i64, now_ms + LEASE_MS],
            )
            .map_err(storage)?;
        }
        tx.commit().map_err(storage)?;
        Ok(due.into_iter().map(|m| Message { attempts: m.attempts + 1, due_ms: now_ms + LEASE_MS, ..m }).collect())
    }

    fn mark_sent(&self, claim: &Message, now_ms: i64) -> Result<bool> {
        let conn = self.conn.lock().unwrap();
        let n = conn
            .execute(
                "UPDATE outbox SET state = 'sent', payload = '', due_ms = ?2, last_error = NULL
                 WHERE id = ?1 AND attempts = ?3 AND due_ms = ?4 AND state = 'pending'",
                params![claim.id as i64, now_ms, claim.attempts, claim.due_ms],
            )
            .map_err(storage)?;
        Ok(n == 1)
    }

    fn mark_failed(&self, claim: &Message, error: &str, retry_at_ms: Option<i64>) -> Result<bool> {
        let conn = self.conn.lock().unwrap();
        let (state, due) = match retry_at_ms {
            Some(at) => ("pending", at),
            None => ("failed", now_ms()),
        };
        let n = conn
            .execute(
                "UPDATE outbox SET state = ?2, due_ms = ?3, last_error = ?4,
                 payload = CASE WHEN ?2 = 'failed' THEN '' ELSE payload END
                 WHERE id = ?1 AND attempts = ?5 AND due_ms = ?6 AND state = 'pending'",
                params![claim.id as i64, state, due, short_error(error), claim.attempts, claim.due_ms],
            )
            .map_err(storage)?;
        Ok(n == 1)
    }

    fn messages(&self, site_id: u32, channel: Channel, target: Option<&str>, limit: u32) -> Result<Vec<Message>> {
        let conn = self.conn.lock().unwrap();
        let sql = format!(
            "{MESSAGE_COLUMNS} WHERE site_id = ?1 AND channel = ?2 AND (?3 IS NULL OR target = ?3) ORDER BY id DESC LIMIT ?4"
        );
        select(&conn, &sql, params![site_id, channel.name(), target, limit.min(crate::notices::MAX_LOG)], message_row)
    }

    fn next_due(&self) -> Result<Option<i64>> {
        let conn = self.conn.lock().unwrap();
        conn.query_row("SELECT min(due_ms) FROM outbox WHERE state = 'pending'", [], |r| r.get(0)).map_err(storage)
    }

    fn purge_messages(&self, before_ms: i64) -> Result<usize> {
        let conn = self.conn.lock().unwrap();
        conn.execute("DELETE FROM outbox WHERE state <> 'pending' AND due_ms < ?1", [before_ms]).map_err(storage)
    }

    fn record_audit(&self, site_id: u32, e: &AuditEntry) -> Result<()> {
        let mut conn = self.conn.lock().unwrap();
        let tx = conn.transaction().map_err(storage)?;
        tx.execute(
            "INSERT INTO audit_log (site_id, at_ms, actor, action, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![site_id, e.at_ms, audit_text(&e.actor), audit_text(&e.action), audit_text(&e.detail)],
        )
        .map_err(or_no_site(site_id))?;
        tx.execute(
            "DELETE FROM audit_log WHERE site_id = ?1 AND id <= (SELECT id FROM audit_log WHERE site_id = ?1
             ORDER BY id DESC LIMIT 1 OFFSET ?2)",
            params![site_id, MAX_AUDIT],
        )
        .map_err(storage)?;
        tx.commit().map_err(storage)
    }

    fn audit_log(&self, site_id: u32, limit: u32) -> Result<Vec<AuditEntry>> {
        let conn = self.conn.lock().unwrap();
        let mut stmt = conn
            .prepare_cached(
                "SELECT at_ms, actor, action, detail FROM audit_log WHERE site_id = ?1 ORDER BY id DESC LIMIT ?2",
            )
            .map_err(storage)?;
        let rows = stmt
            .query_map(params![site_id, limit.min(MAX_AUDIT)], |r| {
                Ok(AuditEntry { at_ms: r.get(0)?, actor: r.get(1)?, action: r.get(2)?, detail: r.get(3)? })
            })
            .map_err(storage)?;
        rows.collect::<rusqlite::Result<_>>().map_err(storage)
    }
}
