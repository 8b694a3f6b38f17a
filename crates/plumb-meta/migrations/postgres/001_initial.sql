-- The metadata schema of SQLite's versions 1 and 2 (crates/plumb-meta/migrations), in PostgreSQL's
-- types. Text compares and sorts by bytes (COLLATE "C"), as in SQLite, so lists come back in the
-- same order from both backends whatever the database's locale. Ids are never reused (identity
-- columns, like SQLite's AUTOINCREMENT).
CREATE TABLE sites (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    domain TEXT COLLATE "C" NOT NULL UNIQUE,
    timezone TEXT COLLATE "C" NOT NULL,
    created_ms BIGINT NOT NULL);
CREATE TABLE api_keys (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name TEXT COLLATE "C" NOT NULL UNIQUE,
    prefix TEXT COLLATE "C" NOT NULL,
    secret_sha256 TEXT COLLATE "C" NOT NULL UNIQUE,
    created_ms BIGINT NOT NULL,
    scopes TEXT COLLATE "C" NOT NULL,
    sites TEXT COLLATE "C");
CREATE TABLE goals (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    site_id BIGINT NOT NULL REFERENCES sites(id) ON DELETE CASCADE,
    display_name TEXT COLLATE "C" NOT NULL,
    kind TEXT COLLATE "C" NOT NULL CHECK (kind IN ('page', 'event')),
    value TEXT COLLATE "C" NOT NULL,
    currency TEXT COLLATE "C",
    UNIQUE (site_id, kind, value),
    UNIQUE (site_id, display_name));
CREATE TABLE firewall_rules (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    site_id BIGINT NOT NULL REFERENCES sites(id) ON DELETE CASCADE,
    kind TEXT COLLATE "C" NOT NULL,
    value TEXT COLLATE "C" NOT NULL,
    created_ms BIGINT NOT NULL,
    UNIQUE (site_id, kind, value));
CREATE TABLE security_counts (
    site_id BIGINT NOT NULL REFERENCES sites(id) ON DELETE CASCADE,
    hour BIGINT NOT NULL,
    reason TEXT COLLATE "C" NOT NULL,
    count BIGINT NOT NULL,
    PRIMARY KEY (site_id, hour, reason));
CREATE TABLE salts (
    day INTEGER PRIMARY KEY,
    salt BYTEA NOT NULL);
CREATE TABLE users (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email TEXT COLLATE "C" NOT NULL UNIQUE,
    password_hash TEXT COLLATE "C" NOT NULL,
    created_ms BIGINT NOT NULL,
    is_owner BOOLEAN NOT NULL DEFAULT FALSE,
    totp_secret BYTEA,
    totp_pending BYTEA,
    totp_last_step BIGINT NOT NULL DEFAULT 0);
-- One instance owner at most, whichever process adds users.
CREATE UNIQUE INDEX users_one_owner ON users (is_owner) WHERE is_owner;
CREATE TABLE sessions (
    token_sha256 TEXT COLLATE "C" PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    mfa_pending BOOLEAN NOT NULL,
    created_ms BIGINT NOT NULL);
CREATE TABLE recovery_codes (
    user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    code_sha256 TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (user_id, code_sha256));
CREATE TABLE members (
    site_id BIGINT NOT NULL REFERENCES sites(id) ON DELETE CASCADE,
    user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    role TEXT COLLATE "C" NOT NULL CHECK (role IN ('owner', 'admin', 'viewer')),
    PRIMARY KEY (site_id, user_id));
-- Every invite is for one address: SQLite's NULL e-mail marks invites older than that rule.
CREATE TABLE invites (
    token_sha256 TEXT COLLATE "C" PRIMARY KEY,
    site_id BIGINT NOT NULL REFERENCES sites(id) ON DELETE CASCADE,
    role TEXT COLLATE "C" NOT NULL,
    expires_ms BIGINT NOT NULL,
    email TEXT COLLATE "C" NOT NULL);
CREATE TABLE shared_links (
    slug TEXT COLLATE "C" PRIMARY KEY,
    site_id BIGINT NOT NULL REFERENCES sites(id) ON DELETE CASCADE,
    name TEXT COLLATE "C" NOT NULL,
    password_hash TEXT COLLATE "C",
    created_ms BIGINT NOT NULL);
CREATE TABLE server_keys (
    name TEXT COLLATE "C" PRIMARY KEY,
    value BYTEA NOT NULL);
CREATE TABLE deleted_sites (
    site_id BIGINT PRIMARY KEY,
    purged BOOLEAN NOT NULL);
