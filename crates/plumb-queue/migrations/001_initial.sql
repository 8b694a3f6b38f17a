-- The queue as Plumb 0.1 (commit 91ba84e) left it: entries in commit order, never renumbered.
CREATE TABLE IF NOT EXISTS spool (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    received_ms INTEGER NOT NULL,
    payload BLOB NOT NULL);
