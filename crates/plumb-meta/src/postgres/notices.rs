use super::{PgMeta, id, or_missing, storage};
use crate::backend::now_ms;
use crate::notices::{
    Alert, AlertKind, AuditEntry, Channel, DeliveryState, LEASE_MS, MAX_ALERTS, MAX_AUDIT, MAX_LOG, MAX_REPORTS,
    MAX_SITE_MAILS_PER_DAY, MAX_WEBHOOKS, Message, NewMessage, Notices, Report, ReportPeriod, Webhook, WebhookEvent,
    audit_text, events_text, new_webhook_secret, parse_events, short_error, validate_alert, validate_webhook,
};
use crate::{MetaError, Result, validate_email};
use postgres::types::ToSql;
use postgres::{GenericClient, Row};

const REPORT_COLUMNS: &str = "SELECT id, site_id, email, period, created_ms FROM reports";
const ALERT_COLUMNS: &str =
    "SELECT id, site_id, kind, threshold, cooldown_minutes, email, last_fired_ms, created_ms FROM alerts";
const WEBHOOK_COLUMNS: &str = "SELECT id, site_id, url, secret, events, created_ms FROM webhooks";
const MESSAGE_FIELDS: &str =
    "id, site_id, key, channel, target, payload, created_ms, due_ms, attempts, state, last_error";

fn report_row(r: &Row) -> Result<Report> {
    let period = ReportPeriod::parse(r.get(3))?;
    Ok(Report { id: id(r, 0)?, site_id: id(r, 1)?, email: r.get(2), period, created_ms: r.get(4) })
}

fn count(r: &Row, i: usize) -> Result<u32> {
    let v: i32 = r.get(i);
    u32::try_from(v).map_err(|_| MetaError::Storage(format!("a stored count of {v}")))
}

fn alert_row(r: &Row) -> Result<Alert> {
    Ok(Alert {
        id: id(r, 0)?,
        site_id: id(r, 1)?,
        kind: AlertKind::parse(r.get(2))?,
        threshold: count(r, 3)?,
        cooldown_minutes: count(r, 4)?,
        email: r.get(5),
        last_fired_ms: r.get(6),
        created_ms: r.get(7),
    })
}

fn webhook_row(r: &Row) -> Result<Webhook> {
    let events = parse_events(r.get(4))?;
    Ok(Webhook { id: id(r, 0)?, site_id: id(r, 1)?, url: r.get(2), secret: r.get(3), events, created_ms: r.get(5) })
}

fn message_row(r: &Row) -> Result<Message> {
    let message_id: i64 = r.get(0);
    Ok(Message {
        id: message_id as u64,
        site_id: id(r, 1)?,
        key: r.get(2),
        channel: Channel::parse(r.get(3))?,
        target: r.get(4),
        payload: r.get(5),
        created_ms: r.get(6),
        due_ms: r.get(7),
        attempts: count(r, 8)?,
        state: DeliveryState::parse(r.get(9))?,
        last_error: r.get(10),
    })
}

fn select<T>(
    c: &mut impl GenericClient,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
    row: fn(&Row) -> Result<T>,
) -> Result<Vec<T>> {
    c.query(sql, params).map_err(storage)?.iter().map(row).collect()
}

fn insert_messages(c: &mut impl GenericClient, messages: &[NewMessage], now_ms: i64) -> Result<usize> {
    let mut added = 0;
    for m in messages {
        let site = i64::from(m.site_id);
        added += c
            .execute(
                "INSERT INTO outbox (site_id, key, channel, target, payload, created_ms, due_ms)
                 SELECT $1, $2, $3, $4, $5, $6::BIGINT, $6::BIGINT WHERE $3::TEXT <> 'email' OR (SELECT count(*) FROM outbox
                   WHERE site_id = $1 AND channel = 'email' AND created_ms > $6::BIGINT - 86400000) < $7
                 ON CONFLICT (key) DO NOTHING",
                &[&site, &m.key, &m.channel.name(), &m.target, &m.payload, &now_ms, &i64::from(MAX_SITE_MAILS_PER_DAY)],
            )
            .map_err(or_missing(|| MetaError::no_site(m.site_id)))? as usize;
    }
    Ok(added)
}

