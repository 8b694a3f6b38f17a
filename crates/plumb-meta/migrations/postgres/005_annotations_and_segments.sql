-- Dated notes on a site's chart (deploys, campaigns); `day` is the site's local day number.
CREATE TABLE annotations (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    site_id BIGINT NOT NULL REFERENCES sites(id) ON DELETE CASCADE,
    day INTEGER NOT NULL,
    text TEXT COLLATE "C" NOT NULL,
    created_ms BIGINT NOT NULL);
CREATE INDEX annotations_by_site ON annotations (site_id, day);

-- Saved filter sets (the Stats API's `filters`, as JSON): one user's own (`owner_id`), or shared
-- with everyone who may read the site (`owner_id` NULL).
CREATE TABLE segments (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    site_id BIGINT NOT NULL REFERENCES sites(id) ON DELETE CASCADE,
    name TEXT COLLATE "C" NOT NULL,
    filters TEXT COLLATE "C" NOT NULL,
    owner_id BIGINT REFERENCES users(id) ON DELETE CASCADE,
    created_ms BIGINT NOT NULL);
CREATE INDEX segments_by_site ON segments (site_id);

-- A shared link may hide rows of fewer than this many visitors (0: none hidden).
ALTER TABLE shared_links ADD COLUMN min_visitors INTEGER NOT NULL DEFAULT 0;
