-- E-mail reports: one address gets one site's numbers every week or month.
CREATE TABLE reports (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    site_id BIGINT NOT NULL REFERENCES sites(id) ON DELETE CASCADE,
    email TEXT COLLATE "C" NOT NULL,
    period TEXT COLLATE "C" NOT NULL CHECK (period IN ('week', 'month')),
    created_ms BIGINT NOT NULL,
    UNIQUE (site_id, email, period));

-- Traffic alerts: `threshold` is current visitors (spike) or minutes without pageviews (drop).
CREATE TABLE alerts (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    site_id BIGINT NOT NULL REFERENCES sites(id) ON DELETE CASCADE,
    kind TEXT COLLATE "C" NOT NULL CHECK (kind IN ('spike', 'drop')),
    threshold INTEGER NOT NULL,
    cooldown_minutes INTEGER NOT NULL,
    email TEXT COLLATE "C",
    last_fired_ms BIGINT,
    created_ms BIGINT NOT NULL);
CREATE INDEX alerts_by_site ON alerts (site_id);

-- Webhooks; `events` is a comma-separated list (`alert`, `daily`); `secret` signs deliveries.
CREATE TABLE webhooks (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    site_id BIGINT NOT NULL REFERENCES sites(id) ON DELETE CASCADE,
    url TEXT COLLATE "C" NOT NULL,
    secret TEXT COLLATE "C" NOT NULL,
    events TEXT COLLATE "C" NOT NULL,
    created_ms BIGINT NOT NULL);
CREATE INDEX webhooks_by_site ON webhooks (site_id);

-- Every e-mail and webhook delivery, once per `key`, until delivered or given up on, then kept a
-- while as the delivery log. `due_ms`: next attempt (pending), or when it was done.
CREATE TABLE outbox (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    site_id BIGINT NOT NULL REFERENCES sites(id) ON DELETE CASCADE,
    key TEXT COLLATE "C" NOT NULL UNIQUE,
    channel TEXT COLLATE "C" NOT NULL CHECK (channel IN ('email', 'webhook')),
    target TEXT COLLATE "C" NOT NULL,
    payload TEXT COLLATE "C" NOT NULL,
    created_ms BIGINT NOT NULL,
    due_ms BIGINT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    state TEXT COLLATE "C" NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sent', 'failed')),
    last_error TEXT);
CREATE INDEX outbox_due ON outbox (state, due_ms);
CREATE INDEX outbox_by_site ON outbox (site_id, channel, id);

-- Who changed what in a site's settings (dashboard and API), newest kept; owners read it.
CREATE TABLE audit_log (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    site_id BIGINT NOT NULL REFERENCES sites(id) ON DELETE CASCADE,
    at_ms BIGINT NOT NULL,
    actor TEXT COLLATE "C" NOT NULL,
    action TEXT COLLATE "C" NOT NULL,
    detail TEXT COLLATE "C" NOT NULL);
CREATE INDEX audit_log_by_site ON audit_log (site_id, id);