impl PgMeta {
    /// Deletes `table`'s row `id` of `site_id`, or says which was not there.
    fn delete_one(&self, table: &'static str, site_id: u32, row: u32) -> Result<()> {
        let n = self.pool.run(move |c| {
            c.execute(
                &format!("DELETE FROM {table} WHERE site_id = $1 AND id = $2"),
                &[&i64::from(site_id), &i64::from(row)],
            )
            .map_err(storage)
        })?;
        if n == 0 {
            Err(MetaError::NotFound(format!("{} {row} of site {site_id}", &table[..table.len() - 1])))
        } else {
            Ok(())
        }
    }

    /// Inserts into a site's table under a per-site lock, so `limit` holds with concurrent adds.
    fn add_bounded(
        &self,
        lock: i32,
        site_id: u32,
        sql: &'static str,
        params: Vec<Box<dyn ToSql + Sync + Send>>,
    ) -> Result<Option<Row>> {
        self.pool.run(move |c| {
            let mut tx = c.transaction().map_err(storage)?;
            tx.execute("SELECT pg_advisory_xact_lock($1, $2)", &[&lock, &(site_id as i32)]).map_err(storage)?;
            let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p.as_ref() as &(dyn ToSql + Sync)).collect();
            let row = tx.query_opt(sql, &refs).map_err(or_missing(|| MetaError::no_site(site_id)))?;
            tx.commit().map_err(storage)?;
            Ok(row)
        })
    }
}

impl Notices for PgMeta {
    fn add_report(&self, site_id: u32, email: &str, period: ReportPeriod) -> Result<Report> {
        let email = validate_email(email)?;
        let created_ms = now_ms();
        let row = self.add_bounded(
            10,
            site_id,
            "INSERT INTO reports (site_id, email, period, created_ms) SELECT $1, $2, $3, $4
             WHERE (SELECT count(*) FROM reports WHERE site_id = $1) < $5
             ON CONFLICT (site_id, email, period) DO NOTHING RETURNING id",
            vec![
                Box::new(i64::from(site_id)),
                Box::new(email.clone()),
                Box::new(period.name()),
                Box::new(created_ms),
                Box::new(i64::from(MAX_REPORTS)),
            ],
        )?;
        match row {
            Some(row) => Ok(Report { id: id(&row, 0)?, site_id, email, period, created_ms }),
            None if self.reports(Some(site_id))?.iter().any(|r| r.email == email && r.period == period) => {
                Err(MetaError::Invalid(format!("`{email}` already gets this site's {} report", period.name())))
            }
            None => Err(MetaError::too_many("report subscriptions", MAX_REPORTS)),
        }
    }

    fn reports(&self, site_id: Option<u32>) -> Result<Vec<Report>> {
        let site = site_id.map(i64::from);
        self.pool.run(move |c| {
            let sql = format!("{REPORT_COLUMNS} WHERE $1::BIGINT IS NULL OR site_id = $1 ORDER BY id");
            select(c, &sql, &[&site], report_row)
        })
    }

    fn report(&self, report: u32) -> Result<Option<Report>> {
        self.pool.run(move |c| {
            Ok(select(c, &format!("{REPORT_COLUMNS} WHERE id = $1"), &[&i64::from(report)], report_row)?.pop())
        })
    }

    fn remove_report(&self, site_id: u32, id: u32) -> Result<()> {
        self.delete_one("reports", site_id, id)
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
        let created_ms = now_ms();
        let row = self.add_bounded(
            11,
            site_id,
            "INSERT INTO alerts (site_id, kind, threshold, cooldown_minutes, email, created_ms)
             SELECT $1, $2, $3, $4, $5, $6 WHERE (SELECT count(*) FROM alerts WHERE site_id = $1) < $7 RETURNING id",
            vec![
                Box::new(i64::from(site_id)),
                Box::new(kind.name()),
                Box::new(threshold as i32),
                Box::new(cooldown_minutes as i32),
                Box::new(email.clone()),
                Box::new(created_ms),
                Box::new(i64::from(MAX_ALERTS)),
            ],
        )?;
        let row = row.ok_or_else(|| MetaError::too_many("alerts", MAX_ALERTS))?;
        Ok(Alert {
            id: id(&row, 0)?,
            site_id,
            kind,
            threshold,
            cooldown_minutes,
            email,
            last_fired_ms: None,
            created_ms,
        })
    }

    fn alerts(&self, site_id: Option<u32>) -> Result<Vec<Alert>> {
        let site = site_id.map(i64::from);
        self.pool.run(move |c| {
            select(
                c,
                &format!("{ALERT_COLUMNS} WHERE $1::BIGINT IS NULL OR site_id = $1 ORDER BY id"),
                &[&site],
                alert_row,
            )
        })
    }

