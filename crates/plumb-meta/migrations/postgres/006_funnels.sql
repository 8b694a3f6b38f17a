-- Funnels: 2 to 8 goals in order, counted by the pipeline from `starts_ms` (queue time) on.
-- Steps are copies of the goals they were made from, so a funnel never changes meaning.
CREATE TABLE funnels (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    site_id BIGINT NOT NULL REFERENCES sites(id) ON DELETE CASCADE,
    name TEXT COLLATE "C" NOT NULL,
    created_ms BIGINT NOT NULL,
    starts_ms BIGINT NOT NULL);
CREATE INDEX funnels_by_site ON funnels (site_id);
CREATE TABLE funnel_steps (
    funnel_id BIGINT NOT NULL REFERENCES funnels(id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    name TEXT COLLATE "C" NOT NULL,
    kind TEXT COLLATE "C" NOT NULL CHECK (kind IN ('page', 'event')),
    value TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (funnel_id, position));
