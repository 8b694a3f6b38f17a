-- Invites are for one e-mail address (those made before carry none and are not offered), and a
-- removed site leaves a tombstone until the pipeline has deleted its stored rows.
ALTER TABLE invites ADD COLUMN email TEXT;
CREATE TABLE deleted_sites (
    site_id INTEGER PRIMARY KEY,
    purged INTEGER NOT NULL);
