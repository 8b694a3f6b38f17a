-- History imported from other tools (Fathom Lite, Plausible's CSV export, access logs): one row
-- per run; its rows are in the event store's `imported` table under `id`. Queries read only
-- imports in state 'done'; 'loading' is a run under way or cut short, 'removing' one being
-- deleted (replaced by a later run of the same key, or removed).
CREATE TABLE imports (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    site_id BIGINT NOT NULL REFERENCES sites(id) ON DELETE CASCADE,
    kind TEXT COLLATE "C" NOT NULL,
    source_key TEXT COLLATE "C" NOT NULL,
    label TEXT COLLATE "C" NOT NULL,
    first_day INTEGER NOT NULL DEFAULT 0,
    last_day INTEGER NOT NULL DEFAULT 0,
    dims TEXT COLLATE "C" NOT NULL DEFAULT '',
    rows BIGINT NOT NULL DEFAULT 0,
    state TEXT COLLATE "C" NOT NULL CHECK (state IN ('loading', 'done', 'removing')),
    created_ms BIGINT NOT NULL);
CREATE INDEX imports_by_site ON imports (site_id, state);

-- Site ids of older trackers (Fathom Lite's `sid`) that count into a site.
CREATE TABLE site_aliases (
    alias TEXT COLLATE "C" PRIMARY KEY,
    site_id BIGINT NOT NULL REFERENCES sites(id) ON DELETE CASCADE);