    fn remove_alert(&self, site_id: u32, id: u32) -> Result<()> {
        self.delete_one("alerts", site_id, id)
    }

    fn fire_alert(&self, alert_id: u32, now_ms: i64, messages: &[NewMessage]) -> Result<bool> {
        let messages = messages.to_vec();
        self.pool.run(move |c| {
            let mut tx = c.transaction().map_err(storage)?;
            let fired = tx
                .execute(
                    "UPDATE alerts SET last_fired_ms = $2
                     WHERE id = $1 AND (last_fired_ms IS NULL OR last_fired_ms + cooldown_minutes * 60000::BIGINT <= $2)",
                    &[&i64::from(alert_id), &now_ms],
                )
                .map_err(storage)?;
            if fired == 0 {
                return Ok(false);
            }
            insert_messages(&mut tx, &messages, now_ms)?;
            tx.commit().map_err(storage)?;
            Ok(true)
        })
    }

    fn add_webhook(&self, site_id: u32, url: &str, events: &[WebhookEvent]) -> Result<Webhook> {
        let url = validate_webhook(url, events)?;
        let secret = new_webhook_secret();
        let events = parse_events(&events_text(events))?;
        let created_ms = now_ms();
        let row = self.add_bounded(
            12,
            site_id,
            "INSERT INTO webhooks (site_id, url, secret, events, created_ms)
             SELECT $1, $2, $3, $4, $5 WHERE (SELECT count(*) FROM webhooks WHERE site_id = $1) < $6 RETURNING id",
            vec![
                Box::new(i64::from(site_id)),
                Box::new(url.clone()),
                Box::new(secret.clone()),
                Box::new(events_text(&events)),
                Box::new(created_ms),
                Box::new(i64::from(MAX_WEBHOOKS)),
            ],
        )?;
        let row = row.ok_or_else(|| MetaError::too_many("webhooks", MAX_WEBHOOKS))?;
        Ok(Webhook { id: id(&row, 0)?, site_id, url, secret, events, created_ms })
    }

    fn webhooks(&self, site_id: Option<u32>) -> Result<Vec<Webhook>> {
        let site = site_id.map(i64::from);
        self.pool.run(move |c| {
            let sql = format!("{WEBHOOK_COLUMNS} WHERE $1::BIGINT IS NULL OR site_id = $1 ORDER BY id");
            select(c, &sql, &[&site], webhook_row)
        })
    }

    fn webhook(&self, hook: u32) -> Result<Option<Webhook>> {
        self.pool.run(move |c| {
            Ok(select(c, &format!("{WEBHOOK_COLUMNS} WHERE id = $1"), &[&i64::from(hook)], webhook_row)?.pop())
        })
    }

    fn remove_webhook(&self, site_id: u32, id: u32) -> Result<()> {
        self.delete_one("webhooks", site_id, id)
    }

    fn enqueue(&self, messages: &[NewMessage], now_ms: i64) -> Result<usize> {
        let messages = messages.to_vec();
        self.pool.run(move |c| {
            let mut tx = c.transaction().map_err(storage)?;
            let added = insert_messages(&mut tx, &messages, now_ms)?;
            tx.commit().map_err(storage)?;
            Ok(added)
        })
    }

    fn has_message(&self, key: &str) -> Result<bool> {
        let key = key.to_owned();
        self.pool
            .run(move |c| Ok(c.query_opt("SELECT 1 FROM outbox WHERE key = $1", &[&key]).map_err(storage)?.is_some()))
    }

    fn claim_due(&self, now_ms: i64, n: u32, email: bool) -> Result<Vec<Message>> {
        // One statement: rows another process holds are skipped, not waited for.
        self.pool.run(move |c| {
            let sql = format!(
                "UPDATE outbox SET due_ms = $3, attempts = attempts + 1
                 WHERE id IN (SELECT id FROM outbox WHERE state = 'pending' AND due_ms <= $1
                              AND ($4 OR channel <> 'email')
                              ORDER BY due_ms, id LIMIT $2 FOR UPDATE SKIP LOCKED)
                 RETURNING {MESSAGE_FIELDS}"
            );
            let mut due = select(c, &sql, &[&now_ms, &i64::from(n), &(now_ms + LEASE_MS), &email], message_row)?;
            due.sort_by_key(|m| (m.due_ms, m.id));
            Ok(due)
        })
    }

