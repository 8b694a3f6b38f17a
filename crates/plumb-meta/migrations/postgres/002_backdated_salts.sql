-- Salts for dates no longer current anywhere, made for authenticated back-fills so that every
-- collector signs a back-filled visitor alike. Deleted an hour after their last use.
CREATE TABLE backdated_salts (
    day INTEGER PRIMARY KEY,
    salt BYTEA NOT NULL,
    used_ms BIGINT NOT NULL);
