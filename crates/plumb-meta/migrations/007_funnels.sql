-- Funnels: 2 to 8 goals in order, counted by the pipeline from `starts_ms` (queue time) on.
-- Steps are copies of the goals they were made from, so a funnel never changes meaning.
CREATE TABLE funnels (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    site_id INTEGER NOT NULL REFERENCES sites(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    starts_ms INTEGER NOT NULL);
CREATE INDEX funnels_by_site ON funnels (site_id);
CREATE TABLE funnel_steps (
    funnel_id INTEGER NOT NULL REFERENCES funnels(id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    name TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('page', 'event')),
    value TEXT NOT NULL,
    PRIMARY KEY (funnel_id, position));
