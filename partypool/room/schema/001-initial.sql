-- Version 1: feedback requests from users, and bans set by the administrator.
CREATE TABLE requests (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at TEXT    NOT NULL,  -- UTC, ISO 8601
    name       TEXT    NOT NULL,
    address    TEXT    NOT NULL,
    text       TEXT    NOT NULL
);

CREATE TABLE bans (
    kind       TEXT NOT NULL CHECK (kind IN ('ip', 'name')),
    value      TEXT NOT NULL,     -- an address, or a name key (NFKC + casefold)
    created_at TEXT NOT NULL,
    reason     TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (kind, value)
);
