-- How many months of a site's stored rows are kept (no row: forever). The pipeline deletes
-- older rows and rollups.
CREATE TABLE site_retention (
    site_id INTEGER PRIMARY KEY REFERENCES sites(id) ON DELETE CASCADE,
    months INTEGER NOT NULL CHECK (months BETWEEN 1 AND 1200));