    fn mark_sent(&self, claim: &Message, now_ms: i64) -> Result<bool> {
        let (message, attempts, lease) = (claim.id as i64, claim.attempts as i32, claim.due_ms);
        self.pool.run(move |c| {
            let n = c
                .execute(
                    "UPDATE outbox SET state = 'sent', payload = '', due_ms = $2, last_error = NULL
                     WHERE id = $1 AND attempts = $3 AND due_ms = $4 AND state = 'pending'",
                    &[&message, &now_ms, &attempts, &lease],
                )
                .map_err(storage)?;
            Ok(n == 1)
        })
    }

    fn mark_failed(&self, claim: &Message, error: &str, retry_at_ms: Option<i64>) -> Result<bool> {
        let error = short_error(error);
        let (message, attempts, lease) = (claim.id as i64, claim.attempts as i32, claim.due_ms);
        let (state, due) = match retry_at_ms {
            Some(at) => ("pending", at),
            None => ("failed", now_ms()),
        };
        self.pool.run(move |c| {
            let n = c
                .execute(
                    "UPDATE outbox SET state = $2, due_ms = $3, last_error = $4,
                     payload = CASE WHEN $2 = 'failed' THEN '' ELSE payload END
                     WHERE id = $1 AND attempts = $5 AND due_ms = $6 AND state = 'pending'",
                    &[&message, &state, &due, &error, &attempts, &lease],
                )
                .map_err(storage)?;
            Ok(n == 1)
        })
    }

    fn messages(&self, site_id: u32, channel: Channel, target: Option<&str>, limit: u32) -> Result<Vec<Message>> {
        let target = target.map(str::to_owned);
        self.pool.run(move |c| {
            let sql = format!(
                "SELECT {MESSAGE_FIELDS} FROM outbox WHERE site_id = $1 AND channel = $2 AND ($3::TEXT IS NULL OR target = $3)
                 ORDER BY id DESC LIMIT $4"
            );
            let limit = i64::from(limit.min(MAX_LOG));
            select(c, &sql, &[&i64::from(site_id), &channel.name(), &target, &limit], message_row)
        })
    }

    fn next_due(&self) -> Result<Option<i64>> {
        self.pool.run(move |c| {
            Ok(c.query_one("SELECT min(due_ms) FROM outbox WHERE state = 'pending'", &[]).map_err(storage)?.get(0))
        })
    }

    fn purge_messages(&self, before_ms: i64) -> Result<usize> {
        self.pool.run(move |c| {
            let n = c.execute("DELETE FROM outbox WHERE state <> 'pending' AND due_ms < $1", &[&before_ms]);
            Ok(n.map_err(storage)? as usize)
        })
    }

    fn record_audit(&self, site_id: u32, e: &AuditEntry) -> Result<()> {
        let (actor, action, detail, at) = (audit_text(&e.actor), audit_text(&e.action), audit_text(&e.detail), e.at_ms);
        self.pool.run(move |c| {
            let mut tx = c.transaction().map_err(storage)?;
            let site = i64::from(site_id);
            tx.execute(
                "INSERT INTO audit_log (site_id, at_ms, actor, action, detail) VALUES ($1, $2, $3, $4, $5)",
                &[&site, &at, &actor, &action, &detail],
            )
            .map_err(or_missing(|| MetaError::no_site(site_id)))?;
            tx.execute(
                "DELETE FROM audit_log WHERE site_id = $1 AND id <= (SELECT id FROM audit_log WHERE site_id = $1
                 ORDER BY id DESC LIMIT 1 OFFSET $2)",
                &[&site, &i64::from(MAX_AUDIT)],
            )
            .map_err(storage)?;
            tx.commit().map_err(storage)
        })
    }

    fn audit_log(&self, site_id: u32, limit: u32) -> Result<Vec<AuditEntry>> {
        self.pool.run(move |c| {
            let rows = c
                .query(
                    "SELECT at_ms, actor, action, detail FROM audit_log WHERE site_id = $1 ORDER BY id DESC LIMIT $2",
                    &[&i64::from(site_id), &i64::from(limit.min(MAX_AUDIT))],
                )
                .map_err(storage)?;
            Ok(rows
                .iter()
                .map(|r| AuditEntry { at_ms: r.get(0), actor: r.get(1), action: r.get(2), detail: r.get(3) })
                .collect())
        })
    }
}
