-- Version 2: what was said to the whole room (CHAT, and NOTICE to all), for
-- late joiners (HISTORY).  Kept for --history-days, at most --history rows.
CREATE TABLE history (
    id   INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused, even after a clear
    at   REAL    NOT NULL,                   -- seconds since the epoch (UTC)
    verb TEXT    NOT NULL CHECK (verb IN ('CHAT', 'NOTICE')),
    name TEXT,                               -- the speaker of a CHAT
    text TEXT    NOT NULL
);
CREATE INDEX history_at ON history (at);
