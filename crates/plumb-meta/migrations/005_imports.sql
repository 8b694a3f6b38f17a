-- History imported from other tools (Fathom Lite, Plausible's CSV export, access logs): one row
-- per run; its rows are in the event store's `imported` table under `id`. Queries read only
-- imports in state 'done'; 'loading' is a run under way or cut short, 'removing' one being
-- deleted (replaced by a later run of the same key, or removed).
CREATE TABLE imports (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    site_id INTEGER NOT NULL REFERENCES sites(id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    source_key TEXT NOT NULL,
    label TEXT NOT NULL,
    first_day INTEGER NOT NULL DEFAULT 0,
    last_day INTEGER NOT NULL DEFAULT 0,
    dims TEXT NOT NULL DEFAULT '',
    rows INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL CHECK (state IN ('loading', 'done', 'removing')),
    created_ms INTEGER NOT NULL);
CREATE INDEX imports_by_site ON imports (site_id, state);

-- Site ids of older trackers (Fathom Lite's `sid`) that count into a site.
CREATE TABLE site_aliases (
    alias TEXT PRIMARY KEY,
    site_id INTEGER NOT NULL REFERENCES sites(id) ON DELETE CASCADE);
