-- Version 3: requests per user per day (--max-requests-per-day) are counted
-- by name key and by address, so the count survives a restart.
ALTER TABLE requests ADD COLUMN name_key TEXT NOT NULL DEFAULT '';
-- Rows from before: SQLite's lower() folds ASCII only, close enough for the
-- one day they still count.
UPDATE requests SET name_key = lower(name);
CREATE INDEX requests_by_name ON requests (name_key, created_at);
CREATE INDEX requests_by_address ON requests (address, created_at);
