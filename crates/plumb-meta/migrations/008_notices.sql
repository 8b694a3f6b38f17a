-- E-mail reports: one address gets one site's numbers every week or month.
CREATE TABLE reports (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    site_id INTEGER NOT NULL REFERENCES sites(id) ON DELETE CASCADE,
    email TEXT NOT NULL,
    period TEXT NOT NULL CHECK (period IN ('week', 'month')),
    created_ms INTEGER NOT NULL,
    UNIQUE (site_id, email, period));

-- Traffic alerts: `threshold` is current visitors (spike) or minutes without pageviews (drop).
CREATE TABLE alerts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    site_id INTEGER NOT NULL REFERENCES sites(id) ON DELETE CASCADE,
    kind TEXT NOT NULL CHECK (kind IN ('spike', 'drop')),
    threshold INTEGER NOT NULL,
    cooldown_minutes INTEGER NOT NULL,
    email TEXT,
    last_fired_ms INTEGER,
    created_ms INTEGER NOT NULL);
CREATE INDEX alerts_by_site ON alerts (site_id);

-- Webhooks; `events` is a comma-separated list (`alert`, `daily`); `secret` signs deliveries.
CREATE TABLE webhooks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    site_id INTEGER NOT NULL REFERENCES sites(id) ON DELETE CASCADE,
    url TEXT NOT NULL,
    secret TEXT NOT NULL,
    events TEXT NOT NULL,
    created_ms INTEGER NOT NULL);
CREATE INDEX webhooks_by_site ON webhooks (site_id);

-- Every e-mail and webhook delivery, once per `key`, until delivered or given up on, then kept a
-- while as the delivery log. `due_ms`: next attempt (pending), or when it was done.
CREATE TABLE outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    site_id INTEGER NOT NULL REFERENCES sites(id) ON DELETE CASCADE,
    key TEXT NOT NULL UNIQUE,
    channel TEXT NOT NULL CHECK (channel IN ('email', 'webhook')),
    target TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    due_ms INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sent', 'failed')),
    last_error TEXT);
CREATE INDEX outbox_due ON outbox (state, due_ms);
CREATE INDEX outbox_by_site ON outbox (site_id, channel, id);

-- Who changed what in a site's settings (dashboard and API), newest kept; owners read it.
CREATE TABLE audit_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    site_id INTEGER NOT NULL REFERENCES sites(id) ON DELETE CASCADE,
    at_ms INTEGER NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    detail TEXT NOT NULL);
CREATE INDEX audit_log_by_site ON audit_log (site_id, id);
